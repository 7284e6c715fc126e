"""Resumable, rank-sharded data order with per-sample seeds.

:class:`ResumableSampler` makes an epoch's order a function of ``(seed, epoch)``, can start
part-way through an epoch (global position, any world size) and yields
``(index, sample_seed)`` pairs; :class:`SeededDataset` runs each item under RNGs seeded from
that seed, so augmentation is independent of workers and prefetching. Together they make
resuming bit-for-bit (see :mod:`vitfas.train.engine`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vitfas.train.rng import forked_rng, mix_seeds

__all__ = ["RangeSampler", "ResumableSampler", "SeededDataset"]


class ResumableSampler(Sampler):
    """Epoch-seeded sample order that can start part-way and shard by rank.

    Yields ``(index, sample_seed)`` pairs; :class:`SeededDataset` uses the seed to make each
    sample's augmentation a pure function of ``(seed, epoch, position)``.

    Args:
        n: dataset length (used when ``base`` is None: a random permutation per epoch).
        seed: run seed.
        base: optional sampler deciding the order (e.g. class-balanced); it is drawn under a
            generator seeded by ``(seed, epoch)`` (its ``generator`` attribute, if any, is
            swapped for the draw) and after ``base.set_epoch(epoch)`` if it has one.
        shuffle: permute (True) or keep dataset order (False, for evaluation).
        rank, world_size: shard each epoch's order (padded by wrapping to a multiple):
            rank ``r`` takes global positions ``r, r + world_size, ...``.

    Positions are global: ``set_epoch(epoch, start)`` skips the first ``start`` samples of
    the epoch's (padded) order, whichever ranks consumed them, and a sample's augmentation
    seed depends on its global position only. A run can therefore resume on a different
    number of processes, and the first ``k`` optimiser steps see the same samples for any
    world size with the same global batch.
    """

    def __init__(self, n: int, seed: int = 0, base: Sampler | None = None, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.base, self.shuffle = n, seed, base, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch, and skip its first ``start`` samples (global position: the
        samples all ranks together have consumed)."""
        self.epoch, self.start = epoch, start

    def epoch_order(self, epoch: int) -> list[int]:
        """This rank's full sample order for ``epoch``."""
        return self._padded_order(epoch)[self.rank :: self.world_size]

    def _padded_order(self, epoch: int) -> list[int]:
        """The epoch's global order, padded by wrapping to a multiple of the world size."""
        g = torch.Generator().manual_seed(mix_seeds(self.seed, epoch, 1))
        if self.base is not None:
            if hasattr(self.base, "set_epoch"):
                self.base.set_epoch(epoch)
            old = getattr(self.base, "generator", None)
            if hasattr(self.base, "generator"):
                self.base.generator = g
            try:
                with forked_rng(mix_seeds(self.seed, epoch, 2)):
                    order = [int(i) for i in self.base]
            finally:
                if hasattr(self.base, "generator"):
                    self.base.generator = old
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            total = math.ceil(len(order) / self.world_size) * self.world_size
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._padded_order(self.epoch)
        for pos in range(self.start + self.rank, len(order), self.world_size):
            yield order[pos], mix_seeds(self.seed, self.epoch, pos, 0, 3)

    def __len__(self) -> int:
        m = len(self.base) if self.base is not None else self.n
        total = math.ceil(m / self.world_size) * self.world_size
        return len(range(self.start + self.rank, total, self.world_size))


class RangeSampler(Sampler):
    """Items ``indices`` of an unshuffled epoch-0 order, with the seeds
    :class:`ResumableSampler` gives them (a shard of an evaluation loader)."""

    def __init__(self, indices: range, seed: int) -> None:
        self.indices, self.seed = indices, seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices:
            yield i, mix_seeds(self.seed, 0, i, 0, 3)

    def __len__(self) -> int:
        return len(self.indices)


class SeededDataset(Dataset):
    """Wraps a map-style dataset so ``ds[(index, seed)]`` runs under seeded RNGs.

    Plain integer indices pass through unseeded (used for evaluation).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            if torch.utils.data.get_worker_info() is not None:
                # a worker process: nothing else uses its RNGs, no need to restore them
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % (2**32))
                return self.dataset[index]
            with forked_rng(seed):
                return self.dataset[index]
        return self.dataset[key]
