"""Randomness of the training input: a deterministic, resumable stream of samples, and seeds.

Step `s` consumes positions [s * B, (s + 1) * B) of an endless stream made of one seeded
permutation of the dataset per epoch. Each position also fixes the seed of that sample's
augmentation (`sample_generator`). So the data a step sees depends only on (seed, step), not on
how many workers ran, which input pipeline (CPU or device) augments it, or whether the run was
interrupted: a resumed run sees exactly what the uninterrupted one saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

__all__ = ["SeededRandomness", "StreamBatchSampler", "epoch_permutation", "sample_generator",
           "sample_seed", "uniform"]


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def sample_seed(seed: int, position: int) -> int:
    """A per-sample augmentation seed, spread so that neighbouring positions are unrelated."""
    return (seed * 6_364_136_223_846_793_005 + position * 1_442_695_040_888_963_407) % 2**63


def sample_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator that draws every augmentation decision of the sample at ``position``."""
    return torch.Generator().manual_seed(sample_seed(seed, position))


def uniform(shape: Sequence[int], generator: torch.Generator,
            dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) drawn on the generator's own device (so any generator works)."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device, dtype=dtype)


class SeededRandomness:
    """Gives each process (and each DataLoader worker) its own reproducible generator, for the
    transforms used on their own (the training pipelines seed every sample instead).

    An explicit ``generator`` is used as is (single-process use). Otherwise a generator is made
    lazily in the process that first calls the transform: in the main process from ``seed`` (or
    ``torch.initial_seed()``), in a worker from the worker's seed (derived by the DataLoader from
    its own generator, so it differs per worker and per epoch and is reproducible when the loader
    is seeded) mixed with ``seed``. Copies sent to workers never share a stream.
    """

    def __init__(self, seed: int | None, generator: torch.Generator | None):
        self.seed = seed
        self._explicit = generator
        self._lazy: torch.Generator | None = None
        self._lazy_key: tuple | None = None

    def generator(self) -> torch.Generator:
        if self._explicit is not None:
            return self._explicit
        info = get_worker_info()
        key = (os.getpid(), None if info is None else info.seed)
        if self._lazy is None or self._lazy_key != key:
            if info is None:
                seed = torch.initial_seed() if self.seed is None else self.seed
            elif self.seed is None:
                seed = info.seed
            else:
                seed = self.seed * 6364136223846793005 + info.seed + 1442695040888963407
            self._lazy = torch.Generator().manual_seed(seed % 2**64)
            self._lazy_key = key
        return self._lazy

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lazy"] = state["_lazy_key"] = None
        return state


class StreamBatchSampler:
    """Yields micro-batches of (position, dataset index) pairs from a given step onwards.

    With `world_size` processes, each micro-step covers `micro_batch * world_size` positions and
    process `rank` takes its own slice of them, so together they see the single-process stream.
    """

    def __init__(self, n: int, *, batch_size: int, micro_batch: int, seed: int, start_step: int,
                 max_steps: int, rank: int = 0, world_size: int = 1):
        if n == 0:
            raise ValueError("the training set is empty")
        if batch_size % (micro_batch * world_size):
            raise ValueError(f"batch_size {batch_size} is not a multiple of micro_batch "
                             f"{micro_batch} x {world_size} processes")
        self.n, self.batch_size, self.micro_batch = n, batch_size, micro_batch
        self.seed, self.start_step, self.max_steps = seed, start_step, max_steps
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * (
            self.batch_size // (self.micro_batch * self.world_size))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position = self.start_step * self.batch_size
        end = self.max_steps * self.batch_size
        stride = self.micro_batch * self.world_size
        epoch, perm = -1, None
        while position < end:
            batch = []
            first = position + self.rank * self.micro_batch
            for p in range(first, first + self.micro_batch):
                e = p // self.n
                if e != epoch:
                    epoch, perm = e, epoch_permutation(self.seed, e, self.n)
                batch.append((p, int(perm[p % self.n])))
            position += stride
            yield batch
