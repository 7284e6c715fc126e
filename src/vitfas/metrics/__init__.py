"""ISO/IEC 30107-3 metrics for presentation attack detection, reports and ``vitfas eval``.

Conventions: bona fide (live) is the positive class, a score is P(live), a presentation is
accepted as live when ``score >= threshold`` (ties accepted); failures to acquire are never
dropped. See :mod:`vitfas.metrics.core` and ``docs/metrics.md``.

Typical use at the end of training::

    from vitfas.metrics import Scores, select_threshold, evaluate
    dev = Scores.from_arrays(dev_scores, dev_labels, dev_attack_types)
    test = Scores.from_arrays(test_scores, test_labels, test_attack_types)
    thr = select_threshold(dev, "eer", split="dev")          # Threshold(value, criterion, split)
    metrics = evaluate({"dev": dev, "test": test}, threshold=thr)   # dict for metrics.json
    save_bundle(..., threshold=thr.to_dict(), metrics=metrics)
"""

from vitfas.metrics.calibration import (
    Reliability,
    TemperatureFit,
    expected_calibration_error,
    fit_temperature,
    reliability,
    scaled_softmax,
)
from vitfas.metrics.core import (
    BONA_FIDE,
    CONVENTIONS,
    EER,
    OCIM_LABEL,
    Criterion,
    Curve,
    ErrorRates,
    OperatingPoint,
    Scores,
    Threshold,
    aggregate_videos,
    auc,
    bpcer_at_apcer,
    curve,
    describe_margin,
    eer,
    error_rates,
    evaluate,
    is_probability,
    midpoint,
    own_eer_threshold,
    parse_criterion,
    select_threshold,
    summarize,
    tpr_at_fpr,
)

__all__ = [
    "BONA_FIDE",
    "CONVENTIONS",
    "EER",
    "OCIM_LABEL",
    "Criterion",
    "Curve",
    "ErrorRates",
    "OperatingPoint",
    "Reliability",
    "Scores",
    "TemperatureFit",
    "Threshold",
    "aggregate_videos",
    "auc",
    "bpcer_at_apcer",
    "curve",
    "describe_margin",
    "eer",
    "error_rates",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "is_probability",
    "midpoint",
    "own_eer_threshold",
    "parse_criterion",
    "reliability",
    "scaled_softmax",
    "select_threshold",
    "summarize",
    "tpr_at_fpr",
]
