"""``split_holdout``: train/holdout sides chosen by image content, stable as files
are added."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset, Subset


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(chunk)
    return h.digest()


def _dataset_paths(ds: Any) -> list[str] | None:
    if isinstance(ds, Subset):
        parent = _dataset_paths(ds.dataset)
        return None if parent is None else [parent[i] for i in ds.indices]
    paths = getattr(ds, "paths", None)
    if paths is not None and len(paths) == len(ds):
        return [str(p) for p in paths]
    return None


def split_holdout(
    data: Sequence[str | os.PathLike[str]] | Dataset, fraction: float, seed: int = 0
) -> tuple[Any, Any]:
    """Split files (a list of paths) or a dataset into (train, holdout) by the content
    of each image: a file goes to the holdout when sha256(seed, its bytes) falls under
    ``fraction``, so identical copies under other names always land on the same side
    and an image's side does not change as files are added. The holdout's share is
    ``fraction`` on average, not exactly.

    Lists of paths give two lists of paths; datasets give two ``Subset``s. A dataset
    whose items come from files (``paths``) is split by file bytes, others by the
    decoded pixels of ``item["image"]``. Raises ``ValueError`` when a side is empty.
    """
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    is_paths = isinstance(data, (list, tuple)) and all(
        isinstance(p, (str, os.PathLike)) for p in data
    )
    if is_paths:
        digests = [_file_digest(os.fspath(p)) for p in data]
    else:
        if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
            raise TypeError(f"expected a list of paths or a dataset, got {type(data).__name__}")
        paths = _dataset_paths(data)
        if paths is not None:
            digests = [_file_digest(p) for p in paths]
        else:
            digests = []
            for i in range(len(data)):
                img = data[i]["image"]
                arr = img.numpy() if isinstance(img, Tensor) else np.asarray(img)
                digests.append(hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).digest())
    n = len(digests)
    if n == 0:
        raise ValueError("nothing to split: no files")
    salt = int(seed).to_bytes(8, "little", signed=True)
    hold = []
    for d in digests:
        u = int.from_bytes(hashlib.sha256(salt + d).digest()[:8], "little") / 2**64
        hold.append(u < fraction)
    train_idx = [i for i in range(n) if not hold[i]]
    hold_idx = [i for i in range(n) if hold[i]]
    if not train_idx or not hold_idx:
        side = "holdout" if not hold_idx else "training"
        raise ValueError(
            f"the {side} side is empty ({n} files, fraction {fraction}); "
            "use more files or another fraction/seed"
        )
    if is_paths:
        return [data[i] for i in train_idx], [data[i] for i in hold_idx]
    return Subset(data, train_idx), Subset(data, hold_idx)
