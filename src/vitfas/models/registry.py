"""Model registry: names -> (frozen config, model class, public checkpoint).

``register_model(name, config)`` adds an entry; ``create_model(name, **overrides)`` builds it
with ``dataclasses.replace(config, **overrides)``, with random weights. Other model
families (DeiT, Swin, MAE) register their own configs and classes here.

Models are the bottom layer of vitfas: nothing here reads checkpoints. Loading weights
(``vitfas.create_model(name, pretrained=...)``) is :func:`vitfas.weights.create_model`,
one layer up.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any

from torch import nn

from vitfas.errors import BadCheckpointError, BadConfigError
from vitfas.models.vit import VisionTransformer, vit_config


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture."""

    name: str
    config: Any
    builder: Callable[[Any], nn.Module]
    # public checkpoint, e.g. "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    hub_id: str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    config: Any,
    builder: Callable[[Any], nn.Module] = VisionTransformer,
    hub_id: str | None = None,
) -> ModelEntry:
    """Register ``name``; re-registering the same name is an error."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, config, builder, hub_id)
    _REGISTRY[name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name lists close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise BadConfigError(
            f"unknown model {name!r}{hint} (see `vitfas.list_models()` for all "
            f"{len(_REGISTRY)} names)"
        ) from None


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"vit_*patch16*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_config(name: str, **overrides: Any) -> Any:
    """The registered config of ``name`` with ``overrides`` applied."""
    entry = get_entry(name)
    valid = {f.name for f in dataclasses.fields(entry.config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise BadConfigError(
            f"unknown config keys {unknown} for {name!r}; valid keys: {sorted(valid)}"
        )
    try:
        return dataclasses.replace(entry.config, **overrides)
    except (TypeError, ValueError) as exc:
        raise BadConfigError(f"invalid config for {name!r}: {exc}") from exc


def create_model(
    name: str,
    pretrained: bool | str | PathLike[str] | None = None,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model with random weights.

    Args:
        name: a registry name such as ``"vit_base_patch16_224"``.
        pretrained: must be ``None``/``False`` here; weights are loaded by
            :func:`vitfas.create_model` (:func:`vitfas.weights.create_model`), which takes
            the same arguments.
        num_classes: head size.
        img_size: input size.
        overrides: any other config field.

    Returns:
        The model, in training mode, on the CPU, with ``model.registry_name`` set.

    Raises:
        BadConfigError: unknown name or config keys, or ``pretrained`` given.
    """
    if pretrained:
        raise BadConfigError(
            f"vitfas.models.create_model builds {name!r} with random weights; load "
            f"pretrained={pretrained!r} with vitfas.create_model (vitfas.weights.create_model)"
        )
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if img_size is not None:
        overrides["img_size"] = img_size
    config = model_config(name, **overrides)
    model = get_entry(name).builder(config)
    model.registry_name = name
    return model


def build_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """Build a model from a bundle's ``architecture`` block (registry name + full config).

    ``arch`` is ``{"name": registry name | None, "class": class name, "config": {...}}``
    as :func:`vitfas.bundle.save_bundle` writes it; without a name, the first registry
    entry whose builder has that class name is used. The weights are random.

    Raises:
        BadCheckpointError: no known model, or config keys the model does not have.
    """
    name, cfg = arch.get("name"), arch.get("config") or {}
    if name:
        entry = get_entry(name)
    else:
        cls_name = arch.get("class")
        entry = next((e for e in _REGISTRY.values() if e.builder.__name__ == cls_name), None)
        if entry is None:
            raise BadCheckpointError(f"bundle architecture names no known model: {arch}")
    config_cls = type(entry.config)
    valid = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(cfg) - valid)
    if unknown:
        raise BadCheckpointError(
            f"architecture config has unknown keys {unknown} for {config_cls.__name__}"
        )
    config = config_cls.from_dict(cfg) if hasattr(config_cls, "from_dict") else config_cls(**cfg)
    model = entry.builder(config)
    model.registry_name = name
    return model


def _register_vits() -> None:
    # name, variant, image size, extra config
    specs: list[tuple[str, str, int, dict[str, Any]]] = [
        ("vit_tiny_patch16_224", "Ti/16", 224, {}),
        ("vit_tiny_patch16_384", "Ti/16", 384, {}),
        ("vit_small_patch16_224", "S/16", 224, {}),
        ("vit_small_patch16_384", "S/16", 384, {}),
        ("vit_small_patch32_224", "S/32", 224, {}),
        ("vit_base_patch16_224", "B/16", 224, {}),
        ("vit_base_patch16_384", "B/16", 384, {}),
        ("vit_base_patch32_224", "B/32", 224, {}),
        ("vit_base_patch32_384", "B/32", 384, {}),
        ("vit_large_patch16_224", "L/16", 224, {}),
        ("vit_large_patch16_384", "L/16", 384, {}),
        ("vit_large_patch32_384", "L/32", 384, {}),
        ("vit_huge_patch14_224", "H/14", 224, {}),
        ("vit_base_patch16_reg4_gap_256", "B/16", 256,
         {"reg_tokens": 4, "global_pool": "avg", "class_token": False,
          "pos_embed_on_prefix": False}),
        ("vit_base_patch16_rel_224", "B/16", 224, {"pos_embed": "rel"}),
        ("vit_base_patch16_sincos_224", "B/16", 224, {"pos_embed": "sincos"}),
    ]
    hub = {
        "vit_tiny_patch16_224": "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "vit_tiny_patch16_384": "timm/vit_tiny_patch16_384.augreg_in21k_ft_in1k",
        "vit_small_patch16_224": "timm/vit_small_patch16_224.augreg_in21k_ft_in1k",
        "vit_small_patch16_384": "timm/vit_small_patch16_384.augreg_in21k_ft_in1k",
        "vit_small_patch32_224": "timm/vit_small_patch32_224.augreg_in21k_ft_in1k",
        "vit_base_patch16_224": "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "vit_base_patch16_384": "timm/vit_base_patch16_384.augreg_in21k_ft_in1k",
        "vit_base_patch32_224": "timm/vit_base_patch32_224.augreg_in21k_ft_in1k",
        "vit_base_patch32_384": "timm/vit_base_patch32_384.augreg_in21k_ft_in1k",
        "vit_large_patch16_224": "timm/vit_large_patch16_224.augreg_in21k_ft_in1k",
        "vit_large_patch16_384": "timm/vit_large_patch16_384.augreg_in21k_ft_in1k",
        "vit_large_patch32_384": "timm/vit_large_patch32_384.orig_in21k_ft_in1k",
        "vit_huge_patch14_224": "timm/vit_huge_patch14_224.orig_in21k",
        "vit_base_patch16_reg4_gap_256": "timm/vit_base_patch16_reg4_gap_256.sbb_in12k_ft_in1k",
    }
    for name, variant, size, extra in specs:
        register_model(name, vit_config(variant, img_size=size, **extra), hub_id=hub.get(name))


_register_vits()
