"""Tiny models for the explain tests (random weights, built on the spot)."""

from __future__ import annotations

import dataclasses

from vitfas.models import ViTConfig
from vitfas.models.deit import DeiTConfig, DistilledVisionTransformer


def tiny_config(**overrides: object) -> ViTConfig:
    base: dict[str, object] = {
        "img_size": (32, 48), "patch_size": 8, "num_classes": 2, "embed_dim": 32,
        "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
    }
    base.update(overrides)
    return ViTConfig(**base)  # type: ignore[arg-type]


def tiny_deit(**overrides: object) -> DistilledVisionTransformer:
    """A tiny distilled DeiT (class token 0, distillation token 1, then the patches)."""
    cfg = tiny_config(**overrides)
    return DistilledVisionTransformer(DeiTConfig(**dataclasses.asdict(cfg), distilled=True))
