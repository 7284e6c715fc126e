"""Reading raw tensors from checkpoint files, whatever their container.

Containers are recognised by their content, not their extension:

- NumPy ``.npz`` (a zip of ``.npy`` members): the JAX/Flax checkpoints of
  google-research/vision_transformer and big_vision.
- safetensors (an 8-byte header length followed by a JSON header), including sharded
  folders with ``model.safetensors.index.json``.
- PyTorch ``torch.save`` files (zip or legacy pickle), always read with
  ``weights_only=True``: a file that needs arbitrary Python objects to unpickle is refused,
  never executed.

Training checkpoints that nest the weights (``{"state_dict": ...}``, ``{"model": ...}``,
``{"state_dict_ema": ...}``) are unwrapped, and the ``module.`` (DistributedDataParallel)
and ``_orig_mod.`` (``torch.compile``) prefixes are removed.
"""

from __future__ import annotations

import json
import logging
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

# Keys under which training scripts nest the weights, in order of preference.
NESTED_KEYS = ("state_dict", "model", "module", "net", "params")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")


def sniff(path: Path) -> str:
    """``"npz"``, ``"safetensors"``, ``"torch"`` or ``"unknown"`` from a file's first bytes.

    Raises:
        BadCheckpointError: the file is missing or empty.
    """
    if not path.exists():
        raise BadCheckpointError(f"{path}: no such file or folder")
    size = path.stat().st_size
    if size == 0:
        raise BadCheckpointError(f"{path}: the file is empty (0 bytes); expected a checkpoint")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadCheckpointError(f"{path}: unreadable zip archive ({exc})") from exc
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "torch"
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        raise BadCheckpointError(
            f"{path}: a zip archive (PyTorch or .npz container) that is truncated or corrupt "
            f"({size} bytes, no readable central directory); re-download or re-save it"
        )
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol marker: legacy torch.save
        return "torch"
    return "unknown"


def _torch_load(path: Path) -> Any:
    import argparse

    safe = [argparse.Namespace]  # timm's training checkpoints store their args as a Namespace
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise BadCheckpointError(
                f"{path}: refused to unpickle Python objects other than tensors ({msg}). "
                f"vitfas reads PyTorch files with weights_only=True; re-save just the weights, "
                f"e.g. torch.save(model.state_dict(), 'weights.pth') or as .safetensors"
            ) from exc
        raise BadCheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg})") from exc


def _unwrap(obj: Any, path: Path, use_ema: bool) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a (possibly nested) training checkpoint."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise BadCheckpointError(
                f"{path}: expected a dict of tensors, found a {type(obj).__name__}"
            )
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        order = (EMA_KEYS + NESTED_KEYS) if use_ema else (NESTED_KEYS + EMA_KEYS)
        key = next((k for k in order if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= len(obj) // 2:
                dropped = sorted(k for k in obj if k not in tensors)
                log.info("%s: ignoring non-tensor entries %s", path, dropped)
                return tensors
            raise BadCheckpointError(
                f"{path}: found no weights; top-level keys are {sorted(map(str, obj))[:20]} "
                f"(expected tensors, or one of {list(NESTED_KEYS + EMA_KEYS)} holding them)"
            )
        log.info("%s: using the weights under %r", path, key)
        obj = obj[key]
    raise BadCheckpointError(f"{path}: weights nested too deeply to find")


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes shared by every key."""
    out = dict(sd)
    changed = True
    while changed and out:
        changed = False
        for p in STRIP_PREFIXES:
            if all(k.startswith(p) for k in out):
                out = {k[len(p):]: v for k, v in out.items()}
                changed = True
    return out


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, keyed by their ``/``-separated names."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadCheckpointError(f"{path}: not a readable .npz archive ({exc})") from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadCheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_tensor_file(path: Path, use_ema: bool = False) -> tuple[str, dict[str, Any]]:
    """Read one checkpoint file.

    Returns:
        ``(container, tensors)``: ``("npz", {name: ndarray})`` or
        ``("safetensors" | "torch", {key: Tensor})`` with nesting and prefixes removed.

    Raises:
        BadCheckpointError: missing, empty, corrupt or unrecognised files, naming the file.
    """
    kind = sniff(path)
    if kind == "npz":
        return kind, read_npz(path)
    if kind == "safetensors":
        sd = read_safetensors(path)
    elif kind == "torch":
        sd = _unwrap(_torch_load(path), path, use_ema)
    else:
        with open(path, "rb") as f:
            head = f.read(16)
        raise BadCheckpointError(
            f"{path}: unrecognised file (first bytes {head!r}); expected a PyTorch "
            f"(.pth/.pt/.bin), safetensors or NumPy .npz checkpoint"
        )
    if not sd:
        raise BadCheckpointError(f"{path}: the checkpoint holds no tensors")
    return kind, strip_prefixes(sd)


def read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """Tensors of a sharded checkpoint described by a ``*.index.json`` file."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise BadCheckpointError(f"{index}: not a valid shard index ({exc})") from exc
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        _, sd = read_tensor_file(index.parent / shard)
        out.update(sd)
    return out


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "open_clip_pytorch_model.bin",
)


def find_weights(folder: Path) -> Path:
    """The weights file in a checkpoint folder (safetensors preferred).

    Raises:
        BadCheckpointError: naming the folder and listing what it contains.
    """
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(
        p for p in folder.iterdir()
        if p.suffix in (".safetensors", ".pth", ".pt", ".bin", ".npz", ".ckpt")
    )
    if len(candidates) == 1:
        return candidates[0]
    found = sorted(p.name for p in folder.iterdir())[:20]
    raise BadCheckpointError(
        f"{folder}: found no single weights file (expected one of {list(WEIGHT_FILES[:3])}); "
        f"the folder holds {found}"
    )


def read_weights(path: Path, use_ema: bool = False) -> tuple[str, dict[str, Any]]:
    """Like :func:`read_tensor_file`, also following shard indexes."""
    if path.name.endswith(".index.json"):
        return "safetensors", strip_prefixes(read_sharded(path))
    return read_tensor_file(path, use_ema)
