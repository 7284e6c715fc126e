"""The evaluation report: JSON numbers, Markdown rows and PNG figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vitfas.metrics import Scores, aggregate_videos, evaluate
from vitfas.metrics.report import DPI, FIG_SIZE, _probit, pct, write_report


def _splits():
    dev = Scores.from_arrays([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0],
                             ["none"] * 3 + ["print", "replay"], species=["mask"])
    test = Scores.from_arrays(
        [0.75, 0.72, 0.1, float("nan"), 0.74, 0.05, 0.8],
        [1, 1, 1, 1, 0, 0, 0],
        ["none"] * 4 + ["print", "print", "replay"],
        ids=["a", "a", "b", "c", "d", "d", "e"],
        species=["mask"],
    )
    return {"dev": dev, "test": test}


def test_pct_and_probit():
    assert pct(0.12345) == "12.35%" and pct(None) == "n/a" and pct(0.0) == "0.00%"
    np.testing.assert_allclose(_probit(np.array([0.5, 0.8413447460685429])), [0.0, 1.0],
                               atol=1e-9)


def test_report_files_and_content(tmp_path):
    splits = _splits()
    res = evaluate(splits, criterion="eer")
    videos = {k: aggregate_videos(v, v.ids if v.ids is not None else
                                  [f"{k}{i}" for i in range(len(v))])
              for k, v in splits.items()}
    vres = evaluate(videos, criterion="eer")
    files = write_report(tmp_path / "rep", {"frame": (res, splits), "video": (vres, videos)},
                         title="unit report", meta={"model_id": "tiny@abc"})
    expected = {"json", "markdown"} | {
        f"{lvl}_{kind}" for lvl in ("frame", "video") for kind in ("roc", "det")
    } | {f"{lvl}_{kind}_{s}" for lvl in ("frame", "video") for kind in ("hist", "confusion")
         for s in ("dev", "test")} | {"frame_reliability", "video_reliability"}
    assert set(files) == expected
    for p in files.values():
        assert p.is_file() and p.stat().st_size > 0

    # JSON: the same numbers evaluate() returned; hand-checked values
    data = json.loads(files["json"].read_text())
    assert data["meta"] == {"model_id": "tiny@abc"}
    assert data["frame"] == json.loads(json.dumps(res))
    thr = 0.7 + 0.1 / 3  # dev EER threshold (see test_metrics_core)
    at = data["frame"]["splits"]["test"]["at_threshold"]
    assert at["threshold"] == pytest.approx(thr)
    # test @ .7333: live .75 ok, .72 .1 rejected, FTA rejected -> BPCER 3/4
    assert at["bpcer"] == pytest.approx(3 / 4)
    assert at["apcer"] == {"mask": None, "print": 0.5, "replay": 1.0}

    # Markdown: header, threshold line, summary row, APCER row, confusion rows, OCIM label
    md = files["markdown"].read_text()
    assert md.startswith("# unit report\n")
    assert "- model_id: tiny@abc" in md
    assert f"Operating threshold **{thr:.6g}** (dev EER, chosen on `dev`)" in md
    assert ("| test | 4 | 3 | 1/0 | 100.00% (replay) | 75.00% | 87.50% | 70.83% |"
            in md)  # ACER (1 + .75)/2, HTER (2/3 + 3/4)/2
    assert "| test | n/a | 50.00% | 100.00% | 75.00% | 75.00% |" in md
    assert "| bona fide | 4 | 1 | 2 | 1 |" in md
    assert "| print | 2 | 1 | 1 | 0 |" in md
    assert "| mask | 0 | 0 | 0 | 0 |" in md
    assert "comparable to published OCIM tables" in md
    # calibration: dev scores .9 .8 .3 (live) .7 .2 (attack) fall in five different bins of
    # width .1: ECE = (.1 + .2 + .7 + .7 + .2) / 5 = .38; test (6 acquired): bin .7 holds
    # .75 .72 (live) .74 (attack): |2/3 - 2.21/3| = .07; then .1 live, .05 and .8 attacks
    assert data["frame"]["splits"]["dev"]["calibration"]["ece"] == pytest.approx(0.38)
    test_ece = (3 * 0.07 + 0.9 + 0.05 + 0.8) / 6
    assert data["frame"]["splits"]["test"]["calibration"]["ece"] == pytest.approx(test_ece)
    assert "| dev | 0.3800 | 10 | 5 |" in md
    assert f"| test | {test_ece:.4f} | 10 | 6 |" in md
    assert "](frame_reliability.png)" in md
    assert "Dev margin" in md and "single, interpolated threshold" in md
    assert "## Video level" in md
    for name in ("frame_roc.png", "frame_det.png", "video_hist_test.png",
                 "frame_confusion_dev.png"):
        assert f"]({name})" in md

    # PNG: readable, expected size, not blank
    w, h = int(FIG_SIZE[0] * DPI), int(FIG_SIZE[1] * DPI)
    for key in expected - {"json", "markdown"}:
        with Image.open(files[key]) as im:
            assert im.format == "PNG" and im.size == (w, h)
            arr = np.asarray(im.convert("L"))
            assert arr.std() > 5, f"{key} looks blank"
