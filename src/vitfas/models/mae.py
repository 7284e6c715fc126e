"""Masked autoencoder pre-training (MAE, He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022).

Each image is cut into patches; a random 75 % of them (per sample) are hidden. The encoder, a
plain ViT, sees only the visible patches (plus a class token); a small decoder receives the
encoded visible tokens together with a shared learnable *mask token* in every hidden slot,
and predicts the pixels of every patch. The loss is the mean squared error on the hidden
patches only, optionally against per-patch normalised pixels (``norm_pix_loss``). Both
encoder and decoder use fixed 2-D sine-cosine position embeddings.

Parameter names follow the reference implementation (facebookresearch/mae), and the encoder
part (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``) uses exactly the
names of :class:`~vitfas.models.vit.VisionTransformer`: :meth:`MaskedAutoencoderViT.to_vit`
(or :func:`encoder_state_dict` + :func:`vit_config_from_mae`) turns a pre-trained MAE into a
ViT for fine-tuning with nothing missing but the classifier head.

Masking conventions, shared with the reference and with ``transformers``'
``ViTMAEForPreTraining``: per-sample uniform noise ``[B, N]`` is argsorted; the patches with
the smallest noise are kept, in that (shuffled) order; ``mask`` is ``[B, N]`` with 1 = hidden,
0 = visible, in the original patch order; ``ids_restore`` undoes the shuffle. Passing the same
``noise`` to this model and to ``ViTMAEForPreTraining`` gives the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitfas.models._config import ConfigDict, check_image_batch, to_pair
from vitfas.models.attention import Block
from vitfas.models.convstem import ConvStem, ConvStemVisionTransformer, ConvStemViTConfig
from vitfas.models.pos_embed import resample_pos_embed, sincos_2d
from vitfas.models.registry import register_model
from vitfas.models.vit import PatchEmbed, VisionTransformer, ViTConfig


@dataclass(frozen=True)
class MAEConfig(ConfigDict):
    """Every choice that shapes a :class:`MaskedAutoencoderViT`.

    Attributes:
        img_size: input ``(H, W)`` (an int means square); pre-training runs at this size.
        patch_size: side of the square patches (also the unit of masking).
        in_chans: input channels.
        embed_dim, depth, num_heads, mlp_ratio: the encoder ViT.
        decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio: the decoder.
        qkv_bias: bias on the query/key/value projections.
        norm_eps: LayerNorm epsilon (reference MAE: 1e-6; Hugging Face: 1e-12).
        gelu: ``"none"`` for exact GELU, ``"tanh"`` for the tanh approximation.
        mask_ratio: fraction of patches hidden per sample, in ``[0, 1)``.
        norm_pix_loss: regress per-patch normalised pixels (mean 0, unit variance per patch).
        drop_path_rate: stochastic depth in the encoder (0 in the paper).
        stem: the encoder's patch embedding: ``"linear"`` (the paper's, one linear map per
            patch), or a convolutional stem (:class:`~vitfas.models.convstem.ConvStem`) of
            plain (``"conv"``) or central-difference (``"cdc"``) stride-2 convolutions, as in
            :class:`~vitfas.models.convstem.ConvStemVisionTransformer`. The stem's
            convolutions see across patch borders, so with a conv stem the hidden patches
            are zeroed in the input before the stem: visible tokens carry no hidden pixels.
        stem_channels: channels of the stem's stride-2 convolutions, ``2 ** len == patch_size``
            (only with a conv stem).
        cdc_theta: CDC's theta (only with ``stem="cdc"``).
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    gelu: Literal["none", "tanh"] = "none"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    drop_path_rate: float = 0.0
    stem: Literal["linear", "conv", "cdc"] = "linear"
    stem_channels: tuple[int, ...] = ()
    cdc_theta: float = 0.7

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", to_pair(self.img_size))
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        n = len(self.stem_channels)
        checks = [
            (self.stem in ("linear", "conv", "cdc"),
             f"stem must be linear|conv|cdc, got {self.stem!r}"),
            (self.stem == "linear" or (n > 0 and 2 ** n == self.patch_size),
             f"a {self.stem} stem needs patch_size = 2**len(stem_channels); got patch_size "
             f"{self.patch_size}, stem_channels={list(self.stem_channels)}"),
            (self.patch_size > 0, f"patch_size must be positive, got {self.patch_size}"),
            (self.embed_dim % self.num_heads == 0,
             f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"),
            (self.decoder_embed_dim % self.decoder_num_heads == 0,
             f"decoder_embed_dim {self.decoder_embed_dim} is not divisible by "
             f"decoder_num_heads {self.decoder_num_heads}"),
            (self.embed_dim % 4 == 0,
             f"embed_dim must be divisible by 4 for the sin-cos embedding, got {self.embed_dim}"),
            (self.decoder_embed_dim % 4 == 0,
             f"decoder_embed_dim must be divisible by 4 for the sin-cos embedding, got "
             f"{self.decoder_embed_dim}"),
            (0.0 <= self.mask_ratio < 1.0, f"mask_ratio must be in [0, 1), got {self.mask_ratio}"),
            (self.gelu in ("none", "tanh"), f"gelu must be none|tanh, got {self.gelu!r}"),
            (self.depth >= 0 and self.decoder_depth >= 0, "depths must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"MAEConfig: {msg}")
        for side, name in zip(self.img_size, ("height", "width")):
            if side % self.patch_size:
                raise ValueError(
                    f"MAEConfig: image {name} {side} is not divisible by patch size "
                    f"{self.patch_size}"
                )

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(H/P, W/P)``."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        """``N = H/P * W/P``."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def patch_dim(self) -> int:
        """Pixels per patch, ``P * P * C`` (the decoder's output width)."""
        return self.patch_size**2 * self.in_chans



def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Patches kept visible per sample: ``round(N * (1 - mask_ratio))``, at least 1.

    The reference code and ``transformers`` truncate (``int(...)``); rounding gives the same
    count whenever ``N * (1 - mask_ratio)`` is a whole number (the usual case, e.g. 49 of 196
    at 0.75) and avoids losing a patch to floating-point error (``int(10 * (1 - 0.9)) == 0``).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return min(num_patches, max(1, round(num_patches * (1.0 - mask_ratio))))


class MAEOutput(NamedTuple):
    """What :meth:`MaskedAutoencoderViT.forward` returns.

    Attributes:
        loss: scalar, mean squared error over the hidden patches.
        pred: ``[B, N, P*P*C]`` predicted pixels of every patch, in patch order (in the
            normalised-patch space when ``norm_pix_loss``).
        mask: ``[B, N]`` float, 1 = hidden, 0 = visible.
        ids_restore: ``[B, N]`` long, the inverse of the masking shuffle.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W] -> [B, N, P*P*C]``, patches row-major, pixels ``(row, col, channel)``.

    This is the reference MAE layout (channel fastest within a patch), used for the targets.
    """
    B, C, H, W = imgs.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size {p}")
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(
    x: torch.Tensor, patch_size: int, grid_size: tuple[int, int], in_chans: int = 3
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, P*P*C] -> [B, C, H, W]``."""
    B, N, D = x.shape
    h, w = grid_size
    p = patch_size
    if h * w != N or p * p * in_chans != D:
        raise ValueError(
            f"cannot unpatchify [B, {N}, {D}] into a {h}x{w} grid of {p}x{p}x{in_chans} patches "
            f"(expected [B, {h * w}, {p * p * in_chans}])"
        )
    x = x.reshape(B, h, w, p, p, in_chans).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, in_chans, h * p, w * p)


def masking_noise(noise: torch.Tensor | None, batch: int, num_patches: int,
                  device: torch.device | str) -> torch.Tensor:
    """``noise`` checked to be ``[batch, num_patches]``, or uniform random noise of that
    shape on ``device`` when ``None``."""
    if noise is None:
        return torch.rand(batch, num_patches, device=device)
    if tuple(noise.shape) != (batch, num_patches):
        raise ValueError(
            f"masking noise must be [batch, num_patches] = [{batch}, {num_patches}], got "
            f"{list(noise.shape)}"
        )
    return noise


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by argsorting noise.

    Args:
        x: ``[B, N, D]`` patch tokens.
        mask_ratio: fraction hidden; ``round(N * (1 - mask_ratio))`` are kept
            (:func:`num_visible`).
        noise: ``[B, N]`` (any real values; smaller = kept first); uniform random if None.

    Returns:
        ``(x_visible [B, K, D], mask [B, N] (1 hidden), ids_restore [B, N], ids_keep [B, K])``.
    """
    B, N, D = x.shape
    keep = num_visible(N, mask_ratio)
    noise = masking_noise(noise, B, N, x.device)
    ids_shuffle = torch.argsort(noise.to(x.device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    mask = torch.ones(B, N, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return x_visible, mask, ids_restore, ids_keep


def per_patch_normalise(target: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, ...]:
    """Normalise each patch to mean 0, unit variance (unbiased variance, as in MAE).

    Args:
        target: ``[B, N, P*P*C]`` patch pixels.

    Returns:
        ``(normalised [B, N, P*P*C], mean [B, N, 1], std [B, N, 1])`` with
        ``std = sqrt(var + eps)``.
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    std = (var + eps) ** 0.5
    return (target - mean) / std, mean, std


class MaskedAutoencoderViT(nn.Module):
    """MAE: a ViT encoder on the visible patches and a light Transformer decoder.

    Shapes (B batch, N patches, K = visible patches, D / D' encoder / decoder width):
        ``forward(imgs [B, C, H, W], mask_ratio=None, noise=None)`` -> :class:`MAEOutput`
        ``forward_encoder`` -> ``([B, 1 + K, D], mask [B, N], ids_restore [B, N])``
        ``forward_decoder(latent, ids_restore)`` -> ``[B, N, P*P*C]``
        ``forward_loss(imgs, pred, mask)`` -> scalar
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        c = self.config = config
        self.grad_checkpointing = False
        n = c.num_patches

        # ---- encoder (names as in VisionTransformer / ConvStemVisionTransformer)
        self.patch_embed: nn.Module
        if c.stem == "linear":
            self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        else:
            self.patch_embed = ConvStem(c.in_chans, c.stem_channels, c.embed_dim, c.stem,
                                        c.cdc_theta)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        pos = torch.cat([torch.zeros(1, c.embed_dim), sincos_2d(c.grid_size, c.embed_dim)])
        self.register_buffer("pos_embed", pos.unsqueeze(0))  # [1, 1 + N, D], fixed
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.norm_eps, c.gelu,
                  drop_path=dpr[i])
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)

        # ---- decoder
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        dpos = torch.cat(
            [torch.zeros(1, c.decoder_embed_dim), sincos_2d(c.grid_size, c.decoder_embed_dim)]
        )
        self.register_buffer("decoder_pos_embed", dpos.unsqueeze(0))  # [1, 1 + N, D']
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.decoder_mlp_ratio, c.qkv_bias,
                  c.norm_eps, c.gelu)
            for _ in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=c.norm_eps)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_dim)
        assert self.pos_embed.shape[1] == n + 1
        self.init_weights()

    # ------------------------------------------------------------------ init & utilities
    def init_weights(self) -> None:
        """The reference initialisation: xavier-uniform linears (and patch projection as a
        linear), zero biases, LayerNorm (1, 0), class and mask tokens N(0, 0.02)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if isinstance(self.patch_embed, ConvStem):  # as ConvStemVisionTransformer's stem
            self.patch_embed.init_weights(proj=False)  # the projection is initialised above
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Names excluded from weight decay beyond biases and norms: none. The reference
        pre-training decays the class and mask tokens (the position embeddings are fixed)."""
        return set()

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, N, P*P*C]`` (see :func:`patchify`)."""
        return patchify(imgs, self.config.patch_size)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, P*P*C] -> [B, C, H, W]``."""
        c = self.config
        return unpatchify(x, c.patch_size, c.grid_size, c.in_chans)

    def _run(self, blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, x, use_reentrant=False)[0]
        return blk(x)[0]

    def _check_input(self, imgs: torch.Tensor) -> None:
        c = self.config
        check_image_batch(imgs, c.in_chans, None)
        if tuple(imgs.shape[-2:]) != c.img_size:
            raise ValueError(
                f"MAE was built for {c.img_size[0]}x{c.img_size[1]} inputs, got "
                f"{imgs.shape[-2]}x{imgs.shape[-1]}; resize, or build it with "
                f"img_size={tuple(imgs.shape[-2:])}"
            )

    def pixel_mask(self, noise: torch.Tensor, mask_ratio: float) -> torch.Tensor:
        """The mask :func:`random_masking` draws from ``noise [B, N]``, as pixels:
        ``[B, 1, H, W]``, 1 on the hidden patches, 0 on the visible ones."""
        keep = num_visible(noise.shape[1], mask_ratio)
        ids_shuffle = torch.argsort(noise, dim=1)
        mask = torch.ones_like(noise, dtype=torch.float32)
        mask.scatter_(1, ids_shuffle[:, :keep], 0.0)
        gh, gw = self.config.grid_size
        p = self.config.patch_size
        return mask.view(-1, 1, gh, 1, gw, 1).expand(-1, -1, -1, p, -1, p).reshape(
            -1, 1, gh * p, gw * p)

    # ------------------------------------------------------------------ forward pieces
    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches.

        Args:
            imgs: ``[B, C, H, W]``.
            mask_ratio: fraction hidden (the config's when None).
            noise: ``[B, N]`` masking noise (uniform random when None).

        Returns:
            ``(latent [B, 1 + K, D] with the class token first, mask [B, N], ids_restore [B, N])``.
        """
        self._check_input(imgs)
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        if isinstance(self.patch_embed, ConvStem):
            # the stem's receptive field crosses patch borders: hide the masked pixels first
            noise = masking_noise(noise, imgs.shape[0], self.config.num_patches, imgs.device)
            imgs = imgs * (1.0 - self.pixel_mask(noise, ratio)).to(imgs.dtype)
        x = self.patch_embed(imgs).flatten(1, 2)  # [B, N, D]
        x = x + self.pos_embed[:, 1:].to(x.dtype)
        x, mask, ids_restore, _ = random_masking(x, ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls.to(x.dtype), x], dim=1)
        for blk in self.blocks:
            x = self._run(blk, x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch's pixels.

        Args:
            latent: ``[B, 1 + K, D]`` encoder output (class token first).
            ids_restore: ``[B, N]`` from the masking.

        Returns:
            ``[B, N, P*P*C]`` in patch order.
        """
        x = self.decoder_embed(latent)  # [B, 1 + K, D']
        B, _, Dd = x.shape
        N = ids_restore.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(B, N + 1 - x.shape[1], -1)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # shuffled order, [B, N, D']
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # unshuffle
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed.to(x.dtype)
        for blk in self.decoder_blocks:
            x = self._run(blk, x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:]

    def target(self, imgs: torch.Tensor) -> torch.Tensor:
        """The regression target ``[B, N, P*P*C]`` (per-patch normalised if configured)."""
        t = self.patchify(imgs)
        if self.config.norm_pix_loss:
            t = per_patch_normalise(t)[0]
        return t

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error per patch, averaged over the hidden patches only.

        Args:
            imgs: ``[B, C, H, W]`` the input images.
            pred: ``[B, N, P*P*C]``.
            mask: ``[B, N]``, 1 = hidden.

        Returns:
            Scalar loss (float32 when computed under autocast).
        """
        target = self.target(imgs.float())
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)  # [B, N]
        mask = mask.float()
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> MAEOutput:
        """Mask, encode, decode and score.

        Args:
            imgs: ``[B, C, H, W]`` normalised images of the configured size.
            mask_ratio: fraction hidden (the config's when None).
            noise: ``[B, N]`` masking noise; pass the same tensor to get the same masks
                (here and in ``transformers``' ``ViTMAEForPreTraining``).

        Returns:
            :class:`MAEOutput` ``(loss, pred [B, N, P*P*C], mask [B, N], ids_restore [B, N])``.
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return MAEOutput(loss, pred, mask, ids_restore)

    @torch.no_grad()
    def reconstruct(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Images for looking at: the input with hidden patches blanked, the prediction, and
        the prediction pasted into the visible patches.

        With ``norm_pix_loss`` the prediction lives in per-patch normalised space; it is
        mapped back with each true patch's own mean and standard deviation (as is customary
        for MAE visualisations), so the picture shows structure, not absolute brightness.

        Returns:
            dict of ``[B, C, H, W]`` tensors in the input's (normalised) space: ``"masked"``
            (hidden patches set to 0), ``"pred"`` (every patch predicted), ``"pasted"``
            (visible patches from the input, hidden ones predicted); plus ``"mask"``
            ``[B, N]`` and ``"loss"`` (scalar).
        """
        out = self.forward(imgs, mask_ratio, noise)
        pred = out.pred.float()
        if self.config.norm_pix_loss:
            _, mean, std = per_patch_normalise(self.patchify(imgs.float()))
            pred = pred * std + mean
        m = out.mask.unsqueeze(-1)  # [B, N, 1]
        patches = self.patchify(imgs.float())
        return {
            "masked": self.unpatchify(patches * (1 - m)),
            "pred": self.unpatchify(pred),
            "pasted": self.unpatchify(patches * (1 - m) + pred * m),
            "mask": out.mask,
            "loss": out.loss,
        }

    # ------------------------------------------------------------------ to a ViT
    def vit_config(self, num_classes: int = 0, **overrides: Any) -> ViTConfig:
        """The :class:`ViTConfig` of this model's encoder (see :func:`vit_config_from_mae`)."""
        return vit_config_from_mae(self.config, num_classes=num_classes, **overrides)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under ViT names (see :func:`encoder_state_dict`)."""
        return encoder_state_dict(self.state_dict())

    def to_vit(self, num_classes: int = 0, **overrides: Any) -> VisionTransformer:
        """A :class:`VisionTransformer` holding this encoder's weights, ready to fine-tune.

        The ViT has a learnable position embedding initialised from the fixed sin-cos one
        (the MAE fine-tuning recipe) and a freshly initialised head of ``num_classes``.
        ``overrides`` go to the :class:`ViTConfig` (e.g. ``drop_path_rate=0.1``,
        ``global_pool="avg", fc_norm=False``, or another ``img_size``, for which the
        position embedding is resampled with the ViT's kernel).
        """
        cfg = self.vit_config(num_classes, **overrides)
        vit = (ConvStemVisionTransformer(cfg) if isinstance(cfg, ConvStemViTConfig)
               else VisionTransformer(cfg))
        sd = self.encoder_state_dict()
        if vit.config.grid_size != self.config.grid_size:  # fine-tuning at another size
            sd["pos_embed"] = resample_pos_embed(
                sd["pos_embed"], vit.config.grid_size, self.config.grid_size,
                num_prefix_tokens=1, interpolation=vit.config.pos_embed_interp,
                antialias=vit.config.pos_embed_antialias,
            )
        missing, unexpected = vit.load_state_dict(sd, strict=False)
        bad = [k for k in missing if not k.startswith("head.")] + list(unexpected)
        if bad:  # pragma: no cover - guarded by the tests of vit_config_from_mae
            raise RuntimeError(f"MAE encoder does not fit the ViT: {bad}")
        vit.to(self.cls_token.device)
        return vit


DECODER_PREFIXES = ("decoder_", "mask_token")


def encoder_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the decoder (``decoder_*``, ``mask_token``) from an MAE state dict.

    The remaining keys (``patch_embed.*``, ``cls_token``, ``pos_embed``, ``blocks.*``,
    ``norm.*``) are exactly those of a :class:`VisionTransformer` built from
    :func:`vit_config_from_mae`, minus its ``head``.
    """
    return {k: v for k, v in state_dict.items() if not k.startswith(DECODER_PREFIXES)}


def vit_config_from_mae(config: MAEConfig, num_classes: int = 0, **overrides: Any) -> ViTConfig:
    """The :class:`ViTConfig` whose parameters match an MAE encoder.

    Class token, learnable absolute position embedding over ``1 + N`` tokens (initialised
    from MAE's fixed sin-cos one when loaded), final LayerNorm, same width/depth/heads/eps.
    ``overrides`` change anything else (pooling, drop path, ...). With
    ``global_pool="avg"`` pass ``fc_norm=False`` to keep the encoder's final norm (loads
    cleanly); ``fc_norm=True`` (the MAE fine-tuning default) starts a new, untrained
    ``fc_norm`` instead.
    """
    c = config
    base: dict[str, Any] = {
        "img_size": c.img_size,
        "patch_size": c.patch_size,
        "in_chans": c.in_chans,
        "num_classes": num_classes,
        "embed_dim": c.embed_dim,
        "depth": c.depth,
        "num_heads": c.num_heads,
        "mlp_ratio": c.mlp_ratio,
        "qkv_bias": c.qkv_bias,
        "norm_eps": c.norm_eps,
        "gelu": c.gelu,
        "pos_embed": "learn",
        "pos_embed_on_prefix": True,
        "class_token": True,
        "drop_path_rate": c.drop_path_rate,
    }
    if c.stem != "linear":  # the conv-stem ViT of vitfas.models.convstem
        base.update(stem=c.stem, stem_channels=c.stem_channels, cdc_theta=c.cdc_theta)
        base.update(overrides)
        return ConvStemViTConfig(**base)
    base.update(overrides)
    return ViTConfig(**base)


def _register() -> None:
    # Reference sizes (facebookresearch/mae): decoder 512 wide, 8 deep, 16 heads.
    ref = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
    specs: list[tuple[str, dict[str, Any], str | None]] = [
        ("mae_vit_base_patch16", {"embed_dim": 768, "depth": 12, "num_heads": 12, **ref},
         "facebook/vit-mae-base"),
        ("mae_vit_large_patch16", {"embed_dim": 1024, "depth": 24, "num_heads": 16, **ref},
         "facebook/vit-mae-large"),
        ("mae_vit_huge_patch14", {"embed_dim": 1280, "depth": 32, "num_heads": 16,
                                  "patch_size": 14, **ref},
         "facebook/vit-mae-huge"),
        # Smaller encoders for small FAS corpora (not in the paper): a 4-block decoder whose
        # size relative to the encoder (~15 %) stays close to the paper's ViT-B (~30 %).
        ("mae_vit_tiny_patch16", {"embed_dim": 192, "depth": 12, "num_heads": 3,
                                  "decoder_embed_dim": 128, "decoder_depth": 4,
                                  "decoder_num_heads": 4}, None),
        ("mae_vit_small_patch16", {"embed_dim": 384, "depth": 12, "num_heads": 6,
                                   "decoder_embed_dim": 256, "decoder_depth": 4,
                                   "decoder_num_heads": 8}, None),
        # The encoder of the from-scratch recipe (vit_cdcstem_w64_p8_64: 64 px, CDC stem
        # 16/32/64, width 64, depth 4, 2 heads) with a 2-block decoder of the same width.
        ("mae_vit_cdcstem_w64_p8_64", {"img_size": 64, "patch_size": 8, "embed_dim": 64,
                                       "depth": 4, "num_heads": 2, "decoder_embed_dim": 64,
                                       "decoder_depth": 2, "decoder_num_heads": 2,
                                       "stem": "cdc", "stem_channels": (16, 32, 64)}, None),
    ]
    for name, kw, hub in specs:
        register_model(name, MAEConfig(**kw), builder=MaskedAutoencoderViT, hub_id=hub)


_register()


__all__ = [
    "MAEConfig",
    "MAEOutput",
    "MaskedAutoencoderViT",
    "encoder_state_dict",
    "masking_noise",
    "num_visible",
    "patchify",
    "per_patch_normalise",
    "random_masking",
    "unpatchify",
    "vit_config_from_mae",
]
