"""What a training run needs around its loop: the device and the process group (torchrun),
codec threads per process, mixed precision, a JSON-lines log and a progress bar."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import torch
import torch.distributed as dist

__all__ = ["Runtime", "JsonLog", "autocast", "progress", "setup"]

_AMP = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its device, and its rank among ``world`` processes."""

    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes logs and checkpoints (rank 0)."""
        return self.rank == 0

    def codec_threads(self, requested: int) -> int:
        """Codec workers of this process: as asked, else this machine's cores shared out
        among its processes (each rank codes its part of the batch on its own cores)."""
        if requested:
            return requested
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return max(1, (cores or os.cpu_count() or 1) // self.local_world)

    def all_mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (the values themselves with one process)."""
        if self.world == 1:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist(), strict=True)}


def setup(device: str = "auto") -> Runtime:
    """The runtime of this process: under torchrun (``WORLD_SIZE`` > 1) joins the process
    group (NCCL on CUDA, else gloo) and takes the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no GPU")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world, local_rank, local_world)


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` ("bf16", "fp16"), or nothing for "off"."""
    if amp not in _AMP:
        raise ValueError(f"amp must be one of {list(_AMP)}, got {amp!r}")
    if _AMP[amp] is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AMP[amp])


class JsonLog:
    """Appends one JSON object per line (only on the main process)."""

    def __init__(self, path: str | None, enabled: bool = True) -> None:
        self._f: IO[str] | None = None
        if path and enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record, with the wall time."""
        if self._f is not None:
            self._f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self._f.flush()

    def close(self) -> None:
        """Close the file."""
        if self._f is not None:
            self._f.close()
            self._f = None


@contextlib.contextmanager
def progress(total: int, initial: int, desc: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr when it is a terminal (nothing in logs and pipes)."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not (enabled and sys.stderr.isatty()),
        dynamic_ncols=True,
        leave=True,
    )
    try:
        yield bar
    finally:
        bar.close()
