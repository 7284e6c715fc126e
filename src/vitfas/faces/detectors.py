"""Face detectors behind one interface.

All backends install from PyPI and need no download at run time:

- ``"haar"``: OpenCV's frontal-face Haar cascade (ships with opencv-python 4.x in
  ``cv2.data.haarcascades``; removed in OpenCV 5).
- ``"dlib"``: dlib's HOG + linear SVM frontal face detector (``pip install dlib-bin``).
- ``"lbp"``: scikit-image's LBP cascade (``skimage.data.lbp_frontal_face_cascade_filename``).
- ``"none"``: the whole image is the face, for datasets that ship crops or boxes.

None of these offline backends predicts landmarks, so ``Face.landmarks`` is ``None`` for them;
the field exists for backends that have them. Detection runs on a copy scaled so its longer
side is at most ``max_side`` pixels (speed on large photos); boxes are mapped back to the
input's pixel coordinates. Faces come back largest first.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vitfas.errors import BadConfigError, BadImageError

log = logging.getLogger(__name__)

#: The detector used when none is named. Chosen by measurement, see docs/data.md.
DEFAULT_DETECTOR = "dlib"


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the image given to ``detect`` (floats; x1, y1
            exclusive).
        score: backend confidence (Haar: cascade level weight; dlib: SVM margin; LBP and
            none: 1.0, they have no score). Comparable only within one backend.
        landmarks: ``[5, 2]`` (x, y) eye centres, nose tip, mouth corners, or ``None``.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"box": [x0, y0, x1, y1], "score": s, "landmarks": ...}``."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": float(self.score),
            "landmarks": None if self.landmarks is None else self.landmarks.tolist(),
        }


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise BadImageError(f"detector input: expected an [H, W, 3] RGB array, got {shape}")
    if rgb.dtype != np.uint8:
        raise BadImageError(f"detector input: expected dtype uint8, got {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise BadImageError(f"detector input: empty image of shape {rgb.shape}")


class Detector(ABC):
    """A face detector: ``detect(rgb) -> list[Face]``, largest first.

    Args:
        max_side: images whose longer side exceeds this are scaled down for detection
            (boxes are returned in the original's coordinates). 0 disables scaling.
        min_size: smallest face side searched, in pixels of the (scaled) detection image.
    """

    name: str = "?"

    def __init__(self, max_side: int = 640, min_size: int = 24) -> None:
        self.max_side = int(max_side)
        self.min_size = int(min_size)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Find every face in an ``[H, W, 3]`` uint8 RGB image; largest first."""
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        factor = 1.0
        img = rgb
        if self.max_side and max(h, w) > self.max_side:
            factor = self.max_side / max(h, w)
            img = cv2.resize(
                rgb, (max(1, round(w * factor)), max(1, round(h * factor))),
                interpolation=cv2.INTER_AREA,
            )
        faces = self._detect(np.ascontiguousarray(img))
        if factor != 1.0:
            inv = 1.0 / factor
            faces = [
                Face(
                    box=tuple(float(v) * inv for v in f.box),  # type: ignore[arg-type]
                    score=f.score,
                    landmarks=None if f.landmarks is None else f.landmarks * inv,
                )
                for f in faces
            ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    @abstractmethod
    def _detect(self, rgb: np.ndarray) -> list[Face]:
        """Backend detection on an image already scaled for speed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side}, min_size={self.min_size})"


class NoneDetector(Detector):
    """The whole image is one face (for datasets that ship face crops)."""

    name = "none"

    def detect(self, rgb: np.ndarray) -> list[Face]:
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        return [Face(box=(0.0, 0.0, float(w), float(h)), score=1.0)]

    def _detect(self, rgb: np.ndarray) -> list[Face]:  # pragma: no cover - detect overrides
        return self.detect(rgb)


class HaarDetector(Detector):
    """OpenCV frontal-face Haar cascade (``haarcascade_frontalface_default.xml``).

    Args:
        scale_factor: image pyramid step.
        min_neighbors: overlapping detections needed to keep a face (higher: fewer false
            positives, lower recall).
    """

    name = "haar"

    def __init__(
        self,
        max_side: int = 640,
        min_size: int = 24,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: str = "haarcascade_frontalface_default.xml",
    ) -> None:
        super().__init__(max_side, min_size)
        data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if not data_dir:
            raise BadConfigError(
                "detector 'haar': this OpenCV build has no cv2.data.haarcascades "
                f"(OpenCV {cv2.__version__}); install opencv-python-headless>=4.8,<5"
            )
        path = str(data_dir) + cascade
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise BadConfigError(f"detector 'haar': cannot load cascade file {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        rects, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        out = []
        for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).ravel()):
            out.append(Face(box=(float(x), float(y), float(x + w), float(y + h)), score=float(s)))
        return out


class DlibDetector(Detector):
    """dlib's HOG frontal face detector (from the ``dlib-bin`` wheel; nothing to download).

    Args:
        upsample: times the image is doubled before detection; ``None``: once when the
            detection image's longer side is under 400 px (dlib finds faces of ~80 px
            without upsampling, ~40 px with one), else not.
        threshold: SVM margin added to dlib's default (negative: more recall, more false
            positives).
        gray: compute HOG on the grey image instead of dlib's colour HOG (the strongest
            gradient of the three channels): about 1.7x faster, the same boxes on the
            real-photo fixtures (see :func:`fast_detector_options`).
    """

    name = "dlib"

    def __init__(
        self,
        max_side: int = 640,
        min_size: int = 24,
        upsample: int | None = None,
        threshold: float = 0.0,
        gray: bool = False,
    ) -> None:
        super().__init__(max_side, min_size)
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - dlib-bin is a dependency
            raise BadConfigError(
                "detector 'dlib' needs the dlib package: pip install dlib-bin"
            ) from exc
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.threshold = threshold
        self.gray = bool(gray)

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        up = self.upsample
        if up is None:
            up = 1 if max(rgb.shape[:2]) < 400 else 0
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if self.gray else rgb
        rects, scores, _ = self._detector.run(img, up, self.threshold)
        h, w = rgb.shape[:2]
        out = []
        for r, s in zip(rects, scores):
            # dlib rectangles are inclusive and may extend past the image; keep them as given
            x0, y0, x1, y1 = float(r.left()), float(r.top()), float(r.right() + 1), float(
                r.bottom() + 1
            )
            if x1 - x0 < self.min_size and y1 - y0 < self.min_size:
                continue
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                continue
            out.append(Face(box=(x0, y0, x1, y1), score=float(s)))
        return out


class LBPDetector(Detector):
    """scikit-image's LBP frontal face cascade (``skimage.feature.Cascade``); no scores.

    Args:
        scale_factor: pyramid step.
        min_neighbours: overlapping detections needed to keep a face.
    """

    name = "lbp"

    def __init__(
        self,
        max_side: int = 640,
        min_size: int = 24,
        scale_factor: float = 1.2,
        min_neighbours: int = 4,
    ) -> None:
        super().__init__(max_side, min_size)
        from skimage import data as skdata
        from skimage.feature import Cascade

        self._cascade = Cascade(skdata.lbp_frontal_face_cascade_filename())
        self.scale_factor = scale_factor
        self.min_neighbours = min_neighbours

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        found = self._cascade.detect_multi_scale(
            img=rgb,
            scale_factor=self.scale_factor,
            step_ratio=1,
            min_size=(self.min_size, self.min_size),
            max_size=(h, w),
            min_neighbor_number=self.min_neighbours,
        )
        return [
            Face(
                box=(float(d["c"]), float(d["r"]), float(d["c"] + d["width"]),
                     float(d["r"] + d["height"])),
                score=1.0,
            )
            for d in found
        ]


_BACKENDS: dict[str, type[Detector]] = {
    "haar": HaarDetector,
    "dlib": DlibDetector,
    "lbp": LBPDetector,
    "none": NoneDetector,
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`get_detector` (``"default"`` is an alias of the default)."""
    return sorted(_BACKENDS)


def resolve_detector_name(name: str | None) -> str:
    """Map ``None``/``"default"`` to :data:`DEFAULT_DETECTOR`; check the name exists."""
    if name is None or name == "default":
        return DEFAULT_DETECTOR
    key = name.lower()
    if key not in _BACKENDS:
        raise BadConfigError(
            f"unknown face detector {name!r}; expected one of {', '.join(list_detectors())}"
            " or 'default'"
        )
    return key


#: The detection side that ``--detect-side`` suggests (with :func:`fast_detector`'s
#: fallback): measured on the fixtures and on real webcam frames with ground-truth boxes
#: (docs/serve.md, benchmarks/README.md).
FAST_DETECT_SIDE = 480


def fast_detector_options(name: str | None, side: int) -> dict[str, Any]:
    """Options for :func:`get_detector` that detect on a copy whose longer side is at most
    ``side`` pixels (boxes mapped back to the full image).

    For dlib the copy is also searched without upsampling and in grey (HOG on luminance):
    at ``side=480`` detection costs about 0.4x of the default (colour HOG on a 640 px
    copy). Faces smaller than about 80 px in the copy (1/6 of ``side``) are missed.

    Raises:
        BadConfigError: ``side`` is not a positive number of pixels.
    """
    if not isinstance(side, int) or side < 32:
        raise BadConfigError(f"detection side: expected an int >= 32 pixels, got {side!r}")
    key = resolve_detector_name(name)
    if key == "none":
        return {}
    opts: dict[str, Any] = {"max_side": side}
    if key == "dlib":
        opts.update(upsample=0, gray=True)
    return opts


class FallbackDetector(Detector):
    """The fast face stage: a fast detector first, a full one only where it finds nothing.

    ``detect`` runs ``fast`` (e.g. grey HOG on a 480 px copy); when that returns no face it
    runs ``full`` (e.g. the default colour HOG on a 640 px copy) on the same image. Both
    map their boxes to the input's pixel coordinates, so the result is in the input's
    coordinates either way. ``last_used`` says which pass gave the last result
    (``"fast"`` or ``"full"``).

    Args:
        fast: the detector tried first.
        full: the detector used when ``fast`` finds no face.
    """

    name = "fallback"

    def __init__(self, fast: Detector, full: Detector) -> None:
        super().__init__(fast.max_side, fast.min_size)
        self.fast = fast
        self.full = full
        self.last_used = ""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self.fast.detect(rgb)
        self.last_used = "fast"
        if not faces:
            faces = self.full.detect(rgb)
            self.last_used = "full"
        return faces

    def _detect(self, rgb: np.ndarray) -> list[Face]:  # pragma: no cover - detect overrides
        return self.detect(rgb)

    def __repr__(self) -> str:
        return f"FallbackDetector(fast={self.fast!r}, full={self.full!r})"


def fast_detector(name: str | None, side: int, full: Detector | None = None,
                  fallback: bool = True) -> Detector:
    """The fast face stage for detector ``name``: :func:`fast_detector_options` at ``side``,
    and (``fallback=True``, the default) a second pass with ``full`` (default: the named
    detector with its default options) on images where the fast pass finds no face.

    Measured on 360 real webcam frames with ground-truth boxes (benchmarks/README.md):
    grey HOG at 480 px alone found 82.2% of the faces against the default's 83.9%; with
    the fallback 86.1% (the two passes miss different frames), at 28 against 44 ms of CPU
    per 640x480 frame (the full pass runs only on frames without a face in the small
    copy). On the fixtures it finds all 8 faces the default finds.

    Raises:
        BadConfigError: ``side`` is not a positive number of pixels.
    """
    opts = fast_detector_options(name, side)
    key = resolve_detector_name(name)
    fast = get_detector(key, **opts)
    if not fallback or key == "none":
        return fast
    return FallbackDetector(fast, full if full is not None else get_detector(key))


def get_detector(name: str | None = None, **kwargs: Any) -> Detector:
    """Build a detector by name (``"haar"``, ``"dlib"``, ``"lbp"``, ``"none"``, ``"default"``).

    Keyword arguments go to the backend (e.g. ``max_side``, ``min_size``, ``min_neighbors``).
    """
    key = resolve_detector_name(name)
    try:
        return _BACKENDS[key](**kwargs)
    except TypeError as exc:
        raise BadConfigError(f"detector {key!r}: bad option ({exc})") from exc
