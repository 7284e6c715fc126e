"""`vitfas predict` and the Predictor: scores equal a hand-run of the model on the crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_helpers import make_bundle, run_cli


def _manual_score(bundle_dir: Path, rgb: np.ndarray) -> list[float]:
    """P(live) per face, computed without the Predictor: recipe crop -> torchvision
    normalise -> model -> softmax."""
    from torchvision.transforms import v2

    from vitfas.bundle import load_bundle
    from vitfas.predict import make_crop_recipe

    b = load_bundle(bundle_dir)
    pre = b.preprocessing
    recipe = make_crop_recipe(pre, tuple(pre["img_size"]))
    norm = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(pre["mean"], pre["std"])])
    out = []
    for _face, crop in recipe.apply(rgb):
        x = norm(crop).unsqueeze(0)
        with torch.no_grad():
            out.append(float(torch.softmax(b.model(x), -1)[0, b.live_index]))
    return out


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_folder_scores_match_manual(tiny_bundle, image_dir, tmp_path, monkeypatch):
    from vitfas.predict import load_image

    out = tmp_path / "out.jsonl"
    rc = run_cli(["-q", "predict", str(tiny_bundle), str(image_dir), "-o", str(out)],
                 monkeypatch)
    assert rc == 0
    recs = _read(out)
    assert [Path(r["path"]).name for r in recs] == ["img0.jpg", "img1.png", "img2.jpg",
                                                    "img3.png"]
    scores = []
    for r in recs:
        assert r["status"] == "ok" and r["kind"] == "image"
        want = _manual_score(tiny_bundle, load_image(r["path"]))
        got = [f["score"] for f in r["faces"]]
        np.testing.assert_allclose(got, want, atol=1e-5)
        f = r["faces"][0]
        assert f["decision"] == ("live" if f["score"] >= 0.5 else "spoof")
        assert f["probs"]["live"] == pytest.approx(f["score"])
        assert f["probs"]["spoof"] == pytest.approx(1 - f["score"])
        h, w = load_image(r["path"]).shape[:2]
        assert f["box"][2] <= w + 1 and f["box"][3] <= h + 1
        scores.append(f["score"])
    assert max(scores) - min(scores) > 1e-3, "images should not all score alike"


def _with_threshold(src: Path, dst: Path, value: float | None) -> Path:
    """A copy of bundle ``src`` whose config.json has another threshold."""
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["threshold"] = None if value is None else {"value": value, "criterion": "test",
                                                   "split": "dev"}
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_threshold_from_bundle_decides(tiny_bundle, image_dir, tmp_path):
    """The decision uses the bundle threshold: put it between two images' scores."""
    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor, load_image

    ims = [load_image(f) for f in sorted(image_dir.iterdir())]
    p0 = Predictor(load_bundle(tiny_bundle))
    s = [p0.predict_image(im)[0].score for im in ims]
    order = np.argsort(s)
    thr = (s[order[1]] + s[order[2]]) / 2
    p1 = Predictor(load_bundle(_with_threshold(tiny_bundle, tmp_path / "b1", thr)))
    assert p1.threshold == thr and p1.threshold_source == "bundle"
    dec = [p1.predict_image(ims[i])[0].decision for i in order]
    assert dec == ["spoof", "spoof", "live", "live"]
    # a score exactly at the threshold is accepted as live
    p2 = Predictor(load_bundle(_with_threshold(tiny_bundle, tmp_path / "b2", s[order[0]])))
    assert p2.predict_image(ims[order[0]])[0].decision == "live"
    # no threshold in the bundle: 0.5, and it says so
    p3 = Predictor(load_bundle(_with_threshold(tiny_bundle, tmp_path / "b3", None)))
    assert p3.threshold == 0.5 and p3.threshold_source == "default 0.5"


def test_bad_files_reported_and_run_goes_on(tiny_bundle, image_dir, tmp_path, monkeypatch,
                                            capsys, bomb_png):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not an image\n")
    good = (image_dir / "img0.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (bad / "broken.mp4").write_bytes(b"\x00" * 100)
    (bad / "bomb.png").write_bytes(bomb_png())
    out = tmp_path / "out.jsonl"
    argv = ["predict", str(tiny_bundle), str(bad / "empty.jpg"), str(bad / "text.jpg"),
            str(bad / "bomb.png"), str(bad / "broken.mp4"), str(image_dir / "img1.png"),
            "-o", str(out)]
    assert run_cli(argv, monkeypatch) == 0
    recs = {Path(r["path"]).name: r for r in _read(out)}
    for name in ("empty.jpg", "text.jpg", "bomb.png", "broken.mp4"):
        assert recs[name]["status"] == "error", recs[name]
        assert name in recs[name]["error"]
    assert "too many pixels" in recs["bomb.png"]["error"]
    assert recs["img1.png"]["status"] == "ok"
    assert "4 unreadable" in capsys.readouterr().err
    assert run_cli([*argv, "--strict"], monkeypatch) == 1
    # a good truncated-but-decodable JPEG either decodes or errors; never crashes the run
    assert run_cli(["-q", "predict", str(tiny_bundle), str(bad / "truncated.jpg"),
                    str(image_dir / "img1.png"), "-o", str(out)], monkeypatch) == 0
    assert len(_read(out)) == 2


def test_missing_path_is_a_usage_error(tiny_bundle, image_dir, tmp_path, monkeypatch,
                                       capsys):
    out = tmp_path / "out.jsonl"
    missing = tmp_path / "no" / "such" / "dir"
    rc = run_cli(["predict", str(tiny_bundle), str(image_dir), str(missing), "-o", str(out)],
                 monkeypatch)
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such file or folder" in err
    assert not out.exists() or out.read_text() == ""


def test_no_face_line_and_strict(tiny_bundle, image_dir, tmp_path, monkeypatch):
    """A detector that finds nothing -> status no_face with a clear message."""
    from vitfas.predict import predictor as P

    class Nothing:
        def apply(self, rgb):
            return []

    monkeypatch.setattr(P, "make_crop_recipe", lambda pre, size: Nothing())
    out = tmp_path / "o.jsonl"
    argv = ["-q", "predict", str(tiny_bundle), str(image_dir / "img2.jpg"), "-o", str(out)]
    assert run_cli(argv, monkeypatch) == 0
    (r,) = _read(out)
    assert r["status"] == "no_face" and r["faces"] == [] and r["score"] is None
    assert "no face" in r["error"] and "img2.jpg" in r["error"]
    assert run_cli([*argv, "--strict"], monkeypatch) == 1
    # a video where no frame has a face
    import cv2

    vid = tmp_path / "v.avi"
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 32))
    for _ in range(5):
        wr.write(np.zeros((32, 32, 3), np.uint8))
    wr.release()
    assert run_cli(["-q", "predict", str(tiny_bundle), str(vid), "-o", str(out)],
                   monkeypatch) == 0
    (r,) = _read(out)
    assert r["status"] == "no_face" and r["score"] is None and r["frames_with_face"] == 0
    assert r["frames_sampled"] == 4


def test_video_score_is_mean_of_frames(tiny_bundle, tmp_path, monkeypatch, capsys):
    import cv2

    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor

    path = tmp_path / "clip.avi"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 40))
    rng = np.random.default_rng(1)
    for i in range(12):
        frame = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) // (1 + i % 3)
        wr.write(frame)
    wr.release()
    out = tmp_path / "v.jsonl"
    assert run_cli(["-q", "predict", str(tiny_bundle), str(path), "-o", str(out),
                    "--explain", str(tmp_path / "heat")], monkeypatch) == 0
    (r,) = _read(out)
    assert len(r["explain"]) == 4 and all(Path(f).is_file() for f in r["explain"])
    assert r["kind"] == "video" and r["status"] == "ok"
    assert r["frames_sampled"] == 4 == len(r["frames"])  # the bundle's frames_per_video
    assert run_cli(["predict", str(tiny_bundle), str(path), "-o", str(out), "--frames", "3"],
                   monkeypatch) == 0
    assert "1 video(s) scored on 3 frames each" in capsys.readouterr().err
    assert _read(out)[0]["frames_sampled"] == 3
    per = [f["faces"][0]["score"] for f in r["frames"]]
    assert r["score"] == pytest.approx(float(np.mean(per)), abs=1e-9)
    # each frame's score equals predicting that frame as an image
    p = Predictor(load_bundle(tiny_bundle))
    cap = cv2.VideoCapture(str(path))
    for f in r["frames"]:
        cap.set(cv2.CAP_PROP_POS_FRAMES, f["frame"])
        ok, bgr = cap.read()
        assert ok
        want = p.predict_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[0].score
        assert f["faces"][0]["score"] == pytest.approx(want, abs=1e-5)
    idx = [f["frame"] for f in r["frames"]]
    assert idx == sorted(set(idx)) and idx[0] >= 0 and idx[-1] <= 11


def test_explain_writes_overlays(tiny_bundle, image_dir, tmp_path, monkeypatch):
    from PIL import Image

    d = tmp_path / "heat"
    out = tmp_path / "o.jsonl"
    assert run_cli(["-q", "predict", str(tiny_bundle), str(image_dir / "img0.jpg"),
                    str(image_dir / "img3.png"), "--explain", str(d), "-o", str(out)],
                   monkeypatch) == 0
    recs = _read(out)
    files = [Path(f) for r in recs for f in r["explain"]]
    assert len(files) == 2 and all(f.parent == d for f in files)
    im = np.asarray(Image.open(files[0]))
    assert im.shape == (32, 32, 3)
    assert im.std() > 1


def test_batched_equals_single(tiny_bundle, image_dir):
    from vitfas.bundle import load_bundle
    from vitfas.predict import Predictor, load_image

    p = Predictor(load_bundle(tiny_bundle))
    ims = [load_image(f) for f in sorted(image_dir.iterdir())]
    calls = p.forward_calls
    batched = p.predict_images(ims)
    assert p.forward_calls == calls + 1
    for im, res in zip(ims, batched):
        assert res[0].score == pytest.approx(p.predict_image(im)[0].score, abs=1e-5)


def test_real_detector_finds_both_faces(face_fixtures, tmp_path, monkeypatch):
    """With the default detector the two-face fixture gives two faces, largest first, and
    the EXIF-rotated selfie one face inside the upright image."""
    b = make_bundle(tmp_path / "det")
    cfg = json.loads((b / "config.json").read_text())
    cfg["preprocessing"].update(detector="default", crop_scale=1.3)
    (b / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.jsonl"
    assert run_cli(["-q", "predict", str(b), str(face_fixtures / "two_faces_live_and_replay.png"),
                    str(face_fixtures / "live_exif6.jpg"), "-o", str(out)], monkeypatch) == 0
    two, selfie = _read(out)
    assert len(two["faces"]) == 2
    (a0, b0, a1, b1), (c0, d0, c1, d1) = (f["box"] for f in two["faces"])
    assert (a1 - a0) * (b1 - b0) >= (c1 - c0) * (d1 - d0)  # largest first
    assert a0 > 1267 / 3 > c1  # the live face is on the right, the replay on the left
    assert len(selfie["faces"]) == 1
    x0, y0, x1, y1 = selfie["faces"][0]["box"]
    assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 640


def test_bundle_without_detector_is_a_clear_error(tmp_path, image_dir, monkeypatch, capsys):
    b = make_bundle(tmp_path / "nodet")
    cfg = json.loads((b / "config.json").read_text())
    del cfg["preprocessing"]["detector"]
    (b / "config.json").write_text(json.dumps(cfg))
    assert run_cli(["predict", str(b), str(image_dir)], monkeypatch) == 1
    assert "no 'detector'" in capsys.readouterr().err


def test_non_fas_bundle_reports_top_class(tmp_path, image_dir):
    """A generic classifier bundle (no live class): decision is the top class."""
    from serve_helpers import PRE

    from vitfas.bundle import load_bundle, save_bundle
    from vitfas.models import create_model
    from vitfas.predict import Predictor, load_image

    m = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
                     depth=2, num_heads=2, num_classes=3)
    b = save_bundle(tmp_path / "cls3", m, class_names=["cat", "dog", "owl"],
                    preprocessing=dict(PRE))
    p = Predictor(load_bundle(b))
    (r,) = p.predict_image(load_image(image_dir / "img0.jpg"))
    assert r.decision == max(r.probs, key=r.probs.get)
    assert r.score == pytest.approx(max(r.probs.values()))
    assert sum(r.probs.values()) == pytest.approx(1.0)


def test_crop_recipe_follows_bundle_preprocessing():
    from serve_helpers import PRE

    from vitfas.predict import make_crop_recipe

    r = make_crop_recipe({**PRE, "detector": "haar", "crop_scale": 2.7, "crop_pad": "replicate",
                          "colour_order": "BGR"}, (48, 48))
    assert (r.detector, r.scale, r.size, r.pad, r.colour_order) == ("haar", 2.7, 48,
                                                                    "replicate", "BGR")
