"""The simulated attacks are what they say: halftone and moire put energy at the predicted
frequencies, replay has a bezel, print has a paper tone and a reduced gamut."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vitfas.demo.simulate import (
    INK_ANGLES,
    CameraParams,
    PrintParams,
    ReplayParams,
    capture,
    expected_moire_frequencies,
    print_attack,
    render_bona_fide,
    replay_attack,
)

SIZE = 64


def _camera(**kw) -> CameraParams:
    base = dict(zoom=1.0, shift=(0.0, 0.0), optics=0.2, aperture=0.8, blur=0.3, gain=1.0,
                white_balance=(1.0, 1.0, 1.0), noise=0.004)
    return CameraParams(**{**base, **kw})


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114])


def _spectrum(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectrum of the windowed luminance and its frequency grids (cycles/pixel)."""
    y = _luma(img)
    y = y - y.mean()
    n = y.shape[0]
    win = np.outer(np.hanning(n), np.hanning(n))
    p = np.abs(np.fft.fft2(y * win)) ** 2
    f = np.fft.fftfreq(n)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    return p, fx, fy


def _peak(img: np.ndarray, min_freq: float) -> tuple[float, float, float]:
    """Strongest frequency with |f| > min_freq: (fx, fy, share of that band's power)."""
    p, fx, fy = _spectrum(img)
    band = np.hypot(fx, fy) > min_freq
    q = np.where(band, p, 0.0)
    i = np.unravel_index(np.argmax(q), q.shape)
    return float(fx[i]), float(fy[i]), float(q[i] / q.sum())


def _power_near(img: np.ndarray, f0: tuple[float, float], tol: float) -> float:
    """Spectral power within ``tol`` of +-f0."""
    p, fx, fy = _spectrum(img)
    near = (np.hypot(fx - f0[0], fy - f0[1]) < tol) | (np.hypot(fx + f0[0], fy + f0[1]) < tol)
    return float(p[near].sum())


def _flat(level: float = 0.5) -> np.ndarray:
    return np.full((25, 25), level)


def _smooth_face() -> np.ndarray:
    import skimage.data

    return skimage.data.lfw_subset()[3]


def _print_params(period: float, angle: float) -> PrintParams:
    return PrintParams(period=period, angle=angle, gamut=0.7, paper=(0.92, 0.9, 0.85),
                       ink_black=0.1, dot_gain=0.25)


@pytest.mark.parametrize("period,angle", [(3.0, 10.0), (2.5, 33.0)])
def test_halftone_peak_at_the_screen_frequency(period: float, angle: float) -> None:
    rng = np.random.default_rng(0)
    img, _ = print_attack(_flat(0.5), SIZE, rng, _print_params(period, angle), _camera())
    fx, fy, share = _peak(img, 0.15)
    # the strongest component is a dot-screen fundamental: |f| = 1/period along a screen axis
    assert math.hypot(fx, fy) == pytest.approx(1.0 / period, abs=0.025)
    axes = []
    for ink in INK_ANGLES:
        t = math.radians(angle + ink)
        axes += [(math.cos(t), math.sin(t)), (-math.sin(t), math.cos(t))]
    expected = [(c / period, s / period) for c, s in axes]
    dist = min(min(math.hypot(fx - ex, fy - ey), math.hypot(fx + ex, fy + ey))
               for ex, ey in expected)
    assert dist < 0.03, (fx, fy, expected)
    assert share > 0.02
    # a bona fide capture of the same face has (almost) nothing there
    face = _smooth_face()
    live = render_bona_fide(face, SIZE, np.random.default_rng(1), _camera())
    printed, _ = print_attack(face, SIZE, np.random.default_rng(1),
                              _print_params(period, angle), _camera())
    f0 = (fx, fy)
    assert _power_near(printed, f0, 0.03) > 20 * _power_near(live, f0, 0.03)


@pytest.mark.parametrize("pitch,angle", [(1.12, 5.0), (0.86, -8.0)])
def test_replay_moire_at_the_aliased_pixel_grid_frequency(pitch: float, angle: float) -> None:
    params = ReplayParams(pitch=pitch, angle=angle, gamma=1.0, black=0.05, tint=(1, 1, 1),
                          glare=0.0, glare_at=(0.5, 0.5), glare_size=(0.1, 0.1),
                          bezel=(0.0, 0.0, 0.0, 0.0), bezel_level=0.05)
    img, _ = replay_attack(_flat(0.5), SIZE, np.random.default_rng(0), params, _camera())
    expected = expected_moire_frequencies(pitch, angle)
    for ex, ey in expected:  # low-frequency fringes, far below the grid's own frequency
        assert 0.05 < math.hypot(ex, ey) < 0.25
    fx, fy, share = _peak(img, 0.04)
    dist = min(min(math.hypot(fx - ex, fy - ey), math.hypot(fx + ex, fy + ey))
               for ex, ey in expected)
    assert dist < 0.025, (fx, fy, expected)
    assert share > 0.05
    # the fringes are visible: a few percent of the mean brightness
    assert _luma(img).std() > 0.01
    live = render_bona_fide(_flat(0.5), SIZE, np.random.default_rng(0), _camera())
    assert _power_near(img, (fx, fy), 0.025) > 50 * _power_near(live, (fx, fy), 0.025)


def test_expected_moire_frequencies_fold_into_nyquist() -> None:
    (cx, cy), (rx, ry) = expected_moire_frequencies(1.25, 0.0)
    assert (cx, cy) == pytest.approx((-0.2, 0.0))
    assert (rx, ry) == pytest.approx((0.0, -0.2))
    for f in expected_moire_frequencies(0.9, 17.0):
        assert all(-0.5 <= v <= 0.5 for v in f)


def test_replay_has_a_dark_bezel_and_bona_fide_has_none() -> None:
    bezel = (0.08, 0.1, 0.09, 0.07)
    params = ReplayParams(pitch=1.15, angle=3.0, gamma=1.0, black=0.05, tint=(1, 1, 1),
                          glare=0.0, glare_at=(0.5, 0.5), glare_size=(0.1, 0.1),
                          bezel=bezel, bezel_level=0.04)
    src = _flat(0.8)
    img, _ = replay_attack(src, SIZE, np.random.default_rng(0), params, _camera())
    y = _luma(img)
    top, bottom, left, right = (int(b * SIZE) for b in bezel)
    ring = np.concatenate([y[: top - 1].ravel(), y[SIZE - bottom + 1:].ravel(),
                           y[:, : left - 1].ravel(), y[:, SIZE - right + 1:].ravel()])
    inner = y[top + 2: SIZE - bottom - 2, left + 2: SIZE - right - 2]
    assert ring.mean() < 0.08 and ring.std() < 0.03  # dark and uniform
    assert inner.mean() > 0.5
    live = _luma(render_bona_fide(src, SIZE, np.random.default_rng(0), _camera()))
    assert live[:3].mean() > 0.5 and live[:, :3].mean() > 0.5


def test_random_replay_always_has_a_bezel() -> None:
    for seed in range(5):
        img, p = replay_attack(_flat(0.7), SIZE, np.random.default_rng(seed))
        y = _luma(img)
        assert min(p.bezel) >= 0.05
        assert y[0].mean() < y[SIZE // 2].mean() - 0.2


def test_print_has_paper_tone_and_reduced_gamut() -> None:
    import skimage.data

    src = skimage.data.astronaut()[60:220, 140:300]  # the face, in colour
    live = render_bona_fide(src, SIZE, np.random.default_rng(0), _camera())
    params = PrintParams(period=2.8, angle=20.0, gamut=0.6, paper=(0.9, 0.87, 0.8),
                         ink_black=0.1, dot_gain=0.3)
    printed, _ = print_attack(src, SIZE, np.random.default_rng(0), params, _camera())
    chroma = lambda im: float((im.max(-1) - im.min(-1)).mean())  # noqa: E731
    # halftone dots add colour noise; compare after averaging it away
    import cv2

    smooth = cv2.blur(printed.astype(np.float32), (5, 5))
    assert chroma(smooth) < 0.8 * chroma(cv2.blur(live.astype(np.float32), (5, 5)))
    # a white sheet printed with no ink shows the paper's white point: warm, not white
    blank, _ = print_attack(_flat(1.0), SIZE, np.random.default_rng(0), params,
                            _camera(noise=0.0))
    r, g, b = blank.reshape(-1, 3).mean(0)
    assert r > g > b
    assert r == pytest.approx(0.9 * 0.96 + 0.04 * 0.9 * 0.1, abs=0.03)  # paper x lightest tone
    assert blank.max() < 0.95


def test_capture_is_seeded_and_checks_its_input() -> None:
    scene = np.random.default_rng(0).random((SIZE * 4, SIZE * 4, 3))
    a = capture(scene, SIZE, np.random.default_rng(5))
    b = capture(scene, SIZE, np.random.default_rng(5))
    assert a.shape == (SIZE, SIZE, 3) and np.array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    with pytest.raises(ValueError, match="multiple of"):
        capture(scene[:, :-1], SIZE, np.random.default_rng(0))
