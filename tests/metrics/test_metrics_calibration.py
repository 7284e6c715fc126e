"""Calibration of P(live): ECE by hand, temperature fit, and the temperature in bundles."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from vitfas.bundle import load_bundle, save_bundle
from vitfas.errors import BadCheckpointError, BadConfigError, BadDataError
from vitfas.metrics import (
    expected_calibration_error,
    fit_temperature,
    reliability,
    scaled_softmax,
)

NAN = float("nan")


# ------------------------------------------------------------------ ECE and reliability bins


def test_ece_four_scores_in_two_bins_by_hand():
    # bins [0, .5) and [.5, 1]: {.1 attack, .3 live} -> mean score .2, live rate .5, gap .3;
    # {.6 live, .9 live} -> mean .75, live rate 1, gap .25.  ECE = 2/4 * .3 + 2/4 * .25
    scores, live = [0.1, 0.3, 0.6, 0.9], [0, 1, 1, 1]
    assert expected_calibration_error(scores, live, n_bins=2) == pytest.approx(0.275)
    r = reliability(scores, live, n_bins=2)
    assert r.counts.tolist() == [2, 2] and r.n == 4
    np.testing.assert_allclose(r.mean_score, [0.2, 0.75])
    np.testing.assert_allclose(r.live_rate, [0.5, 1.0])
    d = r.to_dict()
    assert d["bins"] == 2 and d["ece"] == pytest.approx(0.275)
    assert d["reliability"][1] == {"low": 0.5, "high": 1.0, "n": 2,
                                   "mean_score": pytest.approx(0.75), "live_rate": 1.0}
    # ten bins: every score alone in its bin -> (.1 + .7 + .4 + .1) / 4
    assert expected_calibration_error(scores, live) == pytest.approx(1.3 / 4)


def test_ece_edges_fta_and_non_probabilities():
    # 1.0 falls in the last bin, .5 in the upper of two bins; nan (FTA) is left out
    r = reliability([1.0, 0.5, 0.0, NAN], [1, 1, 0, 1], n_bins=2)
    assert r.counts.tolist() == [1, 2] and r.n == 3
    assert r.ece == pytest.approx(2 / 3 * 0.25)  # upper bin: mean .75, live rate 1
    # empty bins give null means in JSON and add nothing
    d = reliability([0.05, 0.95], [0, 1], n_bins=4).to_dict()
    assert [b["n"] for b in d["reliability"]] == [1, 0, 0, 1]
    assert d["reliability"][1]["mean_score"] is None and d["ece"] == pytest.approx(0.05)
    # scores that are not probabilities have no calibration
    assert reliability([1.5, -0.2], [1, 0]) is None
    assert expected_calibration_error([NAN], [1]) is None
    with pytest.raises(BadConfigError, match="n_bins"):
        reliability([0.5], [1], n_bins=0)


# ------------------------------------------------------------------ temperature


def test_scaled_softmax_torch_and_numpy():
    z = torch.tensor([[0.0, 2.0], [1.0, -3.0]])
    assert torch.equal(scaled_softmax(z, 1.0), z.softmax(-1))  # T = 1 changes nothing
    p = scaled_softmax(z, 2.0)
    np.testing.assert_allclose(p[:, 1].numpy(), [1 / (1 + math.exp(-1.0)),
                                                 1 / (1 + math.exp(2.0))], rtol=1e-6)
    pn = scaled_softmax(z.numpy(), 2.0)
    assert pn.dtype == np.float64
    np.testing.assert_allclose(pn, p.numpy(), rtol=1e-6)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(BadConfigError, match="temperature"):
            scaled_softmax(z, bad)


def test_fit_recovers_a_known_temperature():
    # a calibrated model at T0 = 2: labels drawn from sigmoid(z / 2); logits [0, z] for
    # (spoof, live). The NLL minimiser must come back near 2.
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 20000)
    y = (rng.random(z.shape[0]) < 1 / (1 + np.exp(-z / 2.0))).astype(np.int64)
    logits = np.stack([np.zeros_like(z), z], axis=1)
    fit = fit_temperature(logits, y)
    assert fit.temperature == pytest.approx(2.0, abs=0.1)
    assert not fit.at_bound and fit.n == 20000
    assert fit.nll_after < fit.nll_before
    # and calibration improves: ECE of P(live) at the fitted T is small, at T = 1 it is not
    p1 = scaled_softmax(logits, 1.0)[:, 1]
    pt = scaled_softmax(logits, fit.temperature)[:, 1]
    assert expected_calibration_error(pt, y) < 0.02 < expected_calibration_error(p1, y)
    # torch tensors are accepted too, with the same answer
    t_fit = fit_temperature(torch.from_numpy(logits).float(), torch.from_numpy(y))
    assert t_fit.temperature == pytest.approx(fit.temperature, rel=1e-3)
    rec = fit.to_dict()
    assert rec["method"] == "temperature" and rec["split"] == "dev"


def test_fit_on_separable_classes_stops_at_the_bound(caplog):
    logits = np.array([[0.0, 3.0], [0.0, 2.0], [0.0, -2.0], [0.0, -1.0]])
    with caplog.at_level(logging.WARNING, logger="vitfas.metrics.calibration"):
        fit = fit_temperature(logits, [1, 1, 0, 0])
    assert fit.at_bound and fit.temperature == pytest.approx(0.05, rel=1e-2)
    assert "no finite minimum" in caplog.text


def test_fit_rejects_bad_input():
    with pytest.raises(BadDataError, match=r"\[N, C>=2\]"):
        fit_temperature(np.zeros((3, 1)), [0, 0, 0])
    with pytest.raises(BadDataError, match="3 logits and 2 labels"):
        fit_temperature(np.zeros((3, 2)), [0, 1])
    with pytest.raises(BadDataError, match="labels in"):
        fit_temperature(np.zeros((2, 2)), [0, 2])
    with pytest.raises(BadDataError, match="non-finite"):
        fit_temperature(np.array([[0.0, np.inf], [0.0, 1.0]]), [0, 1])


# ------------------------------------------------------------------ bundle and Predictor


def _bundle(path, calibration=None):
    from vitfas.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
                         depth=2, num_heads=2, num_classes=2)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
        model.head.bias.zero_()
    pre = {"detector": "none", "crop_scale": 1.0, "img_size": [32, 32], "mean": [0.5] * 3,
           "std": [0.25] * 3, "colour_order": "RGB", "frames_per_video": 1}
    return save_bundle(path, model, class_names=["spoof", "live"], live_index=1,
                       preprocessing=pre, threshold={"value": 0.5, "criterion": "dev EER",
                                                     "split": "dev"}, calibration=calibration)


def test_bundle_records_temperature_and_predictor_applies_it(tmp_path):
    from vitfas.predict import Predictor

    plain = load_bundle(_bundle(tmp_path / "plain"))
    cal = load_bundle(_bundle(tmp_path / "cal", {"method": "temperature", "temperature": 2.0,
                                                 "split": "dev"}))
    assert plain.temperature == 1.0 and cal.temperature == 2.0
    assert cal.config["calibration"]["temperature"] == 2.0
    assert "calibration: temperature 2" in (tmp_path / "cal" / "README.md").read_text()

    x = np.random.default_rng(1).normal(0, 1, (6, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        z = plain.model(torch.from_numpy(x)).double().numpy()
    margin = z[:, 1] - z[:, 0]  # P(live) = sigmoid(margin / T) for two classes
    p_plain = Predictor(plain).infer(x)[:, 1]
    p_cal = Predictor(cal).infer(x)[:, 1]
    np.testing.assert_allclose(p_plain, 1 / (1 + np.exp(-margin)), rtol=1e-5)
    np.testing.assert_allclose(p_cal, 1 / (1 + np.exp(-margin / 2.0)), rtol=1e-5)
    # the logit of the calibrated score is half the uncalibrated one
    np.testing.assert_allclose(np.log(p_cal / (1 - p_cal)),
                               np.log(p_plain / (1 - p_plain)) / 2, rtol=1e-4, atol=1e-6)
    assert np.abs(p_cal - p_plain).max() > 1e-3  # the difference is real
    assert Predictor(cal).describe()["temperature"] == 2.0


def test_bad_recorded_temperature_is_a_clear_error(tmp_path):
    b = load_bundle(_bundle(tmp_path / "b", {"method": "temperature", "temperature": -1}))
    with pytest.raises(BadCheckpointError, match=r"config.json: calibration.temperature"):
        _ = b.temperature
