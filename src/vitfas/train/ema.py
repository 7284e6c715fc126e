"""Exponential moving average (EMA) of a model's weights, for evaluation and checkpoints."""

from __future__ import annotations

import copy

import torch
from torch import nn

from vitfas.train.distributed import unwrap

__all__ = ["ModelEma"]


class ModelEma(nn.Module):
    """Exponential moving average of a model's floating-point state.

    ``ema = decay * ema + (1 - decay) * model`` after each optimiser step; integer buffers
    are copied. ``module`` is a frozen copy usable for evaluation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = unwrap(model).state_dict()
        for k, v in self.module.state_dict().items():
            s = src[k].detach()
            if v.is_floating_point():
                v.lerp_(s.to(v.dtype), 1.0 - self.decay)
            else:
                v.copy_(s)
