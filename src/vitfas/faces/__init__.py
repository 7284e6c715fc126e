"""vitfas.faces: face detection and the square crops every model is trained on.

``get_detector(name).detect(rgb) -> list[Face]`` (largest first) and
``CropRecipe(detector, scale, size, colour_order).apply(rgb)`` (largest first; an empty
list is a failure to acquire). See docs/data.md for the detector comparison.
"""

from vitfas.faces.crop import COLOUR_ORDERS, PAD_MODES, CropRecipe, crop_square, square_box
from vitfas.faces.detectors import (
    DEFAULT_DETECTOR,
    FAST_DETECT_SIDE,
    Detector,
    DlibDetector,
    Face,
    FallbackDetector,
    HaarDetector,
    LBPDetector,
    NoneDetector,
    fast_detector,
    fast_detector_options,
    get_detector,
    list_detectors,
    resolve_detector_name,
)

__all__ = [
    "COLOUR_ORDERS",
    "DEFAULT_DETECTOR",
    "FAST_DETECT_SIDE",
    "PAD_MODES",
    "CropRecipe",
    "Detector",
    "DlibDetector",
    "Face",
    "FallbackDetector",
    "HaarDetector",
    "LBPDetector",
    "NoneDetector",
    "crop_square",
    "fast_detector",
    "fast_detector_options",
    "get_detector",
    "list_detectors",
    "resolve_detector_name",
    "square_box",
]
