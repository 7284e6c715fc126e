"""Multi-head self-attention, the MLP and the pre-norm Transformer block.

Attention runs through ``F.scaled_dot_product_attention`` (fused kernels) unless the caller
asks for the attention weights on this call (``return_attn=True``); then it computes the
same thing explicitly so the softmax matrix ``[B, heads, N, N]`` can be returned. There is
no module-level or process-global switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_linear_and_norm(root: nn.Module) -> None:
    """Truncated-normal (std 0.02) weights and zero biases for every ``nn.Linear`` under
    ``root``; LayerNorms to weight 1, bias 0 (the ViT/DeiT/Swin initialisation)."""
    for m in root.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Attention(nn.Module):
    """Multi-head self-attention over tokens ``[B, N, D]`` (batch first, always)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend.

        Args:
            x: ``[B, N, D]`` tokens.
            attn_bias: optional additive bias broadcastable to ``[B, heads, N, N]``.
            return_attn: also return the softmax weights.

        Returns:
            ``([B, N, D], [B, heads, N, N] or None)``.
        """
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, head_dim]
        drop = self.attn_drop if self.training else 0.0
        if return_attn:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if attn_bias is not None:
                logits = logits + attn_bias
            attn = logits.softmax(dim=-1)
            out = F.dropout(attn, drop, self.training) @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=drop)
        out = out.transpose(1, 2).reshape(B, N, D)
        return self.proj_drop(self.proj(out)), attn


class Mlp(nn.Module):
    """Two linear layers with a GELU between them: ``D -> hidden -> D``."""

    def __init__(self, dim: int, hidden: int, approximate: str = "none", drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., D]``."""
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    """Per-channel learnable scale (CaiT); ``gamma`` starts at ``init``."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., D]``."""
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, ...] -> [B, ...]``; identity in eval mode or when ``p == 0``."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """A pre-norm Transformer encoder block.

    ``x = x + DropPath(LayerScale(Attn(LN(x))))`` then
    ``x = x + DropPath(LayerScale(MLP(LN(x))))``.

    ``attn_adapter`` and ``mlp_adapter`` (identity by default) transform the branch output
    before the residual add; ``parallel_adapter`` (None by default) runs beside the MLP on
    the same normalised input (AdaptFormer). Adapters are installed by
    :mod:`vitfas.models.adapters`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        gelu_approximate: str = "none",
        layer_scale_init: float | None = None,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), gelu_approximate, proj_drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path2 = DropPath(drop_path)
        self.attn_adapter: nn.Module = nn.Identity()
        self.mlp_adapter: nn.Module = nn.Identity()
        self.parallel_adapter: nn.Module | None = None

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, N, D] -> ([B, N, D], [B, heads, N, N] or None)``."""
        a, attn = self.attn(self.norm1(x), attn_bias, return_attn)
        x = x + self.drop_path1(self.ls1(self.attn_adapter(a)))
        h = self.norm2(x)
        m = self.mlp_adapter(self.mlp(h))
        if self.parallel_adapter is not None:
            m = m + self.parallel_adapter(h)
        x = x + self.drop_path2(self.ls2(m))
        return x, attn
