"""Heatmaps over the crop and, through the crop box, over the original photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitfas.errors import BadConfigError, BadImageError
from vitfas.explain import (
    crop_to_image_affine,
    layer_head_figure,
    overlay,
    overlay_on_crop,
    overlay_on_image,
    save_png,
    to_pixels,
)


def test_to_pixels_cuts_padding_and_resizes() -> None:
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    px = to_pixels(m, (8, 8), (16, 24))
    assert px.shape == (16, 24)
    assert px[0, 0] < px[0, -1] and px[0, 0] < px[-1, 0]  # orientation kept
    assert to_pixels(m, (8, 8), (14, 20)).shape == (14, 20)  # padded input
    assert to_pixels(m, (8, 8), (16, 24), (100, 150)).shape == (100, 150)


def test_overlay_blends_and_keeps_nan_pixels() -> None:
    rgb = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    heat[3, 3] = np.nan
    out = overlay(rgb, heat, alpha=0.5, cmap="gray")
    assert out[0, 0].tolist() == [178, 178, 178]  # 0.5*100 + 0.5*255
    assert out[1, 1].tolist() == [50, 50, 50]  # 0.5*100 + 0.5*0
    assert out[3, 3].tolist() == [100, 100, 100]  # untouched
    with pytest.raises(BadImageError):
        overlay(rgb.astype(np.float32), heat)  # type: ignore[arg-type]
    with pytest.raises(BadConfigError, match="colormap"):
        overlay(rgb, heat, cmap="no-such-map")


def test_affine_maps_crop_edges_to_box_edges() -> None:
    A = crop_to_image_affine((10, 20, 110, 70), (50, 100))  # 100 x 50 px box -> 50x100 crop
    # the crop's outer edges (-0.5 and W-0.5 in pixel-centre coordinates) hit the box edges
    edges = np.array([[-0.5, -0.5, 1.0], [99.5, 49.5, 1.0]]) @ A.T
    np.testing.assert_allclose(edges, [[9.5, 19.5], [109.5, 69.5]])


def test_overlay_on_original_through_a_given_box() -> None:
    image = np.full((120, 160, 3), 128, np.uint8)
    box = (40.0, 30.0, 104.0, 94.0)  # a 64 x 64 region
    crop = np.full((32, 32, 3), 128, np.uint8)
    grid = np.zeros((4, 4), np.float32)
    grid[0, 0] = 1.0  # hot patch at the crop's top-left
    heat = to_pixels(grid, (8, 8), (32, 32), crop.shape[:2])
    out = overlay_on_image(image, heat, box=box, alpha=0.6, cmap="gray", draw_box=False)
    assert out.shape == image.shape
    # outside the box: unchanged
    assert (out[:29] == 128).all() and (out[:, :39] == 128).all() and (out[96:] == 128).all()
    # inside: bright near the box's top-left, dark near its bottom-right
    assert out[33, 43, 0] > 200 and out[90, 100, 0] < 70
    # the heatmap on the crop itself has the crop's size
    on_crop = overlay_on_crop(crop, grid, (8, 8), (32, 32), cmap="gray")
    assert on_crop.shape == (32, 32, 3) and on_crop[1, 1, 0] > on_crop[30, 30, 0]
    # a box reaching outside the photo is clipped, not an error
    out2 = overlay_on_image(image, heat, box=(-20.0, -20.0, 60.0, 60.0))
    assert out2.shape == image.shape
    with pytest.raises(BadConfigError, match="exactly one"):
        overlay_on_image(image, heat)


def test_png_writers(tmp_path: Path) -> None:
    img = np.zeros((21, 37, 3), np.uint8)
    p = save_png(tmp_path / "a" / "x.png", img)
    with Image.open(p) as im:
        assert im.size == (37, 21)
    maps = np.random.default_rng(0).random((3, 2, 4, 4)).astype(np.float32)
    crop = np.full((32, 32, 3), 90, np.uint8)
    f = layer_head_figure(crop, maps, (8, 8), (32, 32), tmp_path / "grid.png", title="t")
    with Image.open(f) as im:
        assert im.format == "PNG" and im.height > im.width  # 3 blocks (rows) x 2 heads
    f2 = layer_head_figure(crop, maps.transpose(1, 0, 2, 3), (8, 8), (32, 32),
                           tmp_path / "grid2.png")
    with Image.open(f2) as im:
        assert im.width > im.height  # 2 blocks x 3 heads
