"""Real BPG for a batch of device tensors, in the background: the codec half of BPGProxyFn.

A :class:`CodecJob` packs a batch to 8-bit YUV on its device (``ops.rgb_to_yuv``), copies
it into reused (pinned) host buffers, and hands it to the C++ thread pool
(``bpg.start_roundtrip_yuv_batch``) from a background thread that first waits for the
copy to land. ``finish()`` waits, copies the decoded YUV back and unpacks it
(``ops.yuv_to_rgb``). Jobs reach the pool in the order they were made, and the pool codes
them in that order with no pause between them: a batch split into chunks is decoded chunk
by chunk while every core keeps coding.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from . import bpg, ops
from .options import EncodeOptions

__all__ = ["CodecJob", "host_buffers"]

#: Buffer sets kept per device: enough for a batch split into chunks, all in flight.
_MAX_SETS_PER_DEVICE = 16


class _Staging:
    """One pair of host buffers (codec input and output) and what the device last did with them."""

    def __init__(self, device: torch.device, n: int, total: int) -> None:
        pin = device.type == "cuda"
        self.shape = (n, total)
        self.src = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin)
        self.dst = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin)
        # Recorded after the device's copy out of ``dst``: the next codec run must not write
        # ``dst`` before it, even when that run is enqueued on another stream.
        self.consumed: torch.cuda.Event | None = None
        self.busy = False


class _HostBuffers:
    """Host staging buffers, reused across calls.

    Pinned when the images live on a GPU, so the copies are asynchronous DMA. Per device,
    the sets of the most recent shape are kept (as many as were in use at once, up to
    ``_MAX_SETS_PER_DEVICE``), so repeated steps neither allocate nor grow memory; a set of
    another shape replaces the free ones.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, list[_Staging]] = {}

    def acquire(self, device: torch.device, n: int, total: int) -> _Staging:
        """A free buffer set for ``n`` images of ``total`` bytes; give it back with release()."""
        key = str(device)
        with self._lock:
            sets = self._cache.setdefault(key, [])
            for s in sets:
                if not s.busy and s.shape == (n, total):
                    s.busy = True
                    return s
        # Pinned allocation is slow: not under the lock, which every device's calls share.
        staging = _Staging(device, n, total)
        staging.busy = True
        with self._lock:
            sets = [s for s in self._cache.get(key, []) if s.busy or s.shape == (n, total)]
            if len(sets) < _MAX_SETS_PER_DEVICE:
                sets.append(staging)
            self._cache[key] = sets
        return staging

    def release(self, staging: _Staging) -> None:
        """Mark a set free again (its ``consumed`` event, if any, already recorded)."""
        with self._lock:
            staging.busy = False

    def cached(self) -> int:
        """Number of buffer sets held (for tests)."""
        with self._lock:
            return sum(len(sets) for sets in self._cache.values())

    def busy(self) -> int:
        """Number of held buffer sets in use (for tests)."""
        with self._lock:
            return sum(s.busy for sets in self._cache.values() for s in sets)


class _Turns:
    """Tickets that let jobs reach the pool in the order they were made, although each
    waits for its own device copy on a thread of its own."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def take(self) -> int:
        """A ticket (on the thread that makes the job, in order)."""
        with self._cv:
            ticket, self._next_ticket = self._next_ticket, self._next_ticket + 1
            return ticket

    def wait(self, ticket: int) -> None:
        """Block until every earlier ticket is done."""
        with self._cv:
            self._cv.wait_for(lambda: self._serving == ticket)

    def done(self, ticket: int) -> None:
        """Let the next ticket go (also when this job failed before the pool)."""
        with self._cv:
            self._serving = ticket + 1
            self._cv.notify_all()

    def passed(self, ticket: int) -> bool:
        """Whether ``ticket``'s turn is over."""
        with self._cv:
            return self._serving > ticket


def _new_executor() -> ThreadPoolExecutor:
    # A thread per job in flight: each waits for its copy, then for the pool.
    return ThreadPoolExecutor(
        max_workers=4 * _MAX_SETS_PER_DEVICE, thread_name_prefix="npp_ext-bpg"
    )


_buffers = _HostBuffers()
_turns = _Turns()
_codec_threads = _new_executor()


def host_buffers() -> _HostBuffers:
    """The process's staging buffers (for tests and benchmarks)."""
    return _buffers


def _after_fork_in_child() -> None:
    # A forked child (a DataLoader worker, say) has none of the parent's threads, and the
    # executor would wait forever for its worker; buffers may have been busy mid-call.
    global _buffers, _turns, _codec_threads
    _buffers = _HostBuffers()
    _turns = _Turns()
    _codec_threads = _new_executor()


os.register_at_fork(after_in_child=_after_fork_in_child)


class CodecJob:
    """Real BPG of ``x_bar`` (N, 3, H, W) at per-image QPs, started at construction."""

    def __init__(self, x_bar: Tensor, qps: list[int], opts: EncodeOptions, threads: int) -> None:
        n, _, h, w = x_bar.shape
        self.device, self.size, self.chroma = x_bar.device, (h, w), opts.chroma
        # Checked on the device now, read in finish(): no host sync before the GPU work.
        self._non_finite = ~torch.isfinite(x_bar.detach()).all()
        yuv = ops.rgb_to_yuv(x_bar.detach(), opts.chroma)
        self._buffers = _buffers
        staging = self._staging = self._buffers.acquire(x_bar.device, n, yuv.shape[1])
        self._released = False
        ready = consumed = None

        turns, ticket = _turns, -1

        def run() -> Any:
            if ready is not None:
                ready.synchronize()  # the device-to-host copy has landed
            if consumed is not None:
                consumed.synchronize()  # the last job's copy out of dst has finished
            return start().wait()

        def start() -> bpg.YuvBatchJob:
            # In ticket order, and the turn passes on whatever happened before.
            turns.wait(ticket)
            try:
                return bpg.start_roundtrip_yuv_batch(
                    staging.src.numpy(), h, w, qps, staging.dst.numpy(), threads=threads,
                    **opts.kwargs(),
                )  # fmt: skip
            finally:
                turns.done(ticket)

        def run_in_turn() -> Any:
            try:
                return run()
            finally:
                if not turns.passed(ticket):  # failed before its turn: still wait for it
                    turns.wait(ticket)
                    turns.done(ticket)

        try:
            staging.src.copy_(yuv, non_blocking=True)
            if x_bar.device.type == "cuda":
                # On x_bar's stream, which the copy used: the current device may be another.
                ready = torch.cuda.Event()
                ready.record(torch.cuda.current_stream(x_bar.device))
                consumed, staging.consumed = staging.consumed, None
            ticket = turns.take()  # jobs reach the pool in the order they are made
            try:
                self._future = _codec_threads.submit(run_in_turn)
            except BaseException:
                turns.done(ticket)
                raise
        except BaseException:
            if consumed is not None:
                staging.consumed = consumed  # still owed by the next run that writes dst
            self._release()
            raise

    def _release(self) -> None:
        # Once: a set given back may already serve another job.
        if not self._released:
            self._released = True
            self._buffers.release(self._staging)

    def done(self) -> bool:
        """Whether the codec has finished (finish() will not wait)."""
        return self._future.done()

    def wait(self) -> None:
        """Block until the codec has finished (errors are raised by finish())."""
        self._future.exception()

    def finish(self) -> tuple[Tensor, list[int]]:
        """Wait for the pool, move the decoded YUV to the device and unpack it to float RGB.

        Returns (x_hat float32 (N, 3, H, W), bits per image). Raises ValueError if x_bar held
        NaN or infinite values, BPGError if the codec failed.
        """
        staging, device = self._staging, self.device
        try:
            nbits = self._future.result()
            yuv_back = staging.dst.to(device, non_blocking=True)
            x_hat = ops.yuv_to_rgb(yuv_back, *self.size, self.chroma)
            if device.type == "cuda":
                staging.consumed = torch.cuda.Event()
                staging.consumed.record(torch.cuda.current_stream(device))
        finally:
            self._release()
        if bool(self._non_finite):
            raise ValueError("x_bar holds NaN or infinite values; pixels must be finite")
        return x_hat, [int(b) for b in nbits]

    def abandon(self) -> None:
        """After a failure between start and finish: let the pool finish with the buffers."""
        try:
            self._future.result()
        except Exception:
            pass  # the caller is already raising the error that matters
        finally:
            self._release()
