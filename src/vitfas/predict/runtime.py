"""Inference runtimes behind one call: ``logits = runtime(batch)``.

Every runtime maps a normalised batch ``[B, 3, H, W]`` float32 (numpy) to logits ``[B, C]``
float32; turning logits into P(live) stays with the caller (:class:`vitfas.predict.Predictor`),
so every runtime goes through the same logits -> probability step.

- ``"torch"``: the bundle's PyTorch model in fp32.
- ``"torch-bf16"``: the same model under CPU bf16 autocast (matmuls in bf16, LayerNorm and
  softmax in fp32). Only where the CPU has native bf16 instructions
  (``avx512_bf16``/``amx_bf16`` on x86, ``bf16`` on Arm): elsewhere PyTorch emulates bf16
  and it is slower than fp32, so :func:`open_runtime` refuses it and says why.
- ``"onnx"``: onnxruntime on the fp32 graph ``BUNDLE/model.onnx``.
- ``"onnx-int8"``: onnxruntime on the int8 graph ``BUNDLE/model.int8.onnx`` written by
  ``vitfas export BUNDLE --format onnx --quantize int8``.

onnxruntime sessions are opened with intra-op spinning off
(``session.intra_op.allow_spinning=0``, likewise inter-op) and an explicit thread count
(PyTorch's by default): onnxruntime's worker threads otherwise keep spinning on the cores
after each call, which slows down PyTorch (face detection, explanation) in the same process.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitfas.errors import BadCheckpointError, BadConfigError

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "torch-bf16", "onnx", "onnx-int8")
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_HINT = {
    "onnx": "vitfas export {bundle} --format onnx",
    "onnx-int8": "vitfas export {bundle} --format onnx --quantize int8",
}
_BF16_FLAGS_X86 = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo`` ``flags``/``Features``;
    empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(val.split())
    return set()


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("model name", "Model", "CPU part") and val.strip():
                return val.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_support(flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether this CPU runs bf16 arithmetic natively, and a sentence saying why (not).

    Native means the instructions exist: ``avx512_bf16`` or ``amx_bf16`` on x86-64,
    ``bf16`` on Arm (aarch64). Without them PyTorch's oneDNN converts bf16 to fp32 in
    software and bf16 inference is slower than fp32.

    Args:
        flags: CPU flags to judge (default: this machine's, :func:`cpu_flags`).
    """
    flags = cpu_flags() if flags is None else set(flags)
    capability = torch.backends.cpu.get_cpu_capability()
    arm = platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags
    have = [f for f in (*_BF16_FLAGS_X86, "bf16") if f in flags]
    wanted = "bf16" if arm else " or ".join(_BF16_FLAGS_X86)
    if have:
        return True, f"CPU has native bf16 ({', '.join(have)}; PyTorch capability {capability})"
    where = "unknown CPU flags (no /proc/cpuinfo)" if not flags else f"CPU flags lack {wanted}"
    return False, (f"this CPU ({cpu_name()}, PyTorch capability {capability}) has no native "
                   f"bf16: {where}; bf16 would be emulated and slower than fp32")


def ort_session_options(threads: int | None = None) -> Any:
    """onnxruntime ``SessionOptions`` for a process that also runs PyTorch.

    Intra- and inter-op spinning off, sequential execution, ``threads`` intra-op threads
    (default: ``torch.get_num_threads()``), warnings only.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def open_ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on ``path`` with :func:`ort_session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), ort_session_options(threads),
                                providers=["CPUExecutionProvider"])


def onnx_metadata(sess: Any) -> dict[str, str]:
    """The ``vitfas.*`` metadata an exported graph carries (model id, weights hash, ...)."""
    return dict(sess.get_modelmeta().custom_metadata_map)


class Runtime:
    """``runtime(batch [B, 3, H, W] float32) -> logits [B, C] float32`` (numpy).

    Attributes:
        name: one of :data:`RUNTIMES`.
        info: what to report about it (file, threads, quantization, ...).
        session: the onnxruntime session (``None`` for the PyTorch runtimes).
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], name: str,
                 info: dict[str, Any] | None = None, session: Any = None) -> None:
        self._fn = fn
        self.name = name
        self.info = dict(info or {})
        self.session = session

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"runtime {self.name}: expected a [B, 3, H, W] batch, got "
                             f"{list(batch.shape)}")
        out = self._fn(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"Runtime({self.name!r}, {self.info})"


def torch_runtime(model: torch.nn.Module, bf16: bool = False) -> Runtime:
    """The PyTorch model in fp32, or under CPU bf16 autocast (no capability check here)."""
    model = model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=bf16):
            return model(torch.from_numpy(x)).float().numpy()

    name = "torch-bf16" if bf16 else "torch"
    return Runtime(run, name, {"threads": torch.get_num_threads(),
                               "dtype": "bf16 autocast" if bf16 else "fp32"})


def onnx_runtime(path: str | Path, threads: int | None = None, name: str = "onnx",
                 weights_sha256: str | None = None) -> Runtime:
    """onnxruntime on the graph at ``path``; refuses a graph exported from other weights.

    Args:
        weights_sha256: the bundle's weights hash; the graph's ``vitfas.weights_sha256``
            metadata must equal it when both are known.
    """
    path = Path(path)
    sess = open_ort_session(path, threads)
    meta = onnx_metadata(sess)
    got = meta.get("vitfas.weights_sha256")
    if got and weights_sha256 and got != weights_sha256:
        raise BadCheckpointError(
            f"{path} was exported from other weights (sha256 {got[:12]}), the bundle has "
            f"{weights_sha256[:12]}; export again"
        )
    input_name = sess.get_inputs()[0].name
    quant = json.loads(meta["vitfas.quantization"]) if "vitfas.quantization" in meta else None
    # A dynamic int8 graph quantizes each activation with one range computed over the whole
    # call: in a batch, a crop's score would depend on the other crops. Row by row it does
    # not (and equals the batch-1 score the export reports and the benchmarks measure).
    per_row = bool(quant and quant.get("mode") == "dynamic")

    def run(x: np.ndarray) -> np.ndarray:
        if per_row and len(x) > 1:
            return np.concatenate([sess.run(None, {input_name: x[i:i + 1]})[0]
                                   for i in range(len(x))])
        return sess.run(None, {input_name: x})[0]

    info: dict[str, Any] = {"file": str(path),
                            "threads": int(threads or torch.get_num_threads())}
    if quant is not None:
        info["quantization"] = quant
        info["rows_per_call"] = 1 if per_row else "batch"
    return Runtime(run, name, info, session=sess)


def add_runtime_arguments(p: Any) -> None:
    """``--runtime``, ``--onnx``, ``--detect-side``, ``--threads`` on an argparse parser
    (``vitfas predict`` and ``vitfas serve``; passed to :class:`vitfas.predict.Predictor`)."""
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="torch (fp32), torch-bf16 (CPUs with native bf16 only), onnx (fp32 "
                        "graph) or onnx-int8 (after `vitfas export BUNDLE --quantize int8`)")
    p.add_argument("--onnx", metavar="FILE",
                   help="ONNX graph (default BUNDLE/model.onnx, or model.int8.onnx for onnx-int8)")
    p.add_argument("--detect-side", type=int, metavar="PX",
                   help="fast face stage: detect on a grey copy at most PX pixels on its "
                        "longer side, with the bundle's detector where that finds no face "
                        "(480: about 0.65x of the detection time, no recall lost; "
                        "docs/serve.md)")
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: PyTorch's)")


def open_runtime(bundle: Any, runtime: str = "torch", onnx_path: str | Path | None = None,
                 threads: int | None = None) -> Runtime:
    """The named runtime for a loaded bundle.

    Args:
        bundle: a :class:`vitfas.bundle.Bundle`.
        runtime: one of :data:`RUNTIMES`.
        onnx_path: the graph for the ``onnx*`` runtimes (default ``BUNDLE/model.onnx`` or
            ``BUNDLE/model.int8.onnx``).
        threads: onnxruntime intra-op threads (default: PyTorch's thread count).

    Raises:
        BadConfigError: unknown runtime, or ``torch-bf16`` on a CPU without native bf16
            (``VITFAS_FORCE_BF16=1`` runs it anyway, emulated).
        BadCheckpointError: the ONNX graph is missing or from other weights.
    """
    if runtime not in RUNTIMES:
        raise BadConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime in ("torch", "torch-bf16"):
        bf16 = runtime == "torch-bf16"
        if bf16:
            ok, why = bf16_support()
            if not ok and os.environ.get("VITFAS_FORCE_BF16") != "1":
                raise BadConfigError(
                    f"--runtime torch-bf16: {why}. Use --runtime onnx-int8 (or torch), or "
                    "set VITFAS_FORCE_BF16=1 to run it emulated anyway"
                )
            log.info("torch-bf16: %s", why)
        return torch_runtime(bundle.model, bf16=bf16)
    path = Path(onnx_path) if onnx_path else bundle.path / ONNX_FILES[runtime]
    if not path.is_file():
        raise BadCheckpointError(
            f"{path}: no ONNX graph for runtime {runtime}; run `"
            f"{EXPORT_HINT[runtime].format(bundle=bundle.path)}` first"
        )
    return onnx_runtime(path, threads, runtime, bundle.config.get("weights_sha256") or None)
