"""Run a ViT and turn its attention into maps over the patch grid.

The model must accept ``return_attn=True`` and return ``(logits, [attn per block])`` with
``attn`` of shape ``[B, heads, N, N]`` (every vitfas ViT does). Prefix tokens are handled
generically through ``model.num_prefix_tokens`` (class + distillation + register tokens)
and the patch grid is derived from the input size and the patch size, so batched,
non-square and padded inputs, register tokens and DeiT's distillation token all work.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vitfas.errors import BadConfigError
from vitfas.explain.rollout import (
    HEAD_FUSIONS,
    HeadFusion,
    all_attention_maps,
    attention_map,
    grad_rollout,
    readout,
    rollout,
)

log = logging.getLogger(__name__)

Method = Literal["rollout", "grad-rollout", "attention"]
METHODS: tuple[str, ...] = ("rollout", "grad-rollout", "attention")


@dataclass(frozen=True)
class TokenLayout:
    """Where the tokens of one forward pass sit.

    Attributes:
        num_prefix_tokens: ``P`` leading tokens that are not patches.
        grid_size: ``(h, w)`` patch grid of this input.
        patch_size: ``(ph, pw)`` pixels per patch.
        input_size: ``(H, W)`` of the input tensor (the grid may cover a padded area).
        cls_index: index of the class token, ``None`` without one.
        dist_index: index of the distillation token (DeiT), ``None`` without one.
    """

    num_prefix_tokens: int
    grid_size: tuple[int, int]
    patch_size: tuple[int, int]
    input_size: tuple[int, int]
    cls_index: int | None
    dist_index: int | None

    @property
    def num_tokens(self) -> int:
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]


def _patch_size(model: nn.Module) -> tuple[int, int]:
    pe = getattr(model, "patch_embed", None)
    p = getattr(pe, "patch_size", None)
    if p is None:
        p = getattr(getattr(model, "config", None), "patch_size", None)
    if p is None:
        raise BadConfigError(
            f"{type(model).__name__} has no patch_embed.patch_size; cannot map tokens to pixels"
        )
    if isinstance(p, int):
        return (p, p)
    return (int(p[0]), int(p[1]))


def token_layout(model: nn.Module, input_size: Sequence[int]) -> TokenLayout:
    """The token layout ``model`` produces for an input of ``(H, W)`` pixels."""
    H, W = int(input_size[-2]), int(input_size[-1])
    ph, pw = _patch_size(model)
    P = getattr(model, "num_prefix_tokens", None)
    if P is None:
        raise BadConfigError(f"{type(model).__name__} has no num_prefix_tokens attribute")
    has_cls = getattr(model, "cls_token", None) is not None
    has_dist = getattr(model, "dist_token", None) is not None
    return TokenLayout(
        num_prefix_tokens=int(P),
        grid_size=(math.ceil(H / ph), math.ceil(W / pw)),
        patch_size=(ph, pw),
        input_size=(H, W),
        cls_index=0 if has_cls else None,
        dist_index=(1 if has_cls else 0) if has_dist else None,
    )


def resolve_query(layout: TokenLayout, query: str | int = "auto") -> int | Literal["mean"]:
    """Turn ``"auto" | "cls" | "dist" | "mean" | int`` into a token index or ``"mean"``.

    ``"auto"`` is the class token when there is one, else the mean over patch queries
    (models pooled by averaging, such as ``vit_base_patch16_reg4_gap_256``).
    """
    if isinstance(query, str) and query.lstrip("-").isdigit():
        query = int(query)
    if isinstance(query, int):
        if not 0 <= query < layout.num_tokens:
            raise BadConfigError(
                f"query token {query} out of range: this input has {layout.num_tokens} tokens"
            )
        return query
    if query == "auto":
        return layout.cls_index if layout.cls_index is not None else "mean"
    if query == "mean":
        return "mean"
    if query == "cls":
        if layout.cls_index is None:
            raise BadConfigError("query 'cls': this model has no class token; use 'mean'")
        return layout.cls_index
    if query == "dist":
        if layout.dist_index is None:
            raise BadConfigError("query 'dist': this model has no distillation token")
        return layout.dist_index
    raise BadConfigError(f"query must be auto, cls, dist, mean or a token index, got {query!r}")


@dataclass
class Explanation:
    """The result of :func:`explain` for a batch.

    Attributes:
        maps: ``[B, h, w]`` float32 map over the patch grid (not rescaled).
        logits: ``[B, num_classes]``.
        target: ``[B]`` the explained class per sample (grad-rollout), else ``None``.
        method, layer, head, query: what was computed (``layer`` is the last block used).
        layout: the token layout of the input.
    """

    maps: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor | None
    method: str
    layer: int
    head: int | None
    query: int | str
    layout: TokenLayout


def _forward_attn(
    model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    try:
        out = model(x, return_attn=True)
    except TypeError as exc:
        raise BadConfigError(
            f"{type(model).__name__} does not return attention weights "
            f"(forward(x, return_attn=True) failed: {exc})"
        ) from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise BadConfigError(
            f"{type(model).__name__}(x, return_attn=True) must return (logits, attentions)"
        )
    logits, attns = out
    if not attns:
        raise BadConfigError(f"{type(model).__name__} returned no attention matrices")
    return logits, list(attns)


def _resolve_target(
    target: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor
) -> torch.Tensor:
    B, C = logits.shape
    if target is None:
        t = logits.argmax(dim=-1)
    elif isinstance(target, int):
        t = torch.full((B,), target, dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
        if t.numel() != B:
            raise BadConfigError(f"got {t.numel()} target classes for a batch of {B}")
    if ((t < 0) | (t >= C)).any():
        raise BadConfigError(f"target class {t.tolist()} out of range for {C} classes")
    return t


def attention_and_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Forward with attention, then the gradient of each sample's target logit.

    Args:
        model: a ViT (switched to eval mode for the call, restored afterwards).
        x: ``[B, C, H, W]`` normalised images.
        target: class per sample (int, sequence, ``[B]``), or ``None`` for the predicted one.

    Returns:
        ``(logits [B, K], attns, grads, target [B])`` where ``attns`` and ``grads`` hold one
        ``[B, heads, N, N]`` tensor per block. Samples do not mix, so one backward pass of
        the sum of the target logits gives every sample its own gradient.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)  # builds a graph even if frozen
            logits, attns = _forward_attn(model, xg)
            t = _resolve_target(target, logits)
            score = logits.gather(1, t[:, None]).sum()
            grads = torch.autograd.grad(score, attns)
    finally:
        model.train(was_training)
    return (
        logits.detach(),
        [a.detach() for a in attns],
        [g.detach() for g in grads],
        t,
    )


def attention_weights(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(logits [B, K], [attn [B, heads, N, N] per block])`` in eval mode without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _forward_attn(model, x)
    finally:
        model.train(was_training)


def _check_tokens(attns: Sequence[torch.Tensor], layout: TokenLayout, model: nn.Module) -> None:
    N = attns[0].shape[-1]
    if layout.num_tokens != N:
        raise BadConfigError(
            f"{type(model).__name__} produced {N} tokens, expected {layout.num_prefix_tokens} "
            f"prefix tokens + a {layout.grid_size[0]}x{layout.grid_size[1]} grid "
            f"= {layout.num_tokens} for input {layout.input_size[0]}x{layout.input_size[1]} "
            f"with patch size {layout.patch_size}"
        )


def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: Method = "rollout",
    *,
    layer: int | None = None,
    head: int | None = None,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    query: str | int = "auto",
    target: int | Sequence[int] | torch.Tensor | None = None,
) -> Explanation:
    """A map over the patch grid for each image of a batch.

    Args:
        model: a ViT returning attention with ``return_attn=True``.
        x: ``[B, C, H, W]`` normalised images (any size the model accepts).
        method: ``"attention"`` (raw attention of one block), ``"rollout"`` (Abnar &
            Zuidema) or ``"grad-rollout"`` (Chefer et al., for the ``target`` class).
        layer: for ``attention`` the block shown (default: the last); for the rollouts the
            last block rolled through (default: the last).
        head: for ``attention``, one head; ``None`` fuses the heads with ``head_fusion``.
        head_fusion: ``mean``, ``max`` or ``min`` (attention with ``head=None``, rollout).
        discard_ratio: rollout only: fraction of the lowest entries per block dropped
            (the class token's column is kept).
        query: which token's view is shown: ``"auto"`` (class token, or the patch mean when
            there is none), ``"cls"``, ``"dist"``, ``"mean"`` or a token index.
        target: grad-rollout: class per sample, ``None`` for the predicted class.

    Returns:
        :class:`Explanation` with ``maps`` ``[B, h, w]``.
    """
    if method not in METHODS:
        raise BadConfigError(f"method must be one of {list(METHODS)}, got {method!r}")
    if head_fusion not in HEAD_FUSIONS:
        raise BadConfigError(
            f"head_fusion must be one of {list(HEAD_FUSIONS)}, got {head_fusion!r}"
        )
    if method != "rollout" and discard_ratio:
        raise BadConfigError(f"discard_ratio applies to method 'rollout' only, not {method!r}")
    if method != "attention" and head is not None:
        raise BadConfigError(f"head applies to method 'attention' only, not {method!r}")
    layout = token_layout(model, x.shape)
    q = resolve_query(layout, query)
    t: torch.Tensor | None = None
    if method == "grad-rollout":
        logits, attns, grads, t = attention_and_gradients(model, x, target)
    else:
        logits, attns = attention_weights(model, x)
        grads = []
    _check_tokens(attns, layout, model)
    L = len(attns)
    last = L - 1 if layer is None else layer
    if not -L <= last < L:
        raise BadConfigError(f"layer {layer} out of range: the model has {L} blocks")
    last %= L
    P, grid = layout.num_prefix_tokens, layout.grid_size
    if method == "attention":
        maps = attention_map(attns, last, head, P, grid, q, head_fusion)
    elif method == "rollout":
        keep = sorted({i for i in (layout.cls_index, q if isinstance(q, int) else None)
                       if i is not None})
        R = rollout(attns[: last + 1], head_fusion, discard_ratio, keep)
        maps = readout(R, P, grid, q)
    else:
        R = grad_rollout(attns[: last + 1], grads[: last + 1])
        maps = readout(R, P, grid, q)
    return Explanation(
        maps=maps.float().cpu(),
        logits=logits.detach().float().cpu(),
        target=None if t is None else t.cpu(),
        method=method,
        layer=last,
        head=head,
        query=q,
        layout=layout,
    )


def layer_head_maps(
    model: nn.Module, x: torch.Tensor, query: str | int = "auto"
) -> tuple[torch.Tensor, TokenLayout]:
    """Raw attention of every block and head: ``([B, layers, heads, h, w], layout)``."""
    layout = token_layout(model, x.shape)
    q = resolve_query(layout, query)
    _, attns = attention_weights(model, x)
    _check_tokens(attns, layout, model)
    return all_attention_maps(attns, layout.num_prefix_tokens, layout.grid_size, q), layout
