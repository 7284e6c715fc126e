"""The original JAX/Flax ``.npz`` checkpoints of ViT.

Two layouts, told apart the way timm's ``_load_weights`` does:

**google-research/vision_transformer** (keys at the root, or under ``opt/target/``)::

    embedding/kernel                      [P, P, C, D]   (HWIO conv kernel)
    embedding/bias                        [D]
    cls                                   [1, 1, D]
    Transformer/posembed_input/pos_embedding   [1, 1 + H*W, D]   (class token included)
    Transformer/encoderblock_N/LayerNorm_0/{scale,bias}            -> blocks.N.norm1
    Transformer/encoderblock_N/MultiHeadDotProductAttention_1/
        {query,key,value}/kernel [D, heads, head_dim], bias [heads, head_dim]
        out/kernel [heads, head_dim, D], out/bias [D]
    Transformer/encoderblock_N/LayerNorm_2/{scale,bias}            -> blocks.N.norm2
    Transformer/encoderblock_N/MlpBlock_3/Dense_{0,1}/{kernel [in, out], bias}
    Transformer/encoder_norm/{scale,bias}                          -> norm
    head/{kernel [D, classes], bias}

**big_vision** (keys under ``params/`` or ``params/img/``): the attention is
``MultiHeadDotProductAttention_0``, the second norm ``LayerNorm_1``, the MLP ``MlpBlock_0``;
the position embedding is ``pos_embedding`` ``[1, H*W, D]`` at the top level and never
covers the class token (added after it); blocks may be *scanned*: a single
``Transformer/encoderblock/...`` whose tensors carry a leading depth axis.

Dense kernels are ``[in, out]`` (transposed to PyTorch's ``[out, in]``); the separate
query/key/value projections are stacked into vitfas's ``qkv``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

PREFIXES = ("", "opt/target/", "params/", "params/img/")


def is_npz_layout(arrays: Mapping[str, Any]) -> bool:
    """Whether ``arrays`` look like a JAX ViT checkpoint (any supported prefix)."""
    return any(f"{p}embedding/kernel" in arrays for p in PREFIXES)


def _layout(w: Mapping[str, Any]) -> tuple[str, bool, bool]:
    """``(prefix, big_vision, scanned)``."""
    prefix = next((p for p in PREFIXES if f"{p}embedding/kernel" in w), None)
    if prefix is None:
        raise BadCheckpointError(
            f"no 'embedding/kernel' under any of the prefixes {list(PREFIXES)}; keys found "
            f"include {sorted(w)[:10]}"
        )
    scanned = f"{prefix}Transformer/encoderblock/LayerNorm_0/scale" in w
    big_vision = prefix.startswith("params/") or f"{prefix}pos_embedding" in w or scanned
    return prefix, big_vision, scanned


def _t(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.ndim == 4 and a.shape[0] == a.shape[1] == a.shape[2] == 1:
        a = a.reshape(-1)
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def npz_depth(w: Mapping[str, Any]) -> int:
    """Number of encoder blocks."""
    prefix, _, scanned = _layout(w)
    if scanned:
        return int(np.asarray(w[f"{prefix}Transformer/encoderblock/LayerNorm_0/scale"]).shape[0])
    n = 0
    while f"{prefix}Transformer/encoderblock_{n}/LayerNorm_0/scale" in w:
        n += 1
    return n


def convert_npz(w: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A JAX ViT checkpoint (``{name: array}`` as ``np.load`` gives it) -> vitfas keys.

    The position embedding is returned as stored: ``[1, 1 + H*W, D]`` for
    vision_transformer, ``[1, H*W, D]`` (no class position) for big_vision.

    Raises:
        BadCheckpointError: an unsupported head (big_vision's MAP head) or missing tensors.
    """
    prefix, big_vision, scanned = _layout(w)
    if any(k.startswith(f"{prefix}MAPHead_0/") for k in w):
        raise BadCheckpointError(
            "attention-pooling (MAPHead) checkpoints are not supported by vitfas's ViT; "
            "expected a class-token or average-pooled ViT"
        )
    used: set[str] = set()

    def get(key: str, idx: int | None = None) -> torch.Tensor:
        full = prefix + key
        if full not in w:
            raise BadCheckpointError(f"missing array {full!r}")
        used.add(full)
        a = np.asarray(w[full])
        return _t(a[idx] if idx is not None else a)

    out: dict[str, torch.Tensor] = {}
    out["patch_embed.proj.weight"] = get("embedding/kernel").permute(3, 2, 0, 1).contiguous()
    out["patch_embed.proj.bias"] = get("embedding/bias")
    if prefix + "cls" in w:
        out["cls_token"] = get("cls").reshape(1, 1, -1)
    pos_key = "pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"
    if prefix + pos_key in w:
        pos = get(pos_key)
        out["pos_embed"] = pos.reshape(1, -1, pos.shape[-1])
    out["norm.weight"] = get("Transformer/encoder_norm/scale")
    out["norm.bias"] = get("Transformer/encoder_norm/bias")
    if prefix + "head/kernel" in w:
        out["head.weight"] = get("head/kernel").T.contiguous()
        out["head.bias"] = get("head/bias")

    mha, ln2, mlp = (0, 1, 0) if big_vision else (1, 2, 3)
    for i in range(npz_depth(w)):
        if scanned:
            bp, idx = "Transformer/encoderblock/", i
        else:
            bp, idx = f"Transformer/encoderblock_{i}/", None
        ap = f"{bp}MultiHeadDotProductAttention_{mha}/"
        b = f"blocks.{i}."
        out[b + "norm1.weight"] = get(bp + "LayerNorm_0/scale", idx)
        out[b + "norm1.bias"] = get(bp + "LayerNorm_0/bias", idx)
        qkv = [get(f"{ap}{n}/kernel", idx) for n in ("query", "key", "value")]
        out[b + "attn.qkv.weight"] = torch.cat([k.flatten(1).T for k in qkv]).contiguous()
        if prefix + ap + "query/bias" in w:
            out[b + "attn.qkv.bias"] = torch.cat(
                [get(f"{ap}{n}/bias", idx).reshape(-1) for n in ("query", "key", "value")]
            )
        o = get(ap + "out/kernel", idx)  # [heads, head_dim, D]
        out[b + "attn.proj.weight"] = o.reshape(-1, o.shape[-1]).T.contiguous()
        out[b + "attn.proj.bias"] = get(ap + "out/bias", idx)
        out[b + "norm2.weight"] = get(f"{bp}LayerNorm_{ln2}/scale", idx)
        out[b + "norm2.bias"] = get(f"{bp}LayerNorm_{ln2}/bias", idx)
        for r in range(2):
            d = f"{bp}MlpBlock_{mlp}/Dense_{r}/"
            out[f"{b}mlp.fc{r + 1}.weight"] = get(d + "kernel", idx).T.contiguous()
            out[f"{b}mlp.fc{r + 1}.bias"] = get(d + "bias", idx)
    ignored = sorted(k for k in w if k.startswith(prefix) and k not in used)
    if ignored:
        log.info("npz arrays not used: %s", ignored[:20])
    return out


def npz_config(w: Mapping[str, Any]) -> dict[str, Any]:
    """ViTConfig keyword arguments read from array shapes (heads from the query kernel).

    Raises:
        BadCheckpointError: the position embedding's grid is not square.
    """
    prefix, big_vision, scanned = _layout(w)
    kp = np.asarray(w[prefix + "embedding/kernel"]).shape  # [P, P, C, D]
    dim = kp[3]
    bp = "Transformer/encoderblock/" if scanned else "Transformer/encoderblock_0/"
    mha, mlp = (0, 0) if big_vision else (1, 3)
    q = np.asarray(w[f"{prefix}{bp}MultiHeadDotProductAttention_{mha}/query/kernel"]).shape
    fc1 = np.asarray(w[f"{prefix}{bp}MlpBlock_{mlp}/Dense_0/kernel"]).shape
    heads = q[-2]
    hidden = fc1[-1]
    cls = prefix + "cls" in w
    pos_key = prefix + (
        "pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"
    )
    on_prefix = cls and not big_vision
    n = int(np.prod(np.asarray(w[pos_key]).shape[:-1])) - (1 if on_prefix else 0)
    side = math.isqrt(n)
    if side * side != n:
        raise BadCheckpointError(f"{pos_key}: {n} grid positions do not form a square grid")
    classes = np.asarray(w[prefix + "head/kernel"]).shape[1] if prefix + "head/kernel" in w else 0
    return {
        "img_size": (side * kp[0], side * kp[1]),
        "patch_size": kp[0],
        "in_chans": kp[2],
        "num_classes": int(classes),
        "embed_dim": dim,
        "depth": npz_depth(w),
        "num_heads": heads,
        "mlp_ratio": hidden / dim,
        "qkv_bias": f"{prefix}{bp}MultiHeadDotProductAttention_{mha}/query/bias" in w,
        "norm_eps": 1e-6,
        "class_token": cls,
        "global_pool": "token" if cls else "avg",
        "fc_norm": False,
        "pos_embed_on_prefix": on_prefix,
    }
