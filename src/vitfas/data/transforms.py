"""Image transforms for training and evaluation (torchvision.transforms.v2).

Input: an ``[H, W, 3]`` uint8 RGB ``np.ndarray`` or a PIL image (a face crop). Output: a
normalised ``[3, H, W]`` float32 tensor.

- train: ``RandomResizedCrop`` -> horizontal flip -> (small rotation) -> colour jitter ->
  (random grayscale) -> (Gaussian blur) -> (JPEG re-encoding) -> to float -> normalise ->
  (random erasing).
- eval: ``Resize`` to the input size -> to float -> normalise.

Colour jitter is kept mild by default: colour and sharpness are themselves spoof cues
(print gamut, screen moire), so strong photometric augmentation can erase what the model
must learn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from vitfas.errors import BadConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (``build_transforms(..., **aug)`` keys).

    Attributes:
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect-ratio range.
        hflip: probability of a horizontal flip.
        rotation: maximum rotation in degrees (0: off).
        brightness, contrast, saturation, hue: ColorJitter strengths (all 0: off).
        grayscale: probability of converting to grayscale.
        blur: probability of a Gaussian blur (kernel 3, sigma 0.1-1.5).
        erasing: probability of RandomErasing (on the normalised tensor).
        jpeg: probability of re-encoding as JPEG (the capture and upload chain of a real
            photo; varies compression without touching the texture scale).
        jpeg_quality: JPEG quality range drawn from, ``[low, high]`` in 1..100.
    """

    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    rotation: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.02
    grayscale: float = 0.0
    blur: float = 0.0
    erasing: float = 0.0
    jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (50, 95)


class RandomJPEG(torch.nn.Module):
    """With probability ``p``, re-encode a ``[3, H, W]`` uint8 image as JPEG at a quality
    drawn uniformly from ``quality`` (inclusive), with Pillow; randomness from torch's RNG
    (so the training engine's per-sample seeding makes it reproducible)."""

    def __init__(self, p: float, quality: tuple[int, int]) -> None:
        super().__init__()
        self.p, self.quality = float(p), (int(quality[0]), int(quality[1]))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``[3, H, W]`` uint8 -> the same shape and dtype."""
        if img.dtype != torch.uint8 or img.ndim != 3:
            raise ValueError(f"RandomJPEG expects a [3, H, W] uint8 image, got "
                             f"{img.dtype} {list(img.shape)}")
        if torch.rand(()) >= self.p:
            return img
        import io

        import numpy as np
        from PIL import Image

        q = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("RGB"))
        return torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous()


def _size(img_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_size, int):
        return (img_size, img_size)
    s = tuple(int(v) for v in img_size)
    if len(s) != 2 or min(s) < 1:
        raise BadConfigError(f"img_size: expected an int or [H, W], got {img_size!r}")
    return s  # type: ignore[return-value]


def build_transforms(
    train: bool,
    img_size: int | Sequence[int] = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    **aug: Any,
) -> v2.Compose:
    """Build the train or eval transform.

    Args:
        train: random augmentation when True; deterministic resize when False.
        img_size: output ``H = W`` or ``[H, W]``.
        mean, std: per-channel normalisation (3 values each).
        **aug: :class:`AugmentConfig` fields for training; unknown keys are an error that
            lists the valid ones. Ignored when ``train`` is False.

    Returns:
        A ``v2.Compose`` mapping an RGB uint8 array / PIL image to a ``[3, H, W]`` float32
        tensor.
    """
    valid = [f.name for f in dataclasses.fields(AugmentConfig)]
    unknown = sorted(set(aug) - set(valid))
    if unknown:
        raise BadConfigError(
            f"augmentation: unknown key(s) {unknown}; valid keys: {', '.join(valid)}"
        )
    if len(mean) != 3 or len(std) != 3:
        raise BadConfigError(f"mean/std: expected 3 values each, got {list(mean)}, {list(std)}")
    if any(float(s) <= 0 for s in std):
        raise BadConfigError(f"std: expected positive values, got {list(std)}")
    size = _size(img_size)
    head: list[Any] = [v2.ToImage()]
    tail: list[Any] = [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std]),
    ]
    if not train:
        return v2.Compose([*head, v2.Resize(size, antialias=True), *tail])
    cfg = AugmentConfig(**aug)
    ops: list[Any] = [
        v2.RandomResizedCrop(size, scale=tuple(cfg.scale), ratio=tuple(cfg.ratio), antialias=True)
    ]
    if cfg.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(p=cfg.hflip))
    if cfg.rotation > 0:
        ops.append(v2.RandomRotation(cfg.rotation))
    if any((cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)):
        ops.append(v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue))
    if cfg.grayscale > 0:
        ops.append(v2.RandomGrayscale(p=cfg.grayscale))
    if cfg.blur > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.5))], p=cfg.blur))
    if cfg.jpeg > 0:
        lo, hi = (int(q) for q in cfg.jpeg_quality)
        if not 1 <= lo <= hi <= 100:
            raise BadConfigError(f"augmentation jpeg_quality: expected [low, high] with "
                                 f"1 <= low <= high <= 100, got {list(cfg.jpeg_quality)}")
        ops.append(RandomJPEG(cfg.jpeg, (lo, hi)))
    post: list[Any] = [v2.RandomErasing(p=cfg.erasing)] if cfg.erasing > 0 else []
    return v2.Compose([*head, *ops, *tail, *post])
