"""A tiny synthetic live/spoof manifest made on the spot: smooth vs high-frequency texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitfas.data.io import save_image
from vitfas.data.manifest import write_manifest

SIZE = 32  # images are written at the LBP size, so no resizing is involved


def smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A random linear colour gradient plus faint noise: few non-uniform LBP codes."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    a = rng.uniform(-1, 1, size=(2, 3))
    base = rng.uniform(60, 190, size=3)
    img = base + 2.0 * (xx[..., None] * a[0] + yy[..., None] * a[1])
    img += rng.normal(0, 0.5, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def rough_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth image under strong per-pixel noise (a high-frequency texture)."""
    img = smooth_image(rng).astype(np.float64) + rng.normal(0, 45, size=(SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def texture_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``manifest.csv`` with train (12 + 12), dev (8 + 8), test (8 + 8) rows; attacks are
    ``print`` and ``replay``. Extra rows: an unreadable live train image, an attack FTA row
    and an unreadable attack image in test."""
    root = tmp_path_factory.mktemp("textures")
    rng = np.random.default_rng(7)
    rows = []
    for split, n in (("train", 12), ("dev", 8), ("test", 8)):
        for k in range(n):
            for label in ("live", "spoof"):
                rel = f"{split}/{label}_{k:02d}.png"
                save_image(root / rel, smooth_image(rng) if label == "live" else rough_image(rng))
                rows.append({"path": rel, "label": label,
                             "attack_type": "none" if label == "live" else
                             ("print" if k % 2 else "replay"),
                             "dataset": "synth", "subject": f"s{k}", "split": split,
                             "fta": "0"})
    (root / "train" / "broken.png").write_bytes(b"not a png")
    (root / "test" / "broken.png").write_bytes(b"\x89PNG truncated")
    rows += [
        {"path": "train/broken.png", "label": "live", "attack_type": "none", "dataset": "synth",
         "subject": "x", "split": "train", "fta": "0"},
        {"path": "test/no_face.png", "label": "spoof", "attack_type": "print",
         "dataset": "synth", "subject": "y", "split": "test", "fta": "1"},
        {"path": "test/broken.png", "label": "spoof", "attack_type": "replay",
         "dataset": "synth", "subject": "z", "split": "test", "fta": "0"},
    ]
    return write_manifest(root / "manifest.csv", rows)
