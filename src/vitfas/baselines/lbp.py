"""Uniform local binary pattern (LBP) histograms of face crops, grey or colour texture.

Recipe (:class:`LBPConfig`):

1. the RGB crop is resized to ``size x size`` (area interpolation when shrinking, bilinear
   when enlarging);
2. it is split into channels: ``gray`` = one luma plane (OpenCV's RGB->GRAY); ``color`` =
   the six planes Y, Cb, Cr (YCbCr) and H, S, V (HSV), all uint8 as OpenCV converts them,
   after Boulkenafet, Komulainen & Hadid, "Face spoofing detection using colour texture
   analysis", IEEE TIFS 2016;
3. on each plane and each radius ``R`` the LBP codes with ``P`` neighbours are computed by
   :func:`skimage.feature.local_binary_pattern` (default ``method="nri_uniform"``: the
   ``P (P - 1) + 2`` uniform patterns, 59 bins for ``P = 8``, the classic LBP^{u2}_{8,1};
   ``method="uniform"`` gives the ``P + 2`` rotation-invariant bins);
4. only interior pixels, whose whole circle of neighbours lies inside the image (a border
   of ``ceil(R)`` pixels is left out), are counted; each histogram is normalised to sum 1;
5. with ``cells = n > 1`` the interior is cut into an ``n x n`` grid of cells exactly as the
   LBP-token ViT cuts it (:func:`vitfas.models.lbptokens.cell_bounds`: cell ``i`` of ``m``
   interior rows covers rows ``floor(i m / n) .. floor((i + 1) m / n) - 1``, columns alike)
   and each cell gets its own normalised histogram (row-major cells), which keeps where on
   the face a texture occurs;
6. the histograms are concatenated in the order channel, radius, cell:
   ``[ch0 R0 cell0, ch0 R0 cell1, ..., ch0 R1 cell0, ..., ch1 R0 cell0, ...]``.

A constant image therefore has every interior code equal to the "all neighbours >= centre"
pattern: bin ``P (P - 1) + 1`` (57 for ``P = 8``) with ``nri_uniform``, bin ``P`` with
``uniform``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitfas.errors import BadConfigError, BadImageError

FEATURES = ("gray", "color")
METHODS = ("nri_uniform", "uniform")
COLOUR_CHANNELS = ("Y", "Cb", "Cr", "H", "S", "V")
DEFAULT_SIZE = 64


@dataclass(frozen=True)
class LBPConfig:
    """The feature recipe, saved in the baseline bundle's ``config.json``.

    Attributes:
        features: ``"gray"`` or ``"color"`` (YCbCr + HSV planes).
        size: side of the square the crop is resized to before LBP.
        points: neighbours per circle, ``P``.
        radii: circle radii ``R``; more than one gives a multi-scale descriptor.
        method: ``"nri_uniform"`` (uniform patterns, not rotation invariant) or
            ``"uniform"`` (rotation-invariant uniform patterns).
        cells: ``n`` cuts the interior into ``n x n`` cells with one histogram each
            (1 = one histogram of the whole crop, the classic global descriptor).
    """

    features: str = "gray"
    size: int = DEFAULT_SIZE
    points: int = 8
    radii: tuple[float, ...] = (1.0,)
    method: str = "nri_uniform"
    cells: int = 1

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise BadConfigError(f"LBP features: expected one of {FEATURES}, got "
                                 f"{self.features!r}")
        if self.method not in METHODS:
            raise BadConfigError(f"LBP method: expected one of {METHODS}, got {self.method!r}")
        if not (isinstance(self.points, int) and self.points >= 2):
            raise BadConfigError(f"LBP points: expected an int >= 2, got {self.points!r}")
        radii = tuple(float(r) for r in self.radii)
        if not radii or any(r <= 0 for r in radii):
            raise BadConfigError(f"LBP radii: expected one or more numbers > 0, got "
                                 f"{self.radii!r}")
        object.__setattr__(self, "radii", radii)
        border = max(math.ceil(r) for r in radii)
        if not (isinstance(self.size, int) and self.size > 2 * border):
            raise BadConfigError(
                f"LBP size: expected an int > {2 * border} (twice the largest radius), got "
                f"{self.size!r}"
            )
        if not (isinstance(self.cells, int) and 1 <= self.cells <= self.size - 2 * border):
            raise BadConfigError(
                f"LBP cells: expected an int from 1 to {self.size - 2 * border} (the interior "
                f"side at size {self.size}), got {self.cells!r}"
            )

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the planes the histograms are computed on, in feature order."""
        return ("gray",) if self.features == "gray" else COLOUR_CHANNELS

    @property
    def bins(self) -> int:
        """Histogram bins per plane and radius."""
        p = self.points
        return p * (p - 1) + 3 if self.method == "nri_uniform" else p + 2

    @property
    def length(self) -> int:
        """Feature vector length: ``channels x radii x cells^2 x bins``."""
        return len(self.channels) * len(self.radii) * self.cells ** 2 * self.bins

    def to_dict(self) -> dict[str, Any]:
        """JSON form (with the derived ``channels``, ``bins`` and ``length`` for readers)."""
        return {"features": self.features, "size": self.size, "points": self.points,
                "radii": list(self.radii), "method": self.method, "cells": self.cells,
                "channels": list(self.channels), "bins": self.bins, "length": self.length}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LBPConfig:
        """Inverse of :meth:`to_dict` (derived keys are checked, not trusted; a dict
        without ``cells``, from before cells existed, means 1)."""
        keys = ("features", "size", "points", "radii", "method")
        missing = [k for k in keys if k not in d]
        if missing:
            raise BadConfigError(f"LBP config lacks {missing}; found keys {sorted(d)}")
        cfg = cls(str(d["features"]), int(d["size"]), int(d["points"]),
                  tuple(float(r) for r in d["radii"]), str(d["method"]),
                  int(d.get("cells", 1)))
        if "length" in d and int(d["length"]) != cfg.length:
            raise BadConfigError(
                f"LBP config says length {d['length']} but its recipe gives {cfg.length}"
            )
        return cfg


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` uint8 (area when shrinking, else bilinear)."""
    import cv2

    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise BadImageError(f"expected an [H, W, 3] uint8 RGB image, got {shape}")
    if rgb.shape[:2] == (size, size):
        return rgb
    shrink = rgb.shape[0] > size or rgb.shape[1] > size
    return cv2.resize(rgb, (size, size),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def channel_planes(rgb: np.ndarray, features: str) -> np.ndarray:
    """The planes LBP runs on: ``[H, W, 3]`` uint8 RGB -> ``[C, H, W]`` uint8.

    ``gray``: ``C = 1`` (luma); ``color``: ``C = 6`` in the order Y, Cb, Cr, H, S, V (H in
    OpenCV's 0..179 range, the rest 0..255).
    """
    import cv2

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if features == "gray":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[None]
    if features == "color":
        ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        return np.stack([ycrcb[..., 0], ycrcb[..., 2], ycrcb[..., 1],
                         hsv[..., 0], hsv[..., 1], hsv[..., 2]])
    raise BadConfigError(f"LBP features: expected one of {FEATURES}, got {features!r}")


def lbp_histogram(plane: np.ndarray, points: int = 8, radius: float = 1.0,
                  method: str = "nri_uniform", cells: int = 1) -> np.ndarray:
    """Normalised histogram(s) of the LBP codes of one ``[H, W]`` plane's interior pixels.

    Returns:
        ``[cells^2 * bins]`` float64: one histogram per cell of an ``cells x cells`` grid
        over the interior (row-major), each summing to 1; ``bins = P (P - 1) + 3``
        (``nri_uniform``) or ``P + 2`` (``uniform``).
    """
    from skimage.feature import local_binary_pattern

    if plane.ndim != 2:
        raise BadImageError(f"LBP needs a 2-D plane, got shape {plane.shape}")
    b = math.ceil(radius)
    if plane.shape[0] <= 2 * b or plane.shape[1] <= 2 * b:
        raise BadImageError(
            f"plane {plane.shape} too small for LBP radius {radius} (needs > {2 * b} pixels)"
        )
    codes = local_binary_pattern(plane, points, radius, method)[b:-b, b:-b].astype(np.int64)
    if cells > min(codes.shape):
        raise BadImageError(f"LBP interior {codes.shape} is too small for {cells} x {cells} cells")
    bins = points * (points - 1) + 3 if method == "nri_uniform" else points + 2
    from vitfas.models.lbptokens import cell_bounds  # the LBP-token ViT's cells

    hists = []
    for r0, r1 in cell_bounds(codes.shape[0], cells):
        for c0, c1 in cell_bounds(codes.shape[1], cells):
            hist = np.bincount(codes[r0:r1, c0:c1].ravel(), minlength=bins).astype(np.float64)
            if hist.shape[0] != bins:  # pragma: no cover - skimage's code range is fixed
                raise BadImageError(f"LBP gave codes up to {hist.shape[0] - 1}, expected < {bins}")
            hists.append(hist / hist.sum())
    return np.concatenate(hists)


def lbp_features(rgb: np.ndarray, cfg: LBPConfig) -> np.ndarray:
    """One face crop -> its descriptor.

    Args:
        rgb: ``[H, W, 3]`` uint8 RGB face crop (any size; resized to ``cfg.size``).
        cfg: the recipe.

    Returns:
        ``[cfg.length]`` float64: concatenated per-plane, per-radius, per-cell normalised
        histograms.
    """
    planes = channel_planes(resize_square(rgb, cfg.size), cfg.features)
    out = np.concatenate([lbp_histogram(pl, cfg.points, r, cfg.method, cfg.cells)
                          for pl in planes for r in cfg.radii])
    if out.shape != (cfg.length,):  # pragma: no cover - guarded by LBPConfig
        raise BadConfigError(f"LBP descriptor has shape {out.shape}, expected ({cfg.length},)")
    return out


def lbp_features_batch(crops: Sequence[np.ndarray], cfg: LBPConfig) -> np.ndarray:
    """Several crops -> ``[N, cfg.length]`` float64 (``[0, length]`` for no crops)."""
    if len(crops) == 0:
        return np.zeros((0, cfg.length))
    return np.stack([lbp_features(c, cfg) for c in crops])
