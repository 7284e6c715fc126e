"""Fixtures for predict / export / serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from serve_helpers import make_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few synthetic images of different sizes and contents (PNG and JPEG)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(4):
        h, w = 40 + 8 * i, 56 - 4 * i
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        arr[: h // 2] = arr[: h // 2] // (i + 1)
        Image.fromarray(arr).save(d / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return d
