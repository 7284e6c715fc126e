"""The LBP + SVM baseline bundle: a folder like the network bundles, without pickle.

Layout::

    bundle/
      config.json   format_version, kind = "lbp-svm", class_names ["spoof", "live"],
                    live_index 1, preprocessing (detector, crop_scale, img_size = the LBP
                    size, colour_order, crop_pad, frames_per_video), features (the
                    LBPConfig: features, size, points, radii, method, channels, bins,
                    length), classifier (C, gamma, grid, CV AUC, seed), threshold,
                    training, model_file, model_sha256, trusted_types
      model.skops   the fitted scikit-learn classifier, in skops' format (no pickle)
      README.md     model card

``model.skops`` is read with :func:`skops.io.load` trusting only :data:`TRUSTED_TYPES`
(plus what skops itself trusts: scikit-learn's public estimators and numpy); a file that
holds any other type is refused before anything in it is built. Its SHA-256 is checked
against ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitfas.baselines.lbp import LBPConfig, lbp_features_batch
from vitfas.baselines.svm import live_probability
from vitfas.bundle import (
    FORMAT_VERSION,
    BundleFields,
    bundle_kind,
    model_card,
    read_bundle_config,
)
from vitfas.errors import BadCheckpointError

log = logging.getLogger(__name__)

LBP_KIND = "lbp-svm"
MODEL_FILE = "model.skops"
CLASS_NAMES = ["spoof", "live"]
# Types in model.skops beyond skops' own default trust (sklearn estimators, numpy).
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedKFold",
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class LBPBundle(BundleFields):
    """A loaded baseline bundle: the classifier and its feature recipe (``class_names``,
    ``live_index``, ``preprocessing``, ``threshold`` as for network bundles).

    Attributes:
        model: the fitted classifier (``predict_proba``; ``classes_`` ``[0, 1]``).
        lbp: the feature recipe.
        path: the bundle folder.
        config: the parsed ``config.json``.
    """

    model: Any
    lbp: LBPConfig
    path: Path
    config: dict[str, Any]

    @property
    def model_id(self) -> str:
        return f"lbp-svm-{self.lbp.features}@{self.config.get('model_sha256', '')[:12]}"

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face crops ``[H, W, 3]`` uint8 RGB -> descriptors ``[N, F]``."""
        return lbp_features_batch(crops, self.lbp)

    def probabilities(self, descriptors: np.ndarray) -> np.ndarray:
        """Descriptors ``[N, F]`` -> class probabilities ``[N, 2]`` in ``class_names`` order."""
        X = np.asarray(descriptors, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.lbp.length:
            raise BadCheckpointError(
                f"{self.path}: descriptors of shape {X.shape}, expected [N, {self.lbp.length}]"
            )
        p_live = live_probability(self.model, X)
        out = np.empty((X.shape[0], 2))
        out[:, self.live_index] = p_live
        out[:, 1 - self.live_index] = 1.0 - p_live
        return out

    def score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face crops -> ``[N]`` P(live)."""
        return live_probability(self.model, self.features(crops))


def save_lbp_bundle(
    out_dir: str | Path,
    model: Any,
    lbp: LBPConfig,
    *,
    preprocessing: dict[str, Any],
    classifier: dict[str, Any],
    threshold: dict[str, Any] | None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``config.json``, ``model.skops`` and ``README.md`` into ``out_dir``.

    ``metrics`` only goes into the model card (``metrics.json`` is the eval report's,
    written beside it by :func:`vitfas.baselines.run.run_lbp_baseline`).

    Returns:
        The ``config.json`` content.
    """
    import skops.io as sio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILE
    sio.dump(model, model_path)
    untrusted = set(sio.get_untrusted_types(file=model_path))
    extra = sorted(untrusted - set(TRUSTED_TYPES))
    if extra:  # a scikit-learn upgrade changed the stored types: fail now, not at load time
        raise BadCheckpointError(
            f"{model_path}: the classifier holds types outside the trusted list: {extra}"
        )
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": LBP_KIND,
        "architecture": {"name": f"lbp-svm-{lbp.features}",
                         "class": "LBP histograms + RBF SVM (scikit-learn)"},
        "class_names": list(CLASS_NAMES),
        "live_index": CLASS_NAMES.index("live"),
        "preprocessing": {**preprocessing, "img_size": [lbp.size, lbp.size]},
        "features": lbp.to_dict(),
        "classifier": classifier,
        "threshold": threshold,
        "training": training or {},
        "model_file": MODEL_FILE,
        "model_sha256": _sha256(model_path),
        "trusted_types": sorted(untrusted),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    (out / "README.md").write_text(model_card(config, metrics))
    return config


def set_bundle_threshold(path: str | Path, threshold: dict[str, Any],
                         metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record the operating threshold (``{"value", "criterion", "split"}``, chosen on dev)
    in a saved bundle's ``config.json`` and refresh its model card."""
    p = Path(path)
    config = read_bundle_config(p)
    config["threshold"] = dict(threshold)
    (p / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    (p / "README.md").write_text(model_card(config, metrics))
    return config


def is_lbp_bundle(path: str | Path) -> bool:
    """True when ``path/config.json`` says ``"kind": "lbp-svm"``."""
    return bundle_kind(read_bundle_config(path)) == LBP_KIND


def load_lbp_bundle(path: str | Path) -> LBPBundle:
    """Load a baseline bundle; the classifier file must hold only trusted types.

    Raises:
        BadCheckpointError: not an LBP bundle, missing or altered ``model.skops``, untrusted
            types in it, or a feature recipe that does not match the classifier.
    """
    import skops.io as sio

    p = Path(path)
    config = read_bundle_config(p)
    kind = bundle_kind(config)
    if kind != LBP_KIND:
        raise BadCheckpointError(f"{p}: bundle kind {kind!r}, expected {LBP_KIND!r}")
    model_path = p / str(config.get("model_file") or MODEL_FILE)
    if not model_path.is_file():
        raise BadCheckpointError(f"{p}: {model_path.name} is missing")
    want = config.get("model_sha256")
    if want and _sha256(model_path) != want:
        raise BadCheckpointError(
            f"{model_path}: SHA-256 differs from config.json's model_sha256 ({want[:12]}); "
            "the file was changed after the bundle was written"
        )
    try:
        untrusted = sio.get_untrusted_types(file=model_path)
    except Exception as exc:
        raise BadCheckpointError(f"{model_path}: not a readable skops file ({exc})") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise BadCheckpointError(
            f"{model_path}: refusing to load types outside the trusted list: {refused}; "
            f"trusted: {list(TRUSTED_TYPES)}"
        )
    model = sio.load(model_path, trusted=list(untrusted))
    try:
        lbp = LBPConfig.from_dict(config.get("features") or {})
    except Exception as exc:
        raise BadCheckpointError(f"{p}/config.json: features: {exc}") from exc
    n_in = getattr(model, "n_features_in_", lbp.length)
    if n_in != lbp.length:
        raise BadCheckpointError(
            f"{p}: the classifier takes {n_in} features but the LBP recipe gives {lbp.length}"
        )
    return LBPBundle(model=model, lbp=lbp, path=p, config=config)
