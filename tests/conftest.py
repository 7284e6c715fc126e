"""Shared test fixtures. Nothing here downloads: the hub is forced offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("VITFAS_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ``shared/`` folder (beside the checkout); skips when absent."""
    d = _shared_dir()
    if not d.is_dir():
        pytest.skip(f"shared/ folder not found at {d}")
    return d


@pytest.fixture(scope="session")
def face_fixtures(shared_dir: Path) -> Path:
    """``shared/fixtures/faces`` with the real live/print/replay photos; skips when absent."""
    d = shared_dir / "fixtures" / "faces"
    if not d.is_dir():
        pytest.skip(f"face fixtures not found at {d}")
    return d


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    """Seed every test; run it on ``VITFAS_TEST_THREADS`` intra-op threads (default 1).

    The suite's models are tiny: one thread is as fast on an idle 2-core machine and many
    times faster on a loaded one, where OpenMP threads spin-wait on each other.
    """
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("VITFAS_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(n)


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG file whose header claims ``w x h`` pixels (all-zero rows, compressed):
    a decompression bomb of a few hundred bytes."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    raw = zlib.compress(b"\x00" * (w + 1) * min(h, 64), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND",
                                                                                    b"")


@pytest.fixture(scope="session")
def bomb_png():
    """``bomb_png(w=100_000, h=100_000) -> bytes``: a PNG header claiming w x h pixels."""
    return lambda w=100_000, h=100_000: _bomb_png(w, h)
