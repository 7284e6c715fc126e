"""`vitfas data prepare`: crops, failures to acquire, unreadable files, resumability."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vitfas.data.datasets import ManifestDataset
from vitfas.data.io import load_image
from vitfas.data.manifest import COLUMNS, read_manifest, write_manifest
from vitfas.data.prepare import prepare
from vitfas.errors import BadConfigError, NoFaceError
from vitfas.faces import CropRecipe, crop_square

from .helpers import write_video


def _row(path: str, label: str, dataset: str, **kw: str) -> dict[str, str]:
    r = dict.fromkeys(COLUMNS, "")
    r.update(path=path, label=label, dataset=dataset, video=Path(path).stem,
             attack_type="none" if label == "live" else "print", split="train")
    r.update(kw)
    return r


@pytest.fixture(scope="module")
def face_small(face_fixtures: Path) -> np.ndarray:
    rgb = load_image(face_fixtures / "live_2.jpg")  # 480 x 640, face ~110 px near (245, 405)
    square = crop_square(rgb, (192, 353, 297, 458), scale=2.2, size=160)
    return square  # 160 x 160 with a ~75 px face in the middle


@pytest.fixture
def src(tmp_path: Path, face_small: np.ndarray) -> Path:
    d = tmp_path / "src"
    write_video(d / "live_v.avi", frames=9, size=(200, 180), face=face_small)
    write_video(d / "blank.avi", frames=9, size=(200, 180))  # no face anywhere
    cv2.imwrite(str(d / "face.png"), face_small[:, :, ::-1])
    (d / "zero.jpg").write_bytes(b"")
    good = (d / "face.png").read_bytes()
    (d / "cut.png").write_bytes(good[: len(good) // 3])
    rows = [
        _row("live_v.avi", "live", "a"),
        _row("blank.avi", "spoof", "a"),
        _row("face.png", "live", "b"),
        _row("zero.jpg", "spoof", "b"),
        _row("cut.png", "spoof", "b"),
        _row("missing.avi", "spoof", "b"),
    ]
    return write_manifest(d / "m.csv", rows)


RECIPE = CropRecipe(detector="dlib", scale=1.3, size=40)


def test_prepare_counts_and_crops(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    s = prepare(src, out, recipe=RECIPE, frames=3, progress=False)
    assert s["datasets"]["a"] == {"inputs": 2, "crops": 3, "no_face_frames": 3,
                                  "no_face_inputs": 1, "unreadable": 0}
    assert s["datasets"]["b"] == {"inputs": 4, "crops": 1, "no_face_frames": 0,
                                  "no_face_inputs": 0, "unreadable": 3}
    allrows = read_manifest(out / "manifest.csv")
    # frames without a face stay in the manifest as failures to acquire (fta=1)
    fta = [r for r in allrows if r["fta"] == "1"]
    assert [(r["path"], r["frame"], r["label"]) for r in fta] == [
        ("../src/blank.avi", "1", "spoof"), ("../src/blank.avi", "4", "spoof"),
        ("../src/blank.avi", "7", "spoof")]
    rows = [r for r in allrows if r["fta"] == "0"]
    assert len(rows) == len(allrows) - 3
    assert [(Path(r["source_path"]).name, r["frame"]) for r in rows] == [
        ("live_v.avi", "1"), ("live_v.avi", "4"), ("live_v.avi", "7"), ("face.png", "")]
    ds = ManifestDataset(out / "manifest.csv", skip_fta=True)
    assert len(ds) == 4 and ds[0][0].shape == (3, 40, 40)
    kept = ManifestDataset(out / "manifest.csv")  # default keeps FTA rows (eval counts them)
    assert len(kept) == 7
    i = next(j for j, r in enumerate(kept.rows) if r["fta"] == "1")
    with pytest.raises(NoFaceError, match=r"blank\.avi frame 1: failure to acquire"):
        kept[i]
    for r in rows:
        crop = load_image(out / r["path"])
        assert crop.shape == (40, 40, 3)
        x0, y0, x1, y1 = map(float, r["face_box"].split())
        assert 50 < x1 - x0 < 100  # the ~75 px face
    # the video frames hold the 160 px square at offset (20, 10): box centres agree
    x0, y0, x1, y1 = map(float, rows[0]["face_box"].split())
    fx0, fy0, fx1, fy1 = map(float, rows[3]["face_box"].split())
    assert abs((x0 + x1) / 2 - 20 - (fx0 + fx1) / 2) < 6
    assert abs((y0 + y1) / 2 - 10 - (fy0 + fy1) / 2) < 6
    fails = read_manifest_like(out / "failures.csv")
    reasons = sorted((Path(f["path"]).name, f["reason"]) for f in fails)
    assert reasons == [("blank.avi", "no_face")] * 3 + [
        ("cut.png", "unreadable"), ("missing.avi", "unreadable"), ("zero.jpg", "unreadable")]
    assert any("0 bytes" in f["detail"] and "zero.jpg" in f["detail"] for f in fails)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["crops"] == 4 and summary["total"]["unreadable"] == 3
    assert json.loads((out / "prepare.json").read_text())["recipe"] == RECIPE.to_dict()


def read_manifest_like(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_prepare_resumes_after_interruption(src: Path, tmp_path: Path) -> None:
    ref = prepare(src, tmp_path / "ref", recipe=RECIPE, frames=3, progress=False)
    out = tmp_path / "out"
    seen: list[str] = []

    def stop_after_two(key: str) -> None:
        seen.append(key)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, recipe=RECIPE, frames=3, progress=False, on_unit=stop_after_two)
    assert len(list((out / ".parts").glob("*.json"))) == 2
    s = prepare(src, out, recipe=RECIPE, frames=3, progress=False)
    assert (s["processed"], s["reused"]) == (4, 2)
    assert s["total"] == ref["total"]
    a = [(r["source_path"], r["frame"]) for r in read_manifest(out / "manifest.csv")]
    b = [(r["source_path"], r["frame"]) for r in read_manifest(tmp_path / "ref" / "manifest.csv")]
    assert a == b
    again = prepare(src, out, recipe=RECIPE, frames=3, progress=False)
    assert (again["processed"], again["reused"]) == (0, 6)
    with pytest.raises(BadConfigError, match=r"other settings \(frames: 3 before, 5 now\)\."):
        prepare(src, out, recipe=RECIPE, frames=5, progress=False)
    s5 = prepare(src, out, recipe=RECIPE, frames=5, progress=False, overwrite=True)
    assert s5["processed"] == 6 and s5["datasets"]["a"]["crops"] == 5


def test_prepare_parallel_matches_serial(src: Path, tmp_path: Path) -> None:
    a = prepare(src, tmp_path / "a", recipe=RECIPE, frames=2, progress=False)
    b = prepare(src, tmp_path / "b", recipe=RECIPE, frames=2, progress=False, workers=2)
    assert a["datasets"] == b["datasets"]
    ra = read_manifest(tmp_path / "a" / "manifest.csv")
    rb = read_manifest(tmp_path / "b" / "manifest.csv")
    assert [r["path"] for r in ra] == [r["path"] for r in rb]
    for x, y in zip(ra, rb):
        if x["fta"] == "1":
            assert (x["source_path"], x["frame"]) == (y["source_path"], y["frame"])
            continue
        np.testing.assert_array_equal(load_image(tmp_path / "a" / x["path"]),
                                      load_image(tmp_path / "b" / y["path"]))


def test_prepare_uses_shipped_boxes_with_none(tmp_path: Path) -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:90] = 255  # the "face" is the white 40 x 40 square
    cv2.imwrite(str(tmp_path / "x.png"), img)
    rows = [_row("x.png", "live", "celeba-spoof", face_box_rel="0.25 0.2 0.45 0.6")]
    m = write_manifest(tmp_path / "m.csv", rows)
    prepare(m, tmp_path / "o", recipe=CropRecipe(detector="none", scale=1.0, size=20),
            progress=False)
    (r,) = read_manifest(tmp_path / "o" / "manifest.csv")
    assert r["face_box"] == "50.0 20.0 90.0 60.0"
    assert (load_image(tmp_path / "o" / r["path"]) == 255).all()


def test_changed_settings_names_nested_fields() -> None:
    from vitfas.data.prepare import changed_settings

    old = {"recipe": {"size": 224, "scale": 1.0}, "frames": 10, "manifest": "/m.csv"}
    new = {"recipe": {"size": 112, "scale": 1.0}, "frames": 10, "manifest": "/m.csv"}
    assert changed_settings(old, new) == [("recipe.size", 224, 112)]
    assert changed_settings(old, old) == []
