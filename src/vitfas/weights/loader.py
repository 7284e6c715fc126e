"""Detecting a checkpoint's source, converting it, and building models from it.

Entry points (re-exported by :mod:`vitfas.weights`):

- :func:`load_checkpoint` ``(path, model=None) -> {vitfas key: tensor}``
- :func:`load_pretrained` ``(model, name, pretrained)``, used by
  :func:`vitfas.weights.create_model` (``vitfas.create_model(pretrained=...)``)
- :func:`load_model` ``(path) -> nn.Module``, the architecture read from the checkpoint

Sources recognised (by content, not by file name):

============================  ==========================================================
vitfas folder / bundle        ``config.json`` with an ``architecture`` *object*
timm hub folder               ``config.json`` with an ``architecture`` *string*
Hugging Face ViT folder       ``config.json`` with ``model_type: "vit"``
timm / vitfas state dict      a ``.pth``/``.pt``/``.bin``/``.safetensors`` file with
                              ``patch_embed.proj.weight``
Hugging Face state dict       a file with ``...embeddings.patch_embeddings.projection.weight``
JAX ``.npz``                  google-research/vision_transformer or big_vision layout
============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitfas.errors import BadCheckpointError, BadConfigError
from vitfas.weights import hf as _hf
from vitfas.weights import npz as _npz
from vitfas.weights import timm as _timm
from vitfas.weights.core import check_and_load
from vitfas.weights.io import find_weights, read_weights

log = logging.getLogger(__name__)

PathType = str | PathLike[str]


@dataclass
class Source:
    """A checkpoint read from disk, converted to vitfas key names.

    Attributes:
        path: the file or folder given.
        kind: ``"vitfas"``, ``"bundle"``, ``"timm"``, ``"hf"`` or ``"npz"``.
        state_dict: tensors in vitfas names, position embedding as stored.
        grid: the checkpoint's patch grid ``(H, W)`` when its metadata says so.
        pos_on_prefix: whether ``pos_embed`` covers the prefix tokens, when known.
        config: full ``ViTConfig`` kwargs when the checkpoint describes itself.
        name: the vitfas registry name when the checkpoint names one.
        raw_config: the parsed ``config.json`` (folders only).
        interpolation, antialias: the kernel timm uses when resampling this kind.
    """

    path: Path
    kind: str
    state_dict: dict[str, torch.Tensor]
    grid: tuple[int, int] | None = None
    pos_on_prefix: bool | None = None
    config: dict[str, Any] | None = None
    name: str | None = None
    raw_config: dict[str, Any] = field(default_factory=dict)
    interpolation: str = "bicubic"
    antialias: bool = True


def _grid_of(img_size: Any, patch: int) -> tuple[int, int]:
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return (math.ceil(int(h) / patch), math.ceil(int(w) / patch))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadCheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise BadCheckpointError(f"{path}: expected a JSON object, found {type(cfg).__name__}")
    return cfg


def _from_tensors(path: Path, container: str, raw: dict[str, Any]) -> Source:
    """Identify the layout of a file's tensors and convert them."""
    if container == "npz":
        if not _npz.is_npz_layout(raw):
            raise BadCheckpointError(
                f"{path}: an .npz archive but not a JAX ViT checkpoint (no 'embedding/kernel'"
                f" under {list(_npz.PREFIXES)}); arrays found: {sorted(raw)[:10]}"
            )
        try:
            sd = _npz.convert_npz(raw)
            cfg = _npz.npz_config(raw)
        except BadCheckpointError as exc:
            raise BadCheckpointError(f"{path}: {exc}") from exc
        return Source(path, "npz", sd, grid=_grid_of(cfg["img_size"], cfg["patch_size"]),
                      pos_on_prefix=cfg["pos_embed_on_prefix"], config=cfg,
                      interpolation="bilinear", antialias=False)
    if _hf.is_hf_state_dict(raw):
        try:
            return Source(path, "hf", _hf.convert_hf_state_dict(raw), pos_on_prefix=True)
        except BadCheckpointError as exc:
            raise BadCheckpointError(f"{path}: {exc}") from exc
    if _timm.is_timm_state_dict(raw):
        return Source(path, "timm", _timm.convert_timm_state_dict(raw))
    keys = sorted(raw)
    raise BadCheckpointError(
        f"{path}: not a recognised ViT checkpoint: no 'patch_embed.proj.weight' (timm/vitfas) "
        f"nor 'embeddings.patch_embeddings.projection.weight' (Hugging Face); "
        f"{len(keys)} keys found, e.g. {keys[:8]}"
    )


def read_source(path: PathType, use_ema: bool = False) -> Source:
    """Read and convert any supported checkpoint file or folder.

    Args:
        path: a file, or a folder with ``config.json`` and weights.
        use_ema: for training checkpoints holding both, take the EMA weights.

    Raises:
        BadCheckpointError: missing, empty, corrupt or unrecognised input, naming it.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise BadCheckpointError(f"{p}: no such file or folder")
    if p.is_file() and (p.parent / "config.json").is_file() and not p.name.endswith(".json"):
        try:
            same = find_weights(p.parent) == p
        except BadCheckpointError:
            same = False
        if same:  # the weights of a described folder: use the folder's description too
            src = read_source(p.parent, use_ema)
            src.path = p
            return src
    if p.is_file():
        container, raw = read_weights(p, use_ema)
        return _from_tensors(p, container, raw)

    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        container, raw = read_weights(find_weights(p), use_ema)
        return _from_tensors(p, container, raw)
    cfg = _read_json(cfg_path)
    weights = find_weights(p)
    container, raw = read_weights(weights, use_ema)
    arch = cfg.get("architecture")
    if isinstance(arch, dict):  # vitfas's own format, or a bundle
        kind = "bundle" if "format_version" in cfg else "vitfas"
        conf = dict(arch.get("config") or {})
        grid = None
        if "img_size" in conf and "patch_size" in conf:
            grid = _grid_of(conf["img_size"], conf["patch_size"])
        return Source(p, kind, _timm.convert_timm_state_dict(raw), grid=grid,
                      pos_on_prefix=conf.get("pos_embed_on_prefix", True), config=conf,
                      name=arch.get("name"), raw_config=cfg)
    if isinstance(arch, str):  # timm hub folder
        name, overrides = _timm.timm_folder_architecture(cfg, str(cfg_path))
        if not _timm.is_timm_state_dict(raw):
            raise BadCheckpointError(
                f"{weights}: config.json names timm architecture {arch!r} but the weights have "
                f"no 'patch_embed.proj.weight'; keys found: {sorted(raw)[:8]}"
            )
        sd = _timm.convert_timm_state_dict(raw)
        grid = None
        w = sd.get("patch_embed.proj.weight")
        if "img_size" in overrides and w is not None:
            grid = _grid_of(overrides["img_size"], int(w.shape[-1]))
        on_prefix = None
        if "pos_embed_on_prefix" in overrides:
            on_prefix = overrides["pos_embed_on_prefix"]
        return Source(p, "timm", sd, grid=grid, pos_on_prefix=on_prefix, name=name,
                      config=overrides, raw_config=cfg)
    if "model_type" in cfg:
        conf = _hf.hf_config_to_vit(cfg, str(cfg_path))
        if not _hf.is_hf_state_dict(raw):
            raise BadCheckpointError(
                f"{weights}: config.json says model_type 'vit' but the weights lack "
                f"'embeddings.patch_embeddings.projection.weight'; keys found: {sorted(raw)[:8]}"
            )
        try:
            sd = _hf.convert_hf_state_dict(raw)
        except BadCheckpointError as exc:
            raise BadCheckpointError(f"{weights}: {exc}") from exc
        return Source(p, "hf", sd, grid=_grid_of(conf["img_size"], conf["patch_size"]),
                      pos_on_prefix=True, config=conf, raw_config=cfg)
    raise BadCheckpointError(
        f"{cfg_path}: neither a vitfas/timm config ('architecture') nor a Hugging Face one "
        f"('model_type'); top-level keys: {sorted(cfg)[:15]}"
    )


# --------------------------------------------------------------------- position embedding
def _square(n: int) -> int | None:
    s = math.isqrt(max(n, 0))
    return s if s > 0 and s * s == n else None


def _adapt_rel_tables(
    src: Source,
    sd: dict[str, torch.Tensor],
    model: nn.Module,
    interpolation: str | None,
    antialias: bool | None,
) -> None:
    """Resample relative-position-bias tables (``rel_pos.N.table``) built for the
    checkpoint's grid to the model's, with the kernel the model uses at run time."""
    rel = getattr(model, "rel_pos", None)
    if rel is None or src.grid is None:
        return
    from vitfas.models.pos_embed import RelativePositionBias

    for i, r in enumerate(rel):
        key = f"rel_pos.{i}.table"
        t = sd.get(key)
        if t is None or t.shape == r.table.shape or tuple(src.grid) == tuple(r.window):
            continue
        old = RelativePositionBias(
            src.grid, r.num_heads, r.num_prefix_tokens,
            interpolation or r.interpolation, r.antialias if antialias is None else antialias,
        )
        if old.table.shape != t.shape:
            continue  # not the grid we think: let check_and_load report the shapes
        with torch.no_grad():
            old.table.copy_(t)
            sd[key] = old._resampled_table(tuple(r.window)).detach().clone()


def adapt_pos_embed(
    src: Source,
    model: nn.Module,
    interpolation: str | None = None,
    antialias: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Fit the checkpoint's position embedding to ``model``: grid and prefix tokens.

    The grid part is resampled to ``model.config.grid_size`` (default kernel: what timm
    uses for this source — bicubic with antialias for PyTorch checkpoints, bilinear
    without for JAX ``.npz``). Prefix positions are kept; when the model adds no position
    to its prefix tokens but the checkpoint has them, they are folded into
    ``cls_token``/``reg_token`` (exact); when the model expects them and the checkpoint has
    none, zeros are inserted (exact).

    Returns:
        A new state dict; the others are untouched.
    """
    sd = dict(src.state_dict)
    _adapt_rel_tables(src, sd, model, interpolation, antialias)
    pos = sd.get("pos_embed")
    cfg = getattr(model, "config", None)
    if pos is None or getattr(model, "pos_embed", None) is None or cfg is None:
        return sd
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise BadCheckpointError(
            f"{src.path}: pos_embed has shape {list(pos.shape)}, expected [1, N, D]"
        )
    n_prefix = (
        (1 if "cls_token" in sd else 0)
        + (1 if "dist_token" in sd else 0)  # DeiT's distillation token
        + (int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0)
    )
    N = pos.shape[1]
    has_prefix = src.pos_on_prefix
    if src.grid is not None and has_prefix is None:
        g = src.grid[0] * src.grid[1]
        has_prefix = g + n_prefix == N and n_prefix > 0
    if has_prefix is None:
        if n_prefix and _square(N - n_prefix):
            has_prefix = True
        elif _square(N):
            has_prefix = False
        else:
            raise BadCheckpointError(
                f"{src.path}: cannot tell the grid of a position embedding with {N} tokens "
                f"({n_prefix} prefix tokens); neither {N} nor {N - n_prefix} is a square"
            )
    if has_prefix and n_prefix == 0:
        has_prefix = False
    k = n_prefix if has_prefix else 0
    prefix, grid_part = pos[:, :k], pos[:, k:]
    n_grid = grid_part.shape[1]
    old = src.grid if src.grid and src.grid[0] * src.grid[1] == n_grid else None
    if old is None:
        side = _square(n_grid)
        if side is None:
            raise BadCheckpointError(
                f"{src.path}: position embedding has {n_grid} grid tokens, not a square; the "
                f"checkpoint does not say its image size"
            )
        old = (side, side)
    new = tuple(cfg.grid_size)
    if old != new:
        from vitfas.models.pos_embed import resample_pos_embed

        mode = interpolation or src.interpolation
        aa = src.antialias if antialias is None else antialias
        log.info("%s: resampling position embedding %s -> %s (%s, antialias=%s)",
                 src.path, old, new, mode, aa)
        grid_part = resample_pos_embed(grid_part, new, old, num_prefix_tokens=0,
                                       interpolation=mode, antialias=aa)
    want = model.num_prefix_tokens if cfg.pos_embed_on_prefix else 0
    if want and k:
        sd["pos_embed"] = torch.cat([prefix, grid_part], dim=1)
    elif want and not k:
        log.info("%s: checkpoint has no prefix-token positions; inserting zeros", src.path)
        zeros = grid_part.new_zeros(1, want, grid_part.shape[-1])
        sd["pos_embed"] = torch.cat([zeros, grid_part], dim=1)
    else:
        if k:
            log.info("%s: folding prefix-token positions into the prefix tokens", src.path)
            j = 0
            if "cls_token" in sd:
                sd["cls_token"] = sd["cls_token"] + prefix[:, :1]
                j = 1
            if "dist_token" in sd:
                sd["dist_token"] = sd["dist_token"] + prefix[:, j : j + 1]
                j += 1
            if "reg_token" in sd:
                sd["reg_token"] = sd["reg_token"] + prefix[:, j:]
        sd["pos_embed"] = grid_part
    return sd


def load_checkpoint(
    path: PathType,
    model: nn.Module | None = None,
    *,
    use_ema: bool = False,
    interpolation: str | None = None,
    antialias: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Read any supported checkpoint and return it in vitfas key names.

    Args:
        path: a timm/vitfas/HF state dict file (``.pth``, ``.pt``, ``.bin``,
            ``.safetensors``), a JAX ``.npz``, or a folder (timm hub, Hugging Face,
            vitfas's own format).
        model: when given, the position embedding is resampled to ``model``'s patch grid
            and its prefix-token positions fitted to the model (see :func:`adapt_pos_embed`).
        use_ema: prefer EMA weights in training checkpoints that hold both.
        interpolation, antialias: override the resampling kernel (default: timm's for the
            source: bicubic+antialias, bilinear without antialias for ``.npz``).

    Returns:
        ``{key: tensor}`` ready for :func:`vitfas.weights.check_and_load`.

    Raises:
        BadCheckpointError: unreadable or unrecognised input, naming the file and what
            was found.
    """
    src = read_source(path, use_ema)
    if model is None:
        return src.state_dict
    return adapt_pos_embed(src, model, interpolation, antialias)


# --------------------------------------------------------------------- pretrained & models
def _head_classes(sd: dict[str, torch.Tensor]) -> int:
    w = sd.get("head.weight")
    return int(w.shape[0]) if w is not None else 0


# config fields that change outputs without changing any tensor's shape
_SILENT_FIELDS = ("norm_eps", "gelu", "global_pool")


def _warn_config_differences(src: Source, model: nn.Module) -> None:
    """Warn when the checkpoint's own config disagrees with the model on a field that the
    weights' shapes cannot reveal (e.g. a Hugging Face checkpoint's LayerNorm eps 1e-12
    loaded into a timm-style model with 1e-6)."""
    cfg = getattr(model, "config", None)
    if not src.config or cfg is None:
        return
    diffs = [
        f"{k}: checkpoint {src.config[k]!r} vs model {getattr(cfg, k)!r}"
        for k in _SILENT_FIELDS
        if k in src.config and hasattr(cfg, k) and src.config[k] != getattr(cfg, k)
    ]
    if diffs:
        log.warning(
            "%s: the checkpoint was made with a different configuration (%s); outputs will "
            "differ from the original model's. vitfas.load_model(%r) builds the checkpoint's "
            "own architecture.", src.path, "; ".join(diffs), str(src.path)
        )


def load_pretrained(model: nn.Module, name: str, pretrained: bool | PathType) -> None:
    """Load weights into a freshly built ``model`` (used by ``create_model``).

    Args:
        model: the target, built from registry entry ``name``.
        name: its registry name (to find the public checkpoint, and for messages).
        pretrained: ``True`` for the registry's public checkpoint (through
            ``huggingface_hub``: cache, or network when there is one);
            ``"hf-hub:org/repo[@revision]"``; or a local file/folder in any supported format.

    The classifier head is kept from the checkpoint only when its shape fits the model;
    otherwise (another ``num_classes``, or a headless checkpoint) the model's fresh head
    is kept and this is logged. Any other difference is an error.

    Raises:
        BadCheckpointError: unreachable hub / missing file / mismatching weights.
    """
    from vitfas.weights.hub import HF_HUB_PREFIX, resolve_hub, split_repo

    if pretrained is True:
        from vitfas.models.registry import get_entry

        hub_id = get_entry(name).hub_id
        if not hub_id:
            raise BadCheckpointError(
                f"no public checkpoint is registered for {name!r}; load a local file with "
                f"create_model({name!r}, pretrained='/path/to/model.safetensors')"
            )
        repo, rev = split_repo(hub_id)
        location: Path = resolve_hub(repo, rev, model_name=name)
    elif isinstance(pretrained, str) and pretrained.startswith(HF_HUB_PREFIX):
        repo, rev = split_repo(pretrained)
        location = resolve_hub(repo, rev, model_name=name)
    elif isinstance(pretrained, (str, PathLike)):
        location = Path(pretrained).expanduser()
        if not location.exists():
            raise BadCheckpointError(f"{location}: no such checkpoint file or folder")
    else:
        raise BadCheckpointError(
            f"pretrained must be True, a path or 'hf-hub:org/repo', got {pretrained!r}"
        )
    src = read_source(location)
    _warn_config_differences(src, model)
    sd = adapt_pos_embed(src, model)
    theirs, ours = _head_classes(sd), getattr(model, "num_classes", None)
    if ours is not None and theirs != ours:
        log.info("%s: checkpoint head has %d classes, model %s has %d: the head is "
                 "initialised afresh", location, theirs, name, ours)
    check_and_load(model, sd, source=str(location), allow_head_mismatch=True)


def infer_config(
    sd: dict[str, torch.Tensor], num_heads: int | None, source: str = "checkpoint"
) -> dict[str, Any]:
    """ViTConfig kwargs from a bare timm/vitfas state dict's tensor shapes.

    Width, depth, patch size, channels, MLP ratio, qkv bias, class/register tokens, layer
    scale, pooling and classes follow from the shapes; the number of attention heads does
    not (a ``[3D, D]`` qkv matrix splits into any number of heads) and must be given. The
    LayerNorm epsilon is not stored either: timm's 1e-6 is assumed.

    Raises:
        BadCheckpointError: ``num_heads`` missing, or shapes that do not make a ViT.
    """
    w = sd.get("patch_embed.proj.weight")
    if w is None or w.ndim != 4:
        raise BadCheckpointError(f"{source}: no 4-D patch_embed.proj.weight to infer a ViT from")
    dim, chans, p = int(w.shape[0]), int(w.shape[1]), int(w.shape[-1])
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    if num_heads is None:
        from vitfas.models.registry import _REGISTRY
        from vitfas.models.vit import VisionTransformer

        fits = [
            (n, e.config.num_heads) for n, e in sorted(_REGISTRY.items())
            if e.builder is VisionTransformer
            and getattr(e.config, "embed_dim", None) == dim
            and getattr(e.config, "depth", None) == depth
            and getattr(e.config, "patch_size", None) == p
        ]
        fits.sort(key=lambda f: (not f[0].startswith("vit_"), f[0]))  # plain ViT names first
        example, heads = fits[0] if fits else ("vit_base_patch16_224", 12)
        hint = f" (registered models of this shape: {[n for n, _ in fits]})" if fits else ""
        raise BadCheckpointError(
            f"{source}: a bare state dict does not record the number of attention heads "
            f"(width {dim}, depth {depth}, patch {p}); pass the architecture, e.g. "
            f"vitfas.load_model(path, name={example!r}), or the heads, "
            f"vitfas.load_model(path, num_heads={heads}){hint}"
        )
    cls = "cls_token" in sd
    reg = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    fc_norm = "fc_norm.weight" in sd
    n_prefix = int(cls) + reg
    out: dict[str, Any] = {
        "patch_size": p,
        "in_chans": chans,
        "embed_dim": dim,
        "depth": depth,
        "num_heads": int(num_heads),
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / dim if depth else 4.0,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "class_token": cls,
        "reg_tokens": reg,
        "global_pool": "avg" if (fc_norm or not cls) else "token",
        "fc_norm": fc_norm,
        "num_classes": _head_classes(sd),
        "layer_scale_init": 1e-5 if "blocks.0.ls1.gamma" in sd else None,
    }
    pos = sd.get("pos_embed")
    if pos is None:
        out["pos_embed"] = "none"
        return out
    N = pos.shape[1]
    if n_prefix and _square(N - n_prefix):
        side, on_prefix = _square(N - n_prefix), True
    elif _square(N):
        side, on_prefix = _square(N), False
    else:
        raise BadCheckpointError(
            f"{source}: cannot infer the image size from a position embedding of {N} tokens "
            f"(not a square grid); pass name= and img_size="
        )
    out["img_size"] = (side * p, side * p)
    out["pos_embed_on_prefix"] = on_prefix
    return out


def _build(config_kwargs: dict[str, Any], source: str) -> nn.Module:
    from vitfas.models.vit import VisionTransformer, ViTConfig

    try:
        return VisionTransformer(ViTConfig.from_dict(config_kwargs))
    except (TypeError, ValueError) as exc:
        raise BadCheckpointError(f"{source}: cannot build a ViT from its config: {exc}") from exc


def _registry_name_for_repo(repo: str) -> str | None:
    """The vitfas registry name whose public checkpoint is ``repo`` (or, for a timm repo
    ``timm/<arch>.<tag>``, ``<arch>`` when registered); ``None`` when there is none."""
    from vitfas.models.registry import _REGISTRY
    from vitfas.weights.hub import split_repo

    for entry in _REGISTRY.values():
        if entry.hub_id and split_repo(entry.hub_id)[0] == repo:
            return entry.name
    org, _, rest = repo.partition("/")
    arch = rest.split(".", 1)[0]
    return arch if org == "timm" and arch in _REGISTRY else None


def _refuse_model_name(path: str) -> None:
    """``load_model("vit_base_patch16_224")``: a registry name where a checkpoint path was
    expected -- point to ``create_model``."""
    from vitfas.models.registry import _REGISTRY

    if path in _REGISTRY:
        hub = _REGISTRY[path].hub_id
        extra = f" (its public checkpoint is hf-hub:{hub})" if hub else ""
        raise BadCheckpointError(
            f"{path!r} is a model name, not a checkpoint file or folder: build it with "
            f"vitfas.create_model({path!r}, pretrained=True){extra}, or give load_model the "
            f"path of a checkpoint")


def load_model(
    path: PathType,
    name: str | None = None,
    *,
    use_ema: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build the model a checkpoint describes and load it (in eval mode).

    The architecture comes from the checkpoint itself: vitfas's ``config.json``; a timm
    hub folder's ``architecture`` (mapped to the vitfas registry name) with its
    ``model_args`` and input size; a Hugging Face ``config.json`` (width, depth, heads,
    MLP size, image and patch size, channels, ``layer_norm_eps``, ``qkv_bias``,
    ``hidden_act``, labels); a JAX ``.npz``'s array shapes. A bare state dict records no
    head count: give ``name=`` (a registry name) or ``num_heads=``.

    Args:
        path: checkpoint file or folder, or ``"hf-hub:org/repo[@revision]"`` (fetched
            through huggingface_hub, e.g. ``"hf-hub:google/vit-base-patch16-224"``).
        name: registry name to build instead (classes and image size still follow the
            checkpoint unless overridden).
        use_ema: prefer EMA weights in training checkpoints.
        overrides: ViTConfig fields to change (e.g. ``img_size=384`` resamples the
            position embedding, ``num_classes=2`` gives a fresh head,
            ``dynamic_img_size=True``).

    Returns:
        The model in eval mode, on the CPU. ``model.registry_name`` is set when known.

    Raises:
        BadCheckpointError: unreadable input, an architecture vitfas cannot build, or
            weights that do not fit it.
    """
    from vitfas.weights.hub import HF_HUB_PREFIX, resolve_hub, split_repo

    if isinstance(path, str) and path.startswith(HF_HUB_PREFIX):
        repo, rev = split_repo(path)
        model = name or _registry_name_for_repo(repo)
        alt = f"vitfas.load_model('/path/to/{repo.rsplit('/', 1)[-1]}')"
        if model:
            alt += (f" (a folder with model.safetensors and config.json), or "
                    f"vitfas.create_model({model!r}, pretrained='/path/to/model.safetensors')")
        p = resolve_hub(repo, rev, model_name=model, alternative=alt)
    else:
        p = Path(path).expanduser()
        if not p.exists() and isinstance(path, str):
            _refuse_model_name(path)
    if p.is_dir() and (p / "config.json").is_file():
        cfg = _read_json(p / "config.json")
        if "format_version" in cfg and isinstance(cfg.get("architecture"), dict):
            if overrides or name:
                raise BadCheckpointError(
                    f"{p}: a vitfas bundle fixes its architecture; load it without overrides "
                    f"(vitfas.bundle.load_bundle)"
                )
            from vitfas.weights.bundle_model import load_bundle_model, read_bundle_config

            return load_bundle_model(p, read_bundle_config(p)).eval()
    src = read_source(p, use_ema)
    sd = src.state_dict
    head_overridden = "num_classes" in overrides
    if name is not None:
        from vitfas.models.registry import create_model

        base: dict[str, Any] = {"num_classes": _head_classes(sd)}
        if src.config and "img_size" in src.config:
            base["img_size"] = src.config["img_size"]
        elif "pos_embed" in sd and "patch_embed.proj.weight" in sd:
            with contextlib.suppress(BadCheckpointError, KeyError):
                base["img_size"] = infer_config(sd, 1, str(p))["img_size"]
        base.update(overrides)
        try:
            model = create_model(name, **base)
        except BadConfigError as exc:
            raise BadCheckpointError(f"{p}: {exc}") from exc
        _warn_config_differences(src, model)
    elif src.kind in ("vitfas", "bundle"):
        conf = dict(src.config or {})
        conf.update(overrides)
        arch = dict(src.raw_config["architecture"], config=conf)
        from vitfas.models.registry import build_from_architecture

        try:
            model = build_from_architecture(arch)
        except (BadConfigError, TypeError, ValueError) as exc:
            raise BadCheckpointError(f"{p}: {exc}") from exc
    elif src.kind == "timm":
        from vitfas.models.registry import _REGISTRY, create_model

        if src.name and src.name in _REGISTRY:
            kwargs = dict(src.config or {})
            kwargs.update(overrides)
            try:
                model = create_model(src.name, **kwargs)
            except BadConfigError as exc:
                raise BadCheckpointError(f"{p}: {exc}") from exc
        else:
            if src.name:
                log.info("%s: timm architecture %r is not in the vitfas registry; inferring "
                         "the config from the weights", p, src.name)
            conf = infer_config(sd, (src.config or {}).get("num_heads",
                                                           overrides.pop("num_heads", None)),
                                str(p))
            conf.update(src.config or {})
            conf.update(overrides)
            model = _build(conf, str(p))
    else:  # hf, npz: complete configs
        if not src.config:
            raise BadCheckpointError(
                f"{p}: a Hugging Face state dict without its config.json records no "
                f"architecture; put the config.json beside it, or load it into a named "
                f"model: vitfas.load_model(path, name='vit_base_patch16_224')"
            )
        conf = dict(src.config)
        conf.update(overrides)
        model = _build(conf, str(p))
    model.registry_name = getattr(model, "registry_name", None) or name or src.name
    sd = adapt_pos_embed(src, model)
    check_and_load(model, sd, source=str(p), allow_head_mismatch=head_overridden)
    return model.eval()
