"""timm checkpoints: ``VisionTransformer`` state dicts and hub-style folders.

vitfas's parameter names are timm's (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``,
``norm``, ``fc_norm``, ``head``), so a timm state dict needs only the small repairs timm's
own ``checkpoint_filter_fn`` makes: old linear patch embeddings reshaped to a convolution,
the unused ``pre_logits`` layer dropped, DeiT-III's ``gamma_1``/``gamma_2`` renamed.

A timm hub folder (what ``timm.models.save_for_hf`` / ``push_to_hf_hub`` write) is
``config.json`` (``{"architecture": "vit_base_patch16_224", "num_classes": ...,
"model_args": {...}, "pretrained_cfg": {"input_size": [3, H, W], ...}}``) beside
``model.safetensors`` or ``pytorch_model.bin``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

TIMM_MARKER = "patch_embed.proj.weight"


def is_timm_state_dict(sd: Mapping[str, Any]) -> bool:
    """Whether ``sd`` uses timm/vitfas ViT key names."""
    return TIMM_MARKER in sd or any(k.startswith("blocks.0.") for k in sd)


def convert_timm_state_dict(
    sd: Mapping[str, torch.Tensor], in_chans: int | None = None, patch_size: int | None = None
) -> dict[str, torch.Tensor]:
    """timm ``VisionTransformer`` keys -> vitfas keys (the same names, a few repairs).

    Args:
        sd: the state dict.
        in_chans, patch_size: used only to reshape an old ``[D, C*P*P]`` linear patch
            embedding into the ``[D, C, P, P]`` convolution (3 channels assumed if omitted).
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if "pre_logits" in k:
            log.info("dropping %s (timm's unused representation layer)", k)
            continue
        if k == TIMM_MARKER and v.ndim == 2:
            c = in_chans or 3
            p = patch_size or math.isqrt(v.shape[1] // c)
            v = v.reshape(v.shape[0], c, p, p)
        k = re.sub(r"\.gamma_([12])$", r".ls\1.gamma", k)
        out[k] = v
    return out


# timm VisionTransformer kwargs -> ViTConfig fields (identity unless renamed)
_TIMM_ARGS = {
    "img_size": "img_size",
    "patch_size": "patch_size",
    "in_chans": "in_chans",
    "num_classes": "num_classes",
    "embed_dim": "embed_dim",
    "depth": "depth",
    "num_heads": "num_heads",
    "mlp_ratio": "mlp_ratio",
    "qkv_bias": "qkv_bias",
    "class_token": "class_token",
    "reg_tokens": "reg_tokens",
    "global_pool": "global_pool",
    "fc_norm": "fc_norm",
    "init_values": "layer_scale_init",
    "dynamic_img_size": "dynamic_img_size",
    "dynamic_img_pad": "dynamic_img_pad",
    "pos_embed": "pos_embed",
}
# kwargs that do not change the weights' meaning, or that hold timm's default value
_IGNORED = {"drop_rate", "pos_drop_rate", "proj_drop_rate", "attn_drop_rate",
            "drop_path_rate", "weight_init", "fix_init", "pretrained_cfg",
            "pretrained_strict", "features_only", "strict_img_size"}
_DEFAULTS_OK = {"qk_norm": False, "pre_norm": False, "final_norm": True, "proj_bias": True,
                "no_embed_class": False, "scale_attn_norm": False, "scale_mlp_norm": False}


def timm_args_to_config(
    model_args: Mapping[str, Any], source: str = "config.json"
) -> dict[str, Any]:
    """Translate timm ``model_args`` into ViTConfig overrides.

    Raises:
        BadCheckpointError: an argument changes the architecture in a way vitfas's ViT
            does not implement (e.g. ``qk_norm=True``, ``global_pool="map"``).
    """
    out: dict[str, Any] = {}
    unsupported = []
    for k, v in model_args.items():
        if k in _IGNORED:
            continue
        if k == "no_embed_class":
            out["pos_embed_on_prefix"] = not v
        elif k in _DEFAULTS_OK:
            if v != _DEFAULTS_OK[k]:
                unsupported.append(f"{k}={v!r}")
        elif k in _TIMM_ARGS:
            if k == "global_pool":
                if v == "":
                    v = "token"
                if v not in ("token", "avg"):
                    unsupported.append(f"global_pool={v!r}")
                    continue
            if k == "pos_embed" and v not in ("learn", "none"):
                unsupported.append(f"pos_embed={v!r}")
                continue
            if k == "img_size" and isinstance(v, list):
                v = tuple(v)
            out[_TIMM_ARGS[k]] = v
        else:
            unsupported.append(f"{k}={v!r}")
    if unsupported:
        raise BadCheckpointError(
            f"{source}: timm model arguments not supported by vitfas's ViT: "
            f"{', '.join(unsupported)}"
        )
    return out


def timm_folder_architecture(cfg: Mapping[str, Any], source: str) -> tuple[str, dict[str, Any]]:
    """The vitfas registry name and config overrides for a timm hub ``config.json``.

    ``"vit_base_patch16_224.augreg2_in21k_ft_in1k"`` -> ``"vit_base_patch16_224"``; the
    image size comes from ``model_args.img_size`` or ``pretrained_cfg.input_size``.
    """
    arch = str(cfg["architecture"]).split(".")[0]
    overrides = timm_args_to_config(cfg.get("model_args") or {}, source)
    if "num_classes" in cfg:
        overrides["num_classes"] = int(cfg["num_classes"])
    if "img_size" not in overrides:
        size = (cfg.get("pretrained_cfg") or {}).get("input_size")
        if size:
            overrides["img_size"] = (int(size[-2]), int(size[-1]))
    return arch, overrides
