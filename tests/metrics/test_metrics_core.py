"""Hand-worked checks of the ISO/IEC 30107-3 metrics in vitfas.metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vitfas.errors import BadConfigError, BadDataError
from vitfas.metrics import (
    OCIM_LABEL,
    Criterion,
    Scores,
    aggregate_videos,
    auc,
    bpcer_at_apcer,
    curve,
    eer,
    error_rates,
    evaluate,
    own_eer_threshold,
    parse_criterion,
    select_threshold,
    summarize,
    tpr_at_fpr,
)

NAN = float("nan")


def _split(live, attacks: dict[str, list[float]], species=()):
    scores = list(live)
    labels = [1] * len(live)
    types = ["none"] * len(live)
    for t, v in attacks.items():
        scores += v
        labels += [0] * len(v)
        types += [t] * len(v)
    return Scores.from_arrays(scores, labels, types, species=species)


# ------------------------------------------------------------------ error rates at a threshold


def test_ties_at_threshold_are_accepted():
    s = _split([0.5, 0.5, 0.2], {"print": [0.5, 0.1]})
    r = error_rates(s, 0.5)
    assert r.bpcer == pytest.approx(1 / 3)  # both 0.5 live accepted, 0.2 rejected
    assert r.apcer == {"print": pytest.approx(0.5)}  # the 0.5 attack is accepted
    # just above the tie, everything at 0.5 is rejected
    r2 = error_rates(s, np.nextafter(0.5, 1))
    assert r2.bpcer == pytest.approx(1.0)
    assert r2.apcer["print"] == 0.0


def test_per_attack_type_max_mean_pooled_and_undefined_type():
    s = _split(
        [0.9, 0.8, 0.7, 0.6, 0.3],
        {"print": [0.65, 0.2, 0.1, 0.05], "replay": [0.95, 0.7, 0.4]},
        species=["mask"],
    )
    assert s.species == ("mask", "print", "replay")
    r = error_rates(s, 0.6)
    assert r.bpcer == pytest.approx(1 / 5)
    assert r.apcer["print"] == pytest.approx(1 / 4)
    assert r.apcer["replay"] == pytest.approx(2 / 3)
    assert r.apcer["mask"] is None  # undefined, never 0
    assert r.apcer_max == pytest.approx(2 / 3)
    assert r.apcer_max_type == "replay"
    assert r.apcer_mean == pytest.approx((1 / 4 + 2 / 3) / 2)
    assert r.apcer_pooled == pytest.approx(3 / 7)
    assert r.acer == pytest.approx((2 / 3 + 1 / 5) / 2)
    assert r.acer_mean_apcer == pytest.approx(((1 / 4 + 2 / 3) / 2 + 1 / 5) / 2)
    assert r.hter == pytest.approx((3 / 7 + 1 / 5) / 2)
    assert r.confusion["bona fide"] == {"n": 5, "accepted": 4, "rejected": 1, "fta": 0}
    assert r.confusion["replay"] == {"n": 3, "accepted": 2, "rejected": 1, "fta": 0}
    assert r.confusion["mask"] == {"n": 0, "accepted": 0, "rejected": 0, "fta": 0}
    d = json.loads(json.dumps(r.to_dict()))  # JSON-clean: None, not NaN
    assert d["apcer"]["mask"] is None


def test_single_attack_type_without_names():
    s = Scores.from_arrays([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0])
    assert s.species == ("attack",)
    r = error_rates(s, 0.5)
    assert r.apcer == {"attack": 0.5}
    assert r.bpcer == 0.5
    assert r.acer == r.hter == 0.5


def test_string_labels_and_bad_labels():
    s = Scores.from_arrays([0.9, 0.1], ["live", "spoof"], ["none", "print"])
    assert s.is_live.tolist() == [True, False]
    with pytest.raises(BadDataError, match="'live' or 'spoof'"):
        Scores.from_arrays([0.9, 0.1], ["live", "dog"])
    with pytest.raises(BadDataError, match="1 \\(live\\) or 0"):
        Scores.from_arrays([0.9, 0.1], [1, 2])
    with pytest.raises(BadDataError, match="labels has 1"):
        Scores.from_arrays([0.9, 0.1], [1])
    with pytest.raises(BadDataError, match="not finite"):
        Scores.from_arrays([np.inf, 0.1], [1, 0], fta=[False, False])


# ------------------------------------------------------------------ degenerate cases


def test_all_live_and_all_spoof_give_clear_errors():
    live_only = Scores.from_arrays([0.9, 0.8], [1, 1])
    spoof_only = Scores.from_arrays([0.3, 0.2], [0, 0], ["print", "print"])
    for fn in (eer, auc, curve, select_threshold):
        with pytest.raises(BadDataError, match="found 2 bona fide and 0 attack"):
            fn(live_only)
        with pytest.raises(BadDataError, match="found 0 bona fide and 2 attack"):
            fn(spoof_only)
    with pytest.raises(BadDataError, match="0 attack"):
        summarize(live_only, 0.5)
    # at a fixed threshold the defined half is still reported, the other half is None
    r = error_rates(spoof_only, 0.25)
    assert r.apcer == {"print": 0.5} and r.bpcer is None and r.acer is None and r.hter is None
    r = error_rates(live_only, 0.85)
    assert r.bpcer == 0.5 and r.apcer == {} and r.apcer_max is None and r.acer is None
    with pytest.raises(BadDataError, match="empty"):
        error_rates(Scores.from_arrays([], []), 0.5)


# ------------------------------------------------------------------ EER, AUC, operating points


def test_eer_exact_crossing():
    # thresholds .1 .2 .3 .4 .6 .7: FAR 1 .75 .5 .25 .25 .25, FRR 0 0 0 0 .25 .5 -> equal at
    # 0.6 only, so FAR = FRR = .25 for every threshold in (0.4, 0.6]: the logit midpoint is
    # sigmoid((logit .4 + logit .6) / 2) = sigmoid(0) = 0.5
    s = Scores.from_arrays([0.9, 0.8, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 1, 0, 0, 0, 0])
    e = eer(s)
    assert e.value == pytest.approx(0.25)
    assert e.threshold == pytest.approx(0.5)
    assert e.rule == "interval midpoint (logit)"
    assert (e.low, e.high) == (0.4, 0.6)
    assert e.margin == pytest.approx(0.2)
    assert e.margin_logit == pytest.approx(2 * math.log(0.6 / 0.4))
    assert error_rates(s, e.threshold).hter == pytest.approx(0.25)


def test_eer_interpolated_by_hand():
    # live .9 .8 .3, attack .7 .2.  At t=.7: FAR=1/2, FRR=1/3 (d=-1/6); at t=.8: FAR=0,
    # FRR=1/3 (d=+1/3).  a = (1/6)/(1/2) = 1/3 -> EER = 1/2 - 1/3*1/2 = 1/3,
    # threshold = .7 + 1/3*(.8-.7) = .7333...
    s = Scores.from_arrays([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0])
    e = eer(s)
    assert e.value == pytest.approx(1 / 3)
    assert e.threshold == pytest.approx(0.7 + 0.1 / 3)
    # |FAR - FRR| is smallest (1/6) at t = .7: the OCIM-style threshold, HTER = (1/2+1/3)/2
    assert own_eer_threshold(s) == pytest.approx(0.7)
    summ = summarize(s, 0.5)
    assert summ["hter_at_own_eer_threshold"]["value"] == pytest.approx(5 / 12)
    assert summ["hter_at_own_eer_threshold"]["label"].startswith(OCIM_LABEL)
    assert auc(s) == pytest.approx(5 / 6)  # 5 of the 6 live/attack pairs are ordered right


def test_perfect_separation():
    s = Scores.from_arrays([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    assert eer(s).value == 0.0
    assert 0.2 < eer(s).threshold <= 0.8
    assert auc(s) == 1.0
    assert error_rates(s, eer(s).threshold).acer == 0.0


def test_auc_matches_sklearn_on_random_data_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        n = 300
        y = rng.integers(0, 2, n)
        x = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding makes many ties
        s = Scores.from_arrays(x, y)
        assert auc(s) == pytest.approx(roc_auc_score(y, x), abs=1e-12)


def test_curve_matches_direct_error_rates():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    types = np.where(y == 1, "none", rng.choice(["print", "replay"], 80))
    x = np.round(rng.random(80), 2)
    s = Scores.from_arrays(x, y, types)
    c = curve(s)
    assert np.all(np.diff(c.thresholds) > 0)
    for k in range(0, len(c.thresholds), 7):
        r = error_rates(s, c.thresholds[k])
        assert c.bpcer[k] == pytest.approx(r.bpcer)
        assert c.apcer_pooled[k] == pytest.approx(r.apcer_pooled)
        assert c.apcer_max[k] == pytest.approx(r.apcer_max)
    assert c.apcer_pooled[-1] == 0.0 and c.bpcer[-1] == 1.0


def test_bpcer20_bpcer100_use_worst_attack_type():
    attacks = [i / 100 for i in range(1, 20)] + [0.9]  # 20 prints, one scores high
    live = [0.3, 0.5, 0.6, 0.95]
    s = _split(live, {"print": attacks})
    # APCER <= 5% allows 1 of 20 prints through: lowest such threshold is 0.3 -> BPCER 0
    b20 = bpcer_at_apcer(s, 0.05)
    assert (b20.value, b20.threshold) == (0.0, 0.3)
    # APCER <= 1% allows none: threshold must pass 0.9 -> 0.95, BPCER 3/4
    b100 = bpcer_at_apcer(s, 0.01)
    assert b100.value == pytest.approx(0.75) and b100.threshold == 0.95
    # a second species (one replay at 0.55) must also be at <= 5% -> threshold 0.6, BPCER 1/2
    s2 = _split(live, {"print": attacks, "replay": [0.55]})
    b20 = bpcer_at_apcer(s2, 0.05)
    assert b20.value == pytest.approx(0.5) and b20.threshold == 0.6


def test_tpr_at_fpr():
    s = Scores.from_arrays([0.9, 0.8, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 1, 0, 0, 0, 0])
    op = tpr_at_fpr(s, 0.01)  # no attack may pass -> threshold 0.8, TPR 2/4
    assert op.value == 0.5 and op.threshold == 0.8
    op = tpr_at_fpr(s, 0.25)  # one of four may pass -> threshold 0.4, TPR 1
    assert op.value == 1.0 and op.threshold == 0.4


# ------------------------------------------------------------------ threshold selection


def test_parse_criterion():
    assert parse_criterion("eer") == Criterion("eer")
    assert parse_criterion("apcer=0.05") == Criterion("apcer", 0.05)
    assert parse_criterion("BPCER=1%") == Criterion("bpcer", 0.01)
    assert parse_criterion("apcer=0.05").describe() == "APCER<=5%"
    for bad in ("eer=0.1", "apcer", "far=0.1", "apcer=2"):
        with pytest.raises(BadConfigError):
            parse_criterion(bad)


def test_select_threshold_criteria():
    s = _split([0.3, 0.5, 0.6, 0.95], {"print": [i / 100 for i in range(1, 20)] + [0.9]})
    t = select_threshold(s, "apcer=0.05", split="dev")
    assert t.value == 0.3 and t.criterion == "dev APCER<=5%" and t.split == "dev"
    # BPCER: 0 at 0.3, 1/4 at 0.5, 1/2 at 0.6 -> highest threshold with BPCER <= 25% is 0.5
    t = select_threshold(s, "bpcer=0.25")
    assert t.value == 0.5 and t.to_dict() == {
        "value": 0.5, "criterion": "dev BPCER<=25%", "split": "dev"}
    t = select_threshold(s, "eer")
    assert t.value == pytest.approx(eer(s).threshold)


def test_evaluate_applies_dev_threshold_unchanged_to_test():
    dev = Scores.from_arrays([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0])
    test = _split([0.75, 0.72, 0.1], {"print": [0.74, 0.05], "replay": [0.8]})
    m = evaluate({"dev": dev, "test": test}, criterion="eer")
    thr = 0.7 + 0.1 / 3
    assert m["threshold"] == {
        "value": pytest.approx(thr), "criterion": "dev EER", "split": "dev",
        "margin": {"interval": [pytest.approx(thr)] * 2, "score": 0.0, "logit": 0.0,
                   "rule": "interpolated"}}
    at = m["splits"]["test"]["at_threshold"]
    assert at["threshold"] == pytest.approx(thr)
    # test at 0.7333: live .75 accepted, .72 and .1 rejected; print .74 accepted, replay too
    assert at["bpcer"] == pytest.approx(2 / 3)
    assert at["apcer"] == {"print": 0.5, "replay": 1.0}
    assert at["acer"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert at["hter"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    json.dumps(m, allow_nan=False)  # strict JSON
    fixed = evaluate({"test": test}, threshold=0.5)
    assert fixed["threshold"]["criterion"] == "given"
    with pytest.raises(BadDataError, match="split 'dev' not among"):
        evaluate({"test": test})


# ------------------------------------------------------------------ failures to acquire


def test_fta_folded_never_dropped():
    s = Scores.from_arrays(
        [0.9, 0.8, NAN, 0.2, 0.95, NAN, 0.1],
        [1, 1, 1, 1, 0, 0, 0],
        ["none"] * 4 + ["print"] * 3,
    )
    assert s.fta.tolist() == [False, False, True, False, False, True, False]
    r = error_rates(s, 0.5)
    assert r.bpcer == pytest.approx(2 / 4)  # the FTA and the 0.2 are rejected; n stays 4
    assert r.bpnrr == pytest.approx(1 / 4)
    assert r.apcer["print"] == pytest.approx(1 / 3)  # FTA attack = rejected; n stays 3
    assert r.apnrr == pytest.approx(1 / 3)
    assert r.confusion["bona fide"] == {"n": 4, "accepted": 2, "rejected": 1, "fta": 1}
    assert r.confusion["print"] == {"n": 3, "accepted": 1, "rejected": 1, "fta": 1}
    pess = error_rates(s, 0.5, attack_fta="accept")
    assert pess.apcer["print"] == pytest.approx(2 / 3)
    assert pess.confusion["print"]["accepted"] == 2
    c = s.counts()
    assert (c["fta_bona_fide"], c["fta_attack"]) == (1, 1)
    # the bona fide FTA is rejected at every threshold: BPCER never goes below 1/4
    assert curve(s).bpcer.min() == pytest.approx(1 / 4)
    # AUC: the FTAs rank below every acquired score (same as sklearn with a very low score)
    from sklearn.metrics import roc_auc_score

    y = s.is_live.astype(int)
    assert auc(s) == pytest.approx(roc_auc_score(y, np.nan_to_num(s.scores, nan=-1.0)))
    # an explicit fta mask overrides whatever score is stored
    s2 = Scores.from_arrays([0.9, 0.1], [1, 0], fta=[True, False])
    assert math.isnan(s2.scores[0]) and error_rates(s2, 0.0).bpcer == 1.0
    with pytest.raises(BadConfigError):
        error_rates(s, 0.5, attack_fta="drop")  # type: ignore[arg-type]


# ------------------------------------------------------------------ video level


def test_video_aggregation_mean_of_acquired_frames():
    s = Scores.from_arrays(
        [0.8, 0.6, 0.2, NAN, NAN, NAN, 0.4],
        [1, 1, 0, 0, 0, 0, 1],
        ["none", "none", "print", "print", "replay", "replay", "none"],
        ids=[f"f{i}" for i in range(7)],
    )
    v = aggregate_videos(s, ["A", "A", "B", "B", "C", "C", ""])
    assert v.ids.tolist() == ["A", "B", "C", "__frame_f6"]
    np.testing.assert_allclose(v.scores[:2], [0.7, 0.2])
    assert np.isnan(v.scores[2]) and v.fta.tolist() == [False, False, True, False]
    assert v.is_live.tolist() == [True, False, False, True]
    assert v.attack_type.tolist() == ["none", "print", "replay", "none"]
    assert v.scores[3] == 0.4
    r = error_rates(v, 0.5)
    assert r.bpcer == 0.5 and r.apcer == {"print": 0.0, "replay": 0.0}
    assert r.confusion["replay"]["fta"] == 1
    with pytest.raises(BadDataError, match="video 'A'"):
        aggregate_videos(s, ["A", "A", "A", "B", "C", "C", "D"])


def test_curve_and_eer_agree_with_sklearn_det_curve():
    from sklearn.metrics import det_curve

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    x = np.round(rng.normal(y * 1.2, 1.0), 2)
    s = Scores.from_arrays(x, y)
    fpr, fnr, thr = det_curve(y, x)  # sklearn: positive (live) when score >= threshold
    c = curve(s)
    k = np.searchsorted(c.thresholds, thr)
    np.testing.assert_allclose(c.thresholds[k], thr)
    np.testing.assert_allclose(c.apcer_pooled[k], fpr, atol=1e-12)
    np.testing.assert_allclose(c.bpcer[k], fnr, atol=1e-12)
    # the EER lies on the segment where FNR - FPR changes sign
    e = eer(s).value
    d = c.bpcer - c.apcer_pooled
    j = int(np.argmax(d >= 0))
    lo, hi = sorted([c.apcer_pooled[j - 1], c.apcer_pooled[j]])
    assert lo - 1e-12 <= e <= hi + 1e-12
    lo, hi = sorted([c.bpcer[j - 1], c.bpcer[j]])
    assert lo - 1e-12 <= e <= hi + 1e-12
