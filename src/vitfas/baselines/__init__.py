"""Classical face anti-spoofing baselines, to measure the networks against.

``vitfas baseline lbp MANIFEST -o OUT [--features gray|color]``: uniform LBP histograms
(grey, or colour texture on YCbCr + HSV after Boulkenafet et al., 2016) and an RBF SVM
(scikit-learn), threshold chosen on dev and applied unchanged to test, the same report as
``vitfas eval``, and a bundle (``kind: "lbp-svm"``, classifier in skops format) that
``vitfas predict`` runs. See ``docs/baselines.md``.
"""

from vitfas.baselines.bundle import (
    LBP_KIND,
    TRUSTED_TYPES,
    LBPBundle,
    is_lbp_bundle,
    load_lbp_bundle,
    save_lbp_bundle,
)
from vitfas.baselines.lbp import LBPConfig, channel_planes, lbp_features, lbp_histogram
from vitfas.baselines.svm import SVMFit, live_probability, train_svm

__all__ = [
    "LBP_KIND",
    "TRUSTED_TYPES",
    "LBPBundle",
    "LBPConfig",
    "SVMFit",
    "channel_planes",
    "is_lbp_bundle",
    "lbp_features",
    "lbp_histogram",
    "live_probability",
    "load_lbp_bundle",
    "save_lbp_bundle",
    "train_svm",
]
