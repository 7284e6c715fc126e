"""Bottleneck adapters for parameter-efficient fine-tuning of any registry ViT.

Two forms, installed through the hooks every :class:`~vitfas.models.Block` has:

* **serial** (Houlsby et al., 2019; the usual FAS-adapter placement): a residual bottleneck
  ``h -> h + s * up(GELU(down(h)))`` applied to a branch output before the block's
  residual add — after the MLP (``block.mlp_adapter``, default) and optionally after
  attention (``block.attn_adapter``).
* **parallel** (AdaptFormer, Chen et al., 2022): ``s * up(GELU(down(LN2(x))))`` added to the
  MLP branch (``block.parallel_adapter``), fed with the same normalised input as the MLP.

The up projection starts at exactly zero, so a freshly adapted model computes exactly what
the plain model does; training moves away from it.

Trainable scopes (:func:`set_trainable`): ``head`` (the classifier only), ``adapters``
(adapters + every LayerNorm + the head), ``full`` (everything). :func:`scope_state_dict`
gives the weights of a scope, which together with the base checkpoint rebuild the model
(adapter-only bundles).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from vitfas.errors import BadConfigError

log = logging.getLogger(__name__)

__all__ = [
    "SCOPES",
    "Adapter",
    "add_adapters",
    "count_parameters",
    "scope_state_dict",
    "set_trainable",
]

SCOPES = ("head", "adapters", "full")
_POSITIONS = ("mlp", "attn")


class Adapter(nn.Module):
    """Bottleneck ``D -> r -> D`` with GELU; up projection initialised to zero.

    Args:
        dim: token width ``D``.
        bottleneck: hidden width ``r``.
        scale: multiplier ``s`` on the adapter output.
        dropout: dropout on the bottleneck activations.
        residual: return ``x + s * f(x)`` (serial form) instead of ``s * f(x)`` (parallel).

    Shapes: ``[..., D] -> [..., D]``.
    """

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0, dropout: float = 0.0,
                 residual: bool = True) -> None:
        super().__init__()
        if bottleneck < 1:
            raise BadConfigError(f"adapters.bottleneck must be >= 1, got {bottleneck}")
        self.scale, self.residual = scale, residual
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.drop(self.act(self.down(x)))) * self.scale
        return x + y if self.residual else y

    def extra_repr(self) -> str:
        return f"scale={self.scale}, residual={self.residual}"


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        # hierarchical models (e.g. Swin) keep blocks in stages; take every module with hooks
        found = [m for m in model.modules() if hasattr(m, "mlp_adapter")]
    else:
        found = list(blocks)
    if not found or not all(hasattr(b, "mlp_adapter") for b in found):
        raise BadConfigError(
            f"{type(model).__name__} has no transformer blocks with adapter hooks "
            f"(mlp_adapter / attn_adapter / parallel_adapter)"
        )
    return found


def _block_dim(block: nn.Module) -> int:
    return int(block.norm2.normalized_shape[0])


def add_adapters(
    model: nn.Module,
    kind: Literal["serial", "parallel"] = "serial",
    bottleneck: int = 64,
    positions: Sequence[str] = ("mlp",),
    scale: float = 1.0,
    dropout: float = 0.0,
    blocks: Sequence[int] | None = None,
) -> nn.Module:
    """Install adapters into ``model``'s blocks (in place) and return the model.

    Args:
        model: a registry model whose blocks have the adapter hooks.
        kind: ``serial`` (residual bottleneck on branch outputs) or ``parallel``
            (AdaptFormer, beside the MLP).
        bottleneck: hidden width ``r``.
        positions: serial only: any of ``mlp`` (after the MLP) and ``attn`` (after attention).
        scale: output multiplier (AdaptFormer uses 0.1).
        dropout: on the bottleneck activations.
        blocks: indices of the blocks to adapt (negative counts from the end); all when None.

    The arguments are recorded in ``model.adapter_spec`` (JSON-safe), which is what a
    bundle's ``config.json`` stores under ``"adapters"``.
    """
    if kind not in ("serial", "parallel"):
        raise BadConfigError(f"adapters.kind must be 'serial' or 'parallel', got {kind!r}")
    positions = [positions] if isinstance(positions, str) else list(positions)
    bad = [p for p in positions if p not in _POSITIONS]
    if bad or not positions:
        raise BadConfigError(
            f"adapters.positions must be a non-empty subset of {list(_POSITIONS)}, got "
            f"{positions}"
        )
    if getattr(model, "adapter_spec", None):
        raise BadConfigError("this model already has adapters installed")
    all_blocks = _blocks(model)
    n = len(all_blocks)
    idx = list(range(n)) if blocks is None else [int(b) for b in blocks]
    out_of_range = [i for i in idx if not -n <= i < n]
    if out_of_range:
        raise BadConfigError(f"adapters.blocks {out_of_range} out of range for {n} blocks")
    idx = sorted({i % n for i in idx})
    for i in idx:
        blk = all_blocks[i]
        d = _block_dim(blk)
        ref = blk.norm2.weight
        if kind == "parallel":
            blk.parallel_adapter = Adapter(d, bottleneck, scale, dropout, residual=False).to(ref)
        else:
            if "mlp" in positions:
                blk.mlp_adapter = Adapter(d, bottleneck, scale, dropout).to(ref)
            if "attn" in positions:
                blk.attn_adapter = Adapter(d, bottleneck, scale, dropout).to(ref)
    model.adapter_spec = {
        "kind": kind,
        "bottleneck": int(bottleneck),
        "positions": positions if kind == "serial" else ["mlp"],
        "scale": float(scale),
        "dropout": float(dropout),
        "blocks": None if blocks is None else idx,
    }
    return model


def _is_adapter(name: str) -> bool:
    return any(f"{h}." in name for h in ("mlp_adapter", "attn_adapter", "parallel_adapter"))


def _norm_names(model: nn.Module) -> set[str]:
    names = set()
    for mname, m in model.named_modules():
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
            names |= {f"{mname}.{p}" if mname else p for p, _ in m.named_parameters(recurse=False)}
    return names


def _head_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.startswith(("head.", "head_dist."))}


def in_scope(model: nn.Module, scope: str) -> set[str]:
    """Names of the parameters a scope trains."""
    if scope not in SCOPES:
        raise BadConfigError(f"trainable scope must be one of {list(SCOPES)}, got {scope!r}")
    names = [n for n, _ in model.named_parameters()]
    if scope == "full":
        return set(names)
    heads = _head_names(model)
    if scope == "head":
        return heads
    adapters = {n for n in names if _is_adapter(n)}
    if not adapters:
        raise BadConfigError("trainable scope 'adapters' but the model has no adapters; "
                             "add an `adapters:` section (or use scope head/full)")
    return adapters | _norm_names(model) | heads


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return train, total


def set_trainable(model: nn.Module, scope: str) -> tuple[int, int]:
    """Freeze everything outside ``scope``; log and return ``(trainable, total)`` counts."""
    keep = in_scope(model, scope)
    if not keep:
        raise BadConfigError(f"trainable scope {scope!r} selects no parameters of "
                             f"{type(model).__name__}")
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    train, total = count_parameters(model)
    log.info("trainable scope %r: %s of %s parameters (%.2f%%)", scope, f"{train:,}",
             f"{total:,}", 100.0 * train / max(total, 1))
    return train, total


def scope_state_dict(model: nn.Module, scope: str) -> dict[str, torch.Tensor]:
    """The weights of ``scope`` (plus any buffers of adapter modules): what an adapter-only
    checkpoint stores. Loaded over the base checkpoint they rebuild the trained model."""
    keep = in_scope(model, scope)
    sd = model.state_dict()
    return {k: v for k, v in sd.items() if k in keep or _is_adapter(k)}


def adapter_spec(model: nn.Module) -> dict[str, Any] | None:
    """The spec :func:`add_adapters` recorded on ``model``, or None."""
    spec = getattr(model, "adapter_spec", None)
    return dict(spec) if spec else None
