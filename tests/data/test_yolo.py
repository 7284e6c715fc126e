"""`--layout yolo` (YOLO label files -> manifest face boxes) and `prepare --boxes manifest`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitfas.data.io import load_image
from vitfas.data.layouts import index_dataset, parse_classes, yolo_label_file
from vitfas.data.manifest import read_manifest
from vitfas.data.prepare import prepare
from vitfas.errors import BadDataError
from vitfas.faces import CropRecipe


def _img(path: Path, w: int = 40, h: int = 20, box: tuple[int, int, int, int] | None = None
         ) -> Path:
    """A black ``w x h`` PNG; inside ``box`` (x0, y0, x1, y1 pixels) the left half is red
    and the right half blue, so a crop shows where it was taken from."""
    a = np.zeros((h, w, 3), np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        xm = (x0 + x1) // 2
        a[y0:y1, x0:xm] = (255, 0, 0)
        a[y0:y1, xm:x1] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _lab(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))


@pytest.fixture
def beside(tmp_path: Path) -> Path:
    """Labels beside the images, as the webcam sets ship them."""
    r = tmp_path / "cam"
    # 40 x 20 image, box centre (0.5, 0.5), size (0.5, 0.5) -> pixels 10 5 30 15
    _img(r / "Dataset" / "Real" / "a.png", box=(10, 5, 30, 15))
    _lab(r / "Dataset" / "Real" / "a.txt", "1 0.5 0.5 0.5 0.5")
    # two boxes: the larger (class 0) wins; 80 x 40 image, box 0.25 0.5 0.5 1.0 -> 0 0 40 40
    _img(r / "Dataset" / "Fake" / "b.png", w=80, h=40)
    _lab(r / "Dataset" / "Fake" / "b.txt", "1 0.9 0.1 0.1 0.1", "0 0.25 0.5 0.5 1.0")
    # a box over the edge is clipped: centre 0.95 -> x1 = 1.05 -> 1.0
    _img(r / "Dataset" / "Fake" / "c.png")
    _lab(r / "Dataset" / "Fake" / "c.txt", "0 0.95 0.5 0.2 0.4")
    _img(r / "Dataset" / "Real" / "nolabel.png")  # no label file
    _img(r / "Dataset" / "Real" / "empty.png")
    _lab(r / "Dataset" / "Real" / "empty.txt")
    return r


def test_yolo_classes_boxes_in_pixels(beside: Path) -> None:
    rows = {Path(r["path"]).name: r for r in
            index_dataset("yolo", beside, classes="0=spoof,1=live", dataset="cam")}
    assert sorted(rows) == ["a.png", "b.png", "c.png"]  # unlabelled / empty skipped
    a, b, c = rows["a.png"], rows["b.png"], rows["c.png"]
    assert (a["label"], a["attack_type"], a["dataset"]) == ("live", "none", "cam")
    assert a["face_box"] == "10.0 5.0 30.0 15.0"
    assert a["face_box_rel"] == "0.250000 0.250000 0.750000 0.750000"
    assert (b["label"], b["attack_type"], b["n_boxes"]) == ("spoof", "unknown", "2")
    assert b["face_box"] == "0.0 0.0 40.0 40.0"
    assert c["face_box"] == "34.0 6.0 40.0 14.0"
    assert a["video"] == "Dataset/Real/a"


def test_yolo_label_from_folder_ignores_class_ids(beside: Path) -> None:
    _lab(beside / "Dataset" / "Fake" / "b.txt", "1 0.25 0.5 0.5 1.0")  # wrong id: 1 = live
    rows = {Path(r["path"]).name: r for r in index_dataset("yolo", beside, label_from="folder")}
    assert rows["b.png"]["label"] == "spoof"
    # with folder labels an image without a label file is kept, without a box
    assert rows["nolabel.png"]["label"] == "live"
    assert rows["nolabel.png"]["face_box_rel"] == "" and rows["nolabel.png"]["n_boxes"] == "0"


def test_yolo_images_labels_tree_and_splits(tmp_path: Path) -> None:
    r = tmp_path / "SplitData"
    for split, cls in (("train", 1), ("val", 0), ("test", 1)):
        _img(r / split / "images" / f"{split}.png")
        _lab(r / split / "labels" / f"{split}.txt", f"{cls} 0.5 0.5 0.5 0.5")
    assert yolo_label_file(r / "train" / "images" / "train.png") == (
        r / "train" / "labels" / "train.txt")
    rows = index_dataset("yolo", r, classes="0=spoof,1=live")
    got = sorted((r_["split"], r_["label"]) for r_ in rows)
    assert got == [("dev", "spoof"), ("test", "live"), ("train", "live")]


def test_yolo_bad_labels_are_listed(beside: Path) -> None:
    _lab(beside / "Dataset" / "Real" / "a.txt", "1 0.5 0.5 0.5")
    _lab(beside / "Dataset" / "Fake" / "c.txt", "7 0.5 0.5 0.2 0.2")
    with pytest.raises(BadDataError) as ei:
        index_dataset("yolo", beside, classes="0=spoof,1=live")
    msg = str(ei.value)
    assert "2 bad YOLO label(s)" in msg
    assert "a.txt:1: expected 'class cx cy w h'" in msg
    assert "c.txt: class id 7 not in --classes 0=spoof,1=live" in msg
    with pytest.raises(BadDataError, match="give --classes"):
        index_dataset("yolo", beside)
    with pytest.raises(BadDataError, match="expected '<id>=<class>'"):
        parse_classes("0:spoof")


def test_prepare_boxes_manifest_crops_the_labelled_box(tmp_path: Path) -> None:
    r = tmp_path / "cam"
    # 60 x 40 image with the red|blue square at x 30-50, y 10-30 (box 0.6667 0.5 0.3333 0.5)
    _img(r / "live" / "x.png", w=60, h=40, box=(30, 10, 50, 30))
    _lab(r / "live" / "x.txt", f"1 {40 / 60:.6f} 0.5 {20 / 60:.6f} 0.5")
    m = tmp_path / "m.csv"
    env_py = [sys.executable, "-m", "vitfas"]
    out = subprocess.run([*env_py, "data", "index", str(r), "--layout", "yolo", "--classes",
                          "0=spoof,1=live", "-o", str(m)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # haar finds no face on this synthetic image: a crop can only come from the label box
    s = prepare(m, tmp_path / "o", recipe=CropRecipe(detector="haar", size=20),
                boxes="manifest", progress=False)
    assert s["total"]["crops"] == 1
    (row,) = read_manifest(tmp_path / "o" / "manifest.csv")
    assert row["face_box"] == "30.0 10.0 50.0 30.0" and row["fta"] == "0"
    crop = load_image(tmp_path / "o" / row["path"])
    assert crop.shape == (20, 20, 3)
    assert (crop[:, :9] == (255, 0, 0)).all() and (crop[:, 11:] == (0, 0, 255)).all()
    # the default (detect) ignores the boxes: haar finds nothing -> a failure to acquire
    s2 = prepare(m, tmp_path / "o2", recipe=CropRecipe(detector="haar", size=20),
                 progress=False)
    assert s2["total"]["crops"] == 0 and s2["total"]["no_face_inputs"] == 1


def test_index_help_documents_yolo() -> None:
    out = subprocess.run([sys.executable, "-m", "vitfas", "data", "index", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("yolo", "--classes", "--label-from"):
        assert word in out.stdout
