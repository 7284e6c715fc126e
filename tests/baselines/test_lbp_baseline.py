"""``vitfas baseline lbp`` end to end on a synthetic smooth-vs-rough texture set, the
bundle's save/load round trip, its refusal of untrusted types, and ``vitfas predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vitfas.baselines import LBPConfig, load_lbp_bundle, save_lbp_bundle, train_svm
from vitfas.baselines.bundle import MODEL_FILE
from vitfas.cli import main
from vitfas.data.io import load_image
from vitfas.errors import BadCheckpointError
from vitfas.metrics import Scores, error_rates, select_threshold

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def lbp_run(texture_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lbp") / "run"
    rc = main(["-q", "baseline", "lbp", str(texture_manifest), "-o", str(out),
               "--features", "gray", "--size", "32"])
    assert rc == 0
    return out


def _scores_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def _split_scores(rows: list[dict[str, str]], split: str) -> Scores:
    rs = [r for r in rows if r["split"] == split]
    return Scores.from_arrays(
        [float(r["score"]) if r["score"] else np.nan for r in rs],
        [r["label"] for r in rs], [r["attack_type"] for r in rs],
        fta=[r["fta"] == "1" for r in rs])


def test_separates_the_classes_and_counts_ftas(lbp_run: Path) -> None:
    m = json.loads((lbp_run / "metrics.json").read_text())
    assert set(m) == {"meta", "frame"}
    for key in ("bundle", "model_id", "manifest", "rows", "rows_evaluated", "fta_rows",
                "unreadable_rows", "fta_rule"):  # the keys vitfas eval writes
        assert key in m["meta"]
    assert m["meta"]["model_id"].startswith("lbp-svm-gray@")
    splits = m["frame"]["splits"]
    assert splits["dev"]["auc"] == 1.0 and splits["test"]["auc"] == 1.0
    assert splits["dev"]["counts"]["bona_fide"] == 8 and splits["dev"]["counts"]["attack"] == 8
    # test: the fta=1 row and the unreadable image are attack FTAs, counted, not dropped
    c = splits["test"]["counts"]
    assert (c["bona_fide"], c["attack"], c["fta_attack"], c["fta_bona_fide"]) == (8, 10, 2, 0)
    assert m["meta"]["unreadable_rows"] == 1 and m["meta"]["fta_rows"] == 2
    with open(lbp_run / "unreadable.csv", newline="") as f:
        listed = {r["path"]: r["split"] for r in csv.DictReader(f)}
    assert listed == {"train/broken.png": "train", "test/broken.png": "test"}
    for name in ("report.md", "scores.csv", "frame_roc.png", "config.json", MODEL_FILE,
                 "README.md"):
        assert (lbp_run / name).is_file(), name


def test_test_split_uses_the_dev_threshold_unchanged(lbp_run: Path) -> None:
    m = json.loads((lbp_run / "metrics.json").read_text())
    rows = _scores_csv(lbp_run)
    dev, test = _split_scores(rows, "dev"), _split_scores(rows, "test")
    thr = m["frame"]["threshold"]
    assert thr["split"] == "dev"
    # the metrics layer's rule on the dev scores (scores.csv keeps 8 digits)
    assert thr["value"] == pytest.approx(select_threshold(dev, "eer", "dev").value, abs=1e-6)
    at = m["frame"]["splits"]["test"]["at_threshold"]
    assert at["threshold"] == thr["value"]
    want = error_rates(test, thr["value"])
    assert (at["bpcer"], at["apcer_pooled"], at["hter"]) == (want.bpcer, want.apcer_pooled,
                                                             want.hter)
    cfg = json.loads((lbp_run / "config.json").read_text())
    assert cfg["kind"] == "lbp-svm" and cfg["threshold"] == thr
    assert cfg["preprocessing"]["img_size"] == [32, 32]
    assert cfg["features"]["length"] == 59 and cfg["features"]["points"] == 8


def test_loaded_bundle_gives_the_same_scores(lbp_run: Path, texture_manifest: Path) -> None:
    b = load_lbp_bundle(lbp_run)
    rows = [r for r in _scores_csv(lbp_run) if r["split"] == "test" and r["score"]]
    crops = [load_image(texture_manifest.parent / r["path"]) for r in rows]
    got = b.score_crops(crops)
    np.testing.assert_allclose(got, [float(r["score"]) for r in rows], rtol=1e-7)
    assert b.model_id == json.loads((lbp_run / "metrics.json").read_text())["meta"]["model_id"]


def test_predict_runs_the_lbp_bundle(lbp_run: Path, texture_manifest: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = texture_manifest.parent
    files = [root / "test" / "live_03.png", root / "test" / "spoof_03.png",
             root / "test" / "broken.png"]
    out = tmp_path / "pred.jsonl"
    assert main(["-q", "predict", str(lbp_run), *map(str, files), "-o", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    scores = {r["path"]: float(r["score"]) for r in _scores_csv(lbp_run) if r["score"]}
    thr = json.loads((lbp_run / "config.json").read_text())["threshold"]["value"]
    for rec, want in zip(recs[:2], ("live", "spoof")):
        assert rec["status"] == "ok" and len(rec["faces"]) == 1
        rel = Path(rec["path"]).relative_to(root).as_posix()
        assert rec["score"] == pytest.approx(scores[rel], rel=1e-7)
        assert rec["decision"] == want and (rec["score"] >= thr) == (want == "live")
    assert recs[2]["status"] == "error" and "broken.png" in recs[2]["error"]


def test_round_trip_and_untrusted_types_refused(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20, 59)), rng.normal(1.5, 1, (20, 59))])
    y = np.array([0] * 20 + [1] * 20)
    fit = train_svm(X, y, seed=3)
    cfg = LBPConfig()
    save_lbp_bundle(tmp_path / "b", fit.model, cfg, preprocessing={"detector": "none"},
                    classifier=fit.info, threshold={"value": 0.5, "criterion": "x",
                                                    "split": "dev"})
    b = load_lbp_bundle(tmp_path / "b")
    np.testing.assert_array_equal(b.model.predict_proba(X), fit.model.predict_proba(X))
    assert b.probabilities(X).shape == (40, 2)
    np.testing.assert_allclose(b.probabilities(X).sum(axis=1), 1.0)

    # the same seed gives the same model
    again = train_svm(X, y, seed=3)
    np.testing.assert_array_equal(again.model.predict_proba(X), fit.model.predict_proba(X))
    assert fit.info["grid_search_rows"] == 40 and fit.info["cv_folds"] == 5
    # a grid search on a stratified subsample; the final model still sees every row
    sub = train_svm(X, y, seed=3, grid_samples=16)
    assert sub.info["grid_search_rows"] == 16
    final = sub.model.calibrated_classifiers_[0].estimator  # ensemble=False: fitted on all
    assert final.named_steps["scale"].n_samples_seen_ == 40
    assert sub.info["train_live"] == 20 and sub.info["train_attack"] == 20

    # a classifier holding a type outside the trusted list: refused on save and on load
    evil = make_pipeline(FunctionTransformer(_identity), fit.model)
    with pytest.raises(BadCheckpointError, match="trusted"):
        save_lbp_bundle(tmp_path / "e", evil, cfg, preprocessing={}, classifier={},
                        threshold=None)
    sio.dump(evil, tmp_path / "b" / MODEL_FILE)
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    with pytest.raises(BadCheckpointError, match="SHA-256"):
        load_lbp_bundle(tmp_path / "b")
    import hashlib

    config["model_sha256"] = hashlib.sha256((tmp_path / "b" / MODEL_FILE).read_bytes()
                                            ).hexdigest()
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadCheckpointError, match="_identity"):
        load_lbp_bundle(tmp_path / "b")


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def test_network_loader_refuses_an_lbp_bundle(lbp_run: Path) -> None:
    from vitfas.bundle import load_bundle

    with pytest.raises(BadCheckpointError, match="lbp-svm"):
        load_bundle(lbp_run)


def test_missing_dev_split_is_a_clear_error(tmp_path: Path, texture_manifest: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from vitfas.data.manifest import read_manifest, write_manifest

    rows = [r for r in read_manifest(texture_manifest) if r["split"] != "dev"]
    m = write_manifest(texture_manifest.parent / "nodev.csv", rows)
    assert main(["-q", "baseline", "lbp", str(m), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "'dev' split" in err and "found splits ['test', 'train']" in err


def test_serve_answers_with_the_lbp_bundle(lbp_run: Path, texture_manifest: Path) -> None:
    from fastapi.testclient import TestClient

    from vitfas.predict import LBPPredictor, load_predictor
    from vitfas.serve.app import ServeSettings, create_app

    pred = load_predictor(lbp_run)
    assert isinstance(pred, LBPPredictor) and pred.threshold_source == "bundle"
    path = texture_manifest.parent / "test" / "spoof_05.png"
    want = {r["path"]: float(r["score"]) for r in _scores_csv(lbp_run) if r["score"]}
    with TestClient(create_app(pred, ServeSettings()), raise_server_exceptions=False) as c:
        r = c.post("/v1/liveness?explain=1",
                   files={"file": ("s.png", path.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["faces"][0]["score"] == pytest.approx(want["test/spoof_05.png"], rel=1e-7)
        assert body["faces"][0]["decision"] == "spoof"
        assert "attention" in (body.get("explain_error") or "")
        assert c.get("/v1/model").json()["kind"] == "lbp-svm"
    with pytest.raises(Exception, match="scikit-learn"):
        load_predictor(lbp_run, runtime="onnx")


def test_cells_bundle_round_trip(texture_manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells"
    assert main(["-q", "baseline", "lbp", str(texture_manifest), "-o", str(out),
                 "--features", "gray", "--size", "32", "--cells", "2"]) == 0
    b = load_lbp_bundle(out)
    assert b.lbp.cells == 2 and b.lbp.length == 4 * 59
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert "2x2 cells" in meta["method"]
    rows = [r for r in _scores_csv(out) if r["split"] == "test" and r["score"]]
    crops = [load_image(texture_manifest.parent / r["path"]) for r in rows]
    np.testing.assert_allclose(b.score_crops(crops), [float(r["score"]) for r in rows], rtol=1e-7)
