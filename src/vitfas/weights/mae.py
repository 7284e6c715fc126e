"""MAE checkpoints into :class:`~vitfas.models.mae.MaskedAutoencoderViT`.

Three sources are read:

- Hugging Face ``ViTMAEForPreTraining`` folders or hub ids (``facebook/vit-mae-base``), in
  both the ``transformers`` 4.x key names (``vit.encoder.layer.N.attention.attention.query``)
  and the 5.x ones (``vit.layers.N.attention.q_proj``). Separate query/key/value projections
  are concatenated into our fused ``qkv``.
- Reference checkpoints of facebookresearch/mae (``.pth``, weights under ``"model"``); their
  names are ours already. The released "pretrain" files hold the encoder only: load those
  into a ViT with :func:`vitfas.models.mae.encoder_state_dict` semantics (they fit
  :func:`vitfas.models.mae.vit_config_from_mae` directly).
- vitfas's own format (``save_model`` of an MAE): ``model.safetensors`` + ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from vitfas.errors import BadCheckpointError
from vitfas.models.mae import MAEConfig, MaskedAutoencoderViT
from vitfas.models.pos_embed import resample_pos_embed
from vitfas.models.vit import VisionTransformer, ViTConfig
from vitfas.weights.core import check_and_load

log = logging.getLogger(__name__)

# transformers 4.x -> 5.x key names (the same renames transformers applies when loading).
_HF4_TO_5: list[tuple[str, str]] = [
    (r"^vit\.encoder\.layer\.", "vit.layers."),
    (r"attention\.attention\.query\.", "attention.q_proj."),
    (r"attention\.attention\.key\.", "attention.k_proj."),
    (r"attention\.attention\.value\.", "attention.v_proj."),
    (r"attention\.output\.dense\.", "attention.o_proj."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"(?<!attention\.)output\.dense\.", "mlp.fc2."),
]

# HF 5.x name -> ours, for everything but the fused q/k/v.
_HF_SIMPLE: list[tuple[str, str]] = [
    (r"^vit\.embeddings\.cls_token$", "cls_token"),
    (r"^vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^vit\.layernorm\.(weight|bias)$", r"norm.\1"),
    (r"^decoder\.mask_token$", "mask_token"),
    (r"^decoder\.decoder_pos_embed$", "decoder_pos_embed"),
    (r"^decoder\.decoder_embed\.(weight|bias)$", r"decoder_embed.\1"),
    (r"^decoder\.decoder_norm\.(weight|bias)$", r"decoder_norm.\1"),
    (r"^decoder\.decoder_pred\.(weight|bias)$", r"decoder_pred.\1"),
]
_LAYER = re.compile(r"^(vit\.layers|decoder\.decoder_layers)\.(\d+)\.(.+)$")
_LAYER_PARTS = {
    "attention.o_proj": "attn.proj",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _hf_canonical(key: str) -> str:
    for pat, rep in _HF4_TO_5:
        key = re.sub(pat, rep, key)
    return key


def convert_hf_mae(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """``ViTMAEForPreTraining`` weights (4.x or 5.x names) -> vitfas MAE names.

    Raises:
        BadCheckpointError: for keys that are not part of an MAE (listed), or a layer with
            only some of its query/key/value projections.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for raw, tensor in state_dict.items():
        key = _hf_canonical(raw)
        for pat, rep in _HF_SIMPLE:
            if re.match(pat, key):
                out[re.sub(pat, rep, key)] = tensor
                break
        else:
            m = _LAYER.match(key)
            if not m:
                unknown.append(raw)
                continue
            stack, idx, rest = m.groups()
            prefix = f"{'blocks' if stack == 'vit.layers' else 'decoder_blocks'}.{idx}."
            mq = re.fullmatch(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if mq:
                qkv.setdefault((prefix, mq.group(2)), {})[mq.group(1)] = tensor
                continue
            part, _, leaf = rest.rpartition(".")
            if part not in _LAYER_PARTS or leaf not in ("weight", "bias"):
                unknown.append(raw)
                continue
            out[prefix + _LAYER_PARTS[part] + "." + leaf] = tensor
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise BadCheckpointError(
            f"{source}: {len(unknown)} keys are not part of a ViTMAEForPreTraining "
            f"checkpoint: {shown}"
        )
    for (prefix, leaf), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise BadCheckpointError(
                f"{source}: {prefix}attn has {leaf} for projections {sorted(parts)}, "
                f"expected q, k and v"
            )
        out[f"{prefix}attn.qkv.{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def mae_config_from_hf(hf_config: Mapping[str, Any] | Any, **overrides: Any) -> MAEConfig:
    """A :class:`MAEConfig` from a ``ViTMAEConfig`` (object or its ``config.json`` dict)."""
    cfg = dict(hf_config) if isinstance(hf_config, Mapping) else hf_config.to_dict()

    def get(name: str, default: Any) -> Any:
        return cfg.get(name, default)

    def ratio(inter: int, width: int, what: str) -> float:
        r = inter / width
        if int(width * r) != inter:
            raise BadCheckpointError(
                f"{what} intermediate size {inter} is not representable as width {width} "
                f"times an MLP ratio"
            )
        return r

    def square(v: Any, what: str) -> int:
        if isinstance(v, (list, tuple)):
            if len(v) != 2 or (what == "patch_size" and v[0] != v[1]):
                raise BadCheckpointError(f"unsupported {what} {v!r} (need square patches)")
            return v if what == "image_size" else int(v[0])
        return int(v)

    act = get("hidden_act", "gelu")
    gelu = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}.get(act)
    if gelu is None:
        raise BadCheckpointError(f"unsupported hidden_act {act!r} (expected gelu or gelu_new)")
    for k in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if get(k, 0.0):
            log.info("ignoring %s=%s from the Hugging Face config (MAE pre-trains without "
                     "dropout)", k, get(k, 0.0))
    width = int(get("hidden_size", 768))
    dwidth = int(get("decoder_hidden_size", 512))
    img = square(get("image_size", 224), "image_size")
    kw: dict[str, Any] = {
        "img_size": tuple(img) if isinstance(img, (list, tuple)) else img,
        "patch_size": square(get("patch_size", 16), "patch_size"),
        "in_chans": int(get("num_channels", 3)),
        "embed_dim": width,
        "depth": int(get("num_hidden_layers", 12)),
        "num_heads": int(get("num_attention_heads", 12)),
        "mlp_ratio": ratio(int(get("intermediate_size", 3072)), width, "encoder"),
        "decoder_embed_dim": dwidth,
        "decoder_depth": int(get("decoder_num_hidden_layers", 8)),
        "decoder_num_heads": int(get("decoder_num_attention_heads", 16)),
        "decoder_mlp_ratio": ratio(int(get("decoder_intermediate_size", 2048)), dwidth,
                                   "decoder"),
        "qkv_bias": bool(get("qkv_bias", True)),
        "norm_eps": float(get("layer_norm_eps", 1e-12)),
        "gelu": gelu,
        "mask_ratio": float(get("mask_ratio", 0.75)),
        "norm_pix_loss": bool(get("norm_pix_loss", False)),
    }
    kw.update(overrides)
    return MAEConfig(**kw)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling problem is a bad checkpoint
        raise BadCheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({exc})") from exc
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict):
        raise BadCheckpointError(f"{path}: expected a state dict, found {type(sd).__name__}")
    return sd


def _hf_weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise BadCheckpointError(
        f"{folder}: no model.safetensors or pytorch_model.bin (found "
        f"{sorted(p.name for p in folder.iterdir())})"
    )


def load_mae(
    path: str | PathLike[str], device: str | torch.device = "cpu", **overrides: Any
) -> MaskedAutoencoderViT:
    """Build and load an MAE from a checkpoint, its architecture read from the checkpoint.

    Args:
        path: a Hugging Face ``ViTMAEForPreTraining`` folder, a hub id
            (``"facebook/vit-mae-base"``, fetched through ``huggingface_hub``; needs network
            unless cached), a vitfas MAE folder (``save_model`` output), or a reference
            ``.pth`` (then ``overrides`` must give the architecture fields that differ from
            ViT-B/16 with the 512x8 decoder, e.g. ``embed_dim=1024, depth=24, num_heads=16``).
        device: where to put the model.
        overrides: :class:`MAEConfig` fields to change (``mask_ratio``, ``norm_pix_loss``, ...).

    Returns:
        The model, in training mode.

    Raises:
        BadCheckpointError: naming the file and the keys that do not fit.
    """
    p = Path(path)
    if not p.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(path)):
        from huggingface_hub import snapshot_download

        p = Path(snapshot_download(str(path), allow_patterns=["config.json", "*.safetensors",
                                                               "pytorch_model.bin"]))
    if p.is_dir():
        cfg_file = p / "config.json"
        if not cfg_file.is_file():
            raise BadCheckpointError(f"{p}: no config.json, cannot tell the architecture")
        cfg = json.loads(cfg_file.read_text())
        if cfg.get("format") == "vitfas":
            arch = cfg.get("architecture", {})
            if arch.get("class") != "MaskedAutoencoderViT":
                raise BadCheckpointError(
                    f"{cfg_file}: architecture class is {arch.get('class')!r}, expected "
                    f"'MaskedAutoencoderViT'"
                )
            config = MAEConfig.from_dict({**arch["config"], **overrides})
            sd = _read_state_dict(p / "model.safetensors")
        elif cfg.get("model_type") == "vit_mae":
            config = mae_config_from_hf(cfg, **overrides)
            weights = _hf_weights_file(p)
            sd = convert_hf_mae(_read_state_dict(weights), source=str(weights))
        else:
            raise BadCheckpointError(
                f"{cfg_file}: not an MAE checkpoint (model_type {cfg.get('model_type')!r}, "
                f"format {cfg.get('format')!r}); expected a ViTMAE or vitfas MAE folder"
            )
    elif p.is_file():
        config = MAEConfig(**overrides)
        sd = _read_state_dict(p)
        if any(k.startswith(("vit.", "decoder.")) for k in sd):
            sd = convert_hf_mae(sd, source=str(p))
    else:
        raise BadCheckpointError(f"{path}: no such file or folder")
    model = MaskedAutoencoderViT(config)
    check_and_load(model, sd, source=str(p))
    model.registry_name = None
    return model.to(device)


def load_mae_encoder(
    path: str | PathLike[str], num_classes: int = 0, **overrides: Any
) -> VisionTransformer:
    """A :class:`VisionTransformer` for fine-tuning, from any MAE checkpoint.

    Args:
        path: the ``encoder/`` folder of a ``pretrain-mae`` run (a headless ViT in vitfas
            format); a reference encoder-only ``.pth`` (``mae_pretrain_vit_base.pth``; give
            the size in ``overrides`` when not ViT-B/16, e.g. ``embed_dim=1024, depth=24,
            num_heads=16``); or anything :func:`load_mae` reads (the run's ``mae/`` folder,
            a Hugging Face ViTMAE folder or hub id, a reference ``.pth`` with a decoder).
        num_classes: size of the new, freshly initialised head (0 = no head).
        overrides: :class:`ViTConfig` fields, e.g. ``drop_path_rate=0.1``, ``img_size=320``
            (the position embedding is resampled), ``global_pool="avg", fc_norm=False``.

    Returns:
        The ViT in training mode; every encoder weight loaded, only the head is new.
    """
    p = Path(path)
    cfg_file = p / "config.json"
    if p.is_dir() and cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        arch = cfg.get("architecture") or {}
        if cfg.get("format") == "vitfas" and arch.get("class") == "VisionTransformer":
            saved = ViTConfig.from_dict(arch["config"])
            vit_cfg = dataclasses.replace(saved, num_classes=num_classes, **overrides)
            sd = _read_state_dict(p / "model.safetensors")
            if vit_cfg.grid_size != saved.grid_size and "pos_embed" in sd:
                sd["pos_embed"] = resample_pos_embed(
                    sd["pos_embed"], vit_cfg.grid_size, saved.grid_size,
                    num_prefix_tokens=saved.num_prefix_tokens if saved.pos_embed_on_prefix
                    else 0, interpolation=vit_cfg.pos_embed_interp,
                    antialias=vit_cfg.pos_embed_antialias,
                )
            vit = VisionTransformer(vit_cfg)
            check_and_load(vit, sd, source=str(p), allow_head_mismatch=True)
            return vit
    if p.is_file():
        sd = _read_state_dict(p)
        if not any(k.startswith(("decoder", "mask_token", "vit.")) for k in sd):
            # a reference "pretrain" file: the encoder alone, in ViT names already
            from vitfas.models.mae import vit_config_from_mae

            base = vit_config_from_mae(MAEConfig(), num_classes=num_classes)
            vit = VisionTransformer(dataclasses.replace(base, **overrides))
            check_and_load(vit, sd, source=str(p), allow_head_mismatch=True)
            return vit
    return load_mae(path).to_vit(num_classes, **overrides)


__all__ = ["convert_hf_mae", "load_mae", "load_mae_encoder", "mae_config_from_hf"]
