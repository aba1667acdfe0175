"""Determinism across calls, batches and threads; the GIL is released while coding."""

from __future__ import annotations

import faulthandler
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import child_env

from npp_ext import bpg

WATCHDOG_S = 240  # ends the process with tracebacks if the encoder pool deadlocks


@pytest.fixture
def watchdog():
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def mixed_images(photos) -> list[np.ndarray]:
    """5x5, 40x40 and 128x96 crops interleaved (three CTU configurations), three of each."""
    out = []
    for k, name in enumerate(["astronaut", "chelsea", "coffee"]):
        src = photos[name]
        for h, w in [(5, 5), (40, 40), (96, 128)]:
            y, x = 17 * k + h, 29 * k + w
            out.append(np.ascontiguousarray(src[y : y + h, x : x + w]))
    return out


def test_same_input_same_bytes_every_time(photo_crop):
    img = photo_crop(48, 64, index=1)
    first = bpg.encode(img, 27)
    for _ in range(3):
        assert bpg.encode(img, 27) == first


def test_same_bytes_after_encoding_other_images(photo_crop, random_image):
    """Encoder contexts are reused: nothing of an earlier image or option leaks into a file."""
    img = photo_crop(40, 40, index=2)
    settings = [
        dict(qp=30),
        dict(qp=30, chroma="444"),
        dict(qp=12, chroma="gray"),
        dict(qp=45, chroma="422", level=3),
    ]
    reference = [bpg.encode(img, **s) for s in settings]
    others = [
        (random_image(40, 40), dict(qp=5)),
        (photo_crop(5, 5, index=3), dict(qp=30)),
        (photo_crop(128, 96, index=4), dict(qp=30, chroma="444")),
        (photo_crop(40, 40, index=5), dict(qp=30, x265_params="no-sao=1")),
        (photo_crop(17, 9, index=6), dict(qp=51, level=7)),
    ]
    for other, opts in others:
        bpg.encode(other, **opts)
        for s, ref in zip(settings, reference, strict=True):
            assert bpg.encode(img, **s) == ref, (s, opts)


def test_batches_equal_single_calls_for_any_thread_count(photo_crop):
    images = [photo_crop(32, 48, index=i) for i in range(6)]
    qps = [20, 25, 30, 35, 40, 45]
    singles = [bpg.encode(im, q) for im, q in zip(images, qps, strict=True)]
    decoded = [bpg.decode(f) for f in singles]
    for threads in (1, 2, 3, None):
        res = bpg.roundtrip_batch(images, qps, threads=threads)
        assert res.files == singles, threads
        assert list(res.bits) == [8 * len(f) for f in singles]
        for got, want in zip(res.images, decoded, strict=True):
            np.testing.assert_array_equal(got, want)
        assert bpg.encode_batch(images, qps, threads=threads) == singles
        for got, want in zip(bpg.decode_batch(singles, threads=threads), decoded, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("chroma", ["420", "444"])
def test_mixed_sizes_in_one_batch(mixed_images, chroma, watchdog):
    """Interleaved sizes make the encoder pool switch CTU configurations within a batch."""
    qps = [22 + 3 * i for i in range(len(mixed_images))]
    singles = [bpg.encode(im, q, chroma=chroma) for im, q in zip(mixed_images, qps, strict=True)]
    for threads in (1, 2, 4):
        res = bpg.roundtrip_batch(mixed_images, qps, chroma=chroma, threads=threads)
        assert res.files == singles, threads
        for f, im, got in zip(res.files, mixed_images, res.images, strict=True):
            assert got.shape == im.shape
            np.testing.assert_array_equal(got, bpg.decode(f))
    # and the whole batch twice over, reversed
    twice = mixed_images + mixed_images[::-1]
    res = bpg.roundtrip_batch(twice, qps + qps[::-1], chroma=chroma, threads=2)
    assert res.files == singles + singles[::-1]


def test_concurrent_python_threads_match_sequential_calls(mixed_images, watchdog):
    """Several Python threads coding at once (the GIL is released) give sequential results."""
    images = mixed_images
    files = [bpg.encode(im, 30) for im in images]
    decoded = [bpg.decode(f) for f in files]
    res444 = bpg.roundtrip_batch(images, 33, chroma="444", threads=2)

    def work(k: int) -> None:
        order = list(range(len(images)))[k % 3 :] + list(range(len(images)))[: k % 3]
        for _ in range(2):
            for i in order:
                assert bpg.encode(images[i], 30) == files[i]
                np.testing.assert_array_equal(bpg.decode(files[i]), decoded[i])
            res = bpg.roundtrip_batch(images, 33, chroma="444", threads=2)
            assert res.files == res444.files
            for got, want in zip(bpg.decode_batch(files, threads=2), decoded, strict=True):
                np.testing.assert_array_equal(got, want)
            rec, bits = bpg.roundtrip(images[k % len(images)], 30)
            np.testing.assert_array_equal(rec, decoded[k % len(images)])
            assert bits == 8 * len(files[k % len(images)])

    with ThreadPoolExecutor(max_workers=4) as pool:
        for fut in [pool.submit(work, k) for k in range(4)]:
            fut.result()


def test_concurrent_threads_with_different_ctu_sizes(photo_crop, watchdog):
    """One thread only tiny images (16x16 CTU), one only large ones (64x64 CTU), at once."""
    tiny = [photo_crop(6, 7, index=i) for i in range(8)]
    large = [photo_crop(128, 160, index=i) for i in range(3)]
    want_tiny = [bpg.encode(im, 28) for im in tiny]
    want_large = [bpg.encode(im, 28) for im in large]

    def run(images, want, rounds):
        for _ in range(rounds):
            for im, w in zip(images, want, strict=True):
                assert bpg.encode(im, 28) == w

    with ThreadPoolExecutor(max_workers=3) as pool:
        futs = [
            pool.submit(run, tiny, want_tiny, 6),
            pool.submit(run, large, want_large, 2),
            pool.submit(run, tiny[::-1], want_tiny[::-1], 6),
        ]
        for f in futs:
            f.result()


def _runs_concurrently(call) -> tuple[int, float]:
    """Python ticks seen in the middle 60% of call()'s duration, and the duration.

    A ticker thread records timestamps as fast as it can. While call() holds the GIL the
    ticker cannot run, so ticks inside the call's window prove the GIL was released.
    """
    ticks: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def ticker():
        started.set()
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=ticker, daemon=True)
    t.start()
    started.wait()
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    t.join()
    d = t1 - t0
    lo, hi = t0 + 0.2 * d, t1 - 0.2 * d
    return sum(lo <= x <= hi for x in ticks), d


def _assert_gil_released(call, what: str) -> None:
    # A call holding the GIL never lets a tick in; a loaded machine may starve the ticker
    # once, so three tries. On a machine fast enough to finish in under 30 ms the call is
    # repeated (each repetition holds or releases the GIL just the same).
    repeat = 1
    seen = []
    while len(seen) < 3:
        inside, duration = _runs_concurrently(lambda n=repeat: [call() for _ in range(n)])
        if duration < 0.03 and repeat < 1024:
            repeat *= 4
            continue
        if inside > 0:
            return
        seen.append(f"{duration * 1000:.0f} ms for {repeat}")
    raise AssertionError(f"no Python ran during {what} ({', '.join(seen)})")


def test_gil_is_released_while_encoding(photos):
    img = np.ascontiguousarray(photos["astronaut"][:256, :256])
    _assert_gil_released(lambda: bpg.encode(img, 22, level=9), "encode")


def test_gil_is_released_in_batch_calls(photos):
    images = [np.ascontiguousarray(photos["coffee"][:192, i * 64 : i * 64 + 192]) for i in range(4)]
    _assert_gil_released(
        lambda: bpg.roundtrip_batch(images, 22, threads=2, level=9), "roundtrip_batch"
    )
    files = bpg.encode_batch(images, 10, level=1)
    _assert_gil_released(lambda: bpg.decode_batch(files * 8, threads=1), "decode_batch")


def test_a_bytearray_cannot_be_resized_while_a_batch_decodes_it(photos):
    """The native code reads the bytes without the GIL: it holds the buffer export meanwhile."""
    data = bytearray(bpg.encode(np.ascontiguousarray(photos["astronaut"]), 22))
    box: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: box.update(out=bpg.decode_batch([data] * 24, threads=1))
    )
    worker.start()
    time.sleep(0.05)
    assert worker.is_alive(), "the batch ended before the resize was tried: make it longer"
    with pytest.raises(BufferError):
        data.extend(b"\0")
    worker.join()
    assert len(box["out"]) == 24
    data.extend(b"\0")  # free again once the call has returned


def _run_child(code: str, timeout: float) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter; (its stdout, seconds it took)."""
    import subprocess
    import sys

    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
        env=child_env(),
    )
    return p.stdout + p.stderr, time.monotonic() - t0


def test_ctrl_c_stops_a_long_batch():
    """Python checks for signals while a batch runs: Ctrl-C does not wait for the last image.

    Judged against this machine's own speed: after the signal, only the images already
    being coded (one per thread) may finish, not the 20 rounds left of the batch.
    """
    code = """
import os, signal, threading, time
import numpy as np
from npp_ext import bpg
imgs = np.random.default_rng(0).integers(0, 256, (40, 512, 512, 3), np.uint8)
t = time.monotonic()
bpg.roundtrip_batch(imgs[:2], 22, level=8, threads=2)
one_round = time.monotonic() - t
fired = {}
def fire():
    fired["t"] = time.monotonic()
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(2 * one_round, fire).start()
try:
    bpg.roundtrip_batch(imgs, 22, level=8, threads=2)
    print("finished")
except KeyboardInterrupt:
    print("interrupted lag %.3f round %.3f" % (time.monotonic() - fired["t"], one_round))
"""
    out, _ = _run_child(code, timeout=300)
    assert "interrupted lag" in out, out
    words = out.split("interrupted lag")[1].split()
    lag, one_round = float(words[0]), float(words[2])
    assert lag < 2 * one_round + 0.5, out  # the batch had about 18 rounds left


def test_running_out_of_threads_is_not_a_hang():
    """Past the system's thread limit the pool runs with the workers it could start.

    (One image: x265 itself may hang when it cannot start its own threads.)
    """
    code = """
import resource
import numpy as np
from npp_ext import bpg
img = np.zeros((16, 16, 3), np.uint8)
bpg.encode_batch([img], 30, threads=1)
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
# 1 GiB more address space: far fewer than 1024 thread stacks of 8 MiB fit
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
files = bpg.encode_batch([img], 30, threads=1024)
print("ok", len(files))
"""
    out, _ = _run_child(code, timeout=90)
    assert "ok 1" in out, out


def test_a_stale_tmpdir_does_not_stop_encoding(monkeypatch, tmp_path):
    """x265's lambda tables go through a temporary file: a TMPDIR that does not exist falls
    back to /tmp, as Python's tempfile does, instead of failing every encode."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "gone"))
    code = """
import numpy as np
from npp_ext import bpg
img = np.zeros((16, 16, 3), np.uint8)
print("decoded", bpg.decode(bpg.encode(img, 30)).shape)
"""
    out, _ = _run_child(code, timeout=120)
    assert "decoded (16, 16, 3)" in out, out


def test_threads_reach_the_pool():
    """The pool grows to what a batch asks for: one more thread than cores shows it."""
    code = """
import os
import numpy as np
from npp_ext import bpg, _bpg
n = (os.cpu_count() or 1) + 1
img = np.zeros((16, 16, 3), np.uint8)
bpg.roundtrip_batch([img] * 2, 30, threads=n)
print("pool", _bpg.pool_threads(1), "want", n)
bpg.decode_batch(bpg.encode_batch([img], 30), threads=n + 1)
print("pool", _bpg.pool_threads(1), "want", n + 1)
"""
    out, _ = _run_child(code, timeout=120)
    sizes = [line.split() for line in out.splitlines() if line.startswith("pool")]
    assert len(sizes) == 2, out
    for _, got, _, want in sizes:
        assert int(got) == int(want), out
