"""Tiny models for the explain tests (random weights, built on the spot)."""

from __future__ import annotations

import torch
from torch import nn

from vitfas.models import VisionTransformer, ViTConfig


def tiny_config(**overrides: object) -> ViTConfig:
    base: dict[str, object] = {
        "img_size": (32, 48), "patch_size": 8, "num_classes": 2, "embed_dim": 32,
        "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
    }
    base.update(overrides)
    return ViTConfig(**base)  # type: ignore[arg-type]


class TinyDistilled(VisionTransformer):
    """A DeiT-style model: class token, then a distillation token, then registers/patches."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.dist_token = nn.Parameter(torch.randn(1, 1, config.embed_dim) * 0.02)
        self.num_prefix_tokens = config.num_prefix_tokens + 1

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        t = super()._pos_embed(x)
        d = self.dist_token.expand(t.shape[0], -1, -1)
        return torch.cat([t[:, :1], d, t[:, 1:]], dim=1)
