"""Simulated presentation attacks: a photo printed on paper or shown on a screen, then
recaptured by a camera.

**These are simulations, not recordings of real attacks.** They reproduce the physical
artefacts that the FAS literature names as cues, so that the demo has something real to
learn and so that tests can check each artefact is what it says:

* bona fide: the face itself, captured by the camera (:func:`capture`).
* print (:func:`print_attack`): reduced gamut (chroma and contrast compressed toward the
  ink/paper range), a clustered-dot CMY halftone screen (one rotated dot grid per ink, dot
  area = ink coverage), paper tone (the paper's white point, not pure white), ink that is
  never fully black, slight blur (dot gain and the printer's resolution); then captured.
* replay (:func:`replay_attack`): display gamma and raised black level, the screen's RGB
  sub-pixel grid with its black matrix (rendered finer than the camera's pixels, so the
  camera's sampling turns it into low-frequency moire fringes), glare from the glass, and
  the device bezel around the picture; then captured.

Every function works on float RGB images in ``[0, 1]``, ``[H, W, 3]``, and takes a
``numpy.random.Generator``; parameters left ``None`` are drawn from it. The camera model is
shared by live and attack images (framing jitter, pixel-aperture sampling of a supersampled
scene, a little blur, exposure and white balance, sensor noise), so the medium is the only
systematic difference between the classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CameraParams",
    "PrintParams",
    "ReplayParams",
    "capture",
    "expected_moire_frequencies",
    "print_attack",
    "render_bona_fide",
    "replay_attack",
    "to_float",
    "to_uint8",
]

#: supersampling factor of the scene canvas relative to the captured image
SUPERSAMPLE = 8


def to_float(img: np.ndarray) -> np.ndarray:
    """Any ``[H, W]`` / ``[H, W, 3]`` uint8 or float image -> float32 RGB ``[H, W, 3]`` in
    ``[0, 1]``."""
    a = np.asarray(img)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an [H, W] or [H, W, 3] image, got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8 (rounded)."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    """Bicubic resize of a float image to ``side x side`` (clipped to [0, 1])."""
    interp = cv2.INTER_CUBIC if side >= img.shape[0] else cv2.INTER_AREA
    return np.clip(cv2.resize(img, (side, side), interpolation=interp), 0.0, 1.0)


def _grid(h: int, w: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(y, x)`` of an ``h x w`` canvas divided by ``scale`` (float32)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy / np.float32(scale), xx / np.float32(scale)


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], dtype=img.dtype)


# ------------------------------------------------------------------------------ camera
@dataclass
class CameraParams:
    """The recapturing camera. ``zoom``/``shift``: framing jitter (relative to the frame);
    ``optics``: lens blur (Gaussian sigma in output pixels, before sampling);
    ``aperture``: side of each pixel's light-collecting square (fraction of the pitch);
    ``blur``: Gaussian sigma in output pixels after sampling (demosaicing, processing);
    ``gain``: exposure; ``white_balance``: per-channel gains; ``noise``: sensor noise
    sigma."""

    zoom: float
    shift: tuple[float, float]
    optics: float
    aperture: float
    blur: float
    gain: float
    white_balance: tuple[float, float, float]
    noise: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> CameraParams:
        return cls(
            zoom=float(rng.uniform(1.0, 1.08)),
            shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
            optics=float(rng.uniform(0.15, 0.35)),
            aperture=float(rng.uniform(0.6, 1.0)),
            blur=float(rng.uniform(0.2, 0.45)),
            gain=float(rng.uniform(0.85, 1.12)),
            white_balance=tuple(float(v) for v in 1.0 + rng.normal(0.0, 0.03, 3)),  # type: ignore[arg-type]
            noise=float(rng.uniform(0.006, 0.02)),
        )


def capture(
    scene: np.ndarray,
    size: int,
    rng: np.random.Generator,
    params: CameraParams | None = None,
) -> np.ndarray:
    """Photograph a supersampled scene with a small camera.

    Args:
        scene: float RGB ``[k*size, k*size, 3]`` (any integer ``k >= 1``), what is in front
            of the camera.
        size: side of the captured image in pixels.
        params: the camera; drawn from ``rng`` when ``None``.

    Returns:
        float RGB ``[size, size, 3]`` in ``[0, 1]``.
    """
    p = params or CameraParams.draw(rng)
    n = scene.shape[0]
    if scene.shape[1] != n or n % size:
        raise ValueError(f"scene must be square with a side multiple of {size}, got {scene.shape}")
    k = n // size
    # framing: zoom about the centre plus a shift (reflected borders, no black edges)
    c = (n - 1) / 2.0
    z = 1.0 / p.zoom  # the output pixel (x, y) sees scene point z * (x - c) + c + shift
    m = np.array([[z, 0.0, c * (1 - z) + p.shift[0] * n],
                  [0.0, z, c * (1 - z) + p.shift[1] * n]])
    warped = cv2.warpAffine(scene.astype(np.float32), m, (n, n),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT)
    # each sensor pixel integrates light over a centred square of side aperture * pitch;
    # no optical low-pass in front of it, as in most phone cameras (hence moire)
    if p.optics > 0:
        warped = cv2.GaussianBlur(warped, (0, 0), p.optics * k, borderType=cv2.BORDER_REFLECT)
    if k > 1:
        a = max(1, round(p.aperture * k))
        box = cv2.blur(warped, (a, a), borderType=cv2.BORDER_REFLECT) if a > 1 else warped
        off = k // 2
        img = box[off::k, off::k][:size, :size]
    else:
        img = warped
    img = cv2.GaussianBlur(img, (0, 0), p.blur)
    img = img * np.float32(p.gain) * np.asarray(p.white_balance, dtype=np.float32)
    img = img + rng.normal(0.0, p.noise, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def render_bona_fide(source: np.ndarray, size: int, rng: np.random.Generator,
                     camera: CameraParams | None = None,
                     supersample: int = SUPERSAMPLE) -> np.ndarray:
    """A live capture: the face itself in front of the camera. ``source`` float RGB (any
    size) -> float RGB ``[size, size, 3]``."""
    scene = _resize(to_float(source), size * supersample)
    return capture(scene, size, rng, camera)


# ------------------------------------------------------------------------------ print
@dataclass
class PrintParams:
    """A print attack. ``period``: halftone screen period in captured-image pixels;
    ``angle``: screen rotation in degrees (inks at +15/+75/+45); ``gamut``: chroma kept
    (1 = all); ``paper``: the paper's white point (RGB reflectance); ``ink_black``: the
    darkest reflectance ink reaches (relative to paper); ``dot_gain``: blur of the printed
    dots in periods."""

    period: float
    angle: float
    gamut: float
    paper: tuple[float, float, float]
    ink_black: float
    dot_gain: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PrintParams:
        bright = rng.uniform(0.82, 0.95)
        warm = rng.uniform(0.02, 0.10)
        paper = (bright, bright * (1 - warm / 3), bright * (1 - warm))
        return cls(
            period=float(rng.uniform(2.2, 3.2)),
            angle=float(rng.uniform(0.0, 90.0)),
            gamut=float(rng.uniform(0.55, 0.85)),
            paper=tuple(float(v) for v in paper),  # type: ignore[arg-type]
            ink_black=float(rng.uniform(0.06, 0.16)),
            dot_gain=float(rng.uniform(0.2, 0.35)),
        )


INK_ANGLES = (15.0, 75.0, 45.0)  # cyan, magenta, yellow screens, relative to `angle`


def print_attack(
    source: np.ndarray,
    size: int,
    rng: np.random.Generator,
    params: PrintParams | None = None,
    camera: CameraParams | None = None,
    supersample: int = SUPERSAMPLE,
) -> tuple[np.ndarray, PrintParams]:
    """Print ``source`` (float RGB, any size) as a CMY halftone on paper and photograph it.

    Returns:
        ``(image [size, size, 3] float RGB, the print parameters)``.
    """
    p = params or PrintParams.draw(rng)
    n = size * supersample
    img = _resize(to_float(source), n)
    # reduced gamut: chroma pulled toward grey, tones into what ink on paper can reach
    y = _luma(img)[..., None]
    img = y + p.gamut * (img - y)
    img = 0.04 + 0.92 * np.clip(img, 0.0, 1.0)
    # clustered-dot halftone, one rotated screen per ink (CMY = 1 - RGB)
    yy, xx = _grid(n, n, supersample)  # output-pixel units
    dots = np.empty_like(img)  # float32
    for c, ink_angle in enumerate(INK_ANGLES):
        t = math.radians(p.angle + ink_angle)
        u = (xx * math.cos(t) + yy * math.sin(t)) / p.period
        v = (-xx * math.sin(t) + yy * math.cos(t)) / p.period
        du, dv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        coverage = 1.0 - img[..., c]
        dots[..., c] = du * du + dv * dv < coverage / math.pi
    # dot gain / printer resolution: the printed dots are slightly soft
    dots = cv2.GaussianBlur(dots, (0, 0), p.dot_gain * p.period * supersample)
    reflect = np.asarray(p.paper, dtype=np.float32) * (1.0 - (1.0 - p.ink_black) * dots)
    return capture(reflect, size, rng, camera), p


# ------------------------------------------------------------------------------ replay
@dataclass
class ReplayParams:
    """A screen replay. ``pitch``: the screen's pixel pitch in captured-image pixels (near
    1, so sampling beats against it); ``angle``: screen rotation in degrees; ``gamma``:
    display gamma applied to the picture; ``black``: the screen's black level;
    ``tint``: display white point (RGB gains); ``glare``: peak of the reflected highlight,
    ``glare_at`` its centre (fractions of the frame), ``glare_size`` its sigmas (fractions);
    ``bezel``: border widths (top, bottom, left, right, fractions of the frame);
    ``bezel_level``: the bezel's brightness."""

    pitch: float
    angle: float
    gamma: float
    black: float
    tint: tuple[float, float, float]
    glare: float
    glare_at: tuple[float, float]
    glare_size: tuple[float, float]
    bezel: tuple[float, float, float, float]
    bezel_level: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ReplayParams:
        # avoid pitches within 8% of the camera's: the beat would be too slow to see
        pitch = float(rng.choice([rng.uniform(0.80, 0.92), rng.uniform(1.08, 1.25)]))
        cool = rng.uniform(0.0, 0.08)
        return cls(
            pitch=pitch,
            angle=float(rng.uniform(-12.0, 12.0)),
            gamma=float(rng.uniform(0.75, 1.35)),
            black=float(rng.uniform(0.03, 0.09)),
            tint=(1.0 - cool, 1.0 - cool / 3, 1.0),
            glare=float(rng.uniform(0.08, 0.35)),
            glare_at=(float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
            glare_size=(float(rng.uniform(0.08, 0.25)), float(rng.uniform(0.08, 0.25))),
            bezel=tuple(float(v) for v in rng.uniform(0.05, 0.11, 4)),  # type: ignore[arg-type]
            bezel_level=float(rng.uniform(0.02, 0.07)),
        )


def expected_moire_frequencies(pitch: float, angle: float) -> list[tuple[float, float]]:
    """Where the screen's pixel grid lands after the camera samples it, in cycles/pixel
    ``(fx, fy)``: the fundamentals of the pixel columns ``(cos a, sin a) / pitch`` and rows
    ``(-sin a, cos a) / pitch``, folded into the Nyquist band ``[-0.5, 0.5]`` (aliasing).
    The moire fringes of :func:`replay_attack` have these frequencies (and their negatives)."""
    t = math.radians(angle)
    out = []
    for f in (np.array([math.cos(t), math.sin(t)]), np.array([-math.sin(t), math.cos(t)])):
        f = f / pitch
        folded = f - np.round(f)
        out.append((float(folded[0]), float(folded[1])))
    return out


def replay_attack(
    source: np.ndarray,
    size: int,
    rng: np.random.Generator,
    params: ReplayParams | None = None,
    camera: CameraParams | None = None,
    supersample: int = SUPERSAMPLE,
) -> tuple[np.ndarray, ReplayParams]:
    """Show ``source`` (float RGB, any size) on a screen and photograph it.

    Returns:
        ``(image [size, size, 3] float RGB, the replay parameters)``.
    """
    p = params or ReplayParams.draw(rng)
    n = size * supersample
    top, bottom, left, right = (round(b * n) for b in p.bezel)
    h, w = n - top - bottom, n - left - right
    # the picture, fitted into the screen area (aspect kept, centred, letterboxed)
    src = to_float(source)
    side = min(h, w)
    pic = np.zeros((h, w, 3), dtype=np.float32)
    y0, x0 = (h - side) // 2, (w - side) // 2
    pic[y0:y0 + side, x0:x0 + side] = _resize(src, side)
    pic = p.black + (1.0 - p.black) * pic ** p.gamma
    pic = pic * np.asarray(p.tint, dtype=np.float32)
    # RGB sub-pixel stripes and the black matrix, in screen coordinates
    yy, xx = _grid(h, w, supersample)
    t = math.radians(p.angle)
    u = (xx * math.cos(t) + yy * math.sin(t)) / p.pitch
    v = (-xx * math.sin(t) + yy * math.cos(t)) / p.pitch
    fu, fv = u - np.floor(u), v - np.floor(v)
    sub = np.minimum((fu * 3).astype(int), 2)  # which sub-pixel: 0 R, 1 G, 2 B
    lit = ((fu * 3) % 1.0 < 0.8) & (fv < 0.85)  # gaps between stripes and between rows
    emit = np.zeros_like(pic)
    for c in range(3):
        emit[..., c] = np.where(lit & (sub == c), pic[..., c], 0.0)
    emit *= 3.0 / (0.8 * 0.85)  # same mean brightness as the picture
    frame = np.full((n, n, 3), p.bezel_level, dtype=np.float32)
    frame[top:top + h, left:left + w] = emit
    # glare: a soft highlight reflected by the glass (over picture and bezel alike)
    gy, gx = _grid(n, n, n)
    cx, cy = p.glare_at
    sx, sy = p.glare_size
    glare = np.exp(-0.5 * (((gx - cx) / sx) ** 2 + ((gy - cy) / sy) ** 2))
    frame = frame + np.float32(p.glare) * glare[..., None]
    return capture(frame, size, rng, camera), p  # sub-pixels may exceed 1 before averaging


def params_dict(p: Any) -> dict[str, Any]:
    """A parameter dataclass as JSON-ready data (floats rounded)."""
    def r(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, (tuple, list)):
            return [r(x) for x in v]
        return v
    return {k: r(v) for k, v in asdict(p).items()}
