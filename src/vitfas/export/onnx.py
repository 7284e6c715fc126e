"""Export a bundle's network to ONNX and check it against onnxruntime.

``vitfas export BUNDLE --format onnx [-o model.onnx]``. The graph takes ``image``
``[B, 3, H, W]`` (normalised as the bundle's preprocessing says) and returns ``logits``
``[B, num_classes]`` (no softmax is baked in: the bundle's calibration temperature T, also
recorded in the graph's metadata as ``vitfas.temperature``, is applied by the consumer,
P = softmax(logits / T)). The batch axis is always dynamic; ``H`` and ``W`` are dynamic too when
the model was built with ``dynamic_img_size=True`` (the position embedding is resampled
inside the graph). Export uses the ``torch.export`` based exporter, which lowers the fused
``scaled_dot_product_attention`` of our blocks to plain ONNX ops.

After writing, the graph is run by onnxruntime on batch sizes other than the one it was
traced with (and other image sizes when dynamic) and compared with PyTorch; the largest
absolute logit difference must be at most ``atol`` (1e-4) or the export fails.

``--quantize int8`` also writes ``BUNDLE/model.int8.onnx`` (``-o`` then names the int8
file) with onnxruntime's quantization tools: the graph is pre-processed
(``quant_pre_process``), then quantized statically with activation ranges calibrated on
``--calibrate MANIFEST`` (``--calib-split``, default train; ``--calib-rows``, default 128),
or dynamically when no manifest is given; weights are int8 per output channel, with 7-bit
range unless ``--full-range`` (x86 CPUs without VNNI saturate on full-range int8 weights). The fp32
``BUNDLE/model.onnx`` is exported first unless it is already there from the same weights.
The command then prints the largest |dP(live)| between the int8 graph and the fp32 model
and the share of identical decisions at the bundle's threshold, on the calibration crops
or on random images. Use it with ``vitfas predict|serve BUNDLE --runtime onnx-int8``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitfas.errors import BadCheckpointError, BadConfigError, VitfasError

log = logging.getLogger(__name__)

EXPORT_BATCH = 2
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf caps one file at 2 GB


class _Logits(nn.Module):
    """``image [B, 3, H, W] -> logits [B, C]`` (a plain single-output forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


@contextlib.contextmanager
def _quiet_exporter_logs() -> Any:
    """The exporter's libraries log every graph pass at INFO; keep that for ``-v`` only."""
    names = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._export")
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    if not log.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


def _check_cases(img_size: tuple[int, int], patch: int, dynamic: bool) -> list[tuple[int, ...]]:
    H, W = img_size
    cases = [(3, 3, H, W), (1, 3, H, W)]
    if dynamic:
        cases += [(2, 3, H + 2 * patch, W), (3, 3, max(patch, H - patch), W + patch)]
    return cases


def export_onnx(
    bundle: Any,
    out: str | Path,
    opset: int = 18,
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``bundle.model`` to ``out`` and check it with onnxruntime.

    Args:
        bundle: a loaded :class:`vitfas.bundle.Bundle`.
        out: the ``.onnx`` file to write.
        opset: ONNX opset (18 or later).
        atol: the largest allowed absolute logit difference to PyTorch.

    Returns:
        A report: file, opset, dynamic axes, and one ``{"shape", "max_abs_diff"}`` per check.

    Raises:
        VitfasError: the export failed or the check exceeded ``atol``.
    """
    import onnx
    import onnxruntime as ort

    model = bundle.model.eval().cpu()
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "img_size"):
        raise BadCheckpointError(f"{bundle.path}: the model has no config.img_size to export")
    H, W = cfg.img_size
    patch = int(getattr(cfg, "patch_size", 16))
    dynamic = bool(getattr(cfg, "dynamic_img_size", False))
    wrapped = _Logits(model).eval()
    # trace off the native size when it is dynamic, so the resampling path is in the graph
    ex_hw = (H + patch, W + patch) if dynamic else (H, W)
    g = torch.Generator().manual_seed(seed)
    example = torch.randn(EXPORT_BATCH, 3, *ex_hw, generator=g)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic:
        dims.update({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # protobuf caps a file at 2 GB: larger models keep their weights in OUT.data beside it
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), _quiet_exporter_logs(), torch.no_grad():
            torch.onnx.export(
                wrapped, (example,), str(out), input_names=["image"], output_names=["logits"],
                dynamic_shapes={"image": dims}, dynamo=True, opset_version=opset,
                external_data=big,
            )
    except Exception as exc:
        log.debug("exporter output:\n%s", chatter.getvalue())
        raise VitfasError(f"ONNX export of {bundle.path} failed: {type(exc).__name__}: "
                          f"{exc}") from exc
    log.debug("exporter output:\n%s", chatter.getvalue())

    proto = onnx.load(str(out))
    meta = {
        "vitfas.model_id": bundle.model_id,
        "vitfas.weights_sha256": bundle.config.get("weights_sha256", ""),
        "vitfas.class_names": json.dumps(bundle.class_names),
        "vitfas.live_index": json.dumps(bundle.live_index),
        "vitfas.preprocessing": json.dumps(bundle.preprocessing),
        "vitfas.threshold": json.dumps(bundle.config.get("threshold")),
        "vitfas.temperature": json.dumps(bundle.temperature),
    }
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(str(out) if big else proto)
    if big:
        onnx.save(proto, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=out.name + ".data")
    else:
        onnx.save(proto, str(out))

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    checks = []
    for shape in _check_cases((H, W), patch, dynamic):
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            ref = wrapped(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        if got.shape != ref.shape:
            raise VitfasError(f"{out}: onnxruntime gave shape {list(got.shape)} for input "
                              f"{list(shape)}, PyTorch {list(ref.shape)}")
        checks.append({"shape": list(shape), "max_abs_diff": float(np.abs(got - ref).max())})
    worst = max(c["max_abs_diff"] for c in checks)
    report = {
        "file": str(out),
        "opset": opset,
        "export_shape": [EXPORT_BATCH, 3, *ex_hw],
        "dynamic_axes": ["batch", "height", "width"] if dynamic else ["batch"],
        "checks": checks,
        "max_abs_diff": worst,
        "atol": atol,
        "ok": worst <= atol,
        "bytes": out.stat().st_size,
    }
    if worst > atol:
        raise VitfasError(
            f"{out}: onnxruntime differs from PyTorch by {worst:.3g} (> {atol:g}) on "
            f"{[c for c in checks if c['max_abs_diff'] > atol]}"
        )
    return report


# --------------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a bundle's network to ONNX (checked against onnxruntime)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", help="model bundle folder")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("-o", "--output", help="output file (default BUNDLE/model.onnx)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--quantize", choices=("int8",),
                   help="also write an int8 graph (BUNDLE/model.int8.onnx) with onnxruntime's "
                        "quantization: static when --calibrate is given, else dynamic")
    p.add_argument("--calibrate", metavar="MANIFEST",
                   help="manifest of face crops to calibrate static int8 quantization on")
    p.add_argument("--calib-split", default="train",
                   help="manifest split to calibrate on (default train; all rows if absent)")
    p.add_argument("--calib-rows", type=int, default=128, help="most crops to calibrate on")
    p.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"),
                   default="minmax", help="activation range estimator (static only)")
    p.add_argument("--static-format", choices=("qdq", "qoperator"), default="qdq",
                   help="graph format of static int8: QDQ pairs (default) or QLinear ops")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--full-range", action="store_true",
                   help="8-bit weights; only for CPUs with VNNI/AMX (the default 7-bit weights "
                        "avoid int16 saturation on x86 CPUs without VNNI)")
    p.add_argument("--keep-fp32", nargs="*", metavar="PATTERN", default=None,
                   help="leave these nodes in fp32: shell patterns matched against the "
                        "module each node came from (head, patch_embed.proj, "
                        "'blocks.*.mlp.fc2', 'blocks.0.*') or the node name; default: "
                        "patch_embed* head */scaled_dot_product_attention; `--keep-fp32` alone: "
                        "quantize every GEMM")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitfas.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    if args.calibrate and not args.quantize:
        raise BadConfigError("--calibrate is for int8 quantization: add --quantize int8")
    if args.quantize:
        return _run_quantize(args, bundle)
    out = Path(args.output) if args.output else bundle.path / "model.onnx"
    rep = export_onnx(bundle, out, opset=args.opset, atol=args.atol)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    _print_export(rep)
    return 0


def _print_export(rep: dict[str, Any]) -> None:
    print(f"export: {rep['file']} ({rep['bytes'] / 1e6:.2f} MB, opset {rep['opset']}, "
          f"dynamic {', '.join(rep['dynamic_axes'])})")
    for c in rep["checks"]:
        print(f"  onnxruntime vs PyTorch, input {c['shape']}: max |diff| "
              f"{c['max_abs_diff']:.2e}")
    print(f"  check passed: max |diff| {rep['max_abs_diff']:.2e} <= {rep['atol']:g}",
          file=sys.stdout)


def _run_quantize(args: argparse.Namespace, bundle: Any) -> int:
    """``--quantize int8``: the fp32 graph (reused when current), then the int8 graph."""
    from vitfas.export.quantize import bundle_onnx_is_current, quantize_int8

    fp32 = bundle.path / "model.onnx"
    rep: dict[str, Any] = {}
    if bundle_onnx_is_current(bundle, fp32):
        rep["fp32"] = {"file": str(fp32), "reused": True}
    else:
        rep["fp32"] = export_onnx(bundle, fp32, opset=args.opset, atol=args.atol)
    out = Path(args.output) if args.output else bundle.path / "model.int8.onnx"
    rep["int8"] = quantize_int8(
        bundle, fp32, out, args.calibrate, calib_split=args.calib_split or None,
        calib_rows=args.calib_rows, calib_method=args.calib_method,
        per_channel=not args.per_tensor, reduce_range=not args.full_range,
        static_format=args.static_format,
        **({} if args.keep_fp32 is None else {"keep_fp32": args.keep_fp32}),
    )
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    if rep["fp32"].get("reused"):
        print(f"export: {fp32} is current (same weights), reused")
    else:
        _print_export(rep["fp32"])
    q = rep["int8"]
    c = q["check"]
    cal = q["calibration"]
    how = (f"static, calibrated on {cal['rows']} crops of {cal['manifest']} "
           f"(split {cal['split']}, {cal['method']}, {cal['format']})" if cal else "dynamic")
    print(f"quantize: {q['file']} ({q['bytes'] / 1e6:.2f} MB, fp32 {q['fp32_bytes'] / 1e6:.2f}"
          f" MB), int8 {how}, weights per {'channel' if q['per_channel'] else 'tensor'}"
          f"{' (7-bit range)' if q['reduce_range'] else ''}")
    if q["fp32_nodes"]:
        print(f"  kept in fp32: {', '.join(q['fp32_nodes'])}")
    print(f"  int8 vs fp32 PyTorch on {c['on']}: max |dP(live)| {c['max_abs_dp']:.4f}, "
          f"mean {c['mean_abs_dp']:.4f}, identical decisions {100 * c['identical_decisions']:.1f}%"
          f" at threshold {c['threshold']:.4g}")
    return 0
