"""Attention maps, attention rollout and gradient-weighted rollout, on plain tensors.

Everything here works on the per-block attention matrices a ViT returns with
``return_attn=True``: a sequence of ``[B, heads, N, N]`` softmax matrices (row = query,
column = key, each row sums to 1), ``N = P + h*w`` tokens with the ``P`` prefix tokens
(class, distillation, registers) first and the ``h x w`` patch grid after them in
row-major order. Nothing here touches a model; :mod:`vitfas.explain.explainer` runs the
model and calls these functions.

Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020):
the residual connection is modelled by adding the identity to each block's (head-fused)
attention, every row is renormalised to sum to 1, and the matrices are multiplied from the
first block to the last, ``R = Â_L ... Â_2 Â_1``. ``R[q, k]`` is then how much of token
``k``'s input reached token ``q``'s output. Note the renormalisation is along the *rows*
(``sum(dim=-1, keepdim=True)``): the widely copied ``vit-explain`` code divides by
``a.sum(dim=-1)`` without ``keepdim``, which broadcasts the row sums along the wrong axis
(column ``j`` is divided by row ``j``'s sum), and its discard step only protects the single
``(cls, cls)`` entry of the first sample of the batch. Both are done right here.

Gradient-weighted rollout (Chefer, Gur & Wolf, "Generic Attention-model Explainability",
2021): per block ``Ā = mean_heads((∂y_c/∂A ⊙ A)⁺)`` and ``R ← R + Ā R`` starting from
``R = I``, i.e. ``R = (I + Ā_L) ... (I + Ā_1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from vitfas.errors import BadConfigError

HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")


def _check_attns(attns: Sequence[torch.Tensor], name: str = "attention") -> None:
    if len(attns) == 0:
        raise BadConfigError(f"no {name} matrices given (the model returned an empty list)")
    first = attns[0]
    for i, a in enumerate(attns):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise BadConfigError(
                f"{name} of block {i} must be [B, heads, N, N], got shape {list(a.shape)}"
            )
        if a.shape != first.shape:
            raise BadConfigError(
                f"{name} of block {i} has shape {list(a.shape)}, block 0 has "
                f"{list(first.shape)}; all blocks must agree"
            )


def fuse_heads(attn: torch.Tensor, head_fusion: HeadFusion = "mean") -> torch.Tensor:
    """Combine the heads of one block: ``[B, heads, N, N] -> [B, N, N]``.

    ``"mean"`` keeps rows stochastic; ``"max"`` and ``"min"`` do not (rollout renormalises).
    """
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    if head_fusion == "min":
        return attn.amin(dim=1)
    raise BadConfigError(f"head_fusion must be one of {list(HEAD_FUSIONS)}, got {head_fusion!r}")


def discard_lowest(
    attn: torch.Tensor, discard_ratio: float, keep_tokens: Sequence[int] = (0,)
) -> torch.Tensor:
    """Zero the lowest ``discard_ratio`` fraction of each sample's attention entries.

    The entries in the columns of ``keep_tokens`` (attention *to* the class token, by
    default, including the class token's attention to itself) are never discarded and do
    not count towards the ratio. Each sample of the batch is treated on its own.

    Args:
        attn: ``[B, N, N]`` head-fused attention.
        discard_ratio: fraction in ``[0, 1)`` of the discardable entries to zero.
        keep_tokens: token indices whose columns are protected.

    Returns:
        A new ``[B, N, N]`` tensor (the input is not modified).
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise BadConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    out = attn.clone(memory_format=torch.contiguous_format)
    if discard_ratio == 0.0:
        return out
    B, N, _ = attn.shape
    keep = sorted({int(t) % N for t in keep_tokens})
    protected = torch.zeros(N, N, dtype=torch.bool, device=attn.device)
    if keep:
        protected[:, keep] = True
    n_free = int((~protected).sum())
    k = int(n_free * discard_ratio)
    if k == 0:
        return out
    ranked = attn.masked_fill(protected, float("inf")).reshape(B, N * N)
    idx = ranked.topk(k, dim=-1, largest=False).indices  # [B, k]
    out.reshape(B, N * N).scatter_(1, idx, 0.0)
    return out


def add_residual_and_normalise(attn: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]``: add the identity (the residual path) and renormalise each row to sum 1.

    For a row-stochastic input this is exactly Abnar & Zuidema's ``0.5 A + 0.5 I``.
    """
    eye = torch.eye(attn.shape[-1], dtype=attn.dtype, device=attn.device)
    a = attn + eye
    return a / a.sum(dim=-1, keepdim=True)


def rollout(
    attns: Sequence[torch.Tensor],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    keep_tokens: Sequence[int] = (0,),
) -> torch.Tensor:
    """Attention rollout through the given blocks (first to last).

    Args:
        attns: per block ``[B, heads, N, N]`` attention (softmax) matrices, in forward order.
            Pass ``attns[: L + 1]`` to roll out up to block ``L``.
        head_fusion: how the heads of a block are combined: ``"mean"``, ``"max"``, ``"min"``.
        discard_ratio: per block, the fraction of the lowest fused entries set to zero
            before the identity is added (0 keeps everything). Columns of ``keep_tokens``
            are never discarded.
        keep_tokens: the tokens whose incoming attention is protected from discarding
            (the class token by default; pass ``()`` for a model without one).

    Returns:
        ``[B, N, N]`` float32 rollout matrix ``R = Â_L ... Â_1``; every row sums to 1.
    """
    _check_attns(attns)
    B, _, N, _ = attns[0].shape
    result = torch.eye(N, dtype=torch.float32, device=attns[0].device).expand(B, N, N)
    for attn in attns:
        fused = fuse_heads(attn.detach().float(), head_fusion)
        fused = discard_lowest(fused, discard_ratio, keep_tokens)
        result = add_residual_and_normalise(fused) @ result
    return result


def grad_rollout(attns: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted attention rollout (Chefer et al., 2021, their rules 5 and 6).

    Args:
        attns: per block ``[B, heads, N, N]`` attention matrices.
        grads: per block ``[B, heads, N, N]`` gradients of the explained class's logit with
            respect to those matrices.

    Returns:
        ``[B, N, N]`` relevance ``R = (I + Ā_L) ... (I + Ā_1)`` with
        ``Ā = mean_heads(clamp(grad * attn, min=0))``. Rows are not normalised: ``R[q]``
        is an unnormalised relevance over the input tokens.
    """
    _check_attns(attns)
    _check_attns(grads, "gradient")
    if len(grads) != len(attns) or grads[0].shape != attns[0].shape:
        raise BadConfigError(
            f"got {len(grads)} gradients of shape {list(grads[0].shape)} for {len(attns)} "
            f"attention matrices of shape {list(attns[0].shape)}"
        )
    B, _, N, _ = attns[0].shape
    eye = torch.eye(N, dtype=torch.float32, device=attns[0].device)
    result = eye.expand(B, N, N)
    for attn, grad in zip(attns, grads):
        cam = (grad.detach().float() * attn.detach().float()).clamp(min=0).mean(dim=1)
        result = result + cam @ result
    return result


def readout(
    matrix: torch.Tensor,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: int | Literal["mean"] = 0,
) -> torch.Tensor:
    """Read the patch-grid map out of an ``[B, N, N]`` (attention or rollout) matrix.

    Args:
        matrix: ``[B, N, N]``, rows = queries, columns = keys.
        num_prefix_tokens: ``P``, the leading non-patch tokens.
        grid_size: ``(h, w)`` patch grid, ``N == P + h*w``.
        query: a token index (0 = class token, 1 = DeiT's distillation token) whose row is
            read, or ``"mean"`` for the mean over the patch tokens' rows.

    Returns:
        ``[B, h, w]``: the query's weight on each patch (the prefix columns are left out,
        so a map does not sum to 1 when the query attends to prefix tokens).
    """
    B, N, _ = matrix.shape
    h, w = grid_size
    P = num_prefix_tokens
    if P + h * w != N:
        raise BadConfigError(
            f"{N} tokens do not match {P} prefix tokens + a {h}x{w} patch grid "
            f"({P + h * w} tokens)"
        )
    if query == "mean":
        row = matrix[:, P:, P:].mean(dim=1)
    elif isinstance(query, int) and -N <= query < N:
        row = matrix[:, query, P:]
    else:
        raise BadConfigError(f"query must be a token index in [0, {N}) or 'mean', got {query!r}")
    return row.reshape(B, h, w)


def attention_map(
    attns: Sequence[torch.Tensor],
    layer: int,
    head: int | None,
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: int | Literal["mean"] = 0,
    head_fusion: HeadFusion = "mean",
) -> torch.Tensor:
    """Raw attention of one block (and one head, or the fused heads) on the patch grid.

    Args:
        attns: per block ``[B, heads, N, N]``.
        layer: block index (negative counts from the end).
        head: head index, or ``None`` to fuse all heads with ``head_fusion``.
        num_prefix_tokens, grid_size, query: as in :func:`readout`.

    Returns:
        ``[B, h, w]``.
    """
    _check_attns(attns)
    L = len(attns)
    if not -L <= layer < L:
        raise BadConfigError(f"layer {layer} out of range: the model has {L} blocks")
    a = attns[layer].detach().float()
    H = a.shape[1]
    if head is None:
        m = fuse_heads(a, head_fusion)
    elif -H <= head < H:
        m = a[:, head]
    else:
        raise BadConfigError(f"head {head} out of range: block {layer} has {H} heads")
    return readout(m, num_prefix_tokens, grid_size, query)


def all_attention_maps(
    attns: Sequence[torch.Tensor],
    num_prefix_tokens: int,
    grid_size: tuple[int, int],
    query: int | Literal["mean"] = 0,
) -> torch.Tensor:
    """Every block's every head: ``[B, layers, heads, h, w]``."""
    _check_attns(attns)
    a = torch.stack([t.detach().float() for t in attns], dim=1)  # [B, L, H, N, N]
    B, L, H, N, _ = a.shape
    maps = readout(a.reshape(B * L * H, N, N), num_prefix_tokens, grid_size, query)
    return maps.reshape(B, L, H, *grid_size)
