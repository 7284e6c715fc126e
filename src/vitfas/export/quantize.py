"""int8 quantization of an exported bundle graph with onnxruntime's quantization tools.

``vitfas export BUNDLE --format onnx --quantize int8 [--calibrate MANIFEST]`` writes
``BUNDLE/model.int8.onnx`` from the fp32 graph ``BUNDLE/model.onnx`` (exported first when it
is missing or from other weights):

1. the graph is pre-processed with ``onnxruntime.quantization.quant_pre_process``
   (symbolic shape inference and graph optimisation, so the quantizer sees fused ops and
   known shapes);
2. **static** quantization when ``--calibrate MANIFEST`` is given: activation ranges are
   calibrated on up to ``calib_rows`` face crops of the manifest's ``calib_split`` rows
   (default ``train``: never the dev/test images the model is judged on), read exactly as
   ``vitfas eval`` reads them; QDQ format, uint8 activations, int8 weights per output
   channel; otherwise **dynamic** quantization (int8 weights per output channel, activation
   ranges computed at run time on every call; the ``onnx-int8`` runtime therefore feeds a
   dynamic graph one crop per call, so a crop's score does not depend on its batch).
   Nodes matching ``keep_fp32`` (``--keep-fp32``; default :data:`DEFAULT_KEEP_FP32`: patch
   embedding, head, attention products) stay fp32;
3. the int8 graph is run by onnxruntime beside the fp32 PyTorch model on the calibration
   crops (or, without a manifest, on ``check_rows`` random images) and the report gives the
   largest and mean |dP(live)| and the share of identical decisions at the bundle's
   threshold.

The graph keeps the fp32 graph's ``vitfas.*`` metadata (weights hash, classes, threshold)
and adds ``vitfas.quantization`` (mode, per-channel, calibration source), so
``Predictor(bundle, runtime="onnx-int8")`` can check it belongs to the bundle.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vitfas.errors import BadCheckpointError, BadConfigError, BadDataError, VitfasError

log = logging.getLogger(__name__)

MODES = ("dynamic", "static")
CALIB_METHODS = ("minmax", "percentile", "entropy")
#: Graph formats of static quantization: ``qdq`` (QuantizeLinear/DequantizeLinear pairs
#: around fp32 ops, fused by onnxruntime when the session is built) or ``qoperator``
#: (QLinearMatMul / QLinearConv ops written into the graph).
STATIC_FORMATS = ("qdq", "qoperator")
#: Only the weight GEMMs (and the patch-embedding convolution) are quantized. Quantizing
#: every op onnxruntime can (LayerNorm, Add, Softmax, ...) adds quantize/dequantize pairs
#: and error for little speed: on a small ViT it moved P(live) by up to 0.044 where this
#: set moved it by 0.003 (same calibration).
QUANT_OPS = ("MatMul", "Gemm", "Conv")
#: Nodes left in fp32 unless told otherwise (``--keep-fp32``): the patch embedding, the
#: classifier head and the attention products (query x key, attention x value; dynamic
#: quantization leaves these weightless MatMuls in fp32 anyway). Chosen by a sensitivity
#: sweep on a real protocol (benchmarks/README.md, ``benchmarks/quant_sensitivity.py``):
#: the first two lowered the mean |dP(live)| of dynamic int8 from 0.0023 to 0.0015 (dev)
#: and the largest from 0.019 to 0.015, for about 1.5% of a ViT-S/16's multiply-adds; the
#: attention products were the largest single source of static int8's error. Patterns
#: of the default that match no node (a model without such modules) are skipped.
DEFAULT_KEEP_FP32: tuple[str, ...] = ("patch_embed*", "head", "*/scaled_dot_product_attention")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs every tensor at INFO/WARNING on the root logger and
    prints calibration progress; keep that for ``-v`` (DEBUG) only."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(old)


def agreement(p_ref: np.ndarray, p_new: np.ndarray, threshold: float) -> dict[str, Any]:
    """How far P(live) ``[N]`` of a new runtime is from the reference's.

    Returns ``{"n", "max_abs_dp", "mean_abs_dp", "identical_decisions"}`` where a decision
    is ``P(live) >= threshold`` and ``identical_decisions`` is the share (0-1) of rows with
    the same decision.
    """
    p_ref, p_new = np.asarray(p_ref, dtype=np.float64), np.asarray(p_new, dtype=np.float64)
    if p_ref.shape != p_new.shape or p_ref.ndim != 1:
        raise ValueError(f"expected two [N] score arrays, got {p_ref.shape} and {p_new.shape}")
    if len(p_ref) == 0:
        raise ValueError("no scores to compare")
    d = np.abs(p_new - p_ref)
    same = (p_new >= threshold) == (p_ref >= threshold)
    return {"n": len(p_ref), "max_abs_dp": float(d.max()), "mean_abs_dp": float(d.mean()),
            "identical_decisions": float(same.mean())}


def calibration_batches(bundle: Any, manifest: str | Path, split: str | None = "train",
                        rows: int = 128, seed: int = 0) -> list[np.ndarray]:
    """Up to ``rows`` preprocessed crops ``[1, 3, H, W]`` float32 from ``manifest``.

    Rows of ``split`` (all rows when the manifest has none of that split), failures to
    acquire and unreadable images skipped, chosen at random (``seed``) with live and
    attack rows alternating so both are represented. Read as ``vitfas eval`` reads them.

    Raises:
        BadDataError: no readable row.
    """
    from vitfas.metrics.core import LIVE_LABELS
    from vitfas.metrics.evaluation import _open_dataset, row_is_fta

    ds = _open_dataset(Path(manifest), bundle)
    idx = [i for i, r in enumerate(ds.rows) if not row_is_fta(r)]
    if split:
        in_split = [i for i in idx if str(ds.rows[i].get("split", "")).strip() == split]
        if in_split:
            idx = in_split
        else:
            log.warning("%s: no rows of split %r, calibrating on all rows", manifest, split)
    rng = np.random.default_rng(seed)
    live = [i for i in idx if str(ds.rows[i].get("label", "")).strip().lower() in LIVE_LABELS]
    other = [i for i in idx if i not in set(live)]
    rng.shuffle(live)
    rng.shuffle(other)
    order = [i for pair in zip(live, other) for i in pair]
    k = min(len(live), len(other))
    order += live[k:] + other[k:]
    out: list[np.ndarray] = []
    bad: list[str] = []
    for i in order:
        if len(out) >= rows:
            break
        try:
            x = ds[i][0]
        except VitfasError as exc:
            bad.append(str(exc))
            continue
        out.append(x.unsqueeze(0).numpy().astype(np.float32))
    if bad:
        log.warning("calibration: %d unreadable rows skipped (first: %s)", len(bad), bad[0])
    if not out:
        raise BadDataError(f"{manifest}: no readable rows to calibrate on (split {split!r})")
    return out


def random_batches(bundle: Any, n: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``n`` random images (uniform pixels, normalised with the bundle's mean/std) as
    ``[1, 3, H, W]`` float32 arrays."""
    pre = bundle.preprocessing
    size = pre.get("img_size") or list(getattr(bundle.model.config, "img_size", (224, 224)))
    h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mean = np.asarray(pre.get("mean", [0.5] * 3), dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre.get("std", [0.5] * 3), dtype=np.float32).reshape(1, 3, 1, 1)
    rng = np.random.default_rng(seed)
    return [((rng.random((1, 3, h, w), dtype=np.float32) - mean) / std).astype(np.float32)
            for _ in range(n)]


class _Reader:
    """An onnxruntime ``CalibrationDataReader`` over a list of batches."""

    def __init__(self, batches: Sequence[np.ndarray], input_name: str) -> None:
        self._batches = list(batches)
        self._name = input_name
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def _copy_metadata(src: Path, dst: Path, extra: dict[str, str]) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    meta.update(extra)
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(proto, str(dst))


def node_label(node: Any) -> str:
    """A readable name for a node of an exported graph: the PyTorch module it came from
    (``patch_embed.proj``, ``blocks.3.mlp.fc2``, ``head``), from the exporter's
    ``pkg.torch.onnx.name_scopes`` metadata; a weightless op inside a module gets the
    module and the op (``blocks.0.attn/scaled_dot_product_attention``). The node's own
    name when the graph has no such metadata."""
    import ast

    meta = {p.key: p.value for p in node.metadata_props}
    raw = meta.get("pkg.torch.onnx.name_scopes")
    if not raw:
        return str(node.name)
    try:
        scopes = [str(v) for v in ast.literal_eval(raw)]
    except (ValueError, SyntaxError):
        return str(node.name)
    mods = [v for v in scopes if v == "model" or v.startswith("model.")]
    if not mods or mods[-1] == "model":
        return str(node.name)
    label = mods[-1][len("model."):]
    last = scopes[-1]
    if last in mods:
        return label
    op = last.rstrip("0123456789").rstrip("_")
    # linear / linear_3 / conv2d: the module's own op; anything else is named
    return label if op in ("linear", "conv2d", "addmm", "matmul_weight") else f"{label}/{op}"


def quantizable_nodes(graph: str | Path,
                      labels_from: str | Path | None = None) -> list[dict[str, Any]]:
    """The nodes of an fp32 graph that :func:`quantize_int8` may quantize (op types in
    :data:`QUANT_OPS`), in graph order: ``{"name", "op", "label", "weighted"}``, where
    ``label`` is :func:`node_label` (taken from the same-named node of ``labels_from``
    when given: the exported graph, whose metadata a pre-processed copy may lack) and
    ``weighted`` says whether an input is a weight (False for the attention score and
    attention-times-value products)."""
    import onnx

    g = onnx.load(str(graph)).graph
    known: dict[str, str] = {}
    if labels_from is not None:
        known = {n.name: node_label(n) for n in onnx.load(str(labels_from)).graph.node}
    inits = {i.name for i in g.initializer}
    return [{"name": n.name, "op": n.op_type,
             "label": known.get(n.name) or node_label(n),
             "weighted": any(i in inits for i in n.input)}
            for n in g.node if n.op_type in QUANT_OPS]


def nodes_matching(nodes: Sequence[dict[str, Any]], patterns: Sequence[str],
                   strict: bool = True) -> list[str]:
    """Names of the ``nodes`` (:func:`quantizable_nodes`) whose label or name matches one of
    the shell-style ``patterns`` (``fnmatch``: ``head``, ``blocks.*.mlp.fc2``,
    ``*/scaled_dot_product_attention``, ``patch_embed*``).

    Raises:
        BadConfigError: a pattern matches no node (the message lists the labels); with
            ``strict=False`` such a pattern is skipped.
    """
    from fnmatch import fnmatchcase

    out: list[str] = []
    for pat in patterns:
        hit = [n["name"] for n in nodes
               if fnmatchcase(n["label"], pat) or fnmatchcase(n["name"], pat)]
        if not hit and not strict:
            continue
        if not hit:
            labels = sorted({n["label"] for n in nodes})
            raise BadConfigError(f"--keep-fp32 {pat!r} matches no quantizable node; the "
                                 f"graph has: {', '.join(labels)}")
        out += [h for h in hit if h not in out]
    return out


def quantize_int8(
    bundle: Any,
    fp32_onnx: str | Path,
    out: str | Path,
    calibrate: str | Path | Sequence[np.ndarray] | None = None,
    *,
    calib_split: str | None = "train",
    calib_rows: int = 128,
    calib_method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool = True,
    keep_fp32: Sequence[str] | None = None,
    static_format: str = "qdq",
    check_rows: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Quantize the fp32 graph of ``bundle`` to int8 and compare it with the fp32 model.

    Args:
        bundle: the loaded :class:`vitfas.bundle.Bundle` the graph was exported from.
        fp32_onnx: its fp32 graph (``vitfas export``).
        out: the int8 graph to write.
        calibrate: a manifest: static quantization calibrated on its crops (or a list of
            preprocessed ``[1, 3, H, W]`` float32 batches); ``None``: dynamic quantization.
        calib_split, calib_rows: which rows and how many to calibrate on.
        calib_method: ``"minmax"``, ``"percentile"`` (99.999th) or ``"entropy"``.
        per_channel: int8 weights with one scale per output channel.
        reduce_range: 7-bit weights (default). x86 CPUs without VNNI multiply uint8
            activations by int8 weights with ``vpmaddubsw``, whose int16 sums saturate at
            full range: on a 2-core AVX2 EPYC a static ViT-S/16 graph moved P(live) by up to
            0.13 with 8-bit weights and 0.012 with 7-bit ones. ``False`` only for graphs
            that will run on CPUs with VNNI (or AMX).
        keep_fp32: shell-style patterns (:func:`nodes_matching`) of nodes left in fp32,
            matched against the PyTorch module each node came from (``head``,
            ``blocks.*.mlp.fc2``) or the node name; ``None``: :data:`DEFAULT_KEEP_FP32`
            (its patterns that match nothing skipped); ``[]``: quantize every GEMM.
        static_format: :data:`STATIC_FORMATS` (static quantization only).
        check_rows: random images to compare on when there is no manifest.

    Returns:
        A report: file, bytes, mode, settings, and ``check`` (:func:`agreement` of the
        int8 graph's P(live) against the fp32 PyTorch model's, on ``check_on``).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    from vitfas.metrics.calibration import scaled_softmax
    from vitfas.predict.runtime import onnx_runtime, torch_runtime

    if static_format not in STATIC_FORMATS:
        raise BadConfigError(f"static int8 format must be one of {STATIC_FORMATS}, got "
                             f"{static_format!r}")
    if calib_method not in CALIB_METHODS:
        raise BadConfigError(f"calibration method must be one of {CALIB_METHODS}, got "
                             f"{calib_method!r}")
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    if not fp32_onnx.is_file():
        raise BadCheckpointError(f"{fp32_onnx}: no fp32 ONNX graph to quantize")
    mode = "static" if calibrate is not None else "dynamic"
    if calibrate is None:
        batches = random_batches(bundle, check_rows, seed)
    elif isinstance(calibrate, (str, Path)):
        batches = calibration_batches(bundle, calibrate, calib_split, calib_rows, seed)
    else:
        batches = [np.asarray(b, dtype=np.float32) for b in calibrate]
        calibrate, calib_split = f"{len(batches)} given batches", None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vitfas_quant_") as tmp:
        pre = Path(tmp) / "preprocessed.onnx"
        try:
            with _quiet():
                quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=False)
        except Exception as exc:  # the symbolic shape pass fails on some graphs
            log.warning("quant_pre_process with symbolic shapes failed (%s: %s); retrying "
                        "without", type(exc).__name__, exc)
            with _quiet():
                quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        nodes = quantizable_nodes(pre, labels_from=fp32_onnx)
        strict = keep_fp32 is not None
        keep_fp32 = DEFAULT_KEEP_FP32 if keep_fp32 is None else tuple(keep_fp32)
        exclude = nodes_matching(nodes, keep_fp32, strict=strict)
        # dynamic quantization first rewrites each Gemm as a MatMul named NAME_MatMul
        gemms = {n["name"] for n in nodes if n["op"] == "Gemm"}
        exclude += [f"{e}_MatMul" for e in exclude if e in gemms]
        try:
            with _quiet():
                if mode == "static":
                    method = {"minmax": CalibrationMethod.MinMax,
                              "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[calib_method]
                    quantize_static(
                        str(pre), str(out), _Reader(batches, "image"),
                        quant_format=(QuantFormat.QDQ if static_format == "qdq"
                                      else QuantFormat.QOperator),
                        op_types_to_quantize=list(QUANT_OPS),
                        per_channel=per_channel, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=exclude,
                    )
                else:
                    quantize_dynamic(str(pre), str(out), op_types_to_quantize=list(QUANT_OPS),
                                     per_channel=per_channel, reduce_range=reduce_range,
                                     weight_type=QuantType.QInt8,
                                     nodes_to_exclude=exclude)
        except Exception as exc:
            raise VitfasError(f"int8 quantization of {fp32_onnx} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
    info = {"mode": mode, "per_channel": per_channel, "reduce_range": reduce_range,
            "weights": "int8", "activations": "uint8",
            "keep_fp32": list(keep_fp32),
            "fp32_nodes": sorted({n["label"] for n in nodes if n["name"] in exclude}),
            "fp32_node_names": exclude,
            "calibration": None if calibrate is None else {
                "manifest": str(calibrate), "split": calib_split, "rows": len(batches),
                "method": calib_method, "format": static_format}}
    _copy_metadata(fp32_onnx, out, {"vitfas.quantization": json.dumps(info)})

    # compare with the fp32 PyTorch model, one image per call as in deployment
    ref_rt = torch_runtime(bundle.model)
    int8_rt = onnx_runtime(out, name="onnx-int8")
    live = bundle.live_index if bundle.live_index is not None else 0
    t = bundle.temperature  # the same logits -> P(live) step as Predictor
    threshold = bundle.threshold if bundle.threshold is not None else 0.5
    ref = np.concatenate([scaled_softmax(ref_rt(x).astype(np.float64), t)[:, live]
                          for x in batches])
    new = np.concatenate([scaled_softmax(int8_rt(x).astype(np.float64), t)[:, live]
                          for x in batches])
    check = agreement(ref, new, threshold)
    check["on"] = ("calibration crops" if calibrate is not None
                   else f"{len(batches)} random images")
    check["threshold"] = threshold
    return {"file": str(out), "bytes": out.stat().st_size, "fp32_file": str(fp32_onnx),
            "fp32_bytes": fp32_onnx.stat().st_size, **info, "check": check}


def bundle_onnx_is_current(bundle: Any, path: str | Path) -> bool:
    """Whether ``path`` is an fp32 graph exported from this bundle's weights."""
    import onnx

    path = Path(path)
    if not path.is_file():
        return False
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    want = bundle.config.get("weights_sha256", "")
    return bool(want) and meta.get("vitfas.weights_sha256") == want and \
        "vitfas.quantization" not in meta


__all__ = ["DEFAULT_KEEP_FP32", "STATIC_FORMATS", "agreement", "bundle_onnx_is_current",
           "calibration_batches", "node_label", "nodes_matching", "quantizable_nodes",
           "quantize_int8", "random_batches"]
