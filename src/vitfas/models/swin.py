"""Swin Transformer: hierarchical ViT with shifted windows (Liu et al., 2021).

An image ``[B, C, H, W]`` is partitioned into ``P x P`` patches (a strided convolution and
a LayerNorm), then goes through four stages. Each stage but the first starts with *patch
merging* (concatenate each 2x2 neighbourhood, LayerNorm, linear ``4C -> 2C``), halving the
resolution and doubling the width. Inside a stage, blocks alternate between attention within
non-overlapping ``M x M`` windows and the same with the windows shifted by ``M/2``
(a cyclic roll plus an attention mask, so tokens only attend to tokens that were neighbours
before the roll). Each window attention adds a learnable relative position bias indexed by
the 2-D offset between query and key. Cost is linear in the number of patches.

When a stage's grid is no larger than the window, the window shrinks to the grid and is not
shifted; grids that are not a multiple of the window are zero-padded bottom/right (as timm
does). Parameter and buffer names follow timm's ``SwinTransformer`` (downsampling at the
start of stages 1-3, ``head.fc``), so a timm state dict loads directly; original Microsoft
checkpoints go through :func:`vitfas.weights.swin.convert_swin_state_dict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitfas.models._config import ConfigDict, check_image_batch, to_pair
from vitfas.models.attention import DropPath, Mlp, init_linear_and_norm
from vitfas.models.pos_embed import relative_position_index
from vitfas.models.registry import register_model

MASK_VALUE = -100.0  # what the reference implementation adds for cross-region pairs


@dataclass(frozen=True)
class SwinConfig(ConfigDict):
    """Every choice that shapes a :class:`SwinTransformer`.

    Attributes:
        img_size: input ``(H, W)`` (an int means square); must be a multiple of patch_size.
        patch_size: side of the square patches of the patch partition.
        in_chans: input channels.
        num_classes: head outputs; 0 for no head (pooled features only).
        embed_dim: width of stage 0; stage ``i`` has ``embed_dim * 2**i``.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window ``(M, M)`` (an int means square).
        mlp_ratio: MLP hidden width over block width.
        qkv_bias: bias on the query/key/value projection.
        norm_eps: LayerNorm epsilon (1e-5 as in timm and the original code).
        drop_rate: dropout before the head.
        attn_drop_rate, proj_drop_rate: attention / projection dropout.
        drop_path_rate: stochastic depth, rising linearly over all blocks to this value.
        global_pool: ``"avg"`` (mean over the final grid).
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int] = (7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    global_pool: Literal["avg"] = "avg"

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", to_pair(self.img_size))
        object.__setattr__(self, "window_size", to_pair(self.window_size))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        checks = [
            (self.patch_size > 0, f"patch_size must be positive, got {self.patch_size}"),
            (len(self.depths) > 0 and all(d > 0 for d in self.depths),
             f"depths must be positive block counts, got {self.depths}"),
            (len(self.depths) == len(self.num_heads),
             f"depths {self.depths} and num_heads {self.num_heads} must have one entry per "
             "stage"),
            (all(w > 0 for w in self.window_size),
             f"window_size must be positive, got {self.window_size}"),
            (self.global_pool == "avg", f"global_pool must be 'avg', got {self.global_pool!r}"),
            (all(side % self.patch_size == 0 for side in self.img_size),
             f"image size {self.img_size} is not a multiple of the patch size "
             f"{self.patch_size}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"SwinConfig: {msg}")
        for i, heads in enumerate(self.num_heads):
            dim = self.embed_dim * 2**i
            if dim % heads:
                raise ValueError(
                    f"SwinConfig: stage {i} width {dim} is not divisible by its "
                    f"{heads} heads"
                )

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid of stage 0, ``(H/P, W/P)``."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def num_features(self) -> int:
        """Width of the last stage (the pooled feature size)."""
        return int(self.embed_dim * 2 ** (self.num_stages - 1))

    def stage_resolutions(self) -> list[tuple[int, int]]:
        """Token grid of each stage (after its patch merging)."""
        h, w = self.grid_size
        out = []
        for i in range(self.num_stages):
            if i > 0:
                h, w = (h + 1) // 2, (w + 1) // 2
            out.append((h, w))
        return out



def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``[B, H, W, C] -> [B * nW, Mh * Mw, C]`` (H, W multiples of the window)."""
    B, H, W, C = x.shape
    mh, mw = window
    x = x.view(B, H // mh, mh, W // mw, mw, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, mh * mw, C)


def window_reverse(
    windows: torch.Tensor, window: tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """``[B * nW, Mh * Mw, C] -> [B, H, W, C]``; inverse of :func:`window_partition`."""
    mh, mw = window
    C = windows.shape[-1]
    x = windows.view(-1, height // mh, width // mw, mh, mw, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, C)


def shifted_window_mask(
    resolution: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]
) -> torch.Tensor:
    """Additive attention mask for shifted windows.

    After rolling the (padded) grid by ``-shift``, a window can hold tokens from up to four
    regions that were not adjacent in the image; pairs from different regions get
    ``MASK_VALUE``, pairs from the same region 0.

    Returns:
        ``[nW, Mh*Mw, Mh*Mw]`` float tensor.
    """
    mh, mw = window
    H = math.ceil(resolution[0] / mh) * mh
    W = math.ceil(resolution[1] / mw) * mw
    region = torch.zeros(1, H, W, 1)
    label = 0
    for hs in (slice(0, -mh), slice(-mh, -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -mw), slice(-mw, -shift[1]), slice(-shift[1], None)):
            region[:, hs, ws, :] = label
            label += 1
    r = window_partition(region, window).squeeze(-1)  # [nW, M*M]
    diff = r.unsqueeze(1) - r.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a relative position bias.

    Input ``[B*nW, N, C]`` with ``N = Mh*Mw`` tokens per window; the bias table has
    ``(2Mh-1)*(2Mw-1)`` rows, one column per head.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: tuple[int, int],
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), num_heads)
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(window, 0), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def init_non_persistent_buffers(self) -> None:
        """Recompute the index buffer (after ``to_empty()`` from the meta device)."""
        self.relative_position_index = relative_position_index(self.window, 0).to(
            self.relative_position_bias_table.device
        )

    def rel_pos_bias(self) -> torch.Tensor:
        """``[1, heads, N, N]`` bias from the table."""
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend within each window.

        Args:
            x: ``[B*nW, N, C]`` window tokens (windows of one image contiguous).
            mask: ``[nW, N, N]`` additive mask for shifted windows, or None.
            return_attn: also return the softmax weights ``[B*nW, heads, N, N]``.

        Returns:
            ``([B*nW, N, C], attention or None)``.
        """
        Bw, N, C = x.shape
        qkv = self.qkv(x).reshape(Bw, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.rel_pos_bias()
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0).to(bias.dtype))
            bias = bias.expand(Bw // nw, -1, -1, -1, -1).reshape(Bw, self.num_heads, N, N)
        drop = self.attn_drop if self.training else 0.0
        # torch.export (the ONNX exporter) mis-decomposes a masked SDPA followed by the
        # head merge, so exports take the explicit form (same numbers).
        if return_attn or torch.compiler.is_exporting():
            attn = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)
            out = F.dropout(attn, drop, self.training) @ v
            attn = attn if return_attn else None
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                                 dropout_p=drop)
        out = out.transpose(1, 2).reshape(Bw, N, C)
        return self.proj_drop(self.proj(out)), attn


class SwinBlock(nn.Module):
    """One Swin block on a ``[B, H, W, C]`` grid: (shifted) window attention, then an MLP,
    each pre-norm with a residual connection."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window: tuple[int, int],
        shift: bool,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        # a window larger than the grid shrinks to it, and is then never shifted
        self.window = tuple(min(r, w) for r, w in zip(resolution, window))
        self.shift = tuple(
            0 if (not shift or r <= w) else w // 2
            for r, w in zip(resolution, self.window)
        )
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, self.window, qkv_bias, attn_drop, proj_drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path)
        self.register_buffer("attn_mask", self._make_mask(), persistent=False)

    def _make_mask(self) -> torch.Tensor | None:
        if not any(self.shift):
            return None
        return shifted_window_mask(self.resolution, self.window, self.shift)

    def init_non_persistent_buffers(self) -> None:
        """Recompute the shift mask (after ``to_empty()`` from the meta device)."""
        mask = self._make_mask()
        self.attn_mask = None if mask is None else mask.to(self.norm1.weight.device)

    def _attn(
        self, x: torch.Tensor, return_attn: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        H, W = x.shape[1:3]
        mh, mw = self.window
        if any(self.shift):
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        pad_h, pad_w = (mh - H % mh) % mh, (mw - W % mw) % mw
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        out, attn = self.attn(window_partition(x, self.window), self.attn_mask, return_attn)
        x = window_reverse(out, self.window, Hp, Wp)[:, :H, :W, :]
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(1, 2))
        return x, attn

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, H, W, C] -> ([B, H, W, C], [B*nW, heads, N, N] or None)``."""
        a, attn = self._attn(self.norm1(x), return_attn)
        x = x + self.drop_path1(a)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x, attn


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (``4C``), LayerNorm, then linear ``4C -> 2C``.

    ``[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]`` (odd sizes are zero-padded).
    """

    def __init__(self, dim: int, out_dim: int, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        H, W = x.shape[1:3]
        # channel order (h0,w0), (h1,w0), (h0,w1), (h1,w1), as in the original code
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window: tuple[int, int],
        downsample: bool,
        drop_path: Sequence[float],
        c: SwinConfig,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = (
            PatchMerging(in_dim, dim, c.norm_eps) if downsample else nn.Identity()
        )
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim, resolution, num_heads, window, shift=(i % 2 == 1),
                mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, norm_eps=c.norm_eps,
                drop_path=drop_path[i], attn_drop=c.attn_drop_rate, proj_drop=c.proj_drop_rate,
            )
            for i in range(depth)
        )
        self.grad_checkpointing = False

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, H, W, C_in] -> [B, H', W', C]`` and the blocks' attention (if asked)."""
        x = self.downsample(x)
        attns: list[torch.Tensor] = []
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, attn = checkpoint(blk, x, return_attn, use_reentrant=False)
            else:
                x, attn = blk(x, return_attn)
            if attn is not None:
                attns.append(attn)
        return x, attns


class SwinPatchEmbed(nn.Module):
    """Patch partition: ``[B, C, H, W] -> [B, H/P, W/P, D]`` (conv, then LayerNorm)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_eps: float):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinHead(nn.Module):
    """Average-pool the final grid, dropout, linear: ``[B, H, W, C] -> [B, classes]``."""

    def __init__(self, dim: int, num_classes: int, drop: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.fc: nn.Module = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean(dim=(1, 2)))
        return x if pre_logits else self.fc(x)


class SwinTransformer(nn.Module):
    """Swin Transformer classifier.

    Shapes (B batch, C_f = ``num_features``, h, w = final grid, 1/32 of the input for P=4):
        ``forward``: ``[B, C, H, W] -> [B, num_classes]``
        ``forward_features``: ``[B, C, H, W] -> [B, h, w, C_f]`` (after the final norm)
        ``forward_head``: ``[B, h, w, C_f] -> [B, num_classes]`` (``[B, C_f]`` with pre_logits)

    ``forward(x, return_attn=True)`` also returns a list with each block's window attention
    ``[B*nW, heads, Mh*Mw, Mh*Mw]`` (windows in row-major order of the shifted, padded grid).
    ``num_prefix_tokens`` is 0: there is no class token.
    """

    num_prefix_tokens = 0

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        if not isinstance(config, SwinConfig):
            raise TypeError(f"SwinTransformer needs a SwinConfig, got {type(config)}")
        c = self.config = config
        self.num_classes = c.num_classes
        self.embed_dim = c.embed_dim
        self.num_features = c.num_features
        self.patch_embed = SwinPatchEmbed(c.patch_size, c.in_chans, c.embed_dim, c.norm_eps)
        total = sum(c.depths)
        dpr = [c.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages = []
        in_dim = c.embed_dim
        for i, (res, depth, heads) in enumerate(
            zip(c.stage_resolutions(), c.depths, c.num_heads)
        ):
            dim = c.embed_dim * 2**i
            start = sum(c.depths[:i])
            stages.append(
                SwinStage(in_dim, dim, res, depth, heads, c.window_size, downsample=i > 0,
                          drop_path=dpr[start : start + depth], c=c)
            )
            in_dim = dim
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.num_features, eps=c.norm_eps)
        self.head = SwinHead(self.num_features, c.num_classes, c.drop_rate)
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear weights and bias tables, zero biases, LN (1, 0)."""
        init_linear_and_norm(self)
        for m in self.modules():
            if isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one of ``num_classes`` outputs."""
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        self.num_classes = num_classes
        device = self.norm.weight.device
        if num_classes:
            fc = nn.Linear(self.num_features, num_classes, device=device)
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
            self.head.fc = fc
        else:
            self.head.fc = nn.Identity()

    def no_weight_decay(self) -> set[str]:
        """Parameter names conventionally excluded from weight decay (the bias tables)."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        check_image_batch(x, c.in_chans, c.img_size, " (the attention masks depend on it)")

    def forward_features(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, C, H, W] -> [B, h, w, num_features]`` normalised (and attention if asked)."""
        self._check_input(x)
        x = self.patch_embed(x)
        attns: list[torch.Tensor] = []
        for stage in self.layers:
            x, a = stage(x, return_attn)
            attns.extend(a)
        x = self.norm(x)
        return (x, attns) if return_attn else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, h, w, C_f] -> [B, num_classes]``, or the pooled ``[B, C_f]`` with pre_logits."""
        return self.head(x, pre_logits)

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, C, H, W] -> [B, num_classes]`` (and per-block window attention if asked)."""
        if return_attn:
            feats, attns = self.forward_features(x, return_attn=True)
            return self.forward_head(feats), attns
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self, x: torch.Tensor, norm: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final features ``[B, h, w, C_f]`` and each stage's output as ``[B, C_i, H_i, W_i]``
        (for dense tasks and feature probes); ``norm`` applies the final norm to the last."""
        self._check_input(x)
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.layers):
            x, _ = stage(x)
            y = self.norm(x) if (norm and i == len(self.layers) - 1) else x
            outs.append(y.permute(0, 3, 1, 2).contiguous())
        return self.norm(x), outs


def swin_config(**overrides: Any) -> SwinConfig:
    """A :class:`SwinConfig` with ``overrides``."""
    return SwinConfig(**overrides)


def _register_swins() -> None:
    # name: (embed_dim, depths, heads, default public checkpoint); drop_path_rate 0.1 as timm
    specs = {
        "swin_tiny_patch4_window7_224": (96, (2, 2, 6, 2), (3, 6, 12, 24),
                                         "timm/swin_tiny_patch4_window7_224.ms_in1k"),
        "swin_small_patch4_window7_224": (96, (2, 2, 18, 2), (3, 6, 12, 24),
                                          "timm/swin_small_patch4_window7_224.ms_in22k_ft_in1k"),
        "swin_base_patch4_window7_224": (128, (2, 2, 18, 2), (4, 8, 16, 32),
                                         "timm/swin_base_patch4_window7_224.ms_in22k_ft_in1k"),
    }
    for name, (dim, depths, heads, hub) in specs.items():
        register_model(
            name,
            SwinConfig(img_size=224, patch_size=4, window_size=7, embed_dim=dim, depths=depths,
                       num_heads=heads),
            builder=SwinTransformer,
            hub_id=hub,
        )


_register_swins()
