"""Helpers shared by the model equivalence tests (imported by name: pytest puts this folder
on ``sys.path``)."""

from __future__ import annotations

import torch
from torch import nn


def randomise(model: nn.Module, std: float = 0.05, table_std: float = 0.5) -> None:
    """Random weights everywhere, LayerNorms included (not 1/0), so nothing hides.

    LayerNorm weights ~ 1 + 0.2 N(0, 1), biases ~ 0.2 N(0, 1); every other parameter
    ~ ``std`` N(0, 1), relative position bias tables ~ ``table_std`` N(0, 1). Seeded, so the
    same model gets the same values.
    """
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if "norm" not in name:
                s = table_std if "relative_position_bias_table" in name else std
                p.copy_(s * torch.randn(p.shape, generator=g))
