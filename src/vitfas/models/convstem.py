"""A ViT whose patch embedding is a small convolutional stem, for learning from few images.

A plain ViT cuts the image into ``P x P`` patches and embeds each with one linear map (a
convolution with kernel = stride = ``P``). "Early convolutions help transformers see
better" (Xiao et al., 2021) replaces that with a stack of stride-2 3x3 convolutions (each
followed by BatchNorm and ReLU) and a final 1x1 convolution to the token width: the same
token grid, but an inductive bias for local texture, easier optimisation and much better
results from little data.

For face anti-spoofing the stem's convolutions can be *central difference* convolutions
(CDC, Yu et al., "Searching central difference convolutional networks for face
anti-spoofing", CVPR 2020). A CDC mixes the usual convolution with a gradient-like term::

    y(p0) = sum_n w(p_n) * x(p0 + p_n)  -  theta * x(p0) * sum_n w(p_n)
          = sum_n w(p_n) * (x(p0 + p_n) - theta * x(p0))      (theta = 0: a plain conv)

which makes the filters respond to fine intensity differences (print dots, screen moire)
rather than to absolute colour. It is exactly a convolution with the centre tap of the
kernel reduced by ``theta * sum(w)``; :class:`CentralDifferenceConv2d` computes it that
way, so it costs one convolution and exports to ONNX as one.

Everything after the stem is the :class:`~vitfas.models.vit.VisionTransformer`: class and
register tokens, position embedding, blocks, ``return_attn`` / attention rollout,
``forward_intermediates``, dynamic image size. ``patch_embed.patch_size`` (and
``config.patch_size``) is the stem's total stride, so explainability code maps tokens to
pixels as for a ViT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitfas.models._config import input_norm_check
from vitfas.models.registry import register_model
from vitfas.models.vit import VisionTransformer, ViTConfig, pad_to_multiple


@dataclass(frozen=True)
class ConvStemViTConfig(ViTConfig):
    """A :class:`ViTConfig` whose patch embedding is a convolutional stem.

    Attributes:
        stem: ``"conv"`` (plain 3x3 convolutions, Xiao et al.) or ``"cdc"`` (central
            difference convolutions, CDCN).
        stem_channels: output channels of the stride-2 3x3 convolutions, one per halving;
            their number must be ``log2(patch_size)`` (``patch_size`` is the stem's total
            stride). A final 1x1 convolution maps the last of them to ``embed_dim``.
        cdc_theta: CDC's mixing weight ``theta`` in [0, 1] (0: a plain convolution; CDCN
            uses 0.7). Only read when ``stem="cdc"``.
        colour: what the stem sees: ``"rgb"`` (the input as it is), or the RGB input plus
            its ``"hsv"`` or ``"ycbcr"`` (BT.601) channels, computed inside the model (6
            channels into the first convolution; the model's input stays 3-channel RGB,
            so bundles, predict, serve and ONNX need nothing new). Colour-texture
            features in these spaces are what makes LBP work on spoofs (Boulkenafet et al.,
            2016).
        input_mean, input_std: the normalisation of the model's input, to recover RGB in
            [0, 1] for the colour conversion (``vitfas train`` sets them from ``data.mean``
            and ``data.std``). Only read when ``colour`` is not ``"rgb"``.
    """

    stem: Literal["conv", "cdc"] = "cdc"
    stem_channels: tuple[int, ...] = (32, 64, 128)
    cdc_theta: float = 0.7
    colour: Literal["rgb", "rgb+hsv", "rgb+ycbcr"] = "rgb"
    input_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        norm_check = input_norm_check(self)
        super().__post_init__()
        n = len(self.stem_channels)
        checks = [
            (self.stem in ("conv", "cdc"), f"stem must be conv|cdc, got {self.stem!r}"),
            (n >= 1 and 2**n == self.patch_size,
             f"patch_size {self.patch_size} must be 2**len(stem_channels) = 2**{n} = {2**n} "
             f"(one stride-2 convolution per halving); got stem_channels="
             f"{list(self.stem_channels)}"),
            (all(c > 0 for c in self.stem_channels),
             f"stem_channels must be positive, got {list(self.stem_channels)}"),
            (0.0 <= self.cdc_theta <= 1.0, f"cdc_theta must be in [0, 1], got {self.cdc_theta}"),
            (self.colour in ("rgb", "rgb+hsv", "rgb+ycbcr"),
             f"colour must be rgb|rgb+hsv|rgb+ycbcr, got {self.colour!r}"),
            (self.colour == "rgb" or self.in_chans == 3,
             f"colour={self.colour!r} needs in_chans=3 (RGB), got {self.in_chans}"),
            norm_check,
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"ConvStemViTConfig: {msg}")


class CentralDifferenceConv2d(nn.Conv2d):
    """Central difference convolution (CDCN): ``conv(x, w) - theta * x(p0) * sum(w)``.

    Computed as one convolution with the kernel ``w - theta * sum(w) * delta_centre``, which
    is exactly the formula above for an odd kernel whose padding keeps the centre tap on
    ``p0`` (``padding = kernel // 2``). ``[B, C_in, H, W] -> [B, C_out, H', W']`` as
    :class:`torch.nn.Conv2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, theta: float = 0.7, bias: bool = False) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"CentralDifferenceConv2d needs an odd kernel, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, bias=bias)
        self.theta = float(theta)

    def effective_weight(self) -> torch.Tensor:
        """The equivalent plain kernel ``[C_out, C_in, k, k]``."""
        w = self.weight
        if self.theta == 0.0:
            return w
        k = self.kernel_size[0]
        centre = torch.zeros(k, k, dtype=w.dtype, device=w.device)
        centre[k // 2, k // 2] = 1.0
        return w - self.theta * w.sum(dim=(2, 3), keepdim=True) * centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"


class ColourChannels(nn.Module):
    """Normalised RGB ``[B, 3, H, W]`` -> ``[B, 6, H, W]``: the input, then its HSV or
    YCbCr channels (each in [0, 1], mapped to [-1, 1]).

    RGB is first recovered as ``clamp(x * std + mean, 0, 1)``. HSV: ``V = max(R, G, B)``,
    ``S = (V - min) / V`` (0 where V = 0), ``H`` the hue angle / 360 degrees (0 where the
    pixel is grey). YCbCr: full-range BT.601 (JPEG's),
    ``Y = .299 R + .587 G + .114 B``, ``Cb = .5 + (B - Y) * .564``,
    ``Cr = .5 + (R - Y) * .713``.
    """

    def __init__(self, space: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if space not in ("hsv", "ycbcr"):
            raise ValueError(f"ColourChannels: space must be hsv or ycbcr, got {space!r}")
        self.space = space
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def hsv(rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> HSV in [0, 1]."""
        r, g, b = rgb.unbind(1)
        v, _ = rgb.max(1)
        lo, _ = rgb.min(1)
        c = v - lo
        s = torch.where(v > 0, c / v.clamp(min=1e-8), torch.zeros_like(v))
        cs = c.clamp(min=1e-8)
        h = torch.where(v == r, ((g - b) / cs) % 6,
                        torch.where(v == g, (b - r) / cs + 2, (r - g) / cs + 4))
        h = torch.where(c > 0, h / 6, torch.zeros_like(h))
        return torch.stack([h, s, v], 1)

    @staticmethod
    def ycbcr(rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> full-range YCbCr in [0, 1]."""
        r, g, b = rgb.unbind(1)
        y = 0.299 * r + 0.587 * g + 0.114 * b
        return torch.stack([y, 0.5 + 0.564 * (b - y), 0.5 + 0.713 * (r - y)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 6, H, W]``."""
        rgb = (x * self.std + self.mean).clamp(0, 1)
        extra = self.hsv(rgb) if self.space == "hsv" else self.ycbcr(rgb)
        return torch.cat([x, extra * 2 - 1], 1)


class ConvStem(nn.Module):
    """Stride-2 3x3 conv + BatchNorm + ReLU per halving, then a 1x1 conv to the width.

    ``[B, C, H, W] -> [B, H/P, W/P, D]`` with ``P = 2 ** len(channels)`` (grid kept 2-D,
    as :class:`~vitfas.models.vit.PatchEmbed` returns it).
    """

    def __init__(self, in_chans: int, channels: tuple[int, ...], embed_dim: int,
                 kind: str = "cdc", theta: float = 0.7, pad: bool = False,
                 colour: nn.Module | None = None) -> None:
        super().__init__()
        self.patch_size = 2 ** len(channels)
        self.pad = pad
        self.colour = colour
        layers: list[nn.Module] = []
        c_in = in_chans if colour is None else 2 * in_chans
        for c in channels:
            conv: nn.Conv2d
            if kind == "cdc":
                conv = CentralDifferenceConv2d(c_in, c, 3, stride=2, theta=theta)
            else:
                conv = nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False)
            layers.append(nn.Sequential(conv, nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            c_in = c
        self.convs = nn.ModuleList(layers)
        self.proj = nn.Conv2d(c_in, embed_dim, kernel_size=1)

    def init_weights(self, proj: bool = True) -> None:
        """Kaiming-normal (fan-out, ReLU) stride-2 convolutions, BatchNorm (1, 0), then a
        xavier-uniform 1x1 projection (skipped with ``proj=False``) with a zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.proj:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if proj:
            w = self.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, H/P, W/P, D]``."""
        x = pad_to_multiple(x, self.patch_size, self.pad, "the stem's stride")
        if self.colour is not None:
            x = self.colour(x)
        for layer in self.convs:
            x = layer(x)
        return self.proj(x).permute(0, 2, 3, 1)


class ConvStemVisionTransformer(VisionTransformer):
    """:class:`VisionTransformer` with a :class:`ConvStem` (plain or CDC) patch embedding.

    Shapes as the ViT (B batch, D width, P prefix tokens, N = P + H/p * W/p with p the
    stem's stride): ``forward`` ``[B, C, H, W] -> [B, classes]``; ``forward_features``
    ``-> [B, N, D]``; ``return_attn=True`` adds one ``[B, heads, N, N]`` map per block.
    The stem's BatchNorm makes training-mode outputs depend on the batch; use ``eval()``
    for inference.
    """

    def __init__(self, config: ConvStemViTConfig) -> None:
        if not isinstance(config, ConvStemViTConfig):
            raise TypeError(f"ConvStemVisionTransformer needs a ConvStemViTConfig, got "
                            f"{type(config).__name__}")
        super().__init__(config)
        c = config
        colour = None if c.colour == "rgb" else ColourChannels(
            c.colour.split("+")[1], c.input_mean, c.input_std)
        self.patch_embed = ConvStem(c.in_chans, c.stem_channels, c.embed_dim, c.stem,
                                    c.cdc_theta, c.dynamic_img_pad, colour)
        self._init_stem()

    def _init_stem(self) -> None:
        assert isinstance(self.patch_embed, ConvStem)
        self.patch_embed.init_weights()

    def init_weights(self) -> None:
        """The ViT initialisation; Kaiming-normal stem convolutions, BatchNorm (1, 0)."""
        super().init_weights()
        if isinstance(self.patch_embed, ConvStem):
            self._init_stem()


def convstem_config(width: int = 128, depth: int = 6, heads: int = 4, img_size: int = 64,
                    stem_channels: tuple[int, ...] = (32, 64, 128),
                    **overrides: Any) -> ConvStemViTConfig:
    """A small conv-stem config (two classes unless overridden); ``patch_size`` follows from
    the stem's depth."""
    base: dict[str, Any] = {"num_classes": 2, **overrides}
    return ConvStemViTConfig(
        img_size=img_size, patch_size=2 ** len(stem_channels), embed_dim=width, depth=depth,
        num_heads=heads, stem_channels=stem_channels, **base,
    )


def _register() -> None:
    # the model of the shipped fas_scratch config: 64 px, stride 8, width 64, depth 4 (0.23 M)
    register_model("vit_cdcstem_w64_p8_64",
                   convstem_config(width=64, depth=4, heads=2, stem_channels=(16, 32, 64)),
                   builder=ConvStemVisionTransformer)
    for kind in ("conv", "cdc"):
        # 64 px, stride 8: 8x8 tokens (the size of the from-scratch recipe)
        register_model(f"vit_{kind}stem_w128_p8_64",
                       convstem_config(stem=kind, stem_channels=(32, 64, 128)),
                       builder=ConvStemVisionTransformer)
        # 128 px, stride 16: the same 8x8 tokens, but the stem sees twice the resolution
        register_model(f"vit_{kind}stem_w128_p16_128",
                       convstem_config(stem=kind, img_size=128, stem_channels=(16, 32, 64, 128)),
                       builder=ConvStemVisionTransformer)


_register()
