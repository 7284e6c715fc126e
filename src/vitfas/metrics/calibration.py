"""Calibration of P(live): temperature scaling, reliability bins and the expected calibration error.

Conventions (``docs/metrics.md`` has every formula):

* A score is P(live) in [0, 1]; live is the positive class.
* **Temperature scaling** divides the logits by one scalar ``T > 0`` before the softmax:
  ``P = softmax(z / T)``. ``T = 1`` changes nothing; ``T > 1`` softens overconfident
  scores; the ranking of the scores (hence EER, AUC) never changes. :func:`fit_temperature`
  chooses ``T`` on dev logits by minimising the negative log-likelihood (NLL) of the true
  classes, a one-dimensional bounded search over ``log T`` (the NLL is convex in ``1/T``).
* **Reliability / ECE** use ``n_bins`` equal-width bins over [0, 1] (bin ``b`` holds
  ``b/B <= s < (b+1)/B``, the last bin also holds ``s = 1``). Per bin: ``n_b`` scores,
  ``conf_b`` = their mean score, ``acc_b`` = the share of live presentations among them.
  ``ECE = sum_b (n_b / N) * |acc_b - conf_b|`` over the N acquired presentations (failures
  to acquire have no score and are left out; empty bins contribute 0).

Main API: :func:`scaled_softmax` (``softmax(logits / T)``, torch or numpy),
:func:`fit_temperature`, :func:`reliability` (bins and ECE of one split),
:func:`expected_calibration_error`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vitfas.errors import BadConfigError, BadDataError

log = logging.getLogger(__name__)

DEFAULT_BINS = 10
T_BOUNDS = (0.05, 20.0)  # search range of the fitted temperature


def check_temperature(temperature: float, where: str = "temperature") -> float:
    """``float(temperature)``; :class:`BadConfigError` unless it is finite and > 0."""
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise BadConfigError(f"{where} must be a finite number > 0; found {temperature!r}")
    return t


def scaled_softmax(logits: Any, temperature: float = 1.0) -> Any:
    """``softmax(logits / temperature)`` over the last axis.

    Args:
        logits: ``[..., C]`` torch tensor (computed in its own dtype) or numpy array
            (computed in float64).
        temperature: ``T > 0``; ``1.0`` leaves the probabilities bit-for-bit as a plain
            softmax.

    Returns:
        Probabilities of the same shape and kind as ``logits``.
    """
    t = check_temperature(temperature)
    if isinstance(logits, np.ndarray):
        z = logits.astype(np.float64) / t
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return (logits if t == 1.0 else logits / t).softmax(dim=-1)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    from scipy.special import logsumexp

    z = logits / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(z.shape[0]), labels]))


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the dev NLL before (``T = 1``) and after."""

    temperature: float
    nll_before: float
    nll_after: float
    at_bound: bool
    n: int

    def to_dict(self, split: str | None = "dev") -> dict[str, Any]:
        """The bundle's ``calibration`` block."""
        return {"method": "temperature", "temperature": self.temperature, "split": split,
                "n": self.n, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "at_bound": self.at_bound, "bounds": list(T_BOUNDS)}


def fit_temperature(logits: Any, labels: Any, bounds: tuple[float, float] = T_BOUNDS
                    ) -> TemperatureFit:
    """The temperature ``T`` minimising the NLL of ``labels`` under ``softmax(logits / T)``.

    A bounded scalar search (``scipy.optimize.minimize_scalar``) over ``log T`` in
    ``log(bounds)``. When the argmax classifies every sample of the set correctly (T cannot
    move the decision boundary, so only then) the NLL keeps falling as ``T -> 0`` and has no
    finite minimum: the search then stops at the lower bound, ``at_bound`` is True and a
    warning says so.

    Args:
        logits: ``[N, C]`` logits (numpy or torch), C >= 2.
        labels: ``[N]`` integer class indices in ``[0, C)``.
        bounds: search range of ``T``.

    Raises:
        BadDataError: wrong shapes, non-finite logits, labels out of range, N = 0.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits,
                   dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
    if z.ndim != 2 or z.shape[1] < 2:
        raise BadDataError(f"temperature fit needs [N, C>=2] logits; found shape {z.shape}")
    if z.shape[0] == 0 or y.shape[0] != z.shape[0]:
        raise BadDataError(
            f"temperature fit needs N > 0 logits and N labels; found {z.shape[0]} logits and "
            f"{y.shape[0]} labels"
        )
    if not np.isfinite(z).all():
        raise BadDataError("temperature fit: the logits hold non-finite values")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= z.shape[1]:
        raise BadDataError(
            f"temperature fit needs integer labels in [0, {z.shape[1]}); found "
            f"{sorted(set(y.tolist()))[:5]}"
        )
    y = y.astype(np.int64)
    lo, hi = (math.log(check_temperature(b, "temperature bound")) for b in bounds)
    res = minimize_scalar(lambda u: _nll(z, y, math.exp(u)), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    t = float(math.exp(res.x))
    at_bound = bool(min(abs(res.x - lo), abs(res.x - hi)) < 1e-3)
    if at_bound:
        log.warning(
            "temperature fit stopped at the bound T=%.4g (search range %s): %s", t, bounds,
            "the argmax classifies every sample of this set correctly, so the NLL has no "
            "finite minimum (use a larger dev set)"
            if t < 1 else "the logits carry almost no information about the labels")
    return TemperatureFit(t, _nll(z, y, 1.0), _nll(z, y, t), at_bound, int(z.shape[0]))


@dataclass(frozen=True)
class Reliability:
    """Reliability bins of one split and its ECE (arrays ``[B]``; ``nan`` for empty bins)."""

    edges: np.ndarray  # [B + 1]
    counts: np.ndarray  # [B] int
    mean_score: np.ndarray  # [B] conf_b
    live_rate: np.ndarray  # [B] acc_b
    ece: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ece", "bins", "n", "reliability": [{low, high, n, mean_score,
        live_rate}]}`` (``null`` for an empty bin's means)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "ece": self.ece,
            "bins": int(self.counts.shape[0]),
            "n": self.n,
            "reliability": [
                {"low": float(self.edges[b]), "high": float(self.edges[b + 1]),
                 "n": int(self.counts[b]), "mean_score": num(self.mean_score[b]),
                 "live_rate": num(self.live_rate[b])}
                for b in range(self.counts.shape[0])
            ],
        }


def reliability(scores: Any, is_live: Any, n_bins: int = DEFAULT_BINS) -> Reliability | None:
    """Equal-width reliability bins over [0, 1] and the ECE of P(live) scores.

    Args:
        scores: ``[N]`` P(live); ``nan`` entries (failures to acquire) are left out.
        is_live: ``[N]`` bool / 0-1, True for bona fide.
        n_bins: number of equal-width bins B (>= 1).

    Returns:
        :class:`Reliability`, or ``None`` when an acquired score lies outside [0, 1] (not a
        probability: no calibration to measure) or nothing was acquired.
    """
    if int(n_bins) < 1:
        raise BadConfigError(f"n_bins must be >= 1; found {n_bins}")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_live).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise BadDataError(f"{s.shape[0]} scores but {y.shape[0]} labels")
    ok = ~np.isnan(s)
    s, y = s[ok], y[ok]
    if s.size == 0 or s.min() < 0.0 or s.max() > 1.0:
        return None
    B = int(n_bins)
    idx = np.minimum((s * B).astype(np.int64), B - 1)
    counts = np.bincount(idx, minlength=B)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=s, minlength=B) / counts
        acc = np.bincount(idx, weights=y.astype(np.float64), minlength=B) / counts
    gap = np.where(counts > 0, np.abs(acc - conf), 0.0)
    ece = float(np.sum(counts / s.size * gap))
    return Reliability(np.linspace(0.0, 1.0, B + 1), counts, conf, acc, ece, int(s.size))


def expected_calibration_error(scores: Any, is_live: Any, n_bins: int = DEFAULT_BINS
                               ) -> float | None:
    """ECE of P(live) scores with ``n_bins`` equal-width bins (see :func:`reliability`)."""
    r = reliability(scores, is_live, n_bins)
    return None if r is None else r.ece
