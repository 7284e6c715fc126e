"""Run a model bundle on images and videos: faces, P(live) scores and decisions.

:class:`Predictor` repeats the bundle's recorded preprocessing exactly (detector, crop
scale, input size, colour order, mean/std, frames per video), runs the network through
PyTorch or onnxruntime, and returns one :class:`FaceResult` per detected face. It is shared
by ``vitfas predict``, ``vitfas serve`` and the web page.

Scores follow the project convention: live is the positive class, a score is P(live) =
``softmax(logits / T)[live_index]`` (``T`` the bundle's calibration temperature, 1 when it
has none) and a face is accepted as live when ``score >= threshold``
(the bundle's threshold, chosen on dev data; 0.5 when the bundle has none).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitfas.bundle import Bundle
from vitfas.data.inputs import expand_inputs, kind_of  # noqa: F401  (re-exported)
from vitfas.data.io import IMAGE_EXTENSIONS  # noqa: F401  (re-exported)
from vitfas.data.video import VIDEO_EXTENSIONS  # noqa: F401  (re-exported)
from vitfas.errors import BadConfigError, BadImageError, NoFaceError
from vitfas.faces.detectors import fast_detector
from vitfas.metrics.calibration import scaled_softmax
from vitfas.predict.runtime import open_runtime

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


@dataclass
class FaceResult:
    """One face: where it is, what the model says, and the decision.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the (EXIF-rotated) input image.
        detector_score: the detector's confidence (1.0 for the ``none`` detector).
        score: P(live) for FAS bundles; the top class probability otherwise.
        decision: ``"live"``/``"spoof"`` at the bundle threshold (FAS), else the top class.
        probs: every class's probability, by class name.
        landmarks: five ``(x, y)`` points when the detector gives them.
    """

    box: tuple[float, float, float, float]
    detector_score: float | None
    score: float
    decision: str
    probs: dict[str, float]
    landmarks: list[list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(float(v), 2) for v in self.box]
        return d


@dataclass
class VideoResult:
    """A video: per-frame faces and the aggregated score (mean P(live) of each frame's
    largest face over the frames where a face was found)."""

    frames: list[tuple[int, list[FaceResult]]]
    score: float | None
    decision: str | None
    frames_with_face: int = 0
    frames_sampled: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # "crops": [(frame, [crop, ...])]


# --------------------------------------------------------------------------- preprocessing
def load_image(path: str | Path) -> np.ndarray:
    """``path`` -> ``[H, W, 3]`` uint8 RGB with EXIF orientation applied (vitfas.data.io)."""
    from vitfas.data.io import load_image as _load

    return _load(path)


def decode_image(data: bytes, name: str = "<upload>", limit: int | None = None) -> np.ndarray:
    """Encoded bytes -> ``[H, W, 3]`` uint8 RGB with EXIF orientation applied (at most
    ``limit`` pixels, default :func:`vitfas.data.io.max_pixels`)."""
    from vitfas.data.io import decode_image as _decode

    return _decode(data, name, limit)


def make_crop_recipe(pre: dict[str, Any], img_size: tuple[int, int]) -> Any:
    """The :class:`vitfas.faces.CropRecipe` described by a bundle's ``preprocessing``."""
    from vitfas.faces import CropRecipe

    if img_size[0] != img_size[1]:
        raise BadConfigError(
            f"preprocessing img_size {list(img_size)}: face crops are square, expected H == W"
        )
    if not pre.get("detector"):
        raise BadConfigError(
            "bundle preprocessing has no 'detector'; expected the face detector the model "
            "was trained with (e.g. 'dlib', 'haar', or 'none' for whole-image crops)"
        )
    return CropRecipe.from_preprocessing({**pre, "img_size": [int(img_size[0])] * 2})


class Predictor:
    """A bundle ready to score faces.

    Args:
        bundle: a loaded :class:`vitfas.bundle.Bundle`.
        runtime: ``"torch"`` (fp32), ``"torch-bf16"`` (CPU bf16 autocast; refused on CPUs
            without native bf16), ``"onnx"`` (onnxruntime, fp32 graph) or ``"onnx-int8"``
            (onnxruntime, int8 graph); see :mod:`vitfas.predict.runtime`.
        onnx_path: the exported graph; default ``BUNDLE/model.onnx`` (``onnx``) or
            ``BUNDLE/model.int8.onnx`` (``onnx-int8``).
        batch_size: most crops per forward call.
        detect_side: run the face detector on a copy whose longer side is at most this
            many pixels (boxes mapped back to the image; the crop is cut from the full
            image), falling back to the recipe's detector on images where that finds no
            face. ``None``: the recipe's detector only. See :func:`vitfas.faces.fast_detector`.
        threads: onnxruntime intra-op threads (default: PyTorch's thread count).
    """

    def __init__(
        self,
        bundle: Bundle,
        runtime: str = "torch",
        onnx_path: str | Path | None = None,
        batch_size: int = 32,
        detect_side: int | None = None,
        threads: int | None = None,
    ) -> None:
        self.bundle = bundle
        self.model = bundle.model.eval()
        pre = bundle.preprocessing
        cfg_size = getattr(getattr(self.model, "config", None), "img_size", None)
        size = pre.get("img_size") or cfg_size
        if size is None:
            raise BadConfigError(f"{bundle.path}/config.json: preprocessing.img_size is missing")
        self.img_size: tuple[int, int] = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        for key in ("mean", "std"):
            v = pre.get(key)
            if v is None or len(v) != 3:
                raise BadConfigError(
                    f"{bundle.path}/config.json: preprocessing.{key} must be 3 numbers, got {v!r}"
                )
        self.mean = np.asarray(pre["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(pre["std"], dtype=np.float32).reshape(3, 1, 1)
        self._setup(bundle, runtime, batch_size, bundle.class_names or [
            str(i) for i in range(int(getattr(self.model, "num_classes", 2)))
        ])
        self._runtime = open_runtime(bundle, runtime, onnx_path, threads)
        self.use_detect_side(detect_side)

    def _setup(self, bundle: Any, runtime: str, batch_size: int,
               class_names: list[str]) -> None:
        """What every kind of bundle shares: crop recipe, classes, threshold, counters."""
        pre = bundle.preprocessing
        self.frames_per_video = int(pre.get("frames_per_video") or 8)
        self.recipe = make_crop_recipe(pre, self.img_size)
        self.class_names = class_names
        self.live_index = bundle.live_index
        self.threshold = bundle.threshold if bundle.threshold is not None else DEFAULT_THRESHOLD
        self.threshold_source = "bundle" if bundle.threshold is not None else "default 0.5"
        self.temperature = getattr(bundle, "temperature", 1.0)  # softmax T (networks only)
        self.batch_size = max(1, int(batch_size))
        self.runtime = runtime
        self.forward_calls = 0
        self._lock = threading.Lock()
        self._runtime: Any = None
        self.detect_side: int | None = None
        self._fast_detector: Any = None

    def use_detect_side(self, side: int | None) -> None:
        """Detect faces on a copy at most ``side`` pixels on its longer side, and with the
        recipe's own detector where that finds no face (the fast face stage,
        :func:`vitfas.faces.fast_detector`); ``None``: the recipe's detector only."""
        self.detect_side = side
        self._fast_detector = None if side is None else fast_detector(
            self.recipe.detector, side, full=self.recipe.face_detector)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def warm_up(self) -> None:
        """Run one blank crop through preprocessing and the model (first call is slow)."""
        h, w = self.img_size
        self.infer(self.preprocess([np.zeros((h, w, 3), np.uint8)]))

    # ---------------------------------------------------------------- stages
    def detect(self, rgb: np.ndarray) -> list[tuple[Any, np.ndarray]]:
        """``[H, W, 3]`` uint8 RGB -> ``[(Face, crop [S, S, 3] uint8)]``, largest face first."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", type(rgb).__name__)
            raise BadImageError(f"expected an [H, W, 3] uint8 RGB image, got {shape}")
        if self._fast_detector is None:
            return list(self.recipe.apply(rgb))
        return [(f, self.recipe.crop(rgb, f)) for f in self._fast_detector.detect(rgb)]

    @property
    def detector(self) -> Any:
        """The face detector in use (the recipe's, or the fast one of ``detect_side``)."""
        return self._fast_detector or self.recipe.face_detector

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops ``[S, S, 3]`` uint8 -> normalised ``[B, 3, H, W]`` float32."""
        import cv2

        H, W = self.img_size
        out = np.empty((len(crops), 3, H, W), dtype=np.float32)
        for i, c in enumerate(crops):
            if c.shape[:2] != (H, W):
                c = cv2.resize(c, (W, H), interpolation=cv2.INTER_AREA)
            x = c.astype(np.float32).transpose(2, 0, 1) / 255.0
            out[i] = (x - self.mean) / self.std
        return out

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``[B, 3, H, W]`` float32 -> class probabilities ``softmax(logits / T)`` ``[B, C]``
        (float64; ``T`` = the bundle's calibration temperature).

        Splits into chunks of ``batch_size``; each chunk is one counted forward call.
        """
        outs = []
        for s in range(0, len(batch), self.batch_size):
            chunk = np.ascontiguousarray(batch[s : s + self.batch_size])
            with self._lock:
                self.forward_calls += 1
                logits = self._runtime(chunk)
            outs.append(logits.astype(np.float64))
        if not outs:
            return np.zeros((0, len(self.class_names)))
        return scaled_softmax(np.concatenate(outs), self.temperature)

    def decide(self, score: float) -> str:
        """``"live"`` when ``score >= threshold``, else the spoof class name (FAS bundles)."""
        if score >= self.threshold:
            return self.class_names[self.live_index] if self.live_index is not None else "live"
        others = [n for i, n in enumerate(self.class_names) if i != self.live_index]
        return others[0] if len(others) == 1 else "spoof"

    def make_result(self, face: Any, probs: np.ndarray) -> FaceResult:
        """A :class:`FaceResult` from a detected face and its class probabilities ``[C]``."""
        names = self.class_names
        if self.live_index is not None:
            score = float(probs[self.live_index])
            decision = self.decide(score)
        else:
            top = int(np.argmax(probs))
            score, decision = float(probs[top]), names[top]
        lm = getattr(face, "landmarks", None)
        return FaceResult(
            box=tuple(float(v) for v in face.box),  # type: ignore[arg-type]
            detector_score=None if getattr(face, "score", None) is None else float(face.score),
            score=score,
            decision=decision,
            probs={n: float(p) for n, p in zip(names, probs)},
            landmarks=None if lm is None else np.asarray(lm, dtype=float).round(2).tolist(),
        )

    # ---------------------------------------------------------------- whole inputs
    def predict_crops(
        self, detections: Sequence[Sequence[tuple[Any, np.ndarray]]]
    ) -> list[list[FaceResult]]:
        """Score the faces of several images in one batched forward."""
        flat = [(i, f, c) for i, dets in enumerate(detections) for f, c in dets]
        results: list[list[FaceResult]] = [[] for _ in detections]
        if not flat:
            return results
        probs = self.infer(self.preprocess([c for _, _, c in flat]))
        for (i, f, _), p in zip(flat, probs):
            results[i].append(self.make_result(f, p))
        return results

    def predict_images(self, images: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """``[H, W, 3]`` RGB images -> their faces' results (one batched forward)."""
        return self.predict_crops([self.detect(im) for im in images])

    def predict_image(self, rgb: np.ndarray) -> list[FaceResult]:
        """One ``[H, W, 3]`` RGB image -> its faces' results, largest first (may be empty)."""
        return self.predict_images([rgb])[0]

    def predict_path(self, path: str | Path) -> list[FaceResult]:
        """An image file -> its faces' results; :class:`BadImageError` if unreadable."""
        return self.predict_image(load_image(path))

    def predict_video(self, path: str | Path, frames: int | None = None) -> VideoResult:
        """Sample ``frames`` frames (default: the bundle's ``frames_per_video``) uniformly and
        score each; the video score is the mean P(live) of each frame's largest face."""
        from vitfas.data.video import sample_frames

        n = int(frames or self.frames_per_video)
        sampled = sample_frames(path, n)
        dets = [self.detect(rgb) for _, rgb in sampled]
        per = self.predict_crops(dets)
        out = [(int(idx), res) for (idx, _), res in zip(sampled, per)]
        firsts = [res[0].score for _, res in out if res]
        score = float(np.mean(firsts)) if firsts else None
        decision = None
        if score is not None:
            if self.live_index is not None:
                decision = self.decide(score)
            else:
                votes = [res[0].decision for _, res in out if res]
                decision = max(set(votes), key=votes.count)
        res = VideoResult(out, score, decision, len(firsts), len(sampled))
        res.extra["crops"] = [(int(idx), [c for _, c in d]) for (idx, _), d in zip(sampled, dets)]
        return res

    # ---------------------------------------------------------------- explanation
    def explain_overlay(self, crop: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The face crop ``[S, S, 3]`` with its attention rollout (Abnar & Zuidema, mean
        head fusion, class token's view) blended on top: ``[S, S, 3]`` uint8 RGB."""
        from vitfas.explain import explain, overlay_on_crop

        x = torch.from_numpy(self.preprocess([crop]))
        rgb = crop[..., ::-1].copy() if self.recipe.colour_order == "BGR" else crop
        with torch.no_grad():
            e = explain(self.model, x, "rollout")
        p = self.model.patch_embed.patch_size
        patch = (p, p) if isinstance(p, int) else tuple(p)
        return overlay_on_crop(rgb, e.maps[0].numpy(), patch, self.img_size, alpha=alpha)

    def explain_png(self, crop: np.ndarray, alpha: float = 0.5) -> bytes:
        """:meth:`explain_overlay`, PNG-encoded."""
        import cv2

        ok, buf = cv2.imencode(".png", cv2.cvtColor(self.explain_overlay(crop, alpha),
                                                    cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
            raise RuntimeError("PNG encoding failed")
        return buf.tobytes()

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` and ``predict`` report about the model."""
        cfg = self.bundle.config
        return {
            "model_id": self.model_id,
            "architecture": (cfg.get("architecture") or {}).get("name"),
            "class_names": self.class_names,
            "live_index": self.live_index,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "threshold_info": cfg.get("threshold"),
            "temperature": self.temperature,
            "preprocessing": self.bundle.preprocessing,
            "runtime": self.runtime,
            "runtime_info": getattr(self._runtime, "info", None),
            "detect_side": self.detect_side,
        }


def no_face_error(path: str | Path) -> NoFaceError:
    return NoFaceError(f"{path}: no face found (failure to acquire)")


class LBPPredictor(Predictor):
    """:class:`Predictor` for an LBP + SVM baseline bundle (:mod:`vitfas.baselines`).

    Same face detection and cropping as network bundles (the recorded crop recipe, crops of
    the LBP size); :meth:`preprocess` gives LBP descriptors ``[B, F]`` and :meth:`infer`
    the SVM's class probabilities ``[B, 2]``. Runs on scikit-learn only; has no attention
    to explain.
    """

    def __init__(self, bundle: Any, runtime: str = "scikit-learn",
                 onnx_path: str | Path | None = None, batch_size: int = 32) -> None:
        if runtime not in ("scikit-learn", "torch") or onnx_path:
            raise BadConfigError(
                f"{bundle.path} is an LBP + SVM bundle: it runs with scikit-learn, not "
                f"runtime {runtime!r}" + (f" / {onnx_path}" if onnx_path else "")
            )
        self.bundle = bundle
        self.model = bundle.model
        self.img_size = (bundle.lbp.size, bundle.lbp.size)
        self._setup(bundle, "scikit-learn", batch_size, bundle.class_names)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops ``[S, S, 3]`` uint8 RGB -> LBP descriptors ``[B, F]`` float64."""
        return self.bundle.features(list(crops))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Descriptors ``[B, F]`` -> class probabilities ``[B, 2]`` (class_names order)."""
        outs = []
        for s in range(0, len(batch), self.batch_size):
            with self._lock:
                self.forward_calls += 1
                outs.append(self.bundle.probabilities(batch[s : s + self.batch_size]))
        return np.concatenate(outs) if outs else np.zeros((0, len(self.class_names)))

    def explain_overlay(self, crop: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        raise BadConfigError(f"{self.bundle.path}: an LBP + SVM bundle has no attention maps "
                             "to explain")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": self.bundle.config.get("kind"),
                "features": self.bundle.config.get("features")}


def load_predictor(
    path: str | Path, runtime: str = "torch", onnx_path: str | Path | None = None,
    batch_size: int = 32, detect_side: int | None = None, threads: int | None = None,
) -> Predictor:
    """A :class:`Predictor` for any bundle folder: the kind comes from its ``config.json``
    (``"kind": "lbp-svm"`` -> :class:`LBPPredictor`, else a network bundle). ``detect_side``
    (the fast face stage) applies to both; ``threads`` to the onnxruntime runtimes."""
    from vitfas.bundle import bundle_kind, load_bundle, read_bundle_config

    if bundle_kind(read_bundle_config(path)) == "lbp-svm":
        from vitfas.baselines.bundle import load_lbp_bundle

        lbp = LBPPredictor(load_lbp_bundle(path), runtime=runtime, onnx_path=onnx_path,
                           batch_size=batch_size)
        lbp.use_detect_side(detect_side)
        return lbp
    return Predictor(load_bundle(path), runtime=runtime, onnx_path=onnx_path,
                     batch_size=batch_size, detect_side=detect_side, threads=threads)
