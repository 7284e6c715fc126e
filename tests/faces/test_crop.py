"""Crop geometry checked numerically: box scale, padding at borders, output size, recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitfas.data.io import load_image
from vitfas.errors import BadConfigError
from vitfas.faces import CropRecipe, Face, crop_square, square_box


def _coord_image(h: int = 100, w: int = 120) -> np.ndarray:
    """Pixel (y, x) holds (y, x, 200) so every position is recognisable."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 200)], -1).astype(np.uint8)


def test_square_box_geometry() -> None:
    # box 20 wide, 40 tall, centre (20, 40); scale 1.5 -> side 60, top-left (-10, 10)
    assert square_box((10, 20, 30, 60), 1.5) == (-10, 10, 60)
    assert square_box((0, 0, 10, 10), 1.0) == (0, 0, 10)
    # side round(27.0) = 27; x0 = 5 - 13.5 = -8.5 rounds half up to -8
    assert square_box((0, 0, 10, 10), 2.7) == (-8, -8, 27)


def test_crop_pads_constant_at_left_border() -> None:
    img = _coord_image()
    crop = crop_square(img, (10, 20, 30, 60), scale=1.5, size=None, pad="constant")
    assert crop.shape == (60, 60, 3)
    assert (crop[:, :10] == 0).all()  # 10 columns left of the image are black
    np.testing.assert_array_equal(crop[:, 10:], img[10:70, 0:50])


def test_crop_pads_replicate() -> None:
    img = _coord_image()
    crop = crop_square(img, (10, 20, 30, 60), scale=1.5, size=None, pad="replicate")
    for j in range(10):
        np.testing.assert_array_equal(crop[:, j], img[10:70, 0])
    np.testing.assert_array_equal(crop[:, 10:], img[10:70, 0:50])


def test_crop_all_borders_and_scale() -> None:
    img = np.zeros((40, 40, 3), np.uint8)
    img[10:30, 10:30] = 255  # a white 20x20 "face"
    # scale 2: square of side 40 centred on the face == whole image, face in the middle half
    crop = crop_square(img, (10, 10, 30, 30), scale=2.0, size=None)
    np.testing.assert_array_equal(crop, img)
    # scale 4: side 80 from -20 to 60: the image sits in the centre, padding all around
    crop = crop_square(img, (10, 10, 30, 30), scale=4.0, size=None)
    assert crop.shape == (80, 80, 3)
    np.testing.assert_array_equal(crop[20:60, 20:60], img)
    assert crop[:20].sum() == 0 and crop[60:].sum() == 0
    assert crop[:, :20].sum() == 0 and crop[:, 60:].sum() == 0


def test_output_size_and_face_fraction() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:130, 100:180] = 255  # 80 px face
    crop = crop_square(img, (100, 50, 180, 130), scale=2.0, size=64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    white = (crop[..., 0] > 127).mean()
    assert white == pytest.approx(0.25, abs=0.02)  # face side is half the crop side


def test_recipe_roundtrip_and_bgr() -> None:
    r = CropRecipe(detector="none", scale=1.3, size=32, colour_order="BGR", pad="replicate")
    d = r.to_dict()
    assert d == {
        "detector": "none", "scale": 1.3, "size": 32, "colour_order": "BGR", "pad": "replicate"
    }
    assert CropRecipe.from_dict(d) == r
    assert CropRecipe.from_dict({"detector": "none", "crop_scale": 1.3, "img_size": [32, 32],
                                 "colour_order": "BGR", "pad": "replicate"}) == r
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 255  # red
    (face, crop), = r.apply(img)
    assert face.box == (0.0, 0.0, 32.0, 32.0)
    assert crop[..., 2].min() == 255 and crop[..., 0].max() == 0  # red is last in BGR


def test_recipe_validation() -> None:
    with pytest.raises(BadConfigError, match="unknown key"):
        CropRecipe.from_dict({"detector": "none", "margin": 3})
    with pytest.raises(BadConfigError, match="scale"):
        CropRecipe(scale=0)
    with pytest.raises(BadConfigError, match="colour_order"):
        CropRecipe(colour_order="RGBA")
    with pytest.raises(BadConfigError, match="pad"):
        CropRecipe(pad="reflect")
    with pytest.raises(BadConfigError, match="unknown face detector"):
        CropRecipe(detector="yolo")


def test_recipe_apply_on_fixtures(face_fixtures: Path) -> None:
    r = CropRecipe(detector="dlib", scale=1.3, size=48)
    out = r.apply(load_image(face_fixtures / "two_faces_live_and_replay.png"))
    assert len(out) == 2
    assert all(c.shape == (48, 48, 3) for _, c in out)
    assert out[0][0].area > out[1][0].area
    assert r.apply(np.full((100, 100, 3), 90, np.uint8)) == []  # failure to acquire
    f = Face((10, 10, 30, 30))
    assert r.crop(np.zeros((50, 50, 3), np.uint8), f).shape == (48, 48, 3)


def test_recipe_bundle_preprocessing_names() -> None:
    r = CropRecipe(detector="haar", scale=2.7, size=80, pad="replicate")
    pre = r.to_preprocessing()
    assert pre == {"detector": "haar", "crop_scale": 2.7, "img_size": [80, 80],
                   "colour_order": "RGB", "crop_pad": "replicate"}
    full = {**pre, "mean": [0.5] * 3, "std": [0.5] * 3, "frames_per_video": 10}
    assert CropRecipe.from_preprocessing(full) == r
