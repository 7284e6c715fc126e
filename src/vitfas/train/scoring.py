"""The two metric calls training makes: pick the dev threshold, and report FAS error rates.

Conventions (ISO/IEC 30107-3, as everywhere in vitfas): live is the positive class, a score
is P(live), a sample is accepted as live when ``score >= threshold``. APCER is computed per
attack type and its maximum is reported; BPCER is the live rejection rate;
ACER = (max APCER + BPCER) / 2.

This module is the single switch point to :mod:`vitfas.metrics` (the evaluation part): the
full metric suite lives there; until it is importable these small, tested equivalents are
used so training can already choose a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["choose_threshold", "fas_metrics"]


def _eer_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Threshold where APCER (all attacks pooled) and BPCER are closest; ``(thr, eer)``."""
    live, spoof = scores[labels == 1], scores[labels == 0]
    if len(live) == 0 or len(spoof) == 0:
        raise ValueError(
            f"the EER threshold needs live and spoof samples; got {len(live)} live and "
            f"{len(spoof)} spoof"
        )
    cands = np.unique(np.concatenate([scores, [np.inf]]))
    live_s, spoof_s = np.sort(live), np.sort(spoof)
    # accepted as live when score >= t
    apcer = 1.0 - np.searchsorted(spoof_s, cands, side="left") / len(spoof_s)
    bpcer = np.searchsorted(live_s, cands, side="left") / len(live_s)
    gap = np.abs(apcer - bpcer)
    i = int(np.argmin(gap))
    return float(cands[i]), float((apcer[i] + bpcer[i]) / 2)


def choose_threshold(
    scores: Sequence[float], labels: Sequence[int], criterion: str = "eer"
) -> dict[str, Any]:
    """The operating threshold on dev scores.

    Args:
        scores: ``[N]`` P(live).
        labels: ``[N]`` 1 = live, 0 = spoof.
        criterion: ``"eer"`` (APCER == BPCER).

    Returns:
        ``{"value": float, "criterion": "dev EER", "split": "dev", "eer": float}``.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if criterion != "eer":
        raise ValueError(f"unknown threshold criterion {criterion!r}; use 'eer'")
    thr, eer = _eer_threshold(s, y)
    return {"value": thr, "criterion": "dev EER", "split": "dev", "eer": eer}


def fas_metrics(
    scores: Sequence[float],
    labels: Sequence[int],
    attack_types: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """APCER per attack type and max, BPCER, ACER at ``threshold``; EER and AUC.

    Args:
        scores: ``[N]`` P(live); labels ``[N]`` (1 live, 0 spoof); attack_types ``[N]``
            (ignored for live samples).
    """
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    at = np.asarray(list(attack_types), dtype=object)
    accept = s >= threshold
    per_type = {
        str(t): float(accept[(y == 0) & (at == t)].mean())
        for t in sorted({str(a) for a in at[y == 0]})
    }
    apcer = max(per_type.values()) if per_type else float("nan")
    bpcer = float((~accept[y == 1]).mean()) if (y == 1).any() else float("nan")
    out: dict[str, Any] = {
        "threshold": float(threshold),
        "apcer_per_attack": per_type,
        "apcer": apcer,
        "bpcer": bpcer,
        "acer": (apcer + bpcer) / 2,
        "n_live": int((y == 1).sum()),
        "n_spoof": int((y == 0).sum()),
    }
    if (y == 1).any() and (y == 0).any():
        out["eer"] = _eer_threshold(s, y)[1]
        out["auc"] = float(roc_auc_score(y, s))
    return out
