"""`vitfas demo` end to end at a reduced size: every output file exists and holds what it
should (metrics in range, PNG sizes, prediction lines), and the CLI's usage errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from vitfas.cli import main
from vitfas.data.inputs import expand_inputs

SIZE = 32


def _made_up_fixtures(d: Path) -> Path:
    """A fixture folder of our own: the astronaut photo as a live face (dlib finds it) and
    a blank print (no face: a failure to acquire, counted wrong)."""
    import numpy as np
    import skimage.data

    d.mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(d / "live_astronaut.png")
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(d / "print_blank.png")
    return d


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
             ) -> tuple[Path, dict, list[Path]]:
    """One quick demo: 6 LFW subjects, 32 px, 2 epochs, predicting the face fixtures when
    they are available; the real-photo report on a made-up fixture folder."""
    out = tmp_path_factory.mktemp("demo") / "run"
    own = _made_up_fixtures(tmp_path_factory.mktemp("fixtures") / "faces")
    try:
        faces = request.getfixturevalue("face_fixtures")
        extra = ["--predict", str(faces)]
        files = expand_inputs([faces])
    except pytest.skip.Exception:
        extra, files = [], []
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["-q", "demo", "-o", str(out), "--epochs", "2", "--subjects", "6", "--size",
                   str(SIZE), "--json", "--fixtures", str(own), *extra])
    assert rc == 0
    summary = json.loads(buf.getvalue())
    return out, summary, files


def _in01(x: float | None) -> bool:
    return x is not None and 0.0 <= x <= 1.0


def test_summary_and_data(demo_run: tuple[Path, dict, list[Path]]) -> None:
    out, s, _ = demo_run
    assert "SIMULATED" in s["note"]
    assert json.loads((out / "demo.json").read_text())["metrics"] == s["metrics"]
    assert "SIMULATED" in (out / "summary.md").read_text()
    d = s["data"]
    assert d["images"] == 8 * 8  # (6 LFW + astronaut + coffee) x (4 live + 2 print + 2 replay)
    assert (out / "data" / "manifest.csv").is_file()
    assert sum(d["subjects"].values()) == 8
    for stage in ("data", "train", "eval", "explain", "predict", "fixtures"):
        t = s["timing"][stage]
        assert t["wall_s"] >= 0 and t["cpu_s"] >= 0


def test_bundle(demo_run: tuple[Path, dict, list[Path]]) -> None:
    _out, s, _ = demo_run
    cfg = json.loads((Path(s["train"]["bundle"]) / "config.json").read_text())
    assert cfg["class_names"] == ["spoof", "live"] and cfg["live_index"] == 1
    assert cfg["threshold"]["split"] == "dev" and _in01(cfg["threshold"]["value"])
    assert cfg.get("adapters") is None  # the fas_scratch recipe has none
    pre = cfg["preprocessing"]
    assert pre["img_size"] == [SIZE, SIZE] and pre["detector"] == "dlib"
    assert cfg["architecture"]["name"] == "vit_cdcstem_w64_p8_64"
    arch = cfg["architecture"]["config"]
    assert arch["patch_size"] == 8 and arch["embed_dim"] == 64 and arch["depth"] == 4
    assert arch["stem"] == "cdc" and arch["cdc_theta"] == 0.7
    assert arch["img_size"] == [SIZE, SIZE]
    # the recipe's training choices, as the run recorded them
    run_cfg = yaml.safe_load((Path(s["train"]["run_dir"]) / "config.yaml").read_text())
    assert run_cfg["loss"]["label_smoothing"] == 0.1
    assert run_cfg["data"]["balance"] is True
    aug = run_cfg["data"]["augment"]
    assert aug["jpeg"] == 0.3 and aug["blur"] == 0.1 and aug["scale"] == [0.6, 1.0]
    assert run_cfg["output"]["weights"] == "best"
    assert run_cfg["trainer"]["best_metric"] == "eer"
    assert s["model"]["registry_name"] == "vit_cdcstem_w64_p8_64"
    assert (Path(s["train"]["bundle"]) / "model.safetensors").is_file()
    assert s["train"]["steps"] > 0


def test_metrics_report(demo_run: tuple[Path, dict, list[Path]]) -> None:
    out, s, _ = demo_run
    m = json.loads((out / "report" / "metrics.json").read_text())
    assert "SIMULATED" in m["meta"]["data_note"]
    frame = m["frame"]
    assert frame["threshold"]["split"] == "dev" and _in01(frame["threshold"]["value"])
    assert set(frame["splits"]) == {"dev", "test"}
    for name, sp in frame["splits"].items():
        at = sp["at_threshold"]
        assert set(at["apcer"]) == {"print", "replay"}, name
        for k in ("apcer_max", "bpcer", "acer", "hter"):
            assert _in01(at[k]), (name, k, at[k])
        assert all(_in01(v) for v in at["apcer"].values())
        assert _in01(sp["eer"]) and _in01(sp["auc"])
        assert at["acer"] == pytest.approx((at["apcer_max"] + at["bpcer"]) / 2)
        c = sp["counts"]  # 4 live, 2 print, 2 replay per subject
        assert c["bona_fide"] == c["attack"] > 0 and c["fta_bona_fide"] == c["fta_attack"] == 0
        assert c["per_attack_type"]["print"]["n"] == c["per_attack_type"]["replay"]["n"]
    assert s["metrics"]["test"]["acer"] == frame["splits"]["test"]["at_threshold"]["acer"]
    md = (out / "report" / "report.md").read_text()
    assert "SIMULATED" in md.split("\n## ")[0]  # stated before the figures
    pngs = sorted((out / "report").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"frame_roc.png", "frame_det.png", "frame_hist_test.png",
            "frame_confusion_test.png"} <= names
    for p in pngs:
        assert Image.open(p).size == (600, 450), p


def test_explain_outputs(demo_run: tuple[Path, dict, list[Path]]) -> None:
    out, s, _ = demo_run
    overlays = [Path(f) for f in s["explain"]["overlays"]]
    assert len(overlays) == 6  # 2 test subjects x live/print/replay
    for f in overlays:
        assert f.parent == out / "explain" and f.name.endswith(".rollout.png")
        im = Image.open(f)
        assert im.size == (4 * SIZE, 4 * SIZE) and im.mode == "RGB"
    grid = Image.open(s["explain"]["grid"])
    assert grid.size[0] > grid.size[1] > 200


def test_predictions(demo_run: tuple[Path, dict, list[Path]]) -> None:
    out, s, files = demo_run
    lines = (out / "predictions" / "heldout.jsonl").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        r = json.loads(line)
        assert r["status"] == "ok" and len(r["faces"]) == 1
        assert _in01(r["score"]) and r["decision"] in ("live", "spoof")
        assert r["truth"]["attack_type"] in ("none", "print", "replay")
        box = r["faces"][0]["box"]
        assert box == [0.0, 0.0, float(SIZE), float(SIZE)]  # a demo image is one face crop
    held = s["heldout"]
    assert held["n"] == 6 and 0 <= held["correct"] <= 6
    if not files:
        pytest.skip("face fixtures absent: --predict not exercised")
    recs = [json.loads(x) for x in (out / "predictions" / "predict.jsonl").read_text()
            .splitlines()]
    assert [Path(r["path"]).name for r in recs] == [f.name for f in files]
    ok = [r for r in recs if r["status"] == "ok"]
    assert len(ok) >= len(recs) - 1  # dlib finds the faces in the real photos
    for r in ok:
        assert _in01(r["score"]) and r["decision"] in ("live", "spoof")
    two = next(r for r in recs if "two_faces" in r["path"])
    assert len(two["faces"]) == 2
    assert s["predict"]["n"] == len(files)


def test_fixture_report(demo_run: tuple[Path, dict, list[Path]]) -> None:
    out, s, _ = demo_run
    fx = s["fixtures"]
    assert fx["status"] == "ok" and fx["single"]["n"] == 2
    rows = {r["file"]: r for r in fx["rows"]}
    live = rows["live_astronaut.png"]
    assert live["expected"] == "live" and _in01(live["score"])
    assert live["right"] == (live["decision"] == "live")
    blank = rows["print_blank.png"]
    assert blank["right"] is False and blank["note"] == "no face found"
    assert fx["single"]["right"] == int(live["right"])
    assert fx["line"] == f"{int(live['right'])} of 2 single-face photos right"
    assert json.loads((out / "demo.json").read_text())["fixtures"]["line"] == fx["line"]
    md = (out / "summary.md").read_text()
    assert "## Real photos (reporting only)" in md and "| print_blank.png | print |" in md
    assert fx["line"] in md
    assert len((out / "predictions" / "fixtures.jsonl").read_text().splitlines()) == 2


def test_rerun_same_folder_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture
                                        ) -> None:
    # a non-empty folder that is not an earlier demo is left alone
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["-q", "demo", "-o", str(tmp_path), "--subjects", "3"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    # usage errors come before any work
    assert main(["demo", "-o", str(tmp_path / "x"), "--predict", str(tmp_path / "nope")]) == 2
    assert main(["demo", "-o", str(tmp_path / "x"), "--subjects", "1"]) == 2
    assert main(["demo", "-o", str(tmp_path / "x"), "--size", "36"]) == 2
    assert not (tmp_path / "x").exists()


def test_smallest_run_trains(tmp_path: Path) -> None:
    # 3 LFW subjects: one per split, + coffee in train: 16 training images, under one batch
    from vitfas.demo import run_demo

    s = run_demo(tmp_path / "d", epochs=1, subjects=3, size=16, quiet=True, fixtures="")
    assert s["data"]["subjects"] == {"dev": 1, "test": 2, "train": 2}
    assert s["train"]["steps"] == 1
    assert set(s["metrics"]) == {"dev", "test"}


def test_demo_folder_is_replaced_on_rerun(tmp_path: Path, capsys: pytest.CaptureFixture
                                          ) -> None:
    from vitfas.demo.run import MARKER, _prepare_out

    out = tmp_path / "demo"
    _prepare_out(out)
    (out / "train").mkdir()
    (out / "train" / "last.pt").write_bytes(b"old run")
    (out / "notes.txt").write_text("the user's")
    _prepare_out(out)  # an earlier demo (marker present): its outputs go, the rest stays
    assert not (out / "train").exists()
    assert (out / "notes.txt").is_file() and (out / MARKER).is_file()
