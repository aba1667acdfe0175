"""Training batches indexed by step: the same items and crops for a resumed run, any
number of workers, and ranks that share one global batch."""

from __future__ import annotations

import torch

from npp_ext.data import Compose, RandomCrop, RandomFlip, StepBatches, open_dataset, step_loader


def _batches(loader) -> list[torch.Tensor]:
    return [b["image"] for b in loader]


def test_a_run_started_at_step_k_reads_what_the_whole_run_reads_from_k():
    whole = StepBatches(7, 3, seed=5, steps=9)
    later = StepBatches(7, 3, seed=5, start=4, steps=9)
    assert list(later) == list(whole)[4:]
    # an endless chain of epochs: every item once per 7 positions, batches larger than n too
    big = StepBatches(3, 5, seed=1, steps=3)
    flat = [i for batch in big for i, _ in batch]
    assert sorted(flat[:3]) == [0, 1, 2] and sorted(flat[3:6]) == [0, 1, 2]


def test_ranks_split_each_global_batch():
    one = list(StepBatches(10, 4, seed=2, steps=5))
    two = [list(StepBatches(10, 4, seed=2, rank=r, world=2, steps=5)) for r in range(2)]
    for t in range(5):
        assert sorted(two[0][t] + two[1][t]) == sorted(one[t])
        assert two[0][t] == one[t][0::2] and two[1][t] == one[t][1::2]


def test_workers_do_not_change_the_crops():
    ds = open_dataset("photos")
    transform = Compose([RandomCrop(24), RandomFlip()])
    kw = dict(transform=transform, seed=3, start=1, steps=4)
    plain = _batches(step_loader(ds, 4, workers=0, **kw))
    workers = _batches(step_loader(ds, 4, workers=2, **kw))
    assert len(plain) == 3
    for a, b in zip(plain, workers, strict=True):
        assert torch.equal(a, b)
