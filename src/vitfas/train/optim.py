"""AdamW with weight-decay exclusions and layer-wise learning-rate decay, plus the
linear-warmup-then-cosine schedule.

Layer-wise LR decay (BEiT, MAE fine-tuning): with ``L`` blocks, the embedding (patch
embedding, class/register tokens, position embedding) is layer 0, block ``i`` is layer
``i + 1`` and everything after the blocks (final norm, head) is layer ``L + 1``; a parameter
in layer ``l`` gets ``lr * layer_decay ** (L + 1 - l)``. A model can define
``layer_id(param_name) -> int`` and ``num_layers`` (= L + 2 ids) to take part with another
layout; otherwise the ``blocks.<i>.`` naming of :class:`~vitfas.models.VisionTransformer`
is used.

Weight decay is not applied to 1-D parameters (biases, norms, LayerScale) or to names the
model lists in ``no_weight_decay()``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from vitfas.errors import BadConfigError

log = logging.getLogger(__name__)

__all__ = ["OptimConfig", "WarmupCosine", "build_optimizer", "layer_id", "param_groups"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule settings (YAML section ``optim``).

    Attributes:
        lr: peak learning rate (reached at the end of warmup), before layer decay.
        weight_decay: AdamW decoupled weight decay.
        betas, eps: AdamW moments.
        layer_decay: layer-wise LR decay factor in (0, 1]; 1.0 turns it off.
        warmup_epochs: linear warmup length in epochs (fractions allowed); overridden by
            ``warmup_steps`` when that is > 0.
        warmup_steps: linear warmup length in optimiser steps.
        min_lr: the learning rate the cosine ends at.
    """

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 1.0
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        if not 0.0 < self.layer_decay <= 1.0:
            raise BadConfigError(f"optim.layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.lr <= 0:
            raise BadConfigError(f"optim.lr must be positive, got {self.lr}")
        if self.min_lr < 0 or self.min_lr > self.lr:
            raise BadConfigError(f"optim.min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.warmup_epochs < 0 or self.warmup_steps < 0:
            raise BadConfigError("optim.warmup_epochs and optim.warmup_steps must be >= 0")


_BLOCK = re.compile(r"^(?:blocks|rel_pos)\.(\d+)\.")
_EMBED = ("patch_embed.", "cls_token", "reg_token", "pos_embed", "mask_token")


def _num_layers(model: nn.Module) -> int:
    """Number of layer ids (embedding + blocks + the rest)."""
    if hasattr(model, "num_layers"):
        return int(model.num_layers)
    blocks = getattr(model, "blocks", None)
    return (len(blocks) if blocks is not None else 0) + 2


def layer_id(model: nn.Module, name: str) -> int:
    """The layer index of parameter ``name`` for layer-wise LR decay (0 = embedding)."""
    if hasattr(model, "layer_id"):
        return int(model.layer_id(name))
    n = _num_layers(model)
    if name.startswith(_EMBED):
        return 0
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1)) + 1
    return n - 1


def param_groups(
    model: nn.Module, weight_decay: float, layer_decay: float = 1.0
) -> list[dict]:
    """Trainable parameters grouped by (layer scale, weight decay).

    Each group carries ``lr_scale`` (multiplied into the scheduled LR), ``weight_decay``,
    ``layer`` and ``param_names`` (for logging and tests).
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    n = _num_layers(model)
    if layer_decay < 1.0 and not hasattr(model, "layer_id") and getattr(model, "blocks",
                                                                            None) is None:
        raise BadConfigError(
            f"optim.layer_decay={layer_decay} needs a model with `blocks` or a `layer_id()` "
            f"method; {type(model).__name__} has neither"
        )
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name in skip or name.endswith(".bias")
        lid = layer_id(model, name) if layer_decay < 1.0 else n - 1
        key = (lid, no_wd)
        if key not in groups:
            groups[key] = {
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if no_wd else weight_decay,
                "lr_scale": layer_decay ** (n - 1 - lid),
                "layer": lid,
            }
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters with the groups of :func:`param_groups`."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    if not groups:
        raise BadConfigError("no trainable parameters: check the trainable scope")
    for g in groups:
        g["lr"] = cfg.lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


class WarmupCosine:
    """Per-step LR: linear warmup from ~0 to ``lr``, then cosine decay to ``min_lr``.

    Stateless: the LR is a function of the step alone, so resuming needs only the step.
    ``lr_at(step)`` is the base LR; each group gets ``lr_at(step) * group["lr_scale"]``.
    """

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> None:
        if total_steps <= 0:
            raise BadConfigError(f"total training steps must be positive, got {total_steps}")
        self.lr, self.min_lr = lr, min_lr
        self.warmup_steps = min(int(warmup_steps), total_steps)
        self.total_steps = int(total_steps)

    @classmethod
    def from_config(cls, cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> WarmupCosine:
        warm = cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)
        return cls(cfg.lr, cfg.min_lr, warm, steps_per_epoch * epochs)

    def lr_at(self, step: int) -> float:
        """Base learning rate for optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's LR for ``step``; returns the base LR."""
        lr = self.lr_at(step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr
