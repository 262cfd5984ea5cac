"""Randomness of the training input: a deterministic, resumable stream of samples, and seeds.

Step `s` consumes positions [s * B, (s + 1) * B) of an endless stream made of one seeded
permutation of the dataset per epoch. Each position also fixes the seed of that sample's
augmentation (`sample_generator`). So the data a step sees depends only on (seed, step), not on
how many workers ran, which input pipeline (CPU or device) augments it, or whether the run was
interrupted: a resumed run sees exactly what the uninterrupted one saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["StreamBatchSampler", "epoch_permutation", "sample_generator", "sample_seed", "uniform"]


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def sample_seed(seed: int, position: int) -> int:
    """A per-sample augmentation seed, spread so that neighbouring positions are unrelated."""
    return (seed * 6_364_136_223_846_793_005 + position * 1_442_695_040_888_963_407) % 2**63


def sample_generator(seed: int, position: int) -> torch.Generator:
    """The CPU generator that draws every augmentation decision of the sample at ``position``."""
    return torch.Generator().manual_seed(sample_seed(seed, position))


def uniform(
    shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Uniform [0, 1) drawn on the generator's own device (so any generator works)."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device, dtype=dtype)


class StreamBatchSampler:
    """Yields micro-batches of (position, dataset index) pairs from a given step onwards.

    With `world_size` processes, each micro-step covers `micro_batch * world_size` positions and
    process `rank` takes its own slice of them, so together they see the single-process stream.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        micro_batch: int,
        seed: int,
        start_step: int,
        max_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if n == 0:
            raise ValueError("the training set is empty")
        if batch_size % (micro_batch * world_size):
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of micro_batch "
                f"{micro_batch} x {world_size} processes"
            )
        self.n, self.batch_size, self.micro_batch = n, batch_size, micro_batch
        self.seed, self.start_step, self.max_steps = seed, start_step, max_steps
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return (self.max_steps - self.start_step) * (
            self.batch_size // (self.micro_batch * self.world_size)
        )

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
