"""The Vision Transformer ("An Image is Worth 16x16 Words", Dosovitskiy et al., 2021).

An image ``[B, C, H, W]`` is cut into ``P x P`` patches, each linearly embedded
(:class:`PatchEmbed`); a class token (and optional register tokens) is prepended, a position
encoding added, and the sequence goes through a stack of pre-norm Transformer blocks. The
class token (or the mean of the patch tokens) after a final LayerNorm feeds a linear head.

The model's whole shape lives in one frozen :class:`ViTConfig`. Checkpoint conversion lives
in :mod:`vitfas.weights`, not here; the parameter names follow timm's so that the most
common checkpoints need no renaming.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitfas.models._config import ConfigDict, check_image_batch, to_pair
from vitfas.models.attention import Block, init_linear_and_norm
from vitfas.models.pos_embed import RelativePositionBias, resample_pos_embed, sincos_2d


@dataclass(frozen=True)
class ViTConfig(ConfigDict):
    """Every choice that shapes a :class:`VisionTransformer`.

    Attributes:
        img_size: input ``(H, W)`` (an int means square) the position embedding is built for.
        patch_size: side of the square patches.
        in_chans: input channels.
        num_classes: head outputs; 0 for no head (features only).
        embed_dim, depth, num_heads, mlp_ratio: the Transformer's size.
        qkv_bias: bias on the query/key/value projection.
        norm_eps: LayerNorm epsilon (timm/JAX: 1e-6; Hugging Face: 1e-12).
        gelu: ``"none"`` for exact GELU, ``"tanh"`` for the tanh approximation.
        pos_embed: ``"learn"``, ``"sincos"`` (fixed 2-D), ``"rel"`` (relative bias per
            block) or ``"none"``.
        pos_embed_on_prefix: whether class/register tokens get a position embedding.
        class_token: prepend a class token.
        reg_tokens: number of register tokens (Darcet et al., 2024).
        global_pool: ``"token"`` (class token) or ``"avg"`` (mean of patch tokens).
        fc_norm: LayerNorm after pooling instead of before; ``None`` means "when avg".
        layer_scale_init: initial LayerScale value, ``None`` for no LayerScale.
        drop_rate, attn_drop_rate, proj_drop_rate, drop_path_rate: regularisation.
        dynamic_img_size: accept any input size; the position embedding is resampled per
            forward with ``pos_embed_interp`` / ``pos_embed_antialias``.
        dynamic_img_pad: pad inputs whose size is not a multiple of the patch size.
        pos_embed_interp, pos_embed_antialias: the resampling kernel.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    gelu: Literal["none", "tanh"] = "none"
    pos_embed: Literal["learn", "sincos", "rel", "none"] = "learn"
    pos_embed_on_prefix: bool = True
    class_token: bool = True
    reg_tokens: int = 0
    global_pool: Literal["token", "avg"] = "token"
    fc_norm: bool | None = None
    layer_scale_init: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dynamic_img_size: bool = False
    dynamic_img_pad: bool = False
    pos_embed_interp: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    pos_embed_antialias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", to_pair(self.img_size))
        checks = [
            (self.patch_size > 0, f"patch_size must be positive, got {self.patch_size}"),
            (self.embed_dim % self.num_heads == 0,
             f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"),
            (self.pos_embed in ("learn", "sincos", "rel", "none"),
             f"pos_embed must be learn|sincos|rel|none, got {self.pos_embed!r}"),
            (self.global_pool in ("token", "avg"),
             f"global_pool must be token|avg, got {self.global_pool!r}"),
            (self.global_pool != "token" or self.class_token,
             "global_pool='token' needs class_token=True"),
            (self.gelu in ("none", "tanh"), f"gelu must be none|tanh, got {self.gelu!r}"),
            (self.reg_tokens >= 0, f"reg_tokens must be >= 0, got {self.reg_tokens}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"ViTConfig: {msg}")
        if not self.dynamic_img_pad:
            for side, name in zip(self.img_size, ("height", "width")):
                if side % self.patch_size:
                    raise ValueError(
                        f"ViTConfig: image {name} {side} is not divisible by patch size "
                        f"{self.patch_size}; choose another size or set dynamic_img_pad=True"
                    )

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(H/P, W/P)`` (rounded up when padding)."""
        return (
            math.ceil(self.img_size[0] / self.patch_size),
            math.ceil(self.img_size[1] / self.patch_size),
        )

    @property
    def num_prefix_tokens(self) -> int:
        """Class token + register tokens."""
        return int(self.class_token) + self.reg_tokens

    @property
    def use_fc_norm(self) -> bool:
        return self.global_pool == "avg" if self.fc_norm is None else self.fc_norm



_VARIANTS: dict[str, tuple[int, int, int, float]] = {
    # name: (width, depth, heads, mlp_ratio)
    "Ti": (192, 12, 3, 4.0),
    "S": (384, 12, 6, 4.0),
    "M": (512, 12, 8, 4.0),
    "B": (768, 12, 12, 4.0),
    "L": (1024, 24, 16, 4.0),
    "H": (1280, 32, 16, 4.0),
}


def vit_config(variant: str, **overrides: Any) -> ViTConfig:
    """A config from a big_vision-style variant string such as ``"B/16"`` or ``"Ti/16"``.

    >>> vit_config("S/16").embed_dim
    384
    """
    m = re.fullmatch(r"(Ti|S|M|B|L|H)/(\d+)", variant)
    if not m:
        raise ValueError(f"variant must look like 'B/16' with size in {list(_VARIANTS)}, "
                         f"got {variant!r}")
    width, depth, heads, ratio = _VARIANTS[m.group(1)]
    base = {"embed_dim": width, "depth": depth, "num_heads": heads, "mlp_ratio": ratio,
            "patch_size": int(m.group(2))}
    base.update(overrides)
    return ViTConfig(**base)


def pad_to_multiple(
    x: torch.Tensor, p: int, pad: bool, what: str = "the patch size"
) -> torch.Tensor:
    """``[B, C, H, W]`` zero-padded on the bottom/right to multiples of ``p`` when ``pad``;
    otherwise a ``ValueError`` (naming ``what``) unless ``H`` and ``W`` already are."""
    H, W = x.shape[-2:]
    if H % p or W % p:
        if not pad:
            raise ValueError(
                f"input size {H}x{W} is not divisible by {what} {p}; resize to a "
                f"multiple of {p} or build the model with dynamic_img_pad=True"
            )
        x = F.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p))
    return x


class PatchEmbed(nn.Module):
    """Cut an image into non-overlapping patches and embed each one linearly.

    A convolution with kernel = stride = patch size is exactly a shared linear map applied
    to every flattened patch.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, pad: bool = False):
        super().__init__()
        self.patch_size = patch_size
        self.pad = pad
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, H/P, W/P, D]`` (grid kept 2-D for the caller)."""
        x = pad_to_multiple(x, self.patch_size, self.pad)
        return self.proj(x).permute(0, 2, 3, 1)


class VisionTransformer(nn.Module):
    """ViT encoder with class token, optional register tokens and a linear head.

    Shapes (B batch, D width, P prefix tokens, N = P + H/p * W/p):
        ``forward``: ``[B, C, H, W] -> [B, num_classes]``
        ``forward_features``: ``[B, C, H, W] -> [B, N, D]`` (after the final norm)
        ``forward_head``: ``[B, N, D] -> [B, num_classes]`` (or ``[B, D]`` with pre_logits)

    Every forward takes ``return_attn=True`` to also return a list with one
    ``[B, heads, N, N]`` softmax matrix per block, computed on that call only.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.num_classes = c.num_classes
        self.num_features = self.embed_dim = c.embed_dim
        self.num_prefix_tokens = c.num_prefix_tokens
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim, c.dynamic_img_pad)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim)) if c.class_token else None
        self.reg_token = (
            nn.Parameter(torch.zeros(1, c.reg_tokens, c.embed_dim)) if c.reg_tokens else None
        )
        n_pos = c.grid_size[0] * c.grid_size[1] + (
            c.num_prefix_tokens if c.pos_embed_on_prefix else 0
        )
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, n_pos, c.embed_dim)) if c.pos_embed == "learn" else None
        )
        self.pos_drop = nn.Dropout(c.drop_rate)

        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            Block(
                c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.norm_eps, c.gelu,
                c.layer_scale_init, dpr[i], c.attn_drop_rate, c.proj_drop_rate,
            )
            for i in range(c.depth)
        )
        self.rel_pos = (
            nn.ModuleList(
                RelativePositionBias(
                    c.grid_size, c.num_heads, c.num_prefix_tokens,
                    c.pos_embed_interp, c.pos_embed_antialias,
                )
                for _ in range(c.depth)
            )
            if c.pos_embed == "rel"
            else None
        )
        self.norm = nn.Identity() if c.use_fc_norm else nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.fc_norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps) if c.use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes else nn.Identity()
        self.init_weights()

    # ------------------------------------------------------------------ init & utilities
    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear weights, zero biases, LayerNorm (1, 0)."""
        init_linear_and_norm(self)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for p in (self.pos_embed, self.cls_token, self.reg_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        if self.rel_pos is not None:
            for r in self.rel_pos:
                nn.init.trunc_normal_(r.table, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one of ``num_classes`` outputs."""
        self.config = dataclasses.replace(self.config, num_classes=num_classes)
        self.num_classes = num_classes
        device = self.fc_norm.weight.device if hasattr(self.fc_norm, "weight") else None
        if num_classes:
            self.head = nn.Linear(self.embed_dim, num_classes, device=device)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers conventionally exclude from weight decay."""
        names = {"pos_embed", "cls_token", "reg_token"}
        if self.rel_pos is not None:
            names |= {f"rel_pos.{i}.table" for i in range(len(self.rel_pos))}
        return names

    # ------------------------------------------------------------------ forward pieces
    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        size = None if c.dynamic_img_size else c.img_size
        check_image_batch(x, c.in_chans, size, " or dynamic_img_size=True")

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        """The tokens put before the patches, each ``[B, n, D]``: class, then registers."""
        tokens = [t for t in (self.cls_token, self.reg_token) if t is not None]
        return [t.expand(batch, -1, -1) for t in tokens]

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, D]`` patch grid -> ``[B, N, D]`` tokens with prefix and positions."""
        B, h, w, D = x.shape
        c = self.config
        x = x.reshape(B, h * w, D)
        if c.pos_embed == "sincos":
            x = x + sincos_2d((h, w), D, dtype=x.dtype, device=x.device)
        prefix = self._prefix_tokens(B)
        pos = self.pos_embed
        if pos is not None and (h, w) != c.grid_size:
            pos = resample_pos_embed(
                pos, (h, w), c.grid_size,
                num_prefix_tokens=self.num_prefix_tokens if c.pos_embed_on_prefix else 0,
                interpolation=c.pos_embed_interp, antialias=c.pos_embed_antialias,
            )
        if pos is not None and not c.pos_embed_on_prefix:
            x = x + pos
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        if pos is not None and c.pos_embed_on_prefix:
            x = x + pos
        return self.pos_drop(x)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        self._check_input(x)
        grid = self.patch_embed(x)
        hw = (grid.shape[1], grid.shape[2])
        return self._pos_embed(grid), hw

    def _run_block(
        self, i: int, x: torch.Tensor, hw: tuple[int, int], return_attn: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        bias = self.rel_pos[i](hw) if self.rel_pos is not None else None
        blk = self.blocks[i]
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(blk, x, bias, return_attn, use_reentrant=False)
        return blk(x, bias, return_attn)

    def forward_features(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, C, H, W] -> [B, N, D]`` normalised tokens (and attention maps if asked)."""
        x, hw = self._embed(x)
        attns: list[torch.Tensor] = []
        for i in range(len(self.blocks)):
            x, attn = self._run_block(i, x, hw, return_attn)
            if attn is not None:
                attns.append(attn)
        x = self.norm(x)
        return (x, attns) if return_attn else x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, D]``: the class token, or the mean of the patch tokens."""
        if self.config.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x[:, 0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``[B, N, D] -> [B, num_classes]``, or the pooled ``[B, D]`` with ``pre_logits``."""
        x = self.head_drop(self.fc_norm(self.pool(x)))
        return x if pre_logits else self.head(x)

    def forward(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, C, H, W] -> [B, num_classes]`` (and per-block attention if asked)."""
        if return_attn:
            feats, attns = self.forward_features(x, return_attn=True)
            return self.forward_head(feats), attns
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        output_fmt: Literal["NCHW", "NLC"] = "NCHW",
        return_prefix_tokens: bool = False,
        intermediates_only: bool = False,
        stop_early: bool = False,
    ) -> Any:
        """Outputs of chosen blocks, for dense tasks and feature probes.

        Args:
            x: ``[B, C, H, W]`` images.
            indices: an int ``n`` takes the last ``n`` blocks; a sequence takes those block
                indices (negative counts from the end); ``None`` takes all.
            norm: apply the final norm to each intermediate.
            output_fmt: ``"NCHW"`` -> ``[B, D, h, w]`` grid maps; ``"NLC"`` -> ``[B, h*w, D]``.
            return_prefix_tokens: also return each intermediate's ``[B, P, D]`` prefix tokens
                (as ``(grid, prefix)`` pairs).
            intermediates_only: return only the list.
            stop_early: stop after the last requested block (``intermediates_only`` only).

        Returns:
            ``(final_features [B, N, D], intermediates)`` or just ``intermediates``.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be NCHW or NLC, got {output_fmt!r}")
        depth = len(self.blocks)
        if indices is None:
            take = list(range(depth))
        elif isinstance(indices, int):
            if not 0 < indices <= depth:
                raise ValueError(f"indices={indices}: this model has {depth} blocks")
            take = list(range(depth - indices, depth))
        else:
            take = [i % depth if -depth <= i < depth else i for i in indices]
            bad = [i for i in indices if not -depth <= i < depth]
            if bad:
                raise ValueError(f"block indices {bad} out of range for {depth} blocks")
        x, (h, w) = self._embed(x)
        last = max(take) if (stop_early and intermediates_only) else depth - 1
        outs = []
        for i in range(last + 1):
            x, _ = self._run_block(i, x, (h, w), False)
            if i in take:
                y = self.norm(x) if norm else x
                prefix, grid = y[:, : self.num_prefix_tokens], y[:, self.num_prefix_tokens :]
                if output_fmt == "NCHW":
                    grid = grid.reshape(grid.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
                outs.append((grid, prefix) if return_prefix_tokens else grid)
        if intermediates_only:
            return outs
        return self.norm(x), outs
