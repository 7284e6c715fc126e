"""`vitfas data index` on miniature fake trees with each dataset's official naming."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitfas.data.layouts import index_dataset
from vitfas.errors import BadDataError

from .helpers import write_image, write_video


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tpl")
    return {ext: write_video(d / f"t{ext}", frames=3) for ext in (".avi", ".mov", ".mp4")}


def _put(templates: dict[str, Path], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(templates[path.suffix.lower()], path)
    return path


def _count(rows, *cols):
    return Counter(tuple(r[c] for c in cols) for r in rows)


def test_casia(tmp_path: Path, templates) -> None:
    names = ["1", "2", "3", "4", "5", "6", "7", "8", "HR_1", "HR_2", "HR_3", "HR_4"]
    for subj in ("1", "2"):
        for n in names:
            _put(templates, tmp_path / "CASIA" / "train_release" / subj / f"{n}.avi")
    for n in names:
        _put(templates, tmp_path / "CASIA" / "test_release" / "7" / f"{n}.avi")
    (tmp_path / "CASIA" / "train_release" / "1" / "notes.txt").write_text("x")
    rows = index_dataset("casia-fasd", tmp_path / "CASIA")
    assert len(rows) == 36
    assert _count(rows, "split") == {("train",): 24, ("test",): 12}
    by = {(r["subject"], Path(r["path"]).stem): r for r in rows}
    assert by[("1", "HR_1")]["label"] == "live" and by[("1", "HR_1")]["quality"] == "high"
    assert by[("1", "2")]["label"] == "live" and by[("1", "2")]["attack_type"] == "none"
    assert by[("2", "4")]["attack_detail"] == "warped_photo"
    assert by[("2", "HR_3")]["attack_type"] == "print"
    assert by[("2", "HR_3")]["attack_detail"] == "cut_photo"
    assert by[("7", "7")]["attack_type"] == "replay" and by[("7", "7")]["quality"] == "low"
    assert _count(rows, "label") == {("live",): 9, ("spoof",): 27}
    assert all(r["dataset"] == "casia-fasd" for r in rows)


def test_replay_attack(tmp_path: Path, templates) -> None:
    root = tmp_path / "replayattack"
    files = [
        "train/real/client001_session01_webcam_authenticate_adverse_1.mov",
        "train/real/client001_session01_webcam_authenticate_controlled_2.mov",
        "train/attack/fixed/attack_print_client001_session01_highdef_photo_adverse.mov",
        "train/attack/hand/attack_highdef_client001_session01_highdef_video_controlled.mov",
        "train/attack/hand/attack_mobile_client001_session01_mobile_photo_adverse.mov",
        "devel/real/client002_session01_webcam_authenticate_adverse_1.mov",
        "devel/attack/fixed/attack_mobile_client002_session01_mobile_video_adverse.mov",
        "test/real/client003_session01_webcam_authenticate_controlled_1.mov",
        "test/attack/hand/attack_print_client003_session01_highdef_photo_controlled.mov",
        "enroll/client001_session01_enroll_adverse_1.mov",
    ]
    for f in files:
        _put(templates, root / "replayattack-x" / f)
    rows = index_dataset("replay-attack", root)
    assert len(rows) == 9  # enroll skipped
    assert _count(rows, "split", "label") == {
        ("train", "live"): 2, ("train", "spoof"): 3, ("dev", "live"): 1, ("dev", "spoof"): 1,
        ("test", "live"): 1, ("test", "spoof"): 1}
    spoof = {r["video"]: r for r in rows if r["label"] == "spoof"}
    p = spoof["fixed/attack_print_client001_session01_highdef_photo_adverse"]
    assert (p["attack_type"], p["attack_detail"], p["support"], p["light"]) == (
        "print", "print_photo", "fixed", "adverse")
    h = spoof["hand/attack_highdef_client001_session01_highdef_video_controlled"]
    assert (h["attack_type"], h["attack_detail"], h["subject"]) == (
        "replay", "highdef_video", "client001")
    m = spoof["fixed/attack_mobile_client002_session01_mobile_video_adverse"]
    assert m["attack_type"] == "replay" and m["split"] == "dev"


def test_msu_mfsd(tmp_path: Path, templates) -> None:
    root = tmp_path / "MSU-MFSD"
    for f in [
        "scene01/real/real_client002_android_SD_scene01.mp4",
        "scene01/real/real_client002_laptop_SD_scene01.mov",
        "scene01/real/real_client003_android_SD_scene01.mp4",
        "scene01/attack/attack_client002_android_SD_ipad_video_scene01.mp4",
        "scene01/attack/attack_client002_laptop_SD_printed_photo_scene01.mov",
        "scene01/attack/attack_client003_android_SD_iphone_video_scene01.mp4",
    ]:
        _put(templates, root / f)
    (root / "train_sub_list.txt").write_text("002\n")
    (root / "test_sub_list.txt").write_text("003\n")
    rows = index_dataset("msu", root)
    assert len(rows) == 6
    assert _count(rows, "split", "label") == {
        ("train", "live"): 2, ("train", "spoof"): 2, ("test", "live"): 1, ("test", "spoof"): 1}
    at = {r["video"]: r for r in rows}
    assert at["attack_client002_laptop_SD_printed_photo_scene01"]["attack_type"] == "print"
    assert at["attack_client003_android_SD_iphone_video_scene01"]["attack_type"] == "replay"
    assert at["real_client002_laptop_SD_scene01"]["device"] == "laptop"
    (root / "test_sub_list.txt").write_text("004\n")
    with pytest.raises(BadDataError, match="client 3 is in neither"):
        index_dataset("msu", root)


def _oulu_tree(root: Path, templates) -> None:
    for f in ["Train_files/1_1_01_1.avi", "Train_files/1_1_01_2.avi", "Train_files/1_1_01_4.avi",
              "Train_files/2_3_01_1.avi", "Dev_files/1_1_21_1.avi", "Dev_files/1_1_21_5.avi",
              "Test_files/1_1_36_1.avi", "Test_files/1_1_36_3.avi", "Test_files/6_2_36_1.avi"]:
        _put(templates, root / f)
    (root / "Train_files" / "1_1_01_1.txt").write_text("eye positions")
    p1 = root / "Protocols" / "Protocol_1"
    p1.mkdir(parents=True)
    (p1 / "Train.txt").write_text("+1,1_1_01_1\n-1,1_1_01_2\n-2,1_1_01_4\n")
    (p1 / "Dev.txt").write_text("+1,1_1_21_1\n-2,1_1_21_5\n")
    (p1 / "Test.txt").write_text("+1,1_1_36_1\n-1,1_1_36_3\n")
    p3 = root / "Protocols" / "Protocol_3"
    p3.mkdir(parents=True)
    (p3 / "Train_2.txt").write_text("+1,2_3_01_1\n")
    (p3 / "Dev_2.txt").write_text("+1,1_1_21_1\n")
    (p3 / "Test_2.txt").write_text("+1,6_2_36_1\n")


def test_oulu_folders_and_protocols(tmp_path: Path, templates) -> None:
    root = tmp_path / "OULU"
    _oulu_tree(root, templates)
    rows = index_dataset("oulu-npu", root)
    assert len(rows) == 9
    assert _count(rows, "split") == {("train",): 4, ("dev",): 2, ("test",): 3}
    by = {r["video"]: r for r in rows}
    assert (by["1_1_01_2"]["attack_type"], by["1_1_01_2"]["attack_detail"]) == (
        "print", "printer_1")
    assert (by["1_1_21_5"]["attack_type"], by["1_1_21_5"]["attack_detail"]) == (
        "replay", "display_2")
    assert by["2_3_01_1"]["phone"] == "2" and by["2_3_01_1"]["session"] == "3"
    assert by["6_2_36_1"]["subject"] == "36" and by["6_2_36_1"]["label"] == "live"

    p1 = index_dataset("oulu", root, protocol=1)
    assert _count(p1, "split", "label") == {
        ("train", "live"): 1, ("train", "spoof"): 2, ("dev", "live"): 1, ("dev", "spoof"): 1,
        ("test", "live"): 1, ("test", "spoof"): 1}
    assert {r["protocol"] for r in p1} == {"1"}
    p3 = index_dataset("oulu", root, protocol=3, fold=2)
    assert [(r["split"], r["video"]) for r in p3] == [
        ("train", "2_3_01_1"), ("dev", "1_1_21_1"), ("test", "6_2_36_1")]
    assert {r["fold"] for r in p3} == {"2"}
    with pytest.raises(BadDataError, match="needs --fold 1-6"):
        index_dataset("oulu", root, protocol=3)
    with pytest.raises(BadDataError, match=r"Protocol_4/ not found"):
        index_dataset("oulu", root, protocol=4, fold=1)
    (root / "Protocols" / "Protocol_1" / "Test.txt").write_text("+1,1_1_36_3\n")
    with pytest.raises(BadDataError, match=r"Test\.txt:1: label \+1 contradicts"):
        index_dataset("oulu", root, protocol=1)
    (root / "Protocols" / "Protocol_1" / "Test.txt").write_text("+1,1_1_40_1\n")
    with pytest.raises(BadDataError, match="1_1_40_1 not found in Test_files"):
        index_dataset("oulu", root, protocol=1)


def test_celeba_spoof(tmp_path: Path) -> None:
    base = tmp_path / "CelebA_Spoof"
    imgs = {
        "Data/train/10001/live/000001.jpg": 0,
        "Data/train/10001/spoof/000002.png": 8,
        "Data/test/20002/spoof/000003.jpg": 3,
        "Data/test/20002/live/000004.jpg": 0,
    }
    for rel in imgs:
        write_image(base / rel, size=(100, 80))
    (base / "Data/train/10001/live/000001_BB.txt").write_text("44 30 120 150 0.99\n")
    metas = base / "metas" / "intra_test"
    metas.mkdir(parents=True)
    for split in ("train", "test"):
        lab = {k: [0] * 40 + [v, 0, 0, int(v > 0)] for k, v in imgs.items() if f"/{split}/" in k}
        (metas / f"{split}_label.json").write_text(json.dumps(lab))
    rows = index_dataset("celeba-spoof", tmp_path)
    assert len(rows) == 4
    by = {Path(r["path"]).stem: r for r in rows}
    assert (by["000002"]["attack_type"], by["000002"]["attack_detail"]) == ("replay", "pad")
    assert (by["000003"]["attack_type"], by["000003"]["attack_detail"]) == ("print", "a4")
    assert by["000001"]["attack_type"] == "none" and by["000001"]["subject"] == "10001"
    assert by["000003"]["split"] == "test"
    box = [float(v) for v in by["000001"]["face_box_rel"].split()]
    assert box == pytest.approx([44 / 224, 30 / 224, 164 / 224, 180 / 224], abs=1e-5)
    assert by["000002"]["face_box_rel"] == ""
    # a label contradicting the folder is an error naming the image
    lab = json.loads((metas / "train_label.json").read_text())
    lab["Data/train/10001/live/000001.jpg"][40] = 2
    (metas / "train_label.json").write_text(json.dumps(lab))
    with pytest.raises(BadDataError, match=r"000001\.jpg: spoof type 2 contradicts"):
        index_dataset("celeba", tmp_path)


def test_folder_tree_and_imagefolder(tmp_path: Path, templates) -> None:
    root = tmp_path / "mydata"
    write_image(root / "train" / "live" / "a.png")
    write_image(root / "train" / "live" / "sub" / "a2.jpg")
    write_image(root / "train" / "spoof" / "print" / "b.png")
    _put(templates, root / "train" / "spoof" / "replay" / "c.avi")
    write_image(root / "test" / "live" / "d.png")
    write_image(root / "test" / "spoof" / "e.png")
    rows = index_dataset("folder", root)
    got = sorted((r["split"], r["label"], r["attack_type"], r["video"]) for r in rows)
    assert got == [
        ("test", "live", "none", "test/live/d"),
        ("test", "spoof", "attack", "test/spoof/e"),
        ("train", "live", "none", "train/live/a"),
        ("train", "live", "none", "train/live/sub/a2"),
        ("train", "spoof", "print", "train/spoof/print/b"),
        ("train", "spoof", "replay", "train/spoof/replay/c"),
    ]
    assert {r["dataset"] for r in rows} == {"mydata"}
    flat = tmp_path / "flat"
    write_image(flat / "real" / "x.png")
    write_image(flat / "attack" / "mask" / "y.png")
    rows = index_dataset("folder", flat, dataset="mine")
    assert sorted((r["label"], r["attack_type"], r["split"], r["dataset"]) for r in rows) == [
        ("live", "none", "", "mine"), ("spoof", "mask", "", "mine")]
    with pytest.raises(BadDataError, match="expected live/ and spoof/"):
        index_dataset("folder", tmp_path / "mydata" / "train" / "spoof")

    imf = tmp_path / "pets"
    write_image(imf / "cat" / "1.png")
    write_image(imf / "dog" / "2.png")
    write_image(imf / "dog" / "sub" / "3.png")
    rows = index_dataset("imagefolder", imf)
    assert _count(rows, "label") == {("cat",): 1, ("dog",): 2}


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_image(root / "live" / "ok.png")
    (root / "spoof" / "print").mkdir(parents=True)
    (root / "spoof" / "print" / "zero.png").write_bytes(b"")
    with pytest.raises(BadDataError, match=r"zero\.png: empty file \(0 bytes\)"):
        index_dataset("folder", root)
    (root / "spoof" / "print" / "zero.png").unlink()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(noise).save(tmp_path / "g.jpg")
    data = (tmp_path / "g.jpg").read_bytes()
    (root / "spoof" / "print" / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert len(index_dataset("folder", root, check="quick")) == 2  # header is intact
    with pytest.raises(BadDataError, match=r"cut\.jpg"):
        index_dataset("folder", root, check="full")
    assert len(index_dataset("folder", root, check="none")) == 2
    with pytest.raises(BadDataError, match="unknown layout 'siw'; expected one of"):
        index_dataset("siw", root)
    with pytest.raises(BadDataError, match="root folder not found"):
        index_dataset("casia-fasd", tmp_path / "missing")
    with pytest.raises(BadDataError, match="no train_release"):
        index_dataset("casia-fasd", root)
