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
