"""Position encodings for Vision Transformers and their resampling to other grid sizes.

Three kinds, chosen by ``ViTConfig.pos_embed``:

- ``"learn"``: a learnable absolute embedding ``[1, P + H*W, D]`` (P prefix tokens when
  they receive a position, else ``[1, H*W, D]``), as in the ViT paper.
- ``"sincos"``: the fixed 2-D sine-cosine embedding of MAE / "Simple ViT"; recomputed
  for any grid, so it never needs resampling.
- ``"rel"``: a relative position bias added to the attention logits, one table per
  block with one column per head (BEiT / Swin style); see :class:`RelativePositionBias`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Interpolation = Literal["bicubic", "bilinear", "nearest"]


def sincos_2d(
    grid_size: tuple[int, int],
    dim: int,
    temperature: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, as used by MAE.

    Half the channels encode the row, half the column; within each half, the first
    quarter is ``sin`` and the second ``cos`` of the coordinate times ``1/temperature**(2i/d)``.

    Args:
        grid_size: ``(H, W)`` patch grid.
        dim: embedding width ``D``; must be divisible by 4.

    Returns:
        ``[H*W, D]`` tensor, row-major over the grid (row index ``h`` slowest).
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    h, w = grid_size
    omega = torch.arange(dim // 4, dtype=torch.float64, device=device) / (dim / 4.0)
    omega = 1.0 / temperature**omega  # [D/4]
    # MAE's convention: the first half of the channels encodes the column (w), the second
    # the row (h), each as [sin | cos].
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    out_w = xs.reshape(-1, 1) * omega.reshape(1, -1)
    out_h = ys.reshape(-1, 1) * omega.reshape(1, -1)
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return emb.to(dtype)


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_size: tuple[int, int],
    old_size: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: Interpolation = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample an absolute position embedding to a new patch grid.

    The prefix tokens (class, distillation, registers) keep their embeddings; the grid part
    is reshaped to ``[1, D, H, W]``, interpolated with ``F.interpolate(mode=interpolation,
    antialias=antialias, align_corners=False)`` and flattened back.

    Args:
        pos_embed: ``[1, num_prefix_tokens + H_old*W_old, D]``.
        new_size: target grid ``(H_new, W_new)``.
        old_size: source grid; inferred as a square when omitted.
        num_prefix_tokens: leading tokens that are not on the grid.
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        antialias: use antialiasing (only matters when shrinking; ignored for nearest).

    Returns:
        ``[1, num_prefix_tokens + H_new*W_new, D]`` in the input's dtype.
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"position embedding must be [1, N, D], got {list(pos_embed.shape)}")
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_size is None:
        side = math.isqrt(n_grid)
        if side * side != n_grid:
            raise ValueError(
                f"cannot infer the grid of a position embedding with {n_grid} grid tokens "
                f"(not a square); pass old_size"
            )
        old_size = (side, side)
    if old_size[0] * old_size[1] != n_grid:
        raise ValueError(
            f"position embedding has {n_grid} grid tokens, old_size {tuple(old_size)} needs "
            f"{old_size[0] * old_size[1]}"
        )
    if tuple(old_size) == tuple(new_size):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = pos_embed.shape[-1]
    orig_dtype = grid.dtype
    grid = grid.float().reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2)
    kwargs = {} if interpolation == "nearest" else {"align_corners": False, "antialias": antialias}
    grid = F.interpolate(grid, size=tuple(new_size), mode=interpolation, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], dim).to(orig_dtype)
    return torch.cat([prefix, grid], dim=1)


def relative_position_index(window: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """Index of each (query, key) pair into a relative position bias table.

    Grid tokens index ``(2H-1)*(2W-1)`` relative offsets. With prefix tokens (BEiT),
    three extra entries follow: prefix->grid, grid->prefix, prefix->prefix.

    Returns:
        ``[P + H*W, P + H*W]`` long tensor.
    """
    h, w = window
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"))
    coords = coords.flatten(1)  # [2, H*W]
    rel = coords[:, :, None] - coords[:, None, :]  # [2, HW, HW]
    rel = rel.permute(1, 2, 0)
    rel[:, :, 0] += h - 1
    rel[:, :, 1] += w - 1
    grid_index = rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]
    if num_prefix_tokens == 0:
        return grid_index
    n_rel = (2 * h - 1) * (2 * w - 1)
    n = num_prefix_tokens + h * w
    index = torch.empty(n, n, dtype=torch.long)
    p = num_prefix_tokens
    index[p:, p:] = grid_index
    index[:p, p:] = n_rel  # prefix (query) -> grid (key)
    index[p:, :p] = n_rel + 1  # grid -> prefix
    index[:p, :p] = n_rel + 2  # prefix -> prefix
    return index


class RelativePositionBias(nn.Module):
    """A learnable per-head bias on attention logits, indexed by relative 2-D offset.

    The table has ``(2H-1)*(2W-1)`` rows (+3 when there are prefix tokens) and one column
    per head. For another grid at run time the grid part of the table is resampled with
    the given interpolation, like an absolute embedding.
    """

    def __init__(
        self,
        window: tuple[int, int],
        num_heads: int,
        num_prefix_tokens: int = 1,
        interpolation: Interpolation = "bicubic",
        antialias: bool = True,
    ) -> None:
        super().__init__()
        self.window = tuple(window)
        self.num_heads = num_heads
        self.num_prefix_tokens = num_prefix_tokens
        self.interpolation = interpolation
        self.antialias = antialias
        n_rel = (2 * window[0] - 1) * (2 * window[1] - 1) + (3 if num_prefix_tokens else 0)
        self.table = nn.Parameter(torch.zeros(n_rel, num_heads))
        self.register_buffer(
            "index", relative_position_index(self.window, num_prefix_tokens), persistent=False
        )

    def init_non_persistent_buffers(self) -> None:
        """Recompute the index buffer (after ``to_empty()`` from the meta device)."""
        self.index = relative_position_index(self.window, self.num_prefix_tokens).to(
            self.table.device
        )

    def forward(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Return the bias ``[1, heads, N, N]`` for a grid (the built one when omitted)."""
        if grid is None or tuple(grid) == self.window:
            table, index = self.table, self.index
        else:
            table = self._resampled_table(tuple(grid))
            index = relative_position_index(tuple(grid), self.num_prefix_tokens).to(table.device)
        n = index.shape[0]
        bias = table[index.reshape(-1)].reshape(n, n, self.num_heads)
        return bias.permute(2, 0, 1).unsqueeze(0).contiguous()

    def _resampled_table(self, grid: tuple[int, int]) -> torch.Tensor:
        h, w = self.window
        n_rel = (2 * h - 1) * (2 * w - 1)
        rel, extra = self.table[:n_rel], self.table[n_rel:]
        rel = rel.T.reshape(1, self.num_heads, 2 * h - 1, 2 * w - 1).float()
        new = (2 * grid[0] - 1, 2 * grid[1] - 1)
        kwargs = (
            {}
            if self.interpolation == "nearest"
            else {"align_corners": False, "antialias": self.antialias}
        )
        rel = F.interpolate(rel, size=new, mode=self.interpolation, **kwargs)
        rel = rel.reshape(self.num_heads, -1).T.to(self.table.dtype)
        return torch.cat([rel, extra], dim=0)
