"""LBP descriptors checked on images whose codes can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from vitfas.baselines.lbp import (
    LBPConfig,
    channel_planes,
    lbp_features,
    lbp_histogram,
    resize_square,
)
from vitfas.errors import BadConfigError, BadImageError


@pytest.mark.parametrize("value", [0, 77, 255])
def test_constant_image_is_all_in_the_all_ones_bin(value: int) -> None:
    # every neighbour equals the centre, so every bit (neighbour >= centre) is 1: the
    # "all ones" uniform pattern, bin P(P-1)+1 = 57 of 59 (nri_uniform), bin P = 8 of 10
    # (rotation-invariant uniform). Border pixels are left out, so nothing else appears.
    plane = np.full((10, 10), value, np.uint8)
    h = lbp_histogram(plane, 8, 1.0, "nri_uniform")
    assert h.shape == (59,)
    expect = np.zeros(59)
    expect[57] = 1.0
    np.testing.assert_array_equal(h, expect)
    h = lbp_histogram(plane, 8, 1.0, "uniform")
    expect = np.zeros(10)
    expect[8] = 1.0
    np.testing.assert_array_equal(h, expect)


def test_vertical_step_edge_by_hand() -> None:
    # columns 0-4 black, 5-9 white; the 8 x 8 interior pixels are counted.
    # Dark pixels: every neighbour >= 0 -> all ones. White pixels away from the edge: all
    # neighbours white -> all ones. The 8 white pixels of column 5 see black at W, and at
    # NW/SW (interpolated at x - 0.707: 0.293 * 255 < 255); neighbours in skimage's order
    # E, NE, N, NW, W, SW, S, SE give bits 1 1 1 0 0 0 1 1: uniform, 5 ones.
    # rotation-invariant "uniform": bin = number of ones = 5.
    # nri_uniform: first one at 0 -> rotation index = n_ones - first_zero = 5 - 3 = 2,
    # bin = 1 + (n_ones - 1) P + 2 = 1 + 32 + 2 = 35.
    plane = np.zeros((10, 10), np.uint8)
    plane[:, 5:] = 255
    h = lbp_histogram(plane, 8, 1.0, "uniform")
    assert h[8] == pytest.approx(56 / 64) and h[5] == pytest.approx(8 / 64)
    assert h.sum() == pytest.approx(1.0) and np.count_nonzero(h) == 2
    h = lbp_histogram(plane, 8, 1.0, "nri_uniform")
    assert h[57] == pytest.approx(56 / 64) and h[35] == pytest.approx(8 / 64)
    assert np.count_nonzero(h) == 2


def test_feature_lengths_gray_colour_multiscale() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    gray = LBPConfig("gray", size=32)
    colour = LBPConfig("color", size=32)
    multi = LBPConfig("color", size=32, radii=(1, 2))
    riu = LBPConfig("gray", size=32, method="uniform")
    assert (gray.length, colour.length, multi.length, riu.length) == (59, 6 * 59, 12 * 59, 10)
    for cfg in (gray, colour, multi, riu):
        f = lbp_features(rgb, cfg)
        assert f.shape == (cfg.length,)
        # one normalised histogram per plane and radius
        per = f.reshape(len(cfg.channels) * len(cfg.radii), cfg.bins).sum(axis=1)
        np.testing.assert_allclose(per, 1.0)
    assert colour.channels == ("Y", "Cb", "Cr", "H", "S", "V")


def test_colour_planes_order_on_pure_red() -> None:
    # OpenCV: Y = .299 R = 76.2 -> 76; Cb = (B - Y) .564 + 128 = 85.0 -> 85;
    # Cr = (R - Y) .713 + 128 = 255.5 -> 255; HSV of red: H 0, S 255, V 255.
    red = np.zeros((3, 3, 3), np.uint8)
    red[..., 0] = 255
    planes = channel_planes(red, "color")
    assert planes.shape == (6, 3, 3)
    assert planes[:, 1, 1].tolist() == [76, 85, 255, 0, 255, 255]
    assert channel_planes(red, "gray").shape == (1, 3, 3)


def test_resize_and_config_checks() -> None:
    big = np.zeros((100, 80, 3), np.uint8)
    assert resize_square(big, 64).shape == (64, 64, 3)
    with pytest.raises(BadImageError, match=r"\[H, W, 3\]"):
        resize_square(np.zeros((5, 5), np.uint8), 8)
    with pytest.raises(BadConfigError, match="features"):
        LBPConfig("rgb")
    with pytest.raises(BadConfigError, match="size"):
        LBPConfig(size=4, radii=(2,))
    cfg = LBPConfig("color", 48, 8, (1, 2), "nri_uniform")
    assert LBPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(BadConfigError, match="length"):
        LBPConfig.from_dict({**cfg.to_dict(), "length": 59})


def test_cells_keep_where_the_texture_is() -> None:
    # 10x10 plane, interior 8x8 (R=1). Left half of the plane constant 100, right half 200.
    # Interior columns 1..4 see only 100s except column 4, whose right neighbours are 200
    # (all >= centre, so still the all-ones code 57); columns 5..8 are 200s whose left
    # neighbours at column 5 are 100 (< centre). With 2x2 cells of the 8x8 interior (4x4
    # pixels each), the left cells are pure code 57 and the right cells hold column 5's
    # 4 pixels of another code and 12 pixels of code 57.
    plane = np.full((10, 10), 100, np.uint8)
    plane[:, 5:] = 200
    h = lbp_histogram(plane, 8, 1.0, "nri_uniform", cells=2).reshape(4, 59)
    for left in (0, 2):
        assert h[left, 57] == 1.0
    for right in (1, 3):
        assert h[right, 57] == pytest.approx(12 / 16)
        assert np.count_nonzero(h[right]) == 2
    glob = lbp_histogram(plane, 8, 1.0, "nri_uniform")
    np.testing.assert_allclose(h.mean(axis=0), glob)  # equal cells: the mean is the global
    # cells=1 is the classic global descriptor, bit for bit
    rgb = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    one = LBPConfig("color", size=32)
    same = lbp_features(rgb, LBPConfig("color", 32, cells=1))
    assert np.array_equal(lbp_features(rgb, one), same)
    two = LBPConfig("color", size=32, cells=2)
    f = lbp_features(rgb, two)
    assert two.length == 6 * 4 * 59 == f.shape[0]
    np.testing.assert_allclose(f.reshape(6 * 4, 59).sum(axis=1), 1.0)
    # channel-major: plane Y's 4 cells first; their mean is Y's global histogram (30 = 2 x 15)
    np.testing.assert_allclose(f[:4 * 59].reshape(4, 59).mean(axis=0), lbp_features(rgb, one)[:59])


def test_cells_config_round_trip_and_checks() -> None:
    cfg = LBPConfig("gray", 32, cells=3)
    assert LBPConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("cells", "length")}
    assert LBPConfig.from_dict(old).cells == 1  # bundles from before cells existed
    with pytest.raises(BadConfigError, match="cells"):
        LBPConfig("gray", 32, cells=0)
    with pytest.raises(BadConfigError, match="cells"):
        LBPConfig("gray", 8, cells=7)  # interior is 6x6
