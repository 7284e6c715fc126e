"""Hugging Face ``transformers`` ViT checkpoints (``ViTModel``, ``ViTForImageClassification``).

Two sets of key names exist. Checkpoints on the hub, and what ``save_pretrained`` writes
(transformers 4.x, and 5.x too, which converts back on save), use the **v4 names**; inside
a transformers 5.x model (``model.state_dict()``) the layers carry the **v5 names**:

v4 name (hub, ``save_pretrained``)  ->  v5 name (5.x ``state_dict()``)  ->  vitfas name::

    embeddings.cls_token                    (same)                     cls_token
    embeddings.position_embeddings          (same)                     pos_embed
    embeddings.patch_embeddings.projection  (same)                     patch_embed.proj
    encoder.layer.N.layernorm_before        layers.N.layernorm_before  blocks.N.norm1
    encoder.layer.N.attention.attention.query / .key / .value
                                  layers.N.attention.q_proj / k_proj / v_proj
                                  -> blocks.N.attn.qkv (q, k, v stacked on dim 0)
    encoder.layer.N.attention.output.dense  layers.N.attention.o_proj  blocks.N.attn.proj
    encoder.layer.N.layernorm_after         layers.N.layernorm_after   blocks.N.norm2
    encoder.layer.N.intermediate.dense      layers.N.mlp.fc1           blocks.N.mlp.fc1
    encoder.layer.N.output.dense            layers.N.mlp.fc2           blocks.N.mlp.fc2
    layernorm                               (same)                     norm
    classifier (never ``vit.``-prefixed)    (same)                     head

(The v5 names are those of ``transformers.models.vit.modeling_vit`` 5.x, whose
``conversion_mapping`` renames the v4 names on load and back on save.)

``ViTForImageClassification`` prefixes the encoder keys with ``vit.``; ``ViTModel`` has no
prefix, no classifier, and (optionally) a ``pooler.dense`` layer that classification does
not use (dropped). ``embeddings.mask_token`` (masked image modelling) is dropped too.

HF's classification head reads the class token after the final LayerNorm, exactly as
vitfas's ``global_pool="token"`` does, and its LayerNorm epsilon (default ``1e-12``) is
carried into ``ViTConfig.norm_eps``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import torch

from vitfas.errors import BadCheckpointError
from vitfas.models._config import to_pair

log = logging.getLogger(__name__)

HF_MARKER = "embeddings.patch_embeddings.projection.weight"

# per-layer renames: (v4 suffix, v5 suffix, vitfas suffix)
LAYER_TABLE = [
    ("layernorm_before", "layernorm_before", "norm1"),
    ("attention.output.dense", "attention.o_proj", "attn.proj"),
    ("layernorm_after", "layernorm_after", "norm2"),
    ("intermediate.dense", "mlp.fc1", "mlp.fc1"),
    ("output.dense", "mlp.fc2", "mlp.fc2"),
]
QKV_V4 = ("attention.attention.query", "attention.attention.key", "attention.attention.value")
QKV_V5 = ("attention.q_proj", "attention.k_proj", "attention.v_proj")
DROPPED = ("pooler.", "embeddings.mask_token")

# hidden_act -> ViTConfig.gelu
HF_ACTIVATIONS = {
    "gelu": "none",
    "gelu_python": "none",
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_fast": "tanh",
}


def is_hf_state_dict(sd: Mapping[str, Any]) -> bool:
    """Whether ``sd`` uses Hugging Face ViT key names (v4 or v5, with or without ``vit.``)."""
    return any(k == HF_MARKER or k.endswith("." + HF_MARKER) for k in sd)


def hf_v5_to_v4(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename transformers-5 ViT keys to the v4 names found on the hub (the table above)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"^(.*?)layers\.(\d+)\.(.*)$", k)
        if m:
            pre, i, rest = m.groups()
            for old, new in zip(QKV_V4, QKV_V5):
                if rest.startswith(new + "."):
                    rest = old + rest[len(new):]
            for old, new, _ in LAYER_TABLE:
                if rest.startswith(new + "."):
                    rest = old + rest[len(new):]
                    break
            k = f"{pre}encoder.layer.{i}.{rest}"
        out[k] = v
    return out


def convert_hf_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ViT state dict (v4 or v5 names) -> vitfas keys.

    The separate query/key/value projections ``[D, D]`` are stacked into ``qkv``
    ``[3D, D]`` in q, k, v order (heads contiguous within each), which is the layout
    vitfas's attention splits.

    Raises:
        BadCheckpointError: a layer lacks one of its query/key/value tensors, or keys are
            left that have no vitfas counterpart.
    """
    sd = dict(sd)
    prefix = ""
    marker = next(k for k in sd if k == HF_MARKER or k.endswith("." + HF_MARKER))
    prefix = marker[: -len(HF_MARKER)]
    if prefix:
        sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    sd = hf_v5_to_v4(sd)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    left = []
    for k, v in sd.items():
        if k.startswith(DROPPED):
            log.info("dropping %s (not used by image classification)", k)
            continue
        m = re.match(r"^encoder\.layer\.(\d+)\.(.*)\.(weight|bias)$", k)
        if m:
            i, mod, kind = int(m.group(1)), m.group(2), m.group(3)
            if mod in QKV_V4:
                qkv.setdefault((i, kind), {})[mod] = v
                continue
            new = next((ours for old, _, ours in LAYER_TABLE if old == mod), None)
            if new is not None:
                out[f"blocks.{i}.{new}.{kind}"] = v
                continue
        simple = {
            "embeddings.cls_token": "cls_token",
            "embeddings.position_embeddings": "pos_embed",
            "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
            "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
            "layernorm.weight": "norm.weight",
            "layernorm.bias": "norm.bias",
            "classifier.weight": "head.weight",
            "classifier.bias": "head.bias",
        }
        if k in simple:
            out[simple[k]] = v
        else:
            left.append(k)
    for (i, kind), parts in sorted(qkv.items()):
        missing = [p for p in QKV_V4 if p not in parts]
        if missing:
            raise BadCheckpointError(
                f"layer {i}: {kind} of {missing} missing, cannot assemble query/key/value"
            )
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in QKV_V4], dim=0)
    if left:
        raise BadCheckpointError(
            f"Hugging Face ViT keys with no vitfas counterpart: {left[:20]}"
            + (f" ... ({len(left) - 20} more)" if len(left) > 20 else "")
        )
    return out


def hf_config_to_vit(cfg: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
    """A Hugging Face ``ViTConfig`` dict -> ``vitfas.ViTConfig`` keyword arguments.

    Reads ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
    ``intermediate_size``, ``image_size``, ``patch_size``, ``num_channels``,
    ``layer_norm_eps`` (default 1e-12, honoured), ``qkv_bias``, ``hidden_act`` and the
    number of labels.

    Raises:
        BadCheckpointError: a non-ViT ``model_type``, a non-square patch or an activation
            vitfas does not implement.
    """
    mt = cfg.get("model_type")
    if mt != "vit":
        raise BadCheckpointError(
            f"{source}: model_type {mt!r} is not supported; expected 'vit' (transformers "
            f"ViTModel / ViTForImageClassification)"
        )
    act = cfg.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise BadCheckpointError(
            f"{source}: hidden_act {act!r} not supported; expected one of {list(HF_ACTIVATIONS)}"
        )
    ph, pw = to_pair(cfg.get("patch_size", 16))
    if ph != pw:
        raise BadCheckpointError(f"{source}: non-square patch_size {[ph, pw]} not supported")
    hidden = int(cfg.get("hidden_size", 768))
    inter = int(cfg.get("intermediate_size", 3072))
    if int(hidden * (inter / hidden)) != inter:
        raise BadCheckpointError(
            f"{source}: intermediate_size {inter} is not representable as hidden_size {hidden} "
            f"times an MLP ratio"
        )
    archs = cfg.get("architectures") or []
    classifier = any("ForImageClassification" in a for a in archs)
    if "num_labels" in cfg:
        num_classes = int(cfg["num_labels"])
    elif cfg.get("id2label"):
        num_classes = len(cfg["id2label"])
    else:
        num_classes = 2  # transformers' PretrainedConfig default
    return {
        "img_size": to_pair(cfg.get("image_size", 224)),
        "patch_size": ph,
        "in_chans": int(cfg.get("num_channels", 3)),
        "num_classes": num_classes if classifier else 0,
        "embed_dim": hidden,
        "depth": int(cfg.get("num_hidden_layers", 12)),
        "num_heads": int(cfg.get("num_attention_heads", 12)),
        "mlp_ratio": inter / hidden,
        "qkv_bias": bool(cfg.get("qkv_bias", True)),
        "norm_eps": float(cfg.get("layer_norm_eps", 1e-12)),
        "gelu": HF_ACTIVATIONS[act],
        "global_pool": "token",
        "fc_norm": False,
    }
