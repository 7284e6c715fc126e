"""`vitfas explain` end to end on a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from explain_helpers import tiny_config
from PIL import Image, ImageOps

import vitfas.cli
from vitfas.bundle import save_bundle
from vitfas.models import VisionTransformer
from vitfas.weights import save_model

PRE = {"detector": "none", "crop_scale": 1.0, "img_size": [32, 32], "mean": [0.5] * 3,
       "std": [0.5] * 3, "colour_order": "RGB", "frames_per_video": 1}


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    return vitfas.cli.main(["-q", *argv])


def test_verb_is_registered() -> None:
    parser = vitfas.cli.build_parser()
    args = parser.parse_args(["explain", "b", "x.jpg", "-o", "out"])
    assert args.command == "explain" and args.method == "rollout" and args.images == ["x.jpg"]


def _size(p: str | Path) -> tuple[int, int]:
    with Image.open(p) as im:
        assert im.format == "PNG"
        return im.size  # (W, H)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    model = VisionTransformer(tiny_config(img_size=32, reg_tokens=1))
    return save_bundle(tmp_path / "bundle", model, class_names=["spoof", "live"],
                       live_index=1, preprocessing=PRE)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    a = tmp_path / "in" / "a.png"
    b = tmp_path / "in" / "b.jpg"
    a.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(a)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(b)
    return [a, b]


def test_explain_writes_pngs_of_the_expected_size(
    bundle: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    code = _main(["explain", str(bundle), *map(str, images), str(bad), "-o", str(out),
                  "--all-heads", "--json", "--discard-ratio", "0.9"], monkeypatch)
    assert code == 1  # one image skipped, the others written
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2 and summary["skipped"] == 1 and summary["files"] == 6
    assert "broken.jpg" in summary["errors"][0]["image"]
    assert _size(out / "a.face0.rollout.crop.png") == (32, 32)  # the model's 32x32 crop
    assert _size(out / "a.face0.rollout.image.png") == (70, 50)  # the original photo
    assert _size(out / "b.face0.rollout.image.png") == (64, 64)
    assert _size(out / "a.face0.layers_heads.png")[0] > 100
    face = summary["results"][0]["faces"][0]
    assert 0.0 <= face["p_live"] <= 1.0 and face["predicted"] in ("spoof", "live")


@pytest.mark.parametrize("extra", [
    ["--method", "attention", "--layer", "0", "--head", "1"],
    ["--method", "attention", "--head-fusion", "max", "--query", "mean"],
    ["--method", "grad-rollout", "--class", "live"],
])
def test_methods(
    extra: list[str], bundle: Path, images: list[Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(out), *extra],
                 monkeypatch) == 0
    method = extra[1]
    assert _size(out / f"a.face0.{method}.crop.png") == (32, 32)
    assert _size(out / f"a.face0.{method}.image.png") == (70, 50)
    text = capsys.readouterr().out
    assert "P(live)=" in text and "wrote 2 PNGs" in text


@pytest.mark.parametrize("argv", [
    ["--head", "0"],  # head with rollout
    ["--method", "grad-rollout", "--discard-ratio", "0.5"],
    ["--discard-ratio", "1.5"],
    ["--method", "bogus"],
])
def test_usage_errors(argv: list[str], bundle: Path, images: list[Path], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(tmp_path / "o"), *argv],
                 monkeypatch) == 2


def test_usage_errors_images(bundle: Path, images: list[Path], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(["explain", str(bundle), "-o", str(tmp_path / "o")], monkeypatch) == 2
    assert _main(["explain", str(bundle), str(images[0]), "--pos-embed", "-o",
                  str(tmp_path / "o")], monkeypatch) == 2


def test_not_a_bundle_and_unknown_class(images: list[Path], bundle: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["explain", str(tmp_path / "nope"), str(images[0]), "-o",
                  str(tmp_path / "o")], monkeypatch) == 1
    assert "not a model bundle" in capsys.readouterr().err
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(tmp_path / "o"),
                  "--method", "grad-rollout", "--class", "cat"], monkeypatch) == 1
    assert "--class 'cat'" in capsys.readouterr().err


def test_pos_embed_figure_for_bundle_checkpoint_and_registry_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    sincos = save_bundle(tmp_path / "sincos", VisionTransformer(tiny_config(
        img_size=64, patch_size=8, pos_embed="sincos")), class_names=["spoof", "live"],
        live_index=1, preprocessing=PRE)
    out = tmp_path / "pe1"
    assert _main(["explain", str(sincos), "--pos-embed", "-o", str(out), "--json"],
                 monkeypatch) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["grid"] == [8, 8] and s["contrast"] > 0.1
    assert _size(out / "pos_embed_similarity.png")[0] > 200

    ckpt = save_model(VisionTransformer(tiny_config(img_size=(64, 48))), tmp_path / "ckpt")
    assert _main(["explain", str(ckpt), "--pos-embed", "-o", str(tmp_path / "pe2"),
                  "--json"], monkeypatch) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["grid"] == [8, 6] and abs(s["contrast"]) < 0.1  # random init: no structure
    assert (tmp_path / "pe2" / "pos_embed_similarity.png").is_file()

    torch.manual_seed(0)
    assert _main(["explain", "vit_tiny_patch16_224", "--pos-embed", "-o",
                  str(tmp_path / "pe3")], monkeypatch) == 0
    assert "14x14 positions" in capsys.readouterr().out

    assert _main(["explain", "vit_tiny_patch16_22", "--pos-embed", "-o", str(tmp_path / "x")],
                 monkeypatch) == 1
    assert "did you mean" in capsys.readouterr().err
    assert _main(["explain", str(tmp_path / "missing.pth"), "--pos-embed", "-o",
                  str(tmp_path / "x")], monkeypatch) == 1
    assert "no such file" in capsys.readouterr().err

    # hub checkpoints go to vitfas.weights.load_model (stubbed: tests stay offline)
    import vitfas.weights

    seen = []

    def fake_load(path: str, name: str | None = None) -> VisionTransformer:
        seen.append((path, name))
        return VisionTransformer(tiny_config(pos_embed="sincos"))

    monkeypatch.setattr(vitfas.weights, "load_model", fake_load)
    assert _main(["explain", "hf-hub:org/repo", "--pos-embed", "-o", str(tmp_path / "pe5")],
                 monkeypatch) == 0
    assert seen == [("hf-hub:org/repo", None)]
    monkeypatch.undo()

    rel = save_model(VisionTransformer(tiny_config(pos_embed="rel")), tmp_path / "rel")
    assert _main(["explain", str(rel), "--pos-embed", "-o", str(tmp_path / "pe4")],
                 monkeypatch) == 1
    assert "no absolute position embedding" in capsys.readouterr().err


def test_real_photo_with_exif_orientation(face_fixtures: Path, bundle: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    photo = face_fixtures / "live_exif6.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} missing")
    with Image.open(photo) as im:
        upright = ImageOps.exif_transpose(im).size
    out = tmp_path / "out"
    assert _main(["explain", str(bundle), str(photo), "-o", str(out), "--whole-image"],
                 monkeypatch) == 0
    assert _size(out / "live_exif6.face0.rollout.image.png") == upright


def test_crop_box_from_the_recipe_and_whole_image(
    bundle: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # detector "none", scale 1: the face box is the whole 70x50 photo and the crop the
    # 70-pixel square centred on it: x0 = 35 - 35 = 0, y0 = 25 - 35 = -10
    out = tmp_path / "o"
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(out), "--json"],
                 monkeypatch) == 0
    face = json.loads(capsys.readouterr().out)["results"][0]["faces"][0]
    assert face["face_box"] == [0.0, 0.0, 70.0, 50.0]
    assert face["crop_box"] == [0.0, -10.0, 70.0, 60.0]
    # a detector that finds no face in noise: skipped and counted, unless --whole-image
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["preprocessing"].update(detector="haar", crop_scale=1.5)
    (bundle / "config.json").write_text(json.dumps(cfg))
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(out), "--json"],
                 monkeypatch) == 1
    s = json.loads(capsys.readouterr().out)
    assert s["skipped"] == 1 and "no face" in s["errors"][0]["error"]
    assert _main(["explain", str(bundle), str(images[0]), "-o", str(out), "--json",
                  "--whole-image"], monkeypatch) == 0
    face = json.loads(capsys.readouterr().out)["results"][0]["faces"][0]
    assert face["crop_box"] == [0.0, -10.0, 70.0, 60.0]  # scale 1, not the bundle's 1.5


def test_real_face_overlay_lands_on_the_crop_box(
    face_fixtures: Path, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vitfas.data.io import load_image
    from vitfas.faces import get_detector, square_box

    photo = face_fixtures / "live_2.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} missing")
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["preprocessing"].update(detector="haar", crop_scale=1.3)
    (bundle / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o"
    assert _main(["explain", str(bundle), str(photo), "-o", str(out), "--json"],
                 monkeypatch) == 0
    face = json.loads(capsys.readouterr().out)["results"][0]["faces"][0]
    rgb = load_image(photo)
    det = get_detector("haar").detect(rgb)[0]
    x0, y0, side = square_box(det.box, 1.3)
    assert face["crop_box"] == [x0, y0, x0 + side, y0 + side]
    assert _size(out / "live_2.face0.rollout.crop.png") == (32, 32)
    with Image.open(out / "live_2.face0.rollout.image.png") as im:
        drawn = np.asarray(im.convert("RGB"))
    assert drawn.shape == rgb.shape
    changed = (drawn != rgb).any(-1)
    # the heatmap covers the crop box (and its outline), nothing else
    assert changed[y0 + 3 : y0 + side - 3, x0 + 3 : x0 + side - 3].mean() > 0.95
    outside = np.ones_like(changed)
    outside[max(y0 - 3, 0) : y0 + side + 3, max(x0 - 3, 0) : x0 + side + 3] = False
    assert not changed[outside].any()


def test_explain_skips_a_decompression_bomb(
    bundle: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], bomb_png,
) -> None:
    bomb = tmp_path / "in" / "bomb.png"
    bomb.write_bytes(bomb_png())
    code = _main(["explain", str(bundle), str(images[0]), str(bomb), "-o",
                  str(tmp_path / "out"), "--json"], monkeypatch)
    assert code == 1  # the bomb skipped with its reason, the other image explained
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 1 and summary["skipped"] == 1
    assert "bomb.png" in summary["errors"][0]["image"]
    assert "too many pixels" in json.dumps(summary["errors"][0])


def test_explain_walks_folders_and_videos_as_predict_does(
    bundle: Path, images: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    import cv2

    from vitfas.data.inputs import expand_inputs

    vid = tmp_path / "in" / "sub" / "clip.avi"
    vid.parent.mkdir()
    wr = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 5, (40, 40))
    rng = np.random.default_rng(3)
    for _ in range(6):
        wr.write(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    wr.release()
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    folder = tmp_path / "in"
    assert expand_inputs([folder]) == [*images, vid]  # the same walk as predict's
    out = tmp_path / "out"
    missing = tmp_path / "gone.png"
    code = _main(["explain", str(bundle), str(folder), str(missing), "-o", str(out),
                  "--frames", "2"], monkeypatch)
    assert code == 1  # the missing file is skipped and reported
    text = capsys.readouterr().out
    # two images + two sampled frames of the video, each its own files
    assert "wrote 8 PNGs for 4 image(s)" in text
    frames = sorted(p.name for p in out.glob("clip.frame*.face0.rollout.crop.png"))
    assert len(frames) == 2
    assert f"{vid} frame " in text and " face 0: " in text
    # the skipped file is reported once, its path said once
    skipped = [ln for ln in text.splitlines() if "gone.png" in ln]
    assert len(skipped) == 1 and skipped[0].count("gone.png") == 1, skipped
    assert not any("gone.png" in r.getMessage() for r in caplog.records)
