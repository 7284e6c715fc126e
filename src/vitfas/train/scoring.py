"""The metric calls training makes, through :mod:`vitfas.metrics` (ISO/IEC 30107-3).

Conventions (as everywhere in vitfas): live is the positive class, a score is P(live), a
sample is accepted as live when ``score >= threshold``; APCER per attack type and its
maximum, BPCER, ACER = (max APCER + BPCER) / 2; failures to acquire are never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vitfas.metrics import (
    Scores,
    Threshold,
    auc,
    describe_margin,
    eer,
    evaluate,
    expected_calibration_error,
    fit_temperature,
    scaled_softmax,
    select_threshold,
)

__all__ = ["choose_threshold", "describe_margin", "dev_figures", "fit_calibration",
           "live_scores", "make_scores", "split_report"]


def live_scores(logits: Any, live_index: int, temperature: float = 1.0) -> np.ndarray:
    """``[N, C]`` logits (torch) -> ``[N]`` float64 P(live) = ``softmax(logits / T)[live]``."""
    return scaled_softmax(logits, temperature)[:, live_index].double().numpy()


def fit_calibration(logits: Any, labels: Any, live_index: int | None,
                    split: str = "dev") -> dict[str, Any]:
    """The bundle's ``calibration`` block from dev ``logits [N, C]`` and ``labels [N]``:
    the fitted temperature (:func:`vitfas.metrics.fit_temperature`), the dev NLL before and
    after and, for FAS (``live_index`` set), the dev ECE of P(live) at T = 1 and at T."""
    fit = fit_temperature(logits, labels)
    rec = fit.to_dict(split=split)
    if live_index is not None:
        live = np.asarray(labels) == live_index
        for key, t in (("ece_before", 1.0), ("ece_after", fit.temperature)):
            rec[key] = expected_calibration_error(live_scores(logits, live_index, t), live)
    return rec


def make_scores(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    attack_types: Sequence[str] | None = None,
    n_fta: Mapping[str, int] | None = None,
) -> Scores:
    """One split's scores for the metrics.

    Args:
        scores: ``[N]`` P(live).
        labels: ``[N]`` 1 live / 0 spoof.
        attack_types: ``[N]`` attack type per sample (ignored for live).
        n_fta: failures to acquire to add, as ``{attack_type or "none": count}`` (the
            manifest rows with ``fta=1``, which have no image to score).
    """
    s = list(np.asarray(scores, dtype=np.float64))
    y = list(np.asarray(labels).astype(int))
    at = list(attack_types) if attack_types is not None else [
        "none" if v == 1 else "attack" for v in y]
    fta = [False] * len(s)
    for kind, n in (n_fta or {}).items():
        live = kind == "none"
        s += [float("nan")] * n
        y += [1 if live else 0] * n
        at += [kind] * n
        fta += [True] * n
    return Scores.from_arrays(s, y, at, fta=fta)


def choose_threshold(dev: Scores, criterion: str = "eer") -> dict[str, Any]:
    """The operating threshold chosen on dev: the bundle's ``threshold`` block
    ``{"value", "criterion": "dev EER (interval midpoint, logit)", "split": "dev", "margin"}``
    (see :func:`vitfas.metrics.select_threshold`)."""
    return select_threshold(dev, criterion, split="dev").to_dict()


def split_report(splits: Mapping[str, Scores], threshold: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure for each split at the dev threshold (the content of ``metrics.json``)."""
    return evaluate(dict(splits), threshold=Threshold.from_dict(threshold))


def dev_figures(s: Scores) -> dict[str, float]:
    """Threshold-free figures for model selection during training: ``eer`` and ``auc``."""
    return {"eer": float(eer(s).value), "auc": float(auc(s))}
