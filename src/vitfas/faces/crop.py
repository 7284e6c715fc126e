"""Square face crops and the crop recipe saved with every model.

The crop is a square centred on the detector's box, with side ``scale * max(box w, box h)``
(``1.0`` tight as in the OCIM papers, ``1.3`` as CDCN, ``2.7`` as Silent-Face). Where the
square leaves the image it is padded — with black (``pad="constant"``, the default: it adds
no texture a spoof detector could mistake for a cue) or by repeating the border pixels
(``pad="replicate"``) — so the face stays centred and its scale is the same wherever it
sits in the frame. The square is then resized to ``size x size`` (area interpolation when
shrinking, bilinear when enlarging).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from vitfas.errors import BadConfigError, BadImageError
from vitfas.faces.detectors import (
    Detector,
    Face,
    get_detector,
    resolve_detector_name,
)

PAD_MODES = ("constant", "replicate")
COLOUR_ORDERS = ("RGB", "BGR")


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def square_box(
    box: tuple[float, float, float, float], scale: float
) -> tuple[int, int, int]:
    """Integer square around a box: ``(x0, y0, side)``.

    ``side = round(scale * max(w, h))`` (at least 1); the square's centre is the box's
    centre, ``x0 = round(cx - side / 2)``. ``x0``/``y0`` may be negative and the square may
    extend past the image: :func:`crop_square` pads.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise BadImageError(f"face box {box}: expected positive width and height")
    if scale <= 0:
        raise BadConfigError(f"crop scale: expected > 0, got {scale}")
    side = max(1, _round(max(w, h) * scale))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return _round(cx - side / 2.0), _round(cy - side / 2.0), side


def crop_square(
    rgb: np.ndarray,
    box: tuple[float, float, float, float],
    scale: float = 1.0,
    size: int | None = 224,
    pad: str = "constant",
) -> np.ndarray:
    """Cut the scaled square around ``box`` out of ``rgb``, padding past the borders.

    Args:
        rgb: ``[H, W, 3]`` uint8 image.
        box: ``(x0, y0, x1, y1)`` face box in pixels.
        scale: side of the square relative to the box's longer side.
        size: output side in pixels; ``None`` keeps the square's own size.
        pad: ``"constant"`` (black) or ``"replicate"`` (border pixels repeated).

    Returns:
        ``[size, size, 3]`` uint8 array.
    """
    if pad not in PAD_MODES:
        raise BadConfigError(f"crop pad: expected one of {PAD_MODES}, got {pad!r}")
    h, w = rgb.shape[:2]
    x0, y0, side = square_box(box, scale)
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        raise BadImageError(
            f"face box {tuple(box)} (square {x0},{y0} side {side}) lies outside the {w}x{h} image"
        )
    region = rgb[cy0:cy1, cx0:cx1]
    top, bottom, left, right = cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1
    if top or bottom or left or right:
        border = cv2.BORDER_CONSTANT if pad == "constant" else cv2.BORDER_REPLICATE
        region = cv2.copyMakeBorder(region, top, bottom, left, right, border, value=(0, 0, 0))
    if size is not None and side != size:
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        region = cv2.resize(region, (int(size), int(size)), interpolation=interp)
    return np.ascontiguousarray(region)


@dataclass(frozen=True)
class CropRecipe:
    """How faces are cut out: saved in every bundle's ``preprocessing`` so prediction
    repeats training exactly.

    Attributes:
        detector: detector name (``"haar"``, ``"dlib"``, ``"lbp"``, ``"none"``).
        scale: square side relative to the face box's longer side.
        size: output side in pixels.
        colour_order: channel order of the returned crops, ``"RGB"`` or ``"BGR"``.
        pad: ``"constant"`` (black) or ``"replicate"`` at image borders.
    """

    detector: str = "default"
    scale: float = 1.0
    size: int = 224
    colour_order: str = "RGB"
    pad: str = "constant"
    _detector: Detector | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detector", resolve_detector_name(self.detector))
        if not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise BadConfigError(f"crop recipe scale: expected a number > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        if not (isinstance(self.size, int) and self.size >= 1):
            raise BadConfigError(f"crop recipe size: expected an int >= 1, got {self.size!r}")
        if self.colour_order not in COLOUR_ORDERS:
            raise BadConfigError(
                f"crop recipe colour_order: expected one of {COLOUR_ORDERS}, "
                f"got {self.colour_order!r}"
            )
        if self.pad not in PAD_MODES:
            raise BadConfigError(f"crop recipe pad: expected one of {PAD_MODES}, got {self.pad!r}")

    def to_dict(self) -> dict[str, Any]:
        """``{"detector", "scale", "size", "colour_order", "pad"}``."""
        return {
            "detector": self.detector,
            "scale": self.scale,
            "size": self.size,
            "colour_order": self.colour_order,
            "pad": self.pad,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropRecipe:
        """Inverse of :meth:`to_dict`; unknown keys are an error listing the valid ones.

        ``crop_scale``/``img_size`` (the bundle ``preprocessing`` names) are accepted for
        ``scale``/``size``; an ``img_size`` of ``[H, W]`` must be square.
        """
        valid = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        data = dict(d)
        if "crop_scale" in data:
            data.setdefault("scale", data.pop("crop_scale"))
        if "img_size" in data:
            s = data.pop("img_size")
            if isinstance(s, (list, tuple)):
                if len(s) != 2 or s[0] != s[1]:
                    raise BadConfigError(f"crop recipe img_size: expected a square, got {s}")
                s = s[0]
            data.setdefault("size", int(s))
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise BadConfigError(
                f"crop recipe: unknown key(s) {unknown}; valid keys: {', '.join(valid)}"
            )
        return cls(**data)

    def to_preprocessing(self) -> dict[str, Any]:
        """The recipe in the bundle's ``preprocessing`` key names: ``detector``,
        ``crop_scale``, ``img_size`` ([S, S]), ``colour_order``, ``crop_pad``."""
        return {"detector": self.detector, "crop_scale": self.scale,
                "img_size": [self.size, self.size], "colour_order": self.colour_order,
                "crop_pad": self.pad}

    @classmethod
    def from_preprocessing(cls, pre: dict[str, Any]) -> CropRecipe:
        """Read the recipe from a bundle's ``preprocessing`` block (other keys such as
        ``mean``/``std``/``frames_per_video`` are ignored; missing ones take defaults)."""
        d: dict[str, Any] = {}
        for src, dst in (("detector", "detector"), ("crop_scale", "scale"),
                         ("img_size", "img_size"), ("colour_order", "colour_order"),
                         ("crop_pad", "pad")):
            if pre.get(src) is not None:
                d[dst] = pre[src]
        return cls.from_dict(d)

    @property
    def face_detector(self) -> Detector:
        """The detector instance (built on first use)."""
        if self._detector is None:
            object.__setattr__(self, "_detector", get_detector(self.detector))
        assert self._detector is not None
        return self._detector

    def crop(self, rgb: np.ndarray, face: Face | tuple[float, float, float, float]) -> np.ndarray:
        """Crop one given face (or box) from an RGB image: ``[size, size, 3]`` uint8 in
        ``colour_order``."""
        box = face.box if isinstance(face, Face) else tuple(face)
        out = crop_square(rgb, box, self.scale, self.size, self.pad)  # type: ignore[arg-type]
        if self.colour_order == "BGR":
            out = np.ascontiguousarray(out[:, :, ::-1])
        return out

    def apply(self, rgb: np.ndarray, max_faces: int | None = None) -> list[tuple[Face, np.ndarray]]:
        """Detect and crop every face, largest first.

        Args:
            rgb: ``[H, W, 3]`` uint8 RGB image (EXIF orientation already applied).
            max_faces: keep at most this many (largest first); ``None`` keeps all.

        Returns:
            ``[(face, crop [size, size, 3] uint8), ...]``; an empty list is a failure to
            acquire (no face found).
        """
        faces = self.face_detector.detect(rgb)
        if max_faces is not None:
            faces = faces[:max_faces]
        return [(f, self.crop(rgb, f)) for f in faces]
