"""Encoding a folder of images: read, preprocess (optional NPP), encode, write, in parallel.

Stages, each in its own threads, joined by bounded queues so that memory stays bounded
and every stage works at the same time::

    feeder --(reader pool, `workers` threads: read, hash, resume check, Pillow decode)-->
    [decoded, bounded] --NPP thread (optional: batches by padded size on the device)-->
    [ready images, bounded] --2 encoder drivers: bpg.encode_batch(chunk, threads=T)-->
    atomic write, optional decode check, journal line --> main thread (progress, records)

The two encoder drivers share the codec's C++ thread pool: while one waits for the last
images of its chunk, the other's images occupy the free workers, so no core waits at a
chunk boundary. Pillow and the codec release the GIL, and so do torch's kernels.

Outputs do not depend on timing: an image's bytes depend only on its pixels, the settings
and (with an NPP) the fixed batch size and device type (see :mod:`.npp_stage`), so the
order in which threads finish changes nothing but the order of journal lines; the shard
file and the manifest are sorted.

Errors: an input's problem becomes a failed record and the run goes on; a problem writing
outputs (a full disk, an unwritable folder) stops the run and is raised as an OSError
naming the file; the temporary file is removed, completed outputs and the journal stay
for a resume.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import bpg
from .._fileio import write_atomic
from .discovery import (
    Item,
)
from .progress import Progress
from .records import (
    InputError,
    decode_source,
    make_record,
    output_error,
    read_source,
    reusable,
    sha256,
    verify_output,
)

__all__ = ["Run", "cpu_count"]


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Stopped(BaseException):
    """Raised in a stage when the run is being stopped (a BaseException, so that the
    handlers of an input's own errors let it through)."""


@dataclass
class _Decoded:
    item: Item
    source_sha256: str
    image: np.ndarray
    cost: int  #: bytes of the memory budget it holds until written


class _Budget:
    """Bytes of decoded pixels alive in the pipeline, capped (one image always fits)."""

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self.limit, self.used, self.stop = limit, 0, stop
        self._cv = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cv:
            while self.used > 0 and self.used + n > self.limit:
                if self.stop.is_set():
                    raise _Stopped
                self._cv.wait(0.1)
            self.used += n

    def release(self, n: int) -> None:
        with self._cv:
            self.used -= n
            self._cv.notify_all()


_END = object()


class Run:
    """The threads and queues of one run (see the module doc); ``execute`` runs it."""

    def __init__(self, job: dict[str, Any], items: list[Item], previous: dict, journal) -> None:
        self.job, self.items, self.previous, self.journal = job, items, previous, journal
        self.settings = job["settings"]
        self.stop = threading.Event()
        self.error: BaseException | None = None
        threads = job["threads"] or cpu_count()
        self.chunk = threads
        self.decoded: queue.Queue = queue.Queue(maxsize=4 * job["workers"])
        self.ready: queue.Queue = queue.Queue(maxsize=3 * threads)
        self.results: queue.Queue = queue.Queue()
        npp = job["npp"]
        self.window = 4 * npp.batch + 2 * threads if npp is not None else 0
        self.budget = _Budget(job["memory_budget"], self.stop)

    # ---- plumbing ------------------------------------------------------------------

    def _put(self, q: queue.Queue, value: Any) -> None:
        while not self.stop.is_set():
            try:
                q.put(value, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _get(self, q: queue.Queue, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
        raise _Stopped

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except _Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                if self.error is None:
                    self.error = e
                self.stop.set()

        t = threading.Thread(target=body, name=name, daemon=True)
        t.start()
        return t

    def _out_path(self, item: Item) -> str:
        return os.path.join(self.job["output_root"], *item.output.split("/"))

    # ---- stage 1: read ---------------------------------------------------------------

    def _read(self, item: Item) -> Any:
        src = os.path.join(self.job["input_root"], *item.source.split("/"))
        try:
            data = read_source(src)
        except InputError as e:
            return make_record(item, self.settings, reason=str(e)), "failed"
        digest = sha256(data)
        out = self._out_path(item)
        for rec in self.previous.get(item.source, ()):
            again = reusable(rec, item, self.settings, digest, out)
            if again is None:
                continue
            if self.job["verify"] and verify_output(out, again["height"], again["width"]):
                break  # a stored output that no longer decodes: redo it
            return again, "reused"
        held = []

        def reserve(height: int, width: int) -> None:
            self.budget.acquire(height * width * 3)
            held.append(height * width * 3)

        try:
            image = decode_source(data, reserve)
        except InputError as e:
            for n in held:
                self.budget.release(n)
            return make_record(item, self.settings, reason=str(e), source_sha256=digest), "failed"
        return _Decoded(item, digest, image, sum(held))

    def _feed(self, pool: concurrent.futures.Executor) -> None:
        # Results are handed on as they come, not in order: a read waiting for the memory
        # budget must not hold up finished ones (they hold budget the encoders must free).
        limit = 2 * self.job["workers"] + 2
        pending: set = set()

        def hand_on(result: Any) -> None:
            if isinstance(result, _Decoded):
                self._put(self.decoded if self.job["npp"] else self.ready, result)
            else:
                self.results.put(result)

        def hand_on_some() -> set:
            done, left = concurrent.futures.wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                hand_on(f.result())
            return left

        for item in self.items:
            if self.stop.is_set():
                raise _Stopped
            pending.add(pool.submit(self._read, item))
            while len(pending) >= limit:
                pending = hand_on_some()
        while pending:
            pending = hand_on_some()
        self._put(self.decoded if self.job["npp"] else self.ready, _END)

    # ---- stage 2: NPP ----------------------------------------------------------------

    def _preprocess(self) -> None:
        npp = self.job["npp"]
        groups: dict[tuple[int, int], list[_Decoded]] = {}

        def run(key: tuple[int, int], n: int) -> None:
            batch = groups[key][:n]
            del groups[key][:n]
            if not groups[key]:
                del groups[key]
            outs = npp.run([d.image for d in batch])
            for d, out in zip(batch, outs, strict=True):
                self._put(self.ready, _Decoded(d.item, d.source_sha256, out, d.cost))

        def largest() -> tuple[int, int]:
            return max(groups, key=lambda k: len(groups[k]))

        while True:
            try:
                d = self._get(self.decoded, timeout=0.02)
            except queue.Empty:
                d = None
            if d is _END:
                while groups:
                    key = largest()
                    run(key, min(npp.batch, len(groups[key])))
                self._put(self.ready, _END)
                return
            if d is not None:
                key = npp.group_key(*d.image.shape[:2])
                groups.setdefault(key, []).append(d)
                if len(groups[key]) >= npp.batch:
                    run(key, npp.batch)
                    continue
            pending = sum(len(g) for g in groups.values())
            # A partial batch runs when the encoders are about to run dry, or to bound memory.
            if pending and (pending > self.window or self.ready.qsize() < self.chunk):
                key = largest()
                run(key, min(npp.batch, len(groups[key])))

    # ---- stage 3: encode and write ---------------------------------------------------

    def _encode_chunk(self, chunk: list[_Decoded]) -> list[bytes | str]:
        """The files of a chunk; a string in place of a file is why that image failed."""
        opts, qp, threads = self.job["options"], self.job["qp"], self.job["threads"]
        images = [d.image for d in chunk]
        try:
            return list(bpg.encode_batch(images, qp, threads=threads, **opts.kwargs()))
        except ValueError:  # one bad image fails the call: find it
            out: list[bytes | str] = []
            for im in images:
                try:
                    out.append(bpg.encode(im, qp, **opts.kwargs()))
                except ValueError as e:
                    out.append(f"cannot encode: {e}")
            return out

    def _write(self, d: _Decoded, data: bytes) -> str:
        """Write one output atomically; returns its path. A failure stops the run."""
        path = self._out_path(d.item)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, data)
        except OSError as e:
            raise output_error(path, e) from e
        return path

    def _verify(self, paths: list[str], chunk: list[_Decoded]) -> list[str]:
        """Decode the written files on the codec's pool; per file "" or why it is wrong."""
        try:
            datas = []
            for p in paths:
                with open(p, "rb") as f:
                    datas.append(f.read())
            decoded = bpg.decode_batch(datas, threads=self.job["threads"], verify=True)
        except (OSError, ValueError):  # find which one
            return [verify_output(p, *d.image.shape[:2]) for p, d in zip(paths, chunk, strict=True)]
        return [
            "" if a.shape[:2] == d.image.shape[:2] else verify_output(p, *d.image.shape[:2])
            for p, a, d in zip(paths, decoded, chunk, strict=True)
        ]

    def _encode(self) -> None:
        while True:
            first = self._get(self.ready)
            if first is _END:
                self._put(self.ready, _END)  # for the other driver
                return
            chunk, end = [first], False
            while len(chunk) < self.chunk:
                try:
                    d = self.ready.get_nowait()
                except queue.Empty:
                    break
                if d is _END:
                    end = True
                    break
                chunk.append(d)
            files = self._encode_chunk(chunk)
            if self.stop.is_set():
                raise _Stopped
            good = [(d, f) for d, f in zip(chunk, files, strict=True) if isinstance(f, bytes)]
            for d, f in zip(chunk, files, strict=True):
                if isinstance(f, str):
                    rec = make_record(
                        d.item, self.settings, reason=f, source_sha256=d.source_sha256
                    )
                    self.results.put((rec, "failed"))
            paths = []
            for d, data in good:
                if self.stop.is_set():
                    raise _Stopped
                paths.append(self._write(d, data))
            checks = self._verify(paths, [d for d, _ in good]) if self.job["verify"] else None
            for i, (d, data) in enumerate(good):
                reason = checks[i] if checks else ""
                if reason:
                    os.unlink(paths[i])
                    rec = make_record(
                        d.item, self.settings, reason=reason, source_sha256=d.source_sha256
                    )
                    self.results.put((rec, "failed"))
                    continue
                h, w = d.image.shape[:2]
                rec = make_record(
                    d.item, self.settings, height=h, width=w, nbytes=len(data),
                    source_sha256=d.source_sha256, output_sha256=sha256(data),
                )  # fmt: skip
                self.journal.append(rec)
                self.results.put((rec, "written"))
            for d in chunk:
                self.budget.release(d.cost)
            if end:
                self._put(self.ready, _END)
                return

    # ---- main ------------------------------------------------------------------------

    def execute(self, progress: Progress) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Run every stage; returns the records and counts by kind (written/reused/failed)."""
        counts = {"written": 0, "reused": 0, "failed": 0}
        records: list[dict[str, Any]] = []
        pool = concurrent.futures.ThreadPoolExecutor(self.job["workers"], "npp-ext-read")
        threads = [self._thread(lambda: self._feed(pool), "npp-ext-feed")]
        if self.job["npp"] is not None:
            threads.append(self._thread(self._preprocess, "npp-ext-npp"))
        threads += [self._thread(self._encode, f"npp-ext-encode-{i}") for i in range(2)]
        try:
            while len(records) < len(self.items):
                try:
                    rec, kind = self._get(self.results)
                except _Stopped:
                    break
                records.append(rec)
                counts[kind] += 1
                if kind == "reused":  # the old record's file may be gone after this run
                    self.journal.append(rec, sync=False)
                if kind == "failed":
                    progress.message(f"npp-ext: failed: {rec['source']}: {rec['reason']}")
                progress.advance(failed=kind == "failed")
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=60)
            pool.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            raise self.error
        return records, counts
