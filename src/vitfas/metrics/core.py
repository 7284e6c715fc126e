"""ISO/IEC 30107-3 presentation-attack-detection metrics, in plain numpy.

Conventions (the whole module follows them; ``docs/metrics.md`` has every formula):

* Bona fide ("live") is the positive class. A score is P(live): higher = more live.
* A presentation is **accepted as live when** ``score >= threshold`` (ties are accepted).
* Failures to acquire (FTA: no face found, crop failed) are never dropped. They stay in every
  denominator. A bona fide FTA is a **rejected** bona fide presentation (it counts in BPCER:
  the genuine user is not let through). An attack FTA is, by default, a **rejected** attack
  (the system did not accept it; ``attack_fta="accept"`` counts it as accepted instead, the
  pessimistic choice). Both are also reported on their own as non-response rates (BPNRR,
  APNRR, ISO/IEC 30107-3's names). For ranking metrics (EER, AUC, curves) an FTA behaves as
  a score below every real score (or above every real one, for accepted attack FTAs).
* APCER is per attack type (PAI species): the share of that type's presentations accepted
  as live. ``apcer_max`` is the worst species (ISO's headline figure), ``apcer_mean`` their
  mean, ``apcer_pooled`` (= FAR) treats all attacks as one set.
* An attack type with no presentations in a split has an **undefined** APCER: ``None`` in
  every dict and ``nan`` in arrays, never 0. It is left out of max/mean.
* ACER = (apcer_max + BPCER) / 2; ``acer_mean_apcer`` = (apcer_mean + BPCER) / 2;
  HTER = (apcer_pooled + BPCER) / 2 = (FAR + FRR) / 2.
* Thresholds are chosen on one split (``dev``) with :func:`select_threshold` and applied
  unchanged to the others. The only exception, ``hter_at_own_eer_threshold``, is labelled
  "comparable to published OCIM tables".
* When the EER is reached over an interval of thresholds (e.g. classes that separate
  completely on dev: anything in the gap gives 0/0), the EER threshold is the interval's
  midpoint, in logit space for probabilities, and the interval's width is reported as the
  dev **margin** (:func:`eer`, :func:`midpoint`).

Main API: :class:`Scores` (one split's scores), :func:`error_rates` (everything at one
threshold), :func:`eer`, :func:`auc`, :func:`tpr_at_fpr`, :func:`bpcer_at_apcer`,
:func:`select_threshold`, :func:`summarize` (one split, all figures),
:func:`evaluate` (threshold on dev, figures on every split; the dict for ``metrics.json``),
:func:`aggregate_videos` (frame scores -> video scores). Calibration (temperature, ECE,
reliability bins) lives in :mod:`vitfas.metrics.calibration`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vitfas.errors import BadConfigError, BadDataError
from vitfas.metrics.calibration import DEFAULT_BINS, reliability

log = logging.getLogger(__name__)

BONA_FIDE = "none"  # attack_type of a bona fide (live) presentation, as in the manifest
DEFAULT_ATTACK = "attack"  # attack_type given to attacks when none is known
OCIM_LABEL = "comparable to published OCIM tables"
LIVE_LABELS = frozenset(
    {"live", "bona fide", "bonafide", "bona_fide", "real", "genuine", "1", "true"}
)
_LIVE_NAMES = LIVE_LABELS
_ATTACK_NAMES = {"spoof", "attack", "fake", "0", "false"}

AttackFTA = Literal["reject", "accept"]


def _nan_to_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------------------
# Scores of one split
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """The scores of one split (frames or videos), with labels, attack types and FTA.

    Build with :meth:`from_arrays`. Attributes (``N`` presentations):
        scores: ``[N]`` float64, P(live); ``nan`` where ``fta``.
        is_live: ``[N]`` bool, True for bona fide.
        attack_type: ``[N]`` str (object array); ``"none"`` for bona fide.
        fta: ``[N]`` bool, failure to acquire (no score).
        ids: ``[N]`` str, an identifier per presentation (paths or video ids), or None.
        species: the attack types to report, sorted, including ones with no samples here.
    """

    scores: np.ndarray
    is_live: np.ndarray
    attack_type: np.ndarray
    fta: np.ndarray
    ids: np.ndarray | None = None
    species: tuple[str, ...] = ()

    @classmethod
    def from_arrays(
        cls,
        scores: Sequence[float] | np.ndarray,
        labels: Sequence[Any] | np.ndarray,
        attack_types: Sequence[str] | np.ndarray | None = None,
        fta: Sequence[bool] | np.ndarray | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
        species: Sequence[str] | None = None,
    ) -> Scores:
        """Validate and pack one split.

        Args:
            scores: ``[N]`` P(live) per presentation; ``nan`` (or anything, when ``fta``
                marks it) for a failure to acquire.
            labels: ``[N]`` 1/True/"live" for bona fide, 0/False/"spoof" for attacks.
            attack_types: ``[N]`` PAI species per presentation ("print", "replay", ...);
                ignored for bona fide rows. ``None``: every attack is of type "attack".
            fta: ``[N]`` bool failure-to-acquire flags; ``None``: FTA where the score is nan.
            ids: ``[N]`` identifiers kept for reports and video grouping.
            species: attack types to report even if absent here (their APCER is None);
                the species present are always added.

        Raises:
            BadDataError: lengths differ, unknown label, a non-FTA score that is not finite.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        n = s.shape[0]
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != n:
            raise BadDataError(f"scores has {n} entries but labels has {lab.shape[0]}")
        if lab.dtype.kind in "biuf":
            is_live = lab.astype(np.float64) == 1.0
            bad = ~np.isin(lab.astype(np.float64), (0.0, 1.0))
            if bad.any():
                raise BadDataError(
                    f"labels must be 1 (live) or 0 (attack); found {lab[bad][:5].tolist()}"
                )
        else:
            low = np.char.lower(np.char.strip(lab.astype(str)))
            is_live = np.isin(low, list(_LIVE_NAMES))
            unknown = ~is_live & ~np.isin(low, list(_ATTACK_NAMES))
            if unknown.any():
                raise BadDataError(
                    f"labels must be 'live' or 'spoof' (or 1/0); found "
                    f"{sorted(set(lab[unknown].tolist()))[:5]}"
                )
        if attack_types is None:
            at = np.where(is_live, BONA_FIDE, DEFAULT_ATTACK).astype(object)
        else:
            at = np.asarray(attack_types, dtype=object).reshape(-1)
            if at.shape[0] != n:
                raise BadDataError(f"scores has {n} entries but attack_types has {at.shape[0]}")
            at = np.array([str(a).strip() if a is not None else "" for a in at], dtype=object)
            missing = ~is_live & np.isin(at, ["", BONA_FIDE])
            if missing.any():
                log.warning(
                    "%d attack presentation(s) have no attack type; reported as %r",
                    int(missing.sum()), DEFAULT_ATTACK,
                )
                at[missing] = DEFAULT_ATTACK
            at[is_live] = BONA_FIDE
        if fta is None:
            f = np.isnan(s)
        else:
            f = np.asarray(fta, dtype=bool).reshape(-1)
            if f.shape[0] != n:
                raise BadDataError(f"scores has {n} entries but fta has {f.shape[0]}")
        bad = ~f & ~np.isfinite(s)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = f" ({ids[i]})" if ids is not None else ""
            raise BadDataError(
                f"score {s[i]} at index {i}{where} is not finite and not marked as a failure "
                f"to acquire; {int(bad.sum())} such score(s)"
            )
        s = s.copy()
        s[f] = np.nan
        id_arr = None if ids is None else np.asarray([str(x) for x in ids], dtype=object)
        if id_arr is not None and id_arr.shape[0] != n:
            raise BadDataError(f"scores has {n} entries but ids has {id_arr.shape[0]}")
        sp = set(at[~is_live].tolist()) | set(species or ())
        sp.discard(BONA_FIDE)
        return cls(s, is_live, at, f, id_arr, tuple(sorted(sp)))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_live(self) -> int:
        return int(self.is_live.sum())

    @property
    def n_attack(self) -> int:
        return int((~self.is_live).sum())

    def subset(self, mask: np.ndarray) -> Scores:
        """The presentations where ``mask`` ([N] bool) is True; the species list is kept."""
        return Scores(
            self.scores[mask], self.is_live[mask], self.attack_type[mask], self.fta[mask],
            None if self.ids is None else self.ids[mask], self.species,
        )

    def counts(self) -> dict[str, Any]:
        """Presentation and FTA counts: bona fide, attacks, and per attack type."""
        out: dict[str, Any] = {
            "bona_fide": self.n_live,
            "attack": self.n_attack,
            "fta_bona_fide": int((self.fta & self.is_live).sum()),
            "fta_attack": int((self.fta & ~self.is_live).sum()),
            "per_attack_type": {},
        }
        for sp in self.species:
            m = self.attack_type == sp
            out["per_attack_type"][sp] = {"n": int(m.sum()), "fta": int((m & self.fta).sum())}
        return out


def _require(s: Scores, what: str) -> None:
    """Raise a clear error when a ranking metric cannot be defined on ``s``."""
    if len(s) == 0:
        raise BadDataError(f"{what} needs scores; the split is empty")
    if s.n_live == 0:
        raise BadDataError(
            f"{what} needs both bona fide and attack presentations; found 0 bona fide and "
            f"{s.n_attack} attack"
        )
    if s.n_attack == 0:
        raise BadDataError(
            f"{what} needs both bona fide and attack presentations; found {s.n_live} bona fide "
            "and 0 attack"
        )


def _check_policy(attack_fta: str) -> None:
    if attack_fta not in ("reject", "accept"):
        raise BadConfigError(f"attack_fta must be 'reject' or 'accept'; found {attack_fta!r}")


# ---------------------------------------------------------------------------------------
# Error rates at one threshold
# ---------------------------------------------------------------------------------------


@dataclass
class ErrorRates:
    """All ISO/IEC 30107-3 error rates at one threshold (rates are fractions in [0, 1]).

    ``None`` marks an undefined rate (no presentations of that kind). ``confusion`` maps
    each true class ("bona fide" and every attack type) to counts of
    ``accepted`` (as live, score >= threshold), ``rejected`` (score < threshold) and ``fta``.
    """

    threshold: float
    apcer: dict[str, float | None]
    apcer_max: float | None
    apcer_max_type: str | None
    apcer_mean: float | None
    apcer_pooled: float | None
    bpcer: float | None
    acer: float | None
    acer_mean_apcer: float | None
    hter: float | None
    apnrr: float | None
    bpnrr: float | None
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    attack_fta: str = "reject"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``None`` for undefined values)."""
        return {
            "threshold": float(self.threshold),
            "apcer": dict(self.apcer),
            "apcer_max": self.apcer_max,
            "apcer_max_type": self.apcer_max_type,
            "apcer_mean": self.apcer_mean,
            "apcer_pooled": self.apcer_pooled,
            "bpcer": self.bpcer,
            "acer": self.acer,
            "acer_mean_apcer": self.acer_mean_apcer,
            "hter": self.hter,
            "apnrr": self.apnrr,
            "bpnrr": self.bpnrr,
            "confusion": {k: dict(v) for k, v in self.confusion.items()},
            "attack_fta": self.attack_fta,
        }


def _mean2(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (a + b) / 2.0


def error_rates(s: Scores, threshold: float, attack_fta: AttackFTA = "reject") -> ErrorRates:
    """APCER per attack type (and max / mean / pooled), BPCER, ACER, HTER at ``threshold``.

    A presentation is accepted as live when ``score >= threshold``. A bona fide FTA counts
    as rejected; an attack FTA as rejected (``attack_fta="reject"``) or accepted
    (``"accept"``). A split without bona fide presentations gets ``bpcer=None`` (and
    ACER/HTER None); an attack type without presentations gets ``apcer[type]=None``.
    """
    _check_policy(attack_fta)
    if len(s) == 0:
        raise BadDataError("error rates need scores; the split is empty")
    t = float(threshold)
    ok = ~s.fta
    acc = np.zeros(len(s), dtype=bool)
    acc[ok] = s.scores[ok] >= t
    if attack_fta == "accept":
        acc |= s.fta & ~s.is_live
    confusion: dict[str, dict[str, int]] = {}

    def _conf(m: np.ndarray) -> dict[str, int]:
        return {
            "n": int(m.sum()),
            "accepted": int((m & acc).sum()),
            "rejected": int((m & ~acc & ~s.fta).sum()),
            "fta": int((m & s.fta).sum()),
        }

    live = s.is_live
    confusion["bona fide"] = _conf(live)
    n_live = int(live.sum())
    bpcer = None if n_live == 0 else 1.0 - float((live & acc).sum()) / n_live
    bpnrr = None if n_live == 0 else float((live & s.fta).sum()) / n_live
    apcer: dict[str, float | None] = {}
    for sp in s.species:
        m = s.attack_type == sp
        confusion[sp] = _conf(m)
        n = int(m.sum())
        apcer[sp] = None if n == 0 else float((m & acc).sum()) / n
    defined = {k: v for k, v in apcer.items() if v is not None}
    if defined:
        worst = max(defined, key=lambda k: (defined[k], k))
        apcer_max: float | None = defined[worst]
        apcer_mean: float | None = float(np.mean(list(defined.values())))
    else:
        worst, apcer_max, apcer_mean = None, None, None
    att = ~live
    n_att = int(att.sum())
    apcer_pooled = None if n_att == 0 else float((att & acc).sum()) / n_att
    apnrr = None if n_att == 0 else float((att & s.fta).sum()) / n_att
    return ErrorRates(
        threshold=t,
        apcer=apcer,
        apcer_max=apcer_max,
        apcer_max_type=worst,
        apcer_mean=apcer_mean,
        apcer_pooled=apcer_pooled,
        bpcer=bpcer,
        acer=_mean2(apcer_max, bpcer),
        acer_mean_apcer=_mean2(apcer_mean, bpcer),
        hter=_mean2(apcer_pooled, bpcer),
        apnrr=apnrr,
        bpnrr=bpnrr,
        confusion=confusion,
        attack_fta=attack_fta,
    )


# ---------------------------------------------------------------------------------------
# Curves over all thresholds
# ---------------------------------------------------------------------------------------


@dataclass
class Curve:
    """Operating points at every distinct threshold, thresholds ascending.

    ``thresholds[k]`` are the distinct acquired scores plus one value just above the
    largest (where nothing acquired is accepted). Arrays ``[K]``:
        apcer_pooled: FAR, all attacks pooled (non-increasing in k).
        apcer_max: worst attack type's APCER (non-increasing in k).
        apcer: ``{type: [K]}`` per attack type (nan rows for types without samples).
        bpcer: FRR (non-decreasing in k).
    """

    thresholds: np.ndarray
    apcer_pooled: np.ndarray
    apcer_max: np.ndarray
    apcer: dict[str, np.ndarray]
    bpcer: np.ndarray

    @property
    def tpr(self) -> np.ndarray:
        return 1.0 - self.bpcer

    @property
    def fpr(self) -> np.ndarray:
        return self.apcer_pooled


def _accept_rate(scores_sorted: np.ndarray, thresholds: np.ndarray, n_total: int,
                 n_fta_accepted: int) -> np.ndarray:
    """Fraction of ``n_total`` presentations with score >= each threshold (+ accepted FTAs)."""
    below = np.searchsorted(scores_sorted, thresholds, side="left")
    return (scores_sorted.shape[0] - below + n_fta_accepted) / float(n_total)


def curve(s: Scores, attack_fta: AttackFTA = "reject") -> Curve:
    """All operating points of ``s`` (see :class:`Curve`); needs both classes."""
    _check_policy(attack_fta)
    _require(s, "a ROC/DET curve")
    ok = ~s.fta
    finite = np.unique(s.scores[ok])
    if finite.size == 0:
        finite = np.array([0.0])
    thr = np.append(finite, np.nextafter(finite[-1], np.inf))
    live_sorted = np.sort(s.scores[ok & s.is_live])
    bpcer = 1.0 - _accept_rate(live_sorted, thr, s.n_live, 0)
    acc_fta = attack_fta == "accept"
    att = ~s.is_live
    pooled = _accept_rate(
        np.sort(s.scores[ok & att]), thr, s.n_attack, int((s.fta & att).sum()) if acc_fta else 0
    )
    per: dict[str, np.ndarray] = {}
    for sp in s.species:
        m = s.attack_type == sp
        n = int(m.sum())
        if n == 0:
            per[sp] = np.full(thr.shape, np.nan)
        else:
            per[sp] = _accept_rate(
                np.sort(s.scores[ok & m]), thr, n, int((s.fta & m).sum()) if acc_fta else 0
            )
    defined = [v for v in per.values() if not np.isnan(v).all()]
    amax = np.max(np.stack(defined), axis=0) if defined else pooled.copy()
    return Curve(thr, pooled, amax, per, bpcer)


LOGIT_EPS = 1e-7  # scores are clipped to [eps, 1 - eps] before the logit
_D_TOL = 1e-12  # |BPCER - FAR| below this counts as equal (rates are ratios of counts)


def _logit(p: float) -> float:
    q = min(max(float(p), LOGIT_EPS), 1.0 - LOGIT_EPS)
    return math.log(q / (1.0 - q))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def is_probability(s: Scores) -> bool:
    """True when every acquired score of ``s`` lies in [0, 1] (scores are probabilities)."""
    v = s.scores[~s.fta]
    return bool(v.size == 0 or (v.min() >= 0.0 and v.max() <= 1.0))


def midpoint(low: float, high: float, probability: bool) -> tuple[float, str]:
    """A threshold strictly above ``low`` and at most ``high``, halfway between them.

    For probabilities, the midpoint in logit space, ``sigmoid((logit(low) + logit(high)) / 2)``
    with both ends clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` first (so 0 and 1 are allowed);
    otherwise (or when clipping leaves no room: both ends within ``LOGIT_EPS`` of 0 or of 1)
    the linear midpoint ``(low + high) / 2``. Returns ``(threshold, "logit" | "linear")``.
    """
    if probability:
        t = _sigmoid((_logit(low) + _logit(high)) / 2.0)
        if low < t <= high:
            return t, "logit"
    t = low + (high - low) / 2.0
    return (t if low < t <= high else high), "linear"


@dataclass(frozen=True)
class EER:
    """Equal error rate, the threshold where it occurs and how that threshold was found.

    ``rule`` is one of ``"interval midpoint (logit)"``, ``"interval midpoint (linear)"``
    (FAR = BPCER = EER for every threshold in ``(low, high]``), ``"interpolated"`` (FAR and
    BPCER cross between two operating points: a single point, margin 0), ``"no crossing"``
    (BPCER > FAR already at the lowest threshold, or FAR > BPCER at the highest: only
    through failures to acquire) and ``"interval edge (unbounded)"`` (the interval is open
    at one end; only through failures to acquire).
    ``low``/``high`` bound the interval (``None`` for an open end); ``margin`` is its width
    ``high - low`` in score units and ``margin_logit`` = ``logit(high) - logit(low)`` (clipped
    as in :func:`midpoint`; ``None`` when the scores are not probabilities).
    """

    value: float
    threshold: float
    rule: str = "interpolated"
    low: float | None = None
    high: float | None = None
    margin: float | None = None
    margin_logit: float | None = None

    def margin_dict(self) -> dict[str, Any]:
        """``{"interval": [low, high], "score": margin, "logit": margin_logit, "rule"}``."""
        return {"interval": [self.low, self.high], "score": self.margin,
                "logit": self.margin_logit, "rule": self.rule}


def eer(s: Scores, attack_fta: AttackFTA = "reject") -> EER:
    """Equal error rate of pooled APCER (FAR) and BPCER (FRR), and its threshold.

    Rule: walk the operating points by ascending threshold; ``d_k = BPCER_k - FAR_k`` is
    non-decreasing (``|d_k| <= 1e-12`` counts as 0).

    * ``d_k == 0`` for ``k`` in ``k1..k2``: FAR and BPCER are constant there and every
      threshold in the interval ``(t_{k1-1}, t_{k2}]`` gives EER = ``FAR_{k1}`` (for example
      any threshold in the gap between two completely separated classes gives 0/0). The
      threshold is the interval's midpoint, in logit space when the scores are probabilities
      (:func:`midpoint`); the interval's width is the **margin**. (With ``k1 = 0`` or ``t_{k2}``
      the top sentinel, the interval is unbounded and ``t_{k1}`` is kept.)
    * otherwise, at the first ``k`` with ``d_k > 0``, the segment between points ``k-1`` and
      ``k`` is intersected with ``FAR == BPCER``: ``a = -d_{k-1} / (d_k - d_{k-1})``,
      ``EER = FAR_{k-1} + a (FAR_k - FAR_{k-1})`` and the threshold is interpolated the same
      way, ``t_{k-1} + a (t_k - t_{k-1})`` (margin 0).
    * if already ``d_0 > 0`` at the lowest threshold (only possible through bona fide FTAs),
      EER = ``(FAR_0 + BPCER_0) / 2`` at ``t_0`` (and likewise at the top sentinel when
      ``d < 0`` everywhere, only possible through accepted attack FTAs).
    """
    c = curve(s, attack_fta)
    d = c.bpcer - c.apcer_pooled
    d = np.where(np.abs(d) <= _D_TOL, 0.0, d)
    zero = np.flatnonzero(d == 0)
    prob = is_probability(s)
    last = len(d) - 1
    if zero.size:
        k1, k2 = int(zero[0]), int(zero[-1])
        value = float(c.apcer_pooled[k1])
        if k1 == 0 or k2 == last:
            lo = None if k1 == 0 else float(c.thresholds[k1 - 1])
            hi = None if k2 == last else float(c.thresholds[k2])
            return EER(value, float(c.thresholds[k1]), "interval edge (unbounded)", lo, hi)
        lo, hi = float(c.thresholds[k1 - 1]), float(c.thresholds[k2])
        t, space = midpoint(lo, hi, prob)
        return EER(value, t, f"interval midpoint ({space})", lo, hi, hi - lo,
                   _logit(hi) - _logit(lo) if prob else None)
    k = int(np.argmax(d > 0)) if (d > 0).any() else last
    if k == 0 or d[k] < 0:
        t = float(c.thresholds[k])
        return EER(float((c.apcer_pooled[k] + c.bpcer[k]) / 2), t, "no crossing")
    a = -d[k - 1] / (d[k] - d[k - 1])
    value = c.apcer_pooled[k - 1] + a * (c.apcer_pooled[k] - c.apcer_pooled[k - 1])
    t = float(c.thresholds[k - 1] + a * (c.thresholds[k] - c.thresholds[k - 1]))
    return EER(float(value), t, "interpolated", t, t, 0.0, 0.0 if prob else None)


def own_eer_threshold(s: Scores, attack_fta: AttackFTA = "reject") -> float:
    """The operating threshold (a score of ``s``) where ``|FAR - BPCER|`` is smallest.

    The lowest such threshold on ties; no interpolation. This is how published
    OCIM cross-domain tables pick the threshold for their HTER (on the test set itself), so
    HTER there is "comparable to published OCIM tables", and optimistic.
    """
    c = curve(s, attack_fta)
    return float(c.thresholds[int(np.argmin(np.abs(c.bpcer - c.apcer_pooled)))])


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank (like scipy's rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(xs[1:] != xs[:-1]) + 1  # (np.diff of two -inf is nan)
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [xs.shape[0]]))
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def auc(s: Scores, attack_fta: AttackFTA = "reject") -> float:
    """Area under the ROC curve = P(live score > attack score) + 0.5 P(equal).

    Computed with the Mann-Whitney rank sum (ties averaged), equal to
    ``sklearn.metrics.roc_auc_score(is_live, scores)`` when there is no FTA. FTAs take a
    score below every acquired score (attack FTAs above every one with
    ``attack_fta="accept"``).
    """
    _check_policy(attack_fta)
    _require(s, "AUC")
    x = s.scores.copy()
    x[s.fta & s.is_live] = -np.inf
    x[s.fta & ~s.is_live] = np.inf if attack_fta == "accept" else -np.inf
    r = _average_ranks(x)
    n1, n0 = s.n_live, s.n_attack
    return float((r[s.is_live].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


@dataclass(frozen=True)
class OperatingPoint:
    """A rate read at a threshold chosen by a constraint (e.g. BPCER at APCER <= 5%)."""

    value: float | None
    threshold: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _nan_to_none(self.value), "threshold": _nan_to_none(self.threshold)}


def tpr_at_fpr(s: Scores, fpr: float = 0.01, attack_fta: AttackFTA = "reject") -> OperatingPoint:
    """Largest TPR (1 - BPCER) over thresholds whose pooled FAR is ``<= fpr``.

    No interpolation: the lowest threshold meeting the constraint is used.
    """
    c = curve(s, attack_fta)
    ok = np.flatnonzero(c.apcer_pooled <= fpr + 1e-12)
    if ok.size == 0:
        return OperatingPoint(None, None)
    k = int(ok[0])
    return OperatingPoint(float(c.tpr[k]), float(c.thresholds[k]))


def bpcer_at_apcer(
    s: Scores, apcer: float = 0.05, attack_fta: AttackFTA = "reject"
) -> OperatingPoint:
    """BPCER at the lowest threshold where the **worst attack type's** APCER is ``<= apcer``.

    ``apcer=0.05`` gives BPCER20, ``0.01`` BPCER100 (ISO/IEC 30107-3). Since BPCER grows
    with the threshold, this is the smallest BPCER that keeps every attack type at or under
    the APCER target. ``value=None`` if no threshold meets it (only possible with
    ``attack_fta="accept"``).
    """
    c = curve(s, attack_fta)
    ok = np.flatnonzero(c.apcer_max <= apcer + 1e-12)
    if ok.size == 0:
        return OperatingPoint(None, None)
    k = int(ok[0])
    return OperatingPoint(float(c.bpcer[k]), float(c.thresholds[k]))


# ---------------------------------------------------------------------------------------
# Threshold selection
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """How to choose a threshold: ``kind`` in {"eer", "apcer", "bpcer"}, target rate."""

    kind: str
    target: float | None = None

    def __str__(self) -> str:
        return "eer" if self.kind == "eer" else f"{self.kind}={self.target:g}"

    def describe(self) -> str:
        """Human label, e.g. ``"EER"`` or ``"APCER<=5%"``."""
        if self.kind == "eer":
            return "EER"
        return f"{self.kind.upper()}<={self.target * 100:g}%"


_CRIT_RE = re.compile(r"^\s*(eer|apcer|bpcer)\s*(?:[=@:]\s*([0-9.eE+-]+)\s*(%?))?\s*$", re.I)


def parse_criterion(text: str | Criterion) -> Criterion:
    """Parse ``"eer"``, ``"apcer=0.05"``, ``"bpcer=0.01"`` (also ``"apcer=5%"``)."""
    if isinstance(text, Criterion):
        return text
    m = _CRIT_RE.match(str(text))
    if not m:
        raise BadConfigError(
            f"threshold criterion {text!r} not understood; expected 'eer', 'apcer=RATE' or "
            "'bpcer=RATE' (e.g. apcer=0.05)"
        )
    kind, num, pct = m.group(1).lower(), m.group(2), m.group(3)
    if kind == "eer":
        if num is not None:
            raise BadConfigError(f"criterion 'eer' takes no rate; found {text!r}")
        return Criterion("eer")
    if num is None:
        raise BadConfigError(f"criterion {kind!r} needs a rate, e.g. {kind}=0.05; found {text!r}")
    target = float(num) / (100.0 if pct else 1.0)
    if not 0.0 <= target <= 1.0:
        raise BadConfigError(f"criterion rate must be in [0, 1]; found {target} in {text!r}")
    return Criterion(kind, target)


@dataclass(frozen=True)
class Threshold:
    """An operating threshold and how it was chosen; ``to_dict`` is the bundle's format.

    ``margin`` (EER criterion only) is the dev margin of :meth:`EER.margin_dict`:
    ``{"interval": [low, high], "score": width, "logit": width in logits, "rule"}``.
    """

    value: float
    criterion: str
    split: str | None
    margin: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": float(self.value), "criterion": self.criterion,
                             "split": self.split}
        if self.margin is not None:
            d["margin"] = dict(self.margin)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], criterion: str | None = None) -> Threshold:
        """Inverse of :meth:`to_dict` (``criterion`` replaces the recorded one if given).

        Raises:
            BadDataError: no numeric ``value``.
        """
        try:
            value = float(d["value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadDataError(f"a threshold needs a numeric 'value'; found {dict(d)}") from exc
        m = d.get("margin")
        return cls(value, criterion or str(d.get("criterion", "given")), d.get("split"),
                   dict(m) if m else None)


def describe_margin(margin: Mapping[str, Any] | None) -> str:
    """A threshold's EER margin in words, e.g. ``"0.697 (6.65 in logits), interval (0.3,
    0.997]"``; ``""`` when there is none."""
    if not margin:
        return ""
    lo, hi = (margin.get("interval") or [None, None])[:2]
    w, wl = margin.get("score"), margin.get("logit")
    if w is None:
        return f"none (EER rule: {margin.get('rule')})"
    if w == 0:
        return "0 (the EER is reached at a single, interpolated threshold)"
    text = f"{w:.4g}" + ("" if wl is None else f" ({wl:.4g} in logits)")
    return text + f", interval ({lo:.6g}, {hi:.6g}]"


def select_threshold(
    s: Scores,
    criterion: str | Criterion = "eer",
    split: str | None = "dev",
    attack_fta: AttackFTA = "reject",
) -> Threshold:
    """Choose a threshold on ``s`` (normally the dev split), to apply unchanged elsewhere.

    * ``eer``: the EER threshold of :func:`eer`: the midpoint (in logit space for
      probabilities) of the interval of thresholds where FAR = BPCER, or the interpolated
      crossing point when there is no such interval. The criterion names the rule, e.g.
      ``"dev EER (interval midpoint, logit)"`` (``"dev EER"`` for the interpolated point), and
      ``margin`` records the interval and its width.
    * ``apcer=x``: the lowest threshold where the worst attack type's APCER is ``<= x``
      (so BPCER is as small as the constraint allows); the threshold is a score of ``s``.
    * ``bpcer=x``: the highest threshold where BPCER is ``<= x`` (so APCER is as small as
      allowed).
    """
    crit = parse_criterion(criterion)
    where = f"{split} " if split else ""
    if crit.kind == "eer":
        e = eer(s, attack_fta)
        rule = e.rule.replace(" (", ", ").rstrip(")")  # "interval midpoint, logit"
        label = "EER" if e.rule == "interpolated" else f"EER ({rule})"
        return Threshold(e.threshold, f"{where}{label}".strip(), split, e.margin_dict())
    c = curve(s, attack_fta)
    if crit.kind == "apcer":
        ok = np.flatnonzero(c.apcer_max <= crit.target + 1e-12)
        if ok.size == 0:
            raise BadDataError(
                f"no threshold reaches APCER <= {crit.target:g} on {split or 'these scores'}"
            )
        k = int(ok[0])
    else:
        ok = np.flatnonzero(c.bpcer <= crit.target + 1e-12)
        if ok.size == 0:  # unreachable unless bona fide FTA rate > target
            raise BadDataError(
                f"no threshold reaches BPCER <= {crit.target:g} on {split or 'these scores'} "
                f"(bona fide FTA rate {float((s.fta & s.is_live).sum()) / s.n_live:.3g})"
            )
        k = int(ok[-1])
    return Threshold(float(c.thresholds[k]), f"{where}{crit.describe()}".strip(), split)


# ---------------------------------------------------------------------------------------
# Everything for one split, and the dev -> test protocol
# ---------------------------------------------------------------------------------------


def summarize(
    s: Scores,
    threshold: float | Threshold,
    attack_fta: AttackFTA = "reject",
    fpr: float = 0.01,
    ece_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Every figure for one split: error rates at ``threshold`` and threshold-free metrics.

    Keys: ``counts``, ``at_threshold`` (:meth:`ErrorRates.to_dict`), ``eer``,
    ``eer_threshold``, ``eer_margin`` (:meth:`EER.margin_dict`: the interval of thresholds
    reaching the EER, its width in score and logit units, the rule), ``auc``, ``tpr_at_fpr``
    ({fpr, value, threshold}), ``bpcer20``, ``bpcer100`` ({value, threshold}),
    ``hter_at_own_eer_threshold`` ({value, threshold, label: "comparable to published OCIM
    tables"}), ``calibration`` ({ece, bins, n, reliability: [{low, high, n, mean_score,
    live_rate}]} over ``ece_bins`` equal-width bins, see :mod:`vitfas.metrics.calibration`;
    ``ece`` and ``reliability`` are null when the scores are not all in [0, 1]). Needs both
    classes.
    """
    _require(s, "summarize")
    t = threshold.value if isinstance(threshold, Threshold) else float(threshold)
    e = eer(s, attack_fta)
    own_t = own_eer_threshold(s, attack_fta)
    own = error_rates(s, own_t, attack_fta)
    tp = tpr_at_fpr(s, fpr, attack_fta)
    rel = reliability(s.scores, s.is_live, ece_bins)
    return {
        "counts": s.counts(),
        "at_threshold": error_rates(s, t, attack_fta).to_dict(),
        "eer": e.value,
        "eer_threshold": e.threshold,
        "eer_margin": e.margin_dict(),
        "auc": auc(s, attack_fta),
        "tpr_at_fpr": {"fpr": fpr, **tp.to_dict()},
        "bpcer20": bpcer_at_apcer(s, 0.05, attack_fta).to_dict(),
        "bpcer100": bpcer_at_apcer(s, 0.01, attack_fta).to_dict(),
        "hter_at_own_eer_threshold": {
            "value": own.hter,
            "threshold": own_t,
            "label": OCIM_LABEL + " (threshold chosen on this split itself: optimistic)",
        },
        "calibration": rel.to_dict() if rel is not None else {
            "ece": None, "bins": int(ece_bins), "n": int((~s.fta).sum()), "reliability": None},
    }


CONVENTIONS = {
    "positive_class": "bona fide (live)",
    "score": "P(live); accepted as live when score >= threshold (ties accepted)",
    "acer": "(apcer_max + bpcer) / 2; acer_mean_apcer = (apcer_mean + bpcer) / 2",
    "hter": "(apcer_pooled + bpcer) / 2 = (FAR + FRR) / 2",
    "fta": "never dropped; bona fide FTA = rejected (in BPCER); attack FTA per attack_fta",
    "bpcer20": "BPCER at the lowest threshold with max-over-attack-type APCER <= 5%",
    "bpcer100": "BPCER at the lowest threshold with max-over-attack-type APCER <= 1%",
    "tpr_at_fpr": "largest 1-BPCER with pooled APCER <= fpr",
    "undefined": "null = no presentations of that kind in the split (never 0)",
    "eer_threshold": "midpoint of the interval of thresholds with FAR = BPCER (in logit space "
                     "for scores in [0, 1]); interpolated crossing when there is no interval",
    "ece": "sum over equal-width bins of (n_bin / n) |live rate - mean score|, acquired "
           "presentations only",
}


def evaluate(
    splits: Mapping[str, Scores],
    criterion: str | Criterion = "eer",
    threshold_split: str = "dev",
    threshold: float | Threshold | None = None,
    attack_fta: AttackFTA = "reject",
    fpr: float = 0.01,
    ece_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The dev -> test protocol: choose the threshold on ``threshold_split``, apply it to all.

    Args:
        splits: e.g. ``{"dev": Scores, "test": Scores}``.
        criterion: see :func:`select_threshold`; ignored when ``threshold`` is given.
        threshold: a fixed threshold (e.g. the bundle's) instead of choosing one.
        ece_bins: equal-width bins of the reliability diagram and the ECE.

    Returns:
        ``{"conventions", "attack_fta", "threshold": {value, criterion, split[, margin]},
        "splits": {name: summarize(...)}}``, ready for ``json.dump``.

    Raises:
        BadDataError: ``threshold_split`` missing (and no ``threshold``), or a split lacks
            bona fide or attack presentations.
    """
    if threshold is None:
        if threshold_split not in splits:
            raise BadDataError(
                f"cannot choose a threshold: split {threshold_split!r} not among "
                f"{sorted(splits)}"
            )
        thr = select_threshold(splits[threshold_split], criterion, threshold_split, attack_fta)
    elif isinstance(threshold, Threshold):
        thr = threshold
    else:
        thr = Threshold(float(threshold), "given", None)
    return {
        "conventions": dict(CONVENTIONS),
        "attack_fta": attack_fta,
        "threshold": thr.to_dict(),
        "splits": {name: summarize(sc, thr, attack_fta, fpr, ece_bins)
                   for name, sc in splits.items()},
    }


# ---------------------------------------------------------------------------------------
# Video level
# ---------------------------------------------------------------------------------------


def aggregate_videos(s: Scores, video_ids: Sequence[str] | np.ndarray | None = None) -> Scores:
    """Frame scores -> one score per video: the mean of its acquired frames' scores.

    Args:
        s: frame-level scores.
        video_ids: ``[N]`` video key per frame; ``None`` uses ``s.ids``. An empty key makes
            the frame its own video (keyed by its id or index).

    Returns:
        Video-level :class:`Scores` (``ids`` = video keys, in first-appearance order). A video
        is an FTA only when none of its frames was acquired.

    Raises:
        BadDataError: frames of one video disagree on label or attack type.
    """
    keys = s.ids if video_ids is None else np.asarray(video_ids, dtype=object).reshape(-1)
    if keys is None:
        raise BadDataError("aggregate_videos needs video ids (argument or Scores.ids)")
    if keys.shape[0] != len(s):
        raise BadDataError(f"{len(s)} frames but {keys.shape[0]} video ids")
    keys = np.array(
        [str(k) if str(k) else f"__frame_{s.ids[i] if s.ids is not None else i}"
         for i, k in enumerate(keys)],
        dtype=object,
    )
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)  # first-appearance order
    n_v = uniq.shape[0]
    inv = inv.reshape(-1)
    acq = ~s.fta
    sums = np.bincount(inv[acq], weights=s.scores[acq], minlength=n_v)
    cnt = np.bincount(inv[acq], minlength=n_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        vs = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    live = s.is_live[first]
    at = s.attack_type[first]
    bad_l = s.is_live != live[inv]
    bad_a = s.attack_type != at[inv]
    if bad_l.any() or bad_a.any():
        i = int(np.flatnonzero(bad_l | bad_a)[0])
        raise BadDataError(
            f"video {keys[i]!r}: frames disagree on label/attack type (frame {i}: "
            f"{'live' if s.is_live[i] else s.attack_type[i]}, first frame: "
            f"{'live' if live[inv[i]] else at[inv[i]]})"
        )
    return Scores(
        vs[order], live[order], at[order], (cnt == 0)[order], uniq[order], s.species
    )
