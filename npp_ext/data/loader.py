"""Batching: ``collate``, the ``SeededSampler`` and ``make_loader``, reproducible
from a seed whatever the number of workers or ranks."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .items import Item, Transform
from .transforms import Compose


def collate(items: Sequence[Item]) -> dict[str, Any]:
    """Items -> a batch: images stacked (N, 3, H, W) uint8 (they must have one size:
    crop first), ``"label"`` an int64 tensor, everything else (boxes, labels, paths,
    image ids) lists."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    keys = set(items[0])
    for it in items[1:]:
        if set(it) != keys:
            raise ValueError(f"items have different keys: {sorted(keys)} vs {sorted(it)}")
    sizes = {tuple(it["image"].shape) for it in items}
    if len(sizes) != 1:
        raise ValueError(
            f"images of different sizes cannot be stacked: {sorted(sizes)}; "
            "use a crop transform (RandomCrop/CenterCrop) or batch_size=1"
        )
    batch: dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    for k in sorted(keys - {"image"}):
        values = [it[k] for it in items]
        batch[k] = torch.tensor(values, dtype=torch.int64) if k == "label" else values
    return batch


def _mix(*words: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    data = b"".join(int(w).to_bytes(8, "little", signed=True) for w in words)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class SeededSampler(Sampler):
    """Yields ``(index, item_seed)``: the order and every item's random draws derive from
    (seed, epoch, pass, index), so they do not depend on workers or on which rank reads
    an item.

    Distributed (``world`` > 1): each pass's order is split into ``world`` strided
    parts, one per ``rank``, like ``torch.utils.data.DistributedSampler``: with
    ``drop_last`` the tail that does not divide evenly is dropped, otherwise the order
    is padded by repeating its start so every rank gets as many items (the repeats count
    twice in metrics). ``set_epoch(e)`` makes pass k of epoch e the same on every rank;
    without it, each new iteration is a new pass.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError(f"the dataset is empty (n={n})")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
        if drop_last and n < world:
            raise ValueError(f"drop_last with {n} items leaves nothing for {world} ranks")
        self.n, self.shuffle, self.seed = n, bool(shuffle), int(seed)
        self.rank, self.world, self.drop_last = rank, world, bool(drop_last)
        self.epoch = 0
        self._pass = 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (call before iterating, with the same value on all ranks)."""
        self.epoch = int(epoch)
        self._pass = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.world
        return math.ceil(self.n / self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        key = _mix(self.seed, self.epoch, self._pass)
        self._pass += 1
        g = torch.Generator().manual_seed(key)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        item_seeds = torch.randint(0, 2**62, (self.n,), generator=g)  # indexed by item
        total = len(self) * self.world
        if total <= self.n:
            order = order[:total]
        else:
            order = torch.cat([order, order[: total - self.n]])
        for i in order[self.rank :: self.world].tolist():
            yield i, int(item_seeds[i])


class _Transformed(Dataset):
    """Dataset view that receives ``(index, seed)`` from ``SeededSampler``."""

    def __init__(self, dataset: Any, transform: Transform | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Item:
        index, seed = key
        item = self.dataset[index]
        if self.transform is None:
            return item
        return self.transform(item, torch.Generator().manual_seed(seed))


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and numpy's RNGs in a worker from torch's (which the loader seeds
    from its generator), for transforms that use them."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    transform: Transform | Sequence[Transform] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of collated batches, reproducible from ``seed``.

    ``transform(item, generator)`` (or a list of them, composed) runs per item with a
    generator seeded per item by the ``SeededSampler``: the same seed gives the same
    batches with any number of ``workers``. When ``torch.distributed`` is initialized
    each rank reads its own part of every epoch (see ``SeededSampler``); call
    ``loader.sampler.set_epoch(epoch)`` at each epoch so all ranks agree on the order.
    ``drop_last`` drops the last incomplete batch.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if transform is not None and not callable(transform):
        transform = Compose(transform)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = SeededSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world=world, drop_last=drop_last
    )
    if drop_last and len(sampler) < batch_size:
        raise ValueError(
            f"{len(sampler)} items per rank make no full batch of {batch_size} "
            "(use a smaller batch_size or drop_last=False)"
        )
    return DataLoader(
        _Transformed(dataset, transform),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(_mix(seed, -1)),
        persistent_workers=workers > 0,
    )
