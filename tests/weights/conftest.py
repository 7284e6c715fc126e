"""Fixtures for the weight-interop tests: reference models with fully random weights.

Every parameter is redrawn (not just timm's init, which leaves biases at zero and
LayerNorms at (1, 0)), so a missed or mis-ordered tensor cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

TOL = 1e-5


@torch.no_grad()
def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=g))
            mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
    norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for p in model.parameters():
        if id(p) not in norms:
            p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()



@pytest.fixture(scope="session")
def randomise() -> Callable[..., nn.Module]:
    """``randomise(model, seed=0)``: redraw every parameter, LayerNorms included; eval mode."""
    return _randomise


@pytest.fixture(scope="session")
def max_diff() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """Max absolute difference of two tensors of the same shape."""

    def f(a: torch.Tensor, b: torch.Tensor) -> float:
        assert a.shape == b.shape, (a.shape, b.shape)
        return float((a - b).detach().abs().max())

    return f


@pytest.fixture(scope="session")
def timm_tiny():
    """A timm ``vit_tiny_patch16_224`` with random weights and LayerNorms (eval mode)."""
    timm = pytest.importorskip("timm")
    return _randomise(timm.create_model("vit_tiny_patch16_224", pretrained=False), seed=1)
