"""A generated live-vs-spoof task whose only cue is a real print/replay texture artifact.

"Live" images are natural-looking random scenes: 1/f (pink) noise with correlated colours
plus a few soft-edged ellipses, slightly blurred, with sensor noise. "Spoof" images are
*the same kind of scene* re-rendered as a printed photo would be — a rotated CMY halftone
dot screen (``artifact="halftone"``) — or as a screen recaptured by a camera, with the
moire beat between the display's pixel grid and the sensor (``artifact="moire"``); both
then go through the same blur and noise as live images. The mean colour and the scene
statistics are the same for both classes, so a model must learn the texture.

Used by the "it must learn" test and to try ``vitfas train`` without any data::

    from vitfas.train.synthetic import write_imagefolder
    write_imagefolder("runs/synth", n_train=800, n_dev=200, n_test=400, size=32)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

__all__ = ["halftone", "moire", "natural_image", "sample", "write_imagefolder"]


def natural_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random natural-looking RGB scene ``[size, size, 3]`` in ``[0, 1]``."""
    f = np.fft.fftfreq(size)
    fr = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = 1.0 / np.maximum(fr, 1.0 / size) ** 1.6
    chans = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random((size, size)))
        chans.append(np.real(np.fft.ifft2(amp * phase)))
    noise = np.stack(chans, -1)
    noise = (noise - noise.mean()) / (noise.std() + 1e-8)
    mix = np.eye(3) * 0.4 + rng.normal(0.0, 0.3, (3, 3)) + 0.3
    img = 0.5 + 0.12 * noise @ mix.T
    yy, xx = np.mgrid[0:size, 0:size] / size
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.random(2)
        ry, rx = 0.1 + 0.3 * rng.random(2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        alpha = 1.0 / (1.0 + np.exp(np.clip((inside - 1.0) * 8.0, -50.0, 50.0)))
        img = img * (1 - alpha[..., None]) + alpha[..., None] * rng.uniform(0.15, 0.85, 3)
    return np.clip(img, 0.0, 1.0)


def halftone(img: np.ndarray, rng: np.random.Generator, period: float | None = None,
             supersample: int = 4, blur: float = 0.7) -> np.ndarray:
    """Print ``img`` ``[H, W, 3]`` as a CMY halftone and photograph it back.

    Each ink gets a dot screen of period ``period`` pixels at its own angle (15/75/45 degrees
    plus a random rotation); a dot's area equals the ink coverage. Rendered at
    ``supersample`` x resolution and averaged down (the camera's pixel integration), then
    blurred by ``blur`` pixels (the camera's optics).
    """
    H, W, _ = img.shape
    s = supersample
    p = float(period if period is not None else rng.uniform(3.0, 4.5)) * s
    big = np.kron(img, np.ones((s, s, 1)))
    yy, xx = np.mgrid[0 : H * s, 0 : W * s].astype(np.float64)
    base = rng.uniform(0, 90)
    out = np.empty_like(big)
    for c, ang in enumerate((15.0, 75.0, 45.0)):
        t = np.deg2rad(base + ang)
        u = (xx * np.cos(t) + yy * np.sin(t)) / p + rng.random()
        v = (-xx * np.sin(t) + yy * np.cos(t)) / p + rng.random()
        du, dv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
        dist2 = du**2 + dv**2
        ink = 1.0 - big[..., c]
        out[..., c] = 1.0 - (dist2 < ink / np.pi).astype(np.float64)
    # paper is not perfectly white, ink not perfectly dense
    out = 0.06 + 0.9 * out
    out = out.reshape(H, s, W, s, 3).mean(axis=(1, 3))
    # the recapturing camera's optics soften the dots (but do not remove them)
    return cv2.GaussianBlur(out, (0, 0), blur)


def moire(img: np.ndarray, rng: np.random.Generator, strength: float | None = None
          ) -> np.ndarray:
    """Show ``img`` on a display and recapture it: RGB sub-pixel grid beating with the
    sensor grid gives coloured moire fringes."""
    H, W, _ = img.shape
    a = float(strength if strength is not None else rng.uniform(0.12, 0.25))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    t = np.deg2rad(rng.uniform(-20, 20))
    f = rng.uniform(0.8, 1.2) / rng.uniform(2.0, 3.5)  # cycles per pixel near the Nyquist rate
    out = np.empty_like(img)
    for c in range(3):
        ph = 2 * np.pi * (f * (xx * np.cos(t) + yy * np.sin(t)) + c / 3.0 + rng.random())
        out[..., c] = img[..., c] * (1.0 + a * np.cos(ph))
    return out


def sample(rng: np.random.Generator, size: int, spoof: bool,
           artifact: Literal["halftone", "moire"] = "halftone") -> np.ndarray:
    """One image ``[size, size, 3]`` uint8: a live scene, or its spoofed recapture."""
    img = natural_image(rng, size)
    if spoof:
        img = halftone(img, rng) if artifact == "halftone" else moire(img, rng)
    img = cv2.GaussianBlur(img, (0, 0), 0.5)
    img = img + rng.normal(0.0, 0.02, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_imagefolder(
    root: str | Path,
    n_train: int = 800,
    n_dev: int = 200,
    n_test: int = 400,
    size: int = 32,
    artifact: Literal["halftone", "moire"] = "halftone",
    seed: int = 0,
) -> Path:
    """Write ``root/{train,dev,test}/{live,spoof}/*.png`` (half live, half spoof per split)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        for label in ("live", "spoof"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            spoof = bool(i % 2)
            label = "spoof" if spoof else "live"
            Image.fromarray(sample(rng, size, spoof, artifact)).save(
                root / split / label / f"{i:05d}.png"
            )
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m vitfas.train.synthetic OUT [--size 32] [--artifact halftone|moire]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vitfas.train.synthetic",
                                description="write a generated live/spoof ImageFolder tree")
    p.add_argument("out")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--artifact", choices=["halftone", "moire"], default="halftone")
    p.add_argument("--n-train", type=int, default=800)
    p.add_argument("--n-dev", type=int, default=200)
    p.add_argument("--n-test", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    root = write_imagefolder(a.out, a.n_train, a.n_dev, a.n_test, a.size, a.artifact, a.seed)
    print(f"wrote {a.n_train + a.n_dev + a.n_test} images under {root}/{{train,dev,test}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
