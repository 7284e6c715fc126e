"""The demo's real-photo report (vitfas.demo.fixtures): expected labels from file names,
right/wrong counting, the two-face photo matched left to right (after EXIF rotation), a
photo without a face counted wrong, a missing folder reported as skipped.

The face detector and the model are stubbed: a "face" is a square whose green channel is
200, and its P(live) is its red channel / 255. Nothing here reads ../shared."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from vitfas.demo.fixtures import (
    FIXTURES_ENV,
    default_fixtures_dir,
    expected_from_name,
    fixture_markdown,
    fixture_report,
    format_fixture_report,
    repo_root,
    score_fixtures,
)
from vitfas.faces.detectors import Face
from vitfas.predict import Predictor


class SquarePredictor:
    """Stands in for :class:`vitfas.predict.Predictor`: faces are the squares of green
    200 (largest first); P(live) = mean red / 255; live when >= 0.5."""

    class_names = ("spoof", "live")
    live_index = 1
    threshold = 0.5
    decide = Predictor.decide
    make_result = Predictor.make_result

    def detect(self, rgb: np.ndarray) -> list[tuple[Face, np.ndarray]]:
        mask = (np.abs(rgb[..., 1].astype(int) - 200) < 25).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        out = []
        for x, y, w, h, area in stats[1:n]:
            if area >= 50:
                out.append((Face((float(x), float(y), float(x + w), float(y + h))),
                            rgb[y:y + h, x:x + w]))
        return sorted(out, key=lambda fc: -fc[0].area)

    def predict_crops(self, detections: list[list[tuple[Face, np.ndarray]]]
                      ) -> list[list[Any]]:
        return [[self.make_result(f, np.array([1 - c[..., 0].mean() / 255,
                                               c[..., 0].mean() / 255]))
                 for f, c in dets] for dets in detections]


def _photo(red: list[int], w: int = 160, h: int = 100) -> np.ndarray:
    """Black ``h x w`` RGB with one 30-px face square per ``red`` value, left to right."""
    img = np.zeros((h, w, 3), np.uint8)
    for i, r in enumerate(red):
        x = 10 + i * (w // max(1, len(red)))
        img[35:65, x:x + 30] = (r, 200, 0)
    return img


def _save(path: Path, rgb: np.ndarray, orientation: int | None = None) -> None:
    im = Image.fromarray(rgb)
    if orientation is None:
        im.save(path)
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=98, exif=exif)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "faces"
    d.mkdir()
    _save(d / "live_a.png", _photo([230]))  # P(live) 0.90 -> live: right
    _save(d / "live_b.png", _photo([50]))  # 0.20 -> spoof: wrong
    _save(d / "print_x.png", _photo([30]))  # 0.12 -> spoof: right
    _save(d / "replay_y.png", _photo([204]))  # 0.80 -> live: wrong
    _save(d / "replay_noface.png", np.zeros((80, 80, 3), np.uint8))  # no face: wrong
    _save(d / "holiday.png", _photo([240]))  # no naming convention: listed, not counted
    # stored upside down with EXIF orientation 3 (rotate 180): upright, the replay face
    # (red 40) is on the left and the live face (red 230) on the right, as in the README
    upright = _photo([40, 230])
    _save(d / "two_faces_live_and_replay.jpg", np.ascontiguousarray(upright[::-1, ::-1]), 3)
    (d / "README.md").write_text("not an image\n")
    return d


def test_expected_from_name() -> None:
    assert expected_from_name("live_exif6.jpg") == ("live",)
    assert expected_from_name("print_id_photo.jpg") == ("print",)
    assert expected_from_name("replay_tablet_exif6.jpg") == ("replay",)
    assert expected_from_name("two_faces_live_and_replay.png") == ("replay", "live")
    assert expected_from_name("holiday.png") is None
    assert expected_from_name("alive_1.png") is None  # the prefix, not a substring


def test_counting(folder: Path) -> None:
    rep = fixture_report(folder, score_fixtures(SquarePredictor(), folder))
    assert rep["status"] == "ok"
    rows = {(r["file"], r["face"]): r for r in rep["rows"]}
    assert len(rows) == 8  # 6 single-face files + 2 faces; README.md is not an image
    assert rows[("live_a.png", "")]["right"] is True
    assert rows[("live_a.png", "")]["score"] == pytest.approx(230 / 255)
    assert rows[("live_b.png", "")]["right"] is False
    assert rows[("live_b.png", "")]["decision"] == "spoof"
    assert rows[("print_x.png", "")]["right"] is True
    assert rows[("replay_y.png", "")]["right"] is False
    noface = rows[("replay_noface.png", "")]
    assert noface["right"] is False and noface["score"] is None
    assert noface["note"] == "no face found"
    assert rows[("holiday.png", "")]["right"] is None
    assert rows[("holiday.png", "")]["expected"] == "?"
    assert rep["single"] == {"right": 2, "n": 5}
    # the two faces, matched left to right after the EXIF rotation
    left = rows[("two_faces_live_and_replay.jpg", "left")]
    right = rows[("two_faces_live_and_replay.jpg", "right")]
    assert left["expected"] == "replay" and left["decision"] == "spoof" and left["right"]
    assert right["expected"] == "live" and right["decision"] == "live" and right["right"]
    assert left["score"] == pytest.approx(40 / 255, abs=0.03)
    assert right["score"] == pytest.approx(230 / 255, abs=0.03)
    (multi,) = rep["multi"]
    assert multi["right"] == 2 and multi["n"] == 2 and multi["found"] == 2
    assert rep["line"].startswith("2 of 5 single-face photos right; two-face photo: "
                                  "replay face (left) P(live) 0.1")
    assert re.search(r"-> spoof \(right\), live face \(right\) P\(live\) 0\.(89|90|91) "
                     r"-> live \(right\)$", rep["line"])
    text = "\n".join(format_fixture_report(rep))
    assert "replay_noface.png" in text and "wrong  (no face found)" in text
    md = fixture_markdown(rep)
    assert "| live_b.png | live | - | 0.20 | spoof | wrong |" in md
    assert md.rstrip().endswith("-> live (right).")


def test_two_face_photo_with_one_face_found(tmp_path: Path) -> None:
    _save(tmp_path / "two_faces_live_and_replay.png", _photo([230]))
    rep = fixture_report(tmp_path, score_fixtures(SquarePredictor(), tmp_path))
    faces = rep["multi"][0]["faces"]
    assert [(r["expected"], r["right"]) for r in faces] == [("replay", False),
                                                           ("live", False)]
    assert all(r["note"] == "expected 2 faces, found 1" for r in faces)
    assert rep["single"] == {"right": 0, "n": 0}
    assert rep["line"] == ("0 of 0 single-face photos right; two-face photo: replay face "
                           "(left) expected 2 faces, found 1 (wrong), live face (right) "
                           "expected 2 faces, found 1 (wrong)")


def test_missing_folder_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vitfas.demo.run import _fixtures

    missing = tmp_path / "nowhere"
    rep = _fixtures(None, missing, tmp_path / "predictions")  # no bundle needed to skip
    assert rep["status"] == "skipped" and rep["rows"] == []
    assert rep["line"] == f"skipped: no fixture folder at {missing}"
    assert format_fixture_report(rep) == [rep["line"]]
    assert not (tmp_path / "predictions").exists()
    off = _fixtures(None, None, tmp_path / "predictions")
    assert off["status"] == "off"
    # the default folder: the environment variable, else ../shared beside the checkout
    monkeypatch.setenv(FIXTURES_ENV, str(missing))
    assert default_fixtures_dir() == missing
    monkeypatch.delenv(FIXTURES_ENV)
    assert default_fixtures_dir() == repo_root().parent / "shared" / "fixtures" / "faces"


def test_explicit_missing_folder_is_an_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from vitfas.cli import main
    from vitfas.demo.run import _fixtures_dir
    from vitfas.errors import BadConfigError

    with pytest.raises(BadConfigError, match="--fixtures .*nowhere.*found nothing"):
        _fixtures_dir(tmp_path / "nowhere")
    assert _fixtures_dir("") is None
    assert main(["demo", "-o", str(tmp_path / "x"), "--fixtures",
                 str(tmp_path / "nowhere")]) == 2
    assert "--fixtures" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
