"""Random-number state for reproducible, resumable training.

- :func:`seed_everything` seeds torch (CPU and CUDA), NumPy and Python's ``random``.
- :func:`mix_seeds` derives a stable 63-bit seed from integers (run seed, epoch, position,
  rank...), the same on every platform.
- :func:`forked_rng` runs a block under seeded (or untouched) RNGs and restores them after.
- :func:`rng_state` / :func:`set_rng_state` capture and restore every RNG the model-side
  randomness uses (dropout, drop-path), in checkpoint-safe types.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["forked_rng", "mix_seeds", "rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def mix_seeds(*xs: int) -> int:
    """A 63-bit seed from integers (splitmix-style; stable across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


@contextmanager
def forked_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block with torch / NumPy / Python RNGs seeded (or untouched), then restore."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.default_generator.manual_seed(seed)  # CPU only: what fork_rng restores
            random.seed(seed)
            np.random.seed(seed % (2**32))
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def rng_state() -> dict[str, Any]:
    """All RNG states the model-side randomness uses (checkpoint-safe types only)."""
    _kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
