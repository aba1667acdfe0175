"""Training batches indexed by step: batch t is a fixed function of (seed, t).

A run of global batch G reads, at step t, positions [t*G, (t+1)*G) of the endless
concatenation of epoch orders (each epoch a seeded permutation of the dataset, each
item with its own seed per epoch, so a small dataset gives fresh crops in every epoch and
a batch may be larger than the dataset). Under ``torch.distributed`` rank r takes
positions r, r+W, ... of that global batch. So a run resumed at step t, or split over any number of
ranks, reads exactly the items (and, through each item's seed, the crops) an
uninterrupted one-process run reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from .items import Transform
from .loader import _mix, _seed_worker, _Transformed, collate

__all__ = ["StepBatches", "step_loader"]


class StepBatches(Sampler):
    """Batches of ``(index, item_seed)`` from step ``start`` on (see the module docstring)."""

    def __init__(
        self,
        n: int,
        global_batch: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        start: int = 0,
        steps: int | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("the dataset is empty")
        if world < 1 or not 0 <= rank < world or global_batch % world:
            raise ValueError(
                f"the global batch {global_batch} must split evenly over {world} ranks "
                f"(rank {rank})"
            )
        self.n, self.batch, self.seed = n, global_batch, int(seed)
        self.rank, self.world, self.start, self.steps = rank, world, int(start), steps
        self._orders: dict[int, tuple[list[int], list[int]]] = {}

    def _epoch(self, epoch: int) -> tuple[list[int], list[int]]:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, 0))
            order = torch.randperm(self.n, generator=g).tolist()
            seeds = torch.randint(0, 2**62, (self.n,), generator=g).tolist()
            if len(self._orders) > 2:  # bounded memory: a batch spans few epochs
                self._orders.pop(min(self._orders))
            self._orders[epoch] = (order, seeds)
        return self._orders[epoch]

    def batch_indices(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, item_seed)`` pairs of step ``step``."""
        picked = []
        for pos in range(step * self.batch + self.rank, (step + 1) * self.batch, self.world):
            epoch, k = divmod(pos, self.n)
            order, seeds = self._epoch(epoch)
            picked.append((order[k], seeds[order[k]]))
        return picked

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless StepBatches has no length")
        return max(0, self.steps - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        steps = itertools.count(self.start) if self.steps is None else range(self.start, self.steps)
        for step in steps:
            yield self.batch_indices(step)


def step_loader(
    dataset: Any,
    global_batch: int,
    *,
    transform: Transform | None,
    seed: int,
    start: int,
    steps: int | None,
    rank: int = 0,
    world: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of this rank's collated batches for steps ``start`` .. ``steps - 1``."""
    sampler = StepBatches(
        len(dataset), global_batch, seed=seed, rank=rank, world=world, start=start, steps=steps
    )
    return DataLoader(
        _Transformed(dataset, transform),
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        persistent_workers=False,
    )
