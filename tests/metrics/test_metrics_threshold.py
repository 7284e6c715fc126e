"""The robust dev threshold: the midpoint of the interval of thresholds reaching the EER."""

from __future__ import annotations

import json
import math

import pytest

from vitfas.metrics import (
    Scores,
    Threshold,
    describe_margin,
    eer,
    error_rates,
    evaluate,
    midpoint,
    select_threshold,
)
from vitfas.metrics.core import LOGIT_EPS


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_complete_separation_takes_the_logit_midpoint_of_the_gap():
    # live .999 .998 .997, attacks .3 .1 .05: every threshold in (.3, .997] gives FAR = FRR = 0
    dev = Scores.from_arrays([0.999, 0.998, 0.997, 0.3, 0.1, 0.05], [1, 1, 1, 0, 0, 0])
    e = eer(dev)
    assert e.value == 0.0
    assert e.rule == "interval midpoint (logit)"
    assert (e.low, e.high) == (0.3, 0.997)
    # by hand: logit(.3) = ln(3/7) = -0.84730, logit(.997) = ln(997/3) = 5.80614,
    # mean 2.47942 -> sigmoid 0.92269; margin .697 in scores, 6.65344 in logits
    assert e.threshold == pytest.approx(sigmoid((math.log(3 / 7) + math.log(997 / 3)) / 2))
    assert e.threshold == pytest.approx(0.922686, abs=1e-6)
    assert e.margin == pytest.approx(0.697)
    assert e.margin_logit == pytest.approx(math.log(997 / 3) - math.log(3 / 7))
    assert e.margin_logit == pytest.approx(6.653436, abs=1e-6)

    thr = select_threshold(dev, "eer", split="dev")
    assert thr.value == e.threshold
    assert thr.criterion == "dev EER (interval midpoint, logit)"
    assert thr.to_dict()["margin"] == {"interval": [0.3, 0.997], "score": pytest.approx(0.697),
                                       "logit": pytest.approx(6.653436, abs=1e-6),
                                       "rule": "interval midpoint (logit)"}
    assert describe_margin(thr.margin) == "0.697 (6.653 in logits), interval (0.3, 0.997]"

    # the point of the rule: a test set whose live scores sit a little lower than dev's.
    # The old rule (the edge of the gap, .997) rejects them all; the midpoint accepts them.
    test = Scores.from_arrays([0.99, 0.97, 0.95, 0.6, 0.2], [1, 1, 1, 0, 0])
    assert error_rates(test, 0.997).bpcer == 1.0
    at = error_rates(test, thr.value)
    assert at.bpcer == 0.0 and at.apcer_pooled == 0.0


def test_eer_at_a_single_point_keeps_the_interpolated_threshold():
    # live .9 .8 .3, attack .7 .2 (worked in docs/metrics.md): FAR and FRR cross between
    # t = .7 and t = .8 -> a = 1/3, EER 1/3 at .7 + .1/3, no interval: margin 0
    s = Scores.from_arrays([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0])
    e = eer(s)
    assert e.value == pytest.approx(1 / 3)
    assert e.threshold == pytest.approx(0.7 + 0.1 / 3)
    assert e.rule == "interpolated"
    assert (e.margin, e.margin_logit) == (0.0, 0.0)
    thr = select_threshold(s)
    assert thr.criterion == "dev EER" and thr.value == e.threshold
    assert thr.margin["score"] == 0.0


def test_scores_of_exactly_zero_and_one_are_clipped_before_the_logit():
    top = logit(1 - LOGIT_EPS)  # = -logit(LOGIT_EPS) = 16.118...
    assert top == pytest.approx(16.11809565, abs=1e-6)
    # saturated on both sides: interval (0, 1], clipped logits -top and top -> midpoint 0.5
    s = Scores.from_arrays([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0])
    e = eer(s)
    assert e.threshold == pytest.approx(0.5)
    assert e.margin == 1.0 and e.margin_logit == pytest.approx(2 * top)
    # one side saturated: interval (.2, 1] -> sigmoid((logit .2 + top) / 2) = 0.99937
    s = Scores.from_arrays([1.0, 0.999, 0.2, 0.0], [1, 1, 0, 0])
    e = eer(s)
    assert (e.low, e.high) == (0.2, 0.999)
    s = Scores.from_arrays([1.0, 1.0, 0.2, 0.0], [1, 1, 0, 0])
    e = eer(s)
    assert e.threshold == pytest.approx(sigmoid((logit(0.2) + top) / 2))
    assert e.threshold == pytest.approx(0.999367, abs=1e-6)
    assert e.margin_logit == pytest.approx(top - logit(0.2))
    assert error_rates(s, e.threshold).hter == 0.0
    # both ends within LOGIT_EPS of 1: clipping leaves no room, the linear midpoint is used
    s = Scores.from_arrays([1.0, 1.0, 1 - 1e-9, 0.5], [1, 1, 0, 0])
    e = eer(s)
    assert e.rule == "interval midpoint (linear)"
    assert 1 - 1e-9 < e.threshold <= 1.0
    assert select_threshold(s).criterion == "dev EER (interval midpoint, linear)"
    json.dumps(evaluate({"dev": s}), allow_nan=False)


def test_scores_outside_zero_one_use_the_linear_midpoint():
    # higher-is-more-live scores that are not probabilities (e.g. SVM decision values)
    s = Scores.from_arrays([3.0, 2.0, 0.5, -1.0], [1, 1, 0, 0])
    e = eer(s)
    assert e.rule == "interval midpoint (linear)"
    assert e.threshold == pytest.approx(1.25)  # (0.5 + 2.0) / 2
    assert e.margin == pytest.approx(1.5) and e.margin_logit is None
    assert describe_margin(e.margin_dict()) == "1.5, interval (0.5, 2]"
    assert midpoint(0.5, 2.0, probability=False) == (1.25, "linear")
    assert midpoint(0.2, 0.8, probability=True) == (pytest.approx(0.5), "logit")


def test_margin_travels_through_evaluate_json_and_from_dict():
    dev = Scores.from_arrays([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    test = Scores.from_arrays([0.7, 0.4, 0.3], [1, 1, 0])
    m = json.loads(json.dumps(evaluate({"dev": dev, "test": test}), allow_nan=False))
    thr = m["threshold"]
    assert thr["criterion"] == "dev EER (interval midpoint, logit)"
    assert thr["value"] == pytest.approx(0.5)  # logit(.2) = -logit(.8)
    assert thr["margin"]["interval"] == [0.2, 0.8]
    assert thr["margin"]["score"] == pytest.approx(0.6)
    assert thr["margin"]["logit"] == pytest.approx(2 * logit(0.8))
    # every split reports its own EER interval; test: FAR = FRR = 0 for t in (.3, .4]
    assert m["splits"]["test"]["eer_margin"]["interval"] == [0.3, 0.4]
    assert m["splits"]["test"]["eer_threshold"] == pytest.approx(
        sigmoid((logit(0.3) + logit(0.4)) / 2))
    assert m["splits"]["test"]["at_threshold"]["bpcer"] == pytest.approx(0.5)  # .4 < .5
    back = Threshold.from_dict(thr)
    assert back.to_dict() == thr
    assert Threshold.from_dict(thr, "x (from the bundle)").criterion == "x (from the bundle)"
    old = Threshold.from_dict({"value": 0.4, "criterion": "dev EER", "split": "dev"})
    assert old.margin is None and "margin" not in old.to_dict()


def test_open_interval_through_failures_to_acquire_keeps_the_edge():
    # live: FTA, .5; attacks: FTA (rejected), .1. At the lowest threshold .1, FAR = 1/2 (the
    # .1 attack) = FRR (the FTA); at .5 FAR = 0 < FRR. FAR = FRR for every t <= .1: the
    # interval is open below, so no midpoint and no margin
    nan = float("nan")
    s = Scores.from_arrays([nan, 0.5, nan, 0.1], [1, 1, 0, 0])
    e = eer(s)
    assert e.value == pytest.approx(0.5)
    assert e.rule == "interval edge (unbounded)"
    assert e.low is None and e.margin is None
    assert e.threshold == 0.1  # the lowest score, as before
    assert "none" in describe_margin(e.margin_dict())
