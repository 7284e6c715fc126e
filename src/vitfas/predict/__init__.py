"""Prediction: run a model bundle on images and videos (``vitfas predict``).

- :mod:`vitfas.predict.predictor`: :class:`Predictor` (faces, P(live) scores, decisions),
  :class:`LBPPredictor` (the same for LBP baseline bundles), :func:`load_predictor` (the
  right one for a bundle folder's ``kind``), :class:`FaceResult`, :class:`VideoResult` and
  the input helpers; shared by ``vitfas predict``, ``vitfas serve`` and the demo.
- :mod:`vitfas.predict.cli`: the ``vitfas predict`` verb (one JSON line per input).
- :mod:`vitfas.predict.runtime`: the inference runtimes (``torch``, ``torch-bf16``,
  ``onnx``, ``onnx-int8``) behind ``Predictor(runtime=...)``.

The public names of the predictor module are re-exported here, so
``from vitfas.predict import Predictor`` works as before the package split.
"""

from vitfas.predict.predictor import (
    DEFAULT_THRESHOLD,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FaceResult,
    LBPPredictor,
    Predictor,
    VideoResult,
    decode_image,
    expand_inputs,
    kind_of,
    load_image,
    load_predictor,
    make_crop_recipe,
    no_face_error,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FaceResult",
    "LBPPredictor",
    "Predictor",
    "VideoResult",
    "decode_image",
    "expand_inputs",
    "kind_of",
    "load_image",
    "load_predictor",
    "make_crop_recipe",
    "no_face_error",
]
