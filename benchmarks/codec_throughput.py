#!/usr/bin/env python3
"""Throughput of npp_ext's in-process BPG round trip against two baselines.

For RGB crops of real photos (scikit-image's astronaut, chelsea and coffee; photos smaller
than a crop are mirror-tiled), at one QP (37 by default), for each size, compression level
and thread count this measures images per second of:

  (a) ``npp_ext.bpg.roundtrip_batch`` on a stacked (N, H, W, 3) uint8 batch with
      ``threads=t``: RGB in, RGB out, plus the .bpg files and their bits;
  (b) bare x265 encode + libde265 decode of the same YUV 4:2:0 (``npp_ext.bpg.rgb_to_yuv``)
      with a fresh x265 encoder and a fresh libde265 decoder per image, the same x265
      parameters and slice QP as ours: ``benchmarks/native/naive_roundtrip.cpp``, compiled
      on first use into ``build/bench/``; t std::threads share the images; it times its own
      loop, so process start-up and file reading are excluded;
  (c) the subprocess pipeline of research code: per image write a PNG (Pillow), run
      ``bpgenc-npp``, run ``bpgdec-npp``, read the PNG back (Pillow); t workers of a
      ThreadPoolExecutor; the whole loop is timed.

(a) and (c) include the RGB <-> YUV conversions, (b) does not. Every measurement first
runs a few untimed images (warm-up, and an estimate of the time per image), then sizes its
batch to take about ``--seconds`` (a multiple of the crop pool, at least ``--min-images``);
the reported rate is the median over ``--repeats`` runs. Runs wait for an idle machine
and are redone when other processes took CPU meanwhile (see --max-foreign). Before timing,
one image per size and level is checked: (b)'s decoded YUV must equal ours (same
parameters, same slice QP) and (c)'s decoded RGB must equal (a)'s. benchmarks/README.md
has the details.

Prints a markdown table and the targets (PASS/MISS with the measured ratios). It never
fails on timings: the exit code is 0 unless the benchmark itself cannot run.

Usage:
  PYTHONPATH=. python benchmarks/codec_throughput.py [--quick] [--sizes 64,256,512]
      [--levels 1,5,8] [--threads 1,2] [--repeats 3] [--seconds 1.5] [--qp 37]
      [--json out.json] [--breakdown] [--methods a,b,c]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:  # the package as built in the source tree, unless it is importable already
    import npp_ext  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))
NATIVE_SRC = ROOT / "benchmarks" / "native" / "naive_roundtrip.cpp"
BENCH_BUILD = ROOT / "build" / "bench"
TOOLS_BUILD = ROOT / "build" / "bench-tools"
LIBBPG = ROOT / "third_party" / "libbpg"

POOL_PER_PHOTO = 4  # distinct crops per photo and size: a pool of 12 images, interleaved
METHODS = ("a", "b", "c")
METHOD_NAMES = {
    "a": "(a) npp_ext roundtrip_batch",
    "b": "(b) naive x265+libde265",
    "c": "(c) subprocess bpgenc/bpgdec",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Images
# --------------------------------------------------------------------------- #


def load_photos() -> list[tuple[str, np.ndarray]]:
    from skimage import data

    return [
        (name, np.ascontiguousarray(getattr(data, name)()))
        for name in ("astronaut", "chelsea", "coffee")
    ]


def crop_pool(photos: list[tuple[str, np.ndarray]], size: int) -> np.ndarray:
    """(P, size, size, 3) crops, photos interleaved so that any prefix mixes them."""
    rng = np.random.default_rng(1234 + size)
    per_photo = []
    for _, img in photos:
        h, w = img.shape[:2]
        if h < size or w < size:  # mirror-tile a photo smaller than the crop
            img = np.pad(
                img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric"
            )
            h, w = img.shape[:2]
        crops = []
        for _ in range(POOL_PER_PHOTO):
            y = int(rng.integers(0, h - size + 1))
            x = int(rng.integers(0, w - size + 1))
            crops.append(img[y : y + size, x : x + size])
        per_photo.append(crops)
    pool = [per_photo[p][k] for k in range(POOL_PER_PHOTO) for p in range(len(photos))]
    return np.ascontiguousarray(np.stack(pool))


def batch_of(pool: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(pool[np.arange(n) % len(pool)])


# --------------------------------------------------------------------------- #
# Builds
# --------------------------------------------------------------------------- #


def build_naive() -> Path:
    exe = BENCH_BUILD / "naive_roundtrip"
    if exe.exists() and exe.stat().st_mtime >= NATIVE_SRC.stat().st_mtime:
        return exe
    BENCH_BUILD.mkdir(parents=True, exist_ok=True)
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "x265", "libde265"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    cmd = ["g++", "-O2", "-std=c++17", "-o", str(exe), str(NATIVE_SRC), *flags, "-pthread"]
    log("compiling: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    return exe


TOOLS_STALE = [False]  # set when an up-to-date rebuild of the tools failed


def find_tools(bpgenc: str | None, bpgdec: str | None) -> tuple[Path, Path]:
    """The tools for (c): given ones, else build/bench-tools/ configured if needed and
    brought up to date (an incremental build, so they encode like the current library)."""
    if bpgenc and bpgdec:
        return Path(bpgenc), Path(bpgdec)
    enc, dec = TOOLS_BUILD / "bpgenc-npp", TOOLS_BUILD / "bpgdec-npp"
    if (LIBBPG / "tools" / "bpgenc.cpp").exists():
        if not (TOOLS_BUILD / "CMakeCache.txt").exists():
            log("configuring bpgenc-npp / bpgdec-npp in " + str(TOOLS_BUILD))
            configure = ["cmake", "-S", str(LIBBPG), "-B", str(TOOLS_BUILD), "-G", "Ninja"]
            configure += ["-DCMAKE_BUILD_TYPE=Release", "-DBPG_BUILD_TOOLS=ON"]
            configure += ["-DBPG_BUILD_TESTS=OFF"]
            subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
        r = subprocess.run(["cmake", "--build", str(TOOLS_BUILD)], capture_output=True, text=True)
        if r.returncode != 0:
            if not (enc.exists() and dec.exists()):
                raise RuntimeError("building the tools failed:\n" + r.stdout[-2000:])
            log("warning: could not rebuild the tools; using the existing (older) binaries")
            TOOLS_STALE[0] = True
    elif not (enc.exists() and dec.exists()):
        raise RuntimeError("third_party/libbpg/tools/bpgenc.cpp does not exist yet")
    return Path(bpgenc) if bpgenc else enc, Path(bpgdec) if bpgdec else dec


def stale_module_note() -> str | None:
    """A note when the built npp_ext._bpg is older than the codec sources it is built from."""
    from npp_ext import _bpg

    built = Path(_bpg.__file__).stat().st_mtime
    sources = [
        f
        for d in (LIBBPG / "src", LIBBPG / "include", ROOT / "csrc" / "bpg")
        if d.is_dir()
        for f in d.rglob("*")
        if f.is_file() and f.stat().st_mtime > built
    ]
    if not sources:
        return None
    names = ", ".join(str(f.relative_to(ROOT)) for f in sources[:4])
    return (
        f"npp_ext._bpg is older than {len(sources)} codec source file(s) ({names}): "
        "(a) measures the module as built, which may not be the current code"
    )


# --------------------------------------------------------------------------- #
# The three methods: each run(images, threads) -> seconds
# --------------------------------------------------------------------------- #


class Ours:
    def __init__(self, qp: int, level: int) -> None:
        from npp_ext import bpg

        self.bpg, self.qp, self.level = bpg, qp, level

    def run(self, images: np.ndarray, threads: int) -> float:
        t0 = time.perf_counter()
        self.bpg.roundtrip_batch(images, self.qp, chroma="420", level=self.level, threads=threads)
        return time.perf_counter() - t0


class Naive:
    def __init__(self, exe: Path, qp: int, level: int, workdir: Path) -> None:
        from npp_ext import bpg

        self.bpg, self.exe, self.qp, self.level, self.workdir = bpg, exe, qp, level, workdir
        self._cache: dict[tuple[int, int, int], Path] = {}

    def yuv_file(self, images: np.ndarray) -> Path:
        n, h, w, _ = images.shape
        key = (n, h, w)
        if key not in self._cache:
            path = self.workdir / f"in_{w}x{h}_{n}.yuv"
            with open(path, "wb") as f:
                for im in images:
                    f.write(self.bpg.rgb_to_yuv(im, "420").tobytes())
            self._cache[key] = path
        return self._cache[key]

    def invoke(
        self, images: np.ndarray, threads: int, out: Path | None = None, warmup: int = 1
    ) -> tuple[float, int]:
        n, h, w, _ = images.shape
        cmd = [
            str(self.exe),
            str(self.yuv_file(images)),
            str(w),
            str(h),
            str(self.qp),
            str(self.level),
            str(threads),
            "--warmup",
            str(warmup),
        ]
        if out is not None:
            cmd += ["--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"naive_roundtrip failed ({r.returncode}): {r.stderr.strip()}")
        m = re.search(r"elapsed_s=([0-9.eE+-]+) images=(\d+) bytes=(\d+)", r.stdout)
        if m is None or int(m.group(2)) != n:
            raise RuntimeError(f"unexpected naive_roundtrip output: {r.stdout!r}")
        return float(m.group(1)), int(m.group(3))

    def run(self, images: np.ndarray, threads: int) -> float:
        return self.invoke(images, threads)[0]


class Subprocess:
    def __init__(self, bpgenc: Path, bpgdec: Path, qp: int, level: int, workdir: Path) -> None:
        self.enc, self.dec, self.qp, self.level, self.workdir = bpgenc, bpgdec, qp, level, workdir

    def one(self, i: int, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        src = self.workdir / f"img{i}.png"
        bpg = self.workdir / f"img{i}.bpg"
        dst = self.workdir / f"img{i}.dec.png"
        Image.fromarray(image).save(src)
        subprocess.run(
            [
                str(self.enc),
                "-q",
                str(self.qp),
                "-m",
                str(self.level),
                "-f",
                "420",
                "-o",
                str(bpg),
                str(src),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        subprocess.run(
            [str(self.dec), "-o", str(dst), str(bpg)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with Image.open(dst) as im:
            return np.asarray(im.convert("RGB"))

    def run(self, images: np.ndarray, threads: int) -> float:
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:
            list(ex.map(self.one, range(len(images)), images))
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- #
# Measurement
# --------------------------------------------------------------------------- #


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (steal included) since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_wait_budget = [0.0]  # seconds of idle-waiting left for the whole benchmark


def wait_for_idle(max_wait: float, max_foreign: float) -> bool:
    """Wait up to max_wait s (within the benchmark's waiting budget) for a 0.5 s window in
    which the machine is (nearly) idle."""
    start = time.perf_counter()
    deadline = start + min(max_wait, _wait_budget[0])
    try:
        while True:
            b0, t0 = _busy_seconds(), time.perf_counter()
            time.sleep(0.5)
            busy = (_busy_seconds() - b0) / (time.perf_counter() - t0)
            if busy <= max_foreign:
                return True
            if time.perf_counter() >= deadline:
                return False
    except (OSError, ValueError):
        return True
    finally:
        _wait_budget[0] = max(0.0, _wait_budget[0] - (time.perf_counter() - start))


def timed_run(
    run: Callable[[np.ndarray, int], float], images: np.ndarray, threads: int
) -> tuple[float, float]:
    """(seconds as the method reports them, CPU cores used by other processes meanwhile)."""
    try:
        busy0, own0, w0 = _busy_seconds(), _own_seconds(), time.perf_counter()
    except (OSError, ValueError):  # no /proc/stat: no contention estimate
        return run(images, threads), 0.0
    secs = run(images, threads)
    wall = time.perf_counter() - w0
    foreign = (_busy_seconds() - busy0) - (_own_seconds() - own0)
    return secs, max(0.0, foreign / max(wall, 1e-9))


def measure(
    run: Callable[[np.ndarray, int], float],
    pool: np.ndarray,
    threads: int,
    seconds: float,
    repeats: int,
    min_images: int,
    max_images: int,
    max_foreign: float,
    retries: int,
    wait_idle: float,
) -> dict[str, Any]:
    """Warm up, size the batch to about `seconds`, and time `repeats` runs.

    Before each run it waits up to `wait_idle` s for the machine to be idle. A run during
    which other processes used more than `max_foreign` CPU cores is run again (up to
    `retries` times); the least disturbed attempt is kept.
    """

    def settle() -> None:
        if wait_idle > 0:
            wait_for_idle(wait_idle, max_foreign)

    # Calibrate: grow a probe batch until it runs a quarter of the target (the first, small
    # runs double as warm-up), then size the measured batch from the last probe.
    n = max(2 * threads, 2)
    run(batch_of(pool, n), threads)  # untimed warm-up
    while True:
        settle()
        t_probe = run(batch_of(pool, n), threads)
        if t_probe >= 0.25 * seconds or n >= max_images:
            break
        n = min(max_images, int(n * min(8.0, max(2.0, 0.3 * seconds / max(t_probe, 1e-6)))))
    per_image = max(t_probe / n, 1e-6)
    unit = len(pool)
    n = max(min_images, min(math.ceil(seconds / per_image), max_images))
    if n >= unit:
        n = math.ceil(n / unit) * unit
    n = math.ceil(n / threads) * threads
    images = batch_of(pool, n)
    times, foreign, reruns = [], [], 0
    for _ in range(repeats):
        settle()
        best = timed_run(run, images, threads)
        for _ in range(retries):
            if best[1] <= max_foreign:
                break
            reruns += 1
            settle()
            again = timed_run(run, images, threads)
            if again[1] < best[1]:
                best = again
        times.append(best[0])
        foreign.append(best[1])
    med = statistics.median(times)
    return {
        "images": n,
        "seconds": times,
        "foreign_cores": foreign,
        "reruns": reruns,
        "contended": max(foreign) > max_foreign,
        "median_s": med,
        "img_per_s": n / med,
        "ms_per_img": 1000.0 * med / n,
        "probe_ms_per_img": 1000.0 * per_image,
    }


def check_cell(
    pool: np.ndarray,
    qp: int,
    level: int,
    naive: Naive | None,
    sub: Subprocess | None,
    workdir: Path,
) -> list[str]:
    """One image: (b)'s decoded YUV == ours, (c)'s decoded RGB == (a)'s."""
    from npp_ext import bpg

    notes = []
    img = pool[:1]
    h, w = img.shape[1:3]
    rt = bpg.roundtrip_batch(img, qp, chroma="420", level=level, threads=1)
    if naive is not None:
        out = workdir / "check.yuv"
        _, nbytes = naive.invoke(img, 1, out=out, warmup=0)
        ours_yuv, _ = bpg.decode_yuv(rt.files[0])
        theirs = np.fromfile(out, np.uint8)
        if theirs.shape != ours_yuv.shape or not np.array_equal(theirs, ours_yuv):
            d = (
                np.abs(theirs.astype(int) - ours_yuv.astype(int)).max()
                if theirs.shape == ours_yuv.shape
                else "shape"
            )
            notes.append(
                f"{w}x{h} level {level}: (b) decodes differently from ours (max |diff| {d})"
            )
        else:
            log(
                f"  check {w}x{h} L{level}: (b) decoded YUV identical to ours "
                f"({len(rt.files[0])} B .bpg vs {nbytes} B Annex-B)"
            )
    if sub is not None:
        dec = sub.one(999999, img[0])
        if not np.array_equal(dec, rt.images[0]):
            notes.append(
                f"{w}x{h} level {level}: (c) decodes differently from (a) "
                f"(max |diff| {np.abs(dec.astype(int) - rt.images[0]).max()})"
            )
        else:
            log(f"  check {w}x{h} L{level}: (c) decoded RGB identical to (a)")
    return notes


def _ms_per_item(fn: Callable[[Any], Any], items: list[Any], passes: int = 3) -> float:
    """Milliseconds per item of fn over items: the fastest of `passes` timed passes, each
    after waiting (briefly) for an idle machine, after one untimed pass."""
    for it in items:
        fn(it)
    best = math.inf
    for _ in range(passes):
        wait_for_idle(5.0, 0.15)
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / len(items)


def breakdown(pools: dict[int, np.ndarray], levels: list[int], qp: int) -> list[dict[str, Any]]:
    """Per-stage time of our path, one thread, one call per image (Python call overhead in),
    fastest of three passes."""
    from npp_ext import bpg

    rows = []
    for size, pool in pools.items():
        reps = max(1, int(48 * (256 / size) ** 2 // len(pool)))
        imgs = [im for _ in range(reps) for im in pool]
        yuvs = [bpg.rgb_to_yuv(im) for im in imgs]
        t_rgb2yuv = _ms_per_item(bpg.rgb_to_yuv, imgs)
        t_yuv2rgb = _ms_per_item(lambda y, s=size: bpg.yuv_to_rgb(y, s, s), yuvs)
        stack = np.stack(imgs)
        for level in levels:

            def enc(y, s=size, lv=level):
                return bpg.encode_yuv(y, s, s, qp, level=lv)

            files = [enc(y) for y in yuvs]
            t_enc = _ms_per_item(enc, yuvs)
            t_dec_yuv = _ms_per_item(bpg.decode_yuv, files)
            t_dec_rgb = _ms_per_item(bpg.decode, files)
            t_rt = _ms_per_item(
                lambda b, lv=level: bpg.roundtrip_batch(b, qp, level=lv, threads=1), [stack]
            ) / len(imgs)
            rows.append(
                {
                    "size": size,
                    "level": level,
                    "rgb_to_yuv_ms": t_rgb2yuv,
                    "encode_yuv_ms": t_enc,
                    "decode_yuv_ms": t_dec_yuv,
                    "yuv_to_rgb_ms": t_yuv2rgb,
                    "decode_rgb_ms": t_dec_rgb,
                    "roundtrip_batch_ms": t_rt,
                }
            )
    return rows


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def fmt_rate(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "n/a"
    mark = " †" if cell.get("contended") else ""
    return f"{cell['img_per_s']:.1f} ({cell['ms_per_img']:.2f} ms){mark}"


def ratio(x: dict[str, Any] | None, y: dict[str, Any] | None) -> float | None:
    if x is None or y is None:
        return None
    return x["img_per_s"] / y["img_per_s"]


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def evaluate_targets(
    results: dict[tuple[int, int, int], dict[str, Any]], levels: list[int], threads: list[int]
) -> list[dict[str, Any]]:
    def cell(size: int, level: int, t: int, m: str) -> dict[str, Any] | None:
        return results.get((size, level, t), {}).get(m)

    targets = []

    def add(name: str, r: float | None, goal: float, cmp: str = ">=") -> None:
        if r is None:
            status = "n/a"
        elif cmp == ">=":
            status = "PASS" if r >= goal else "MISS"
        else:
            status = "PASS" if r > goal else "MISS"
        targets.append(
            {"target": name, "measured": r, "goal": f"{cmp} {goal:.3g}", "status": status}
        )

    add(
        "1 thread, 256x256 level 8: (a) >= 1.25x (c)",
        ratio(cell(256, 8, 1, "a"), cell(256, 8, 1, "c")),
        1.25,
    )
    add(
        "1 thread, 256x256 level 1: (a) >= 2x (c)",
        ratio(cell(256, 1, 1, "a"), cell(256, 1, 1, "c")),
        2.0,
    )
    add(
        "1 thread, 64x64 level 8: (a) >= 3x (c)",
        ratio(cell(64, 8, 1, "a"), cell(64, 8, 1, "c")),
        3.0,
    )
    # "at most 10 % slower": time(a) <= 1.1 time(b), i.e. rate(a)/rate(b) >= 1/1.1.
    for t in threads:
        for level in levels:
            add(
                f"{t} thread(s), 256x256 level {level}: (a) at most 10% slower than (b)",
                ratio(cell(256, level, t, "a"), cell(256, level, t, "b")),
                1 / 1.1,
            )
    for t in threads:
        for level in levels:
            add(
                f"{t} thread(s), 64x64 level {level}: (a) faster than (b)",
                ratio(cell(64, level, t, "a"), cell(64, level, t, "b")),
                1.0,
                ">",
            )
    if 1 in threads and 2 in threads:
        for level in levels:
            add(
                f"256x256 level {level}: (a) 2 threads >= 1.8x 1 thread",
                ratio(cell(256, level, 2, "a"), cell(256, level, 1, "a")),
                1.8,
            )
    return targets


def print_report(
    results: dict[tuple[int, int, int], dict[str, Any]],
    targets: list[dict[str, Any]],
    breakdown_rows: list[dict[str, Any]],
    notes: list[str],
    qp: int,
) -> None:
    print(f"\n### Round-trip throughput, QP {qp}, 4:2:0 — images/s (ms/image), median of repeats\n")
    print(
        "| size | level | threads | (a) npp_ext batch | (b) naive x265+de265 "
        "| (c) subprocess tools | (a)/(c) | (a)/(b) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (size, level, t), cells in sorted(results.items()):
        a, b, c = cells.get("a"), cells.get("b"), cells.get("c")
        print(
            f"| {size}x{size} | {level} | {t} | {fmt_rate(a)} | {fmt_rate(b)} | "
            f"{fmt_rate(c)} | {fmt_ratio(ratio(a, c))} | {fmt_ratio(ratio(a, b))} |"
        )
    if any(c.get("contended") for cells in results.values() for c in cells.values()):
        print(
            "\n† other processes used more than the allowed CPU during at least one run "
            "of this cell, even after reruns: treat it as a lower bound."
        )
    print("\n### Targets\n")
    print("| target | measured | goal | result |")
    print("|---|---|---|---|")
    for tg in targets:
        print(f"| {tg['target']} | {fmt_ratio(tg['measured'])} | {tg['goal']} | {tg['status']} |")
    if breakdown_rows:
        print(
            "\n### Our path by stage, 1 thread, ms/image (one Python call per image, "
            "fastest of 3 passes)\n"
        )
        print(
            "| size | level | rgb_to_yuv | encode_yuv | decode_yuv | yuv_to_rgb "
            "| decode (to RGB) | roundtrip_batch |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in breakdown_rows:
            print(
                f"| {r['size']}x{r['size']} | {r['level']} | {r['rgb_to_yuv_ms']:.3f} | "
                f"{r['encode_yuv_ms']:.3f} | {r['decode_yuv_ms']:.3f} | "
                f"{r['yuv_to_rgb_ms']:.3f} | {r['decode_rgb_ms']:.3f} | "
                f"{r['roundtrip_batch_ms']:.3f} |"
            )
    if notes:
        print("\n### Notes\n")
        for n in notes:
            print(f"- {n}")


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: ~0.2 s per measurement, 1 repeat, small batches",
    )
    ap.add_argument("--sizes", type=int_list, default=[64, 256, 512])
    ap.add_argument("--levels", type=int_list, default=[1, 5, 8])
    ap.add_argument("--threads", type=int_list, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=None, help="runs per cell (median; 3)")
    ap.add_argument(
        "--seconds", type=float, default=None, help="target duration of one measurement (1.5)"
    )
    ap.add_argument(
        "--min-images", type=int, default=None, help="smallest batch per measurement (12, quick: 4)"
    )
    ap.add_argument("--max-images", type=int, default=20000)
    ap.add_argument("--qp", type=int, default=37)
    ap.add_argument(
        "--methods", default="a,b,c", help='subset of a,b,c ("" with --breakdown: only that)'
    )
    ap.add_argument("--bpgenc", default=None, help="bpgenc-npp to use for (c)")
    ap.add_argument("--bpgdec", default=None, help="bpgdec-npp to use for (c)")
    ap.add_argument(
        "--no-check", action="store_true", help="skip the decoded-output equality checks"
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time our path stage by stage (rgb_to_yuv, encode, decode, ...)",
    )
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.15,
        help="CPU cores other processes may use during a run before it is redone (0.15)",
    )
    ap.add_argument(
        "--retries", type=int, default=None, help="reruns of a disturbed run (2; quick: 0)"
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        help="seconds to wait before each run for the machine to be idle (20; quick: 0)",
    )
    ap.add_argument(
        "--wait-budget",
        type=float,
        default=900.0,
        help="total seconds all those waits may take (900)",
    )
    ap.add_argument("--json", default=None, help="write the raw numbers to this file")
    args = ap.parse_args(argv)

    repeats = args.repeats or (1 if args.quick else 3)
    seconds = args.seconds or (0.2 if args.quick else 1.5)
    min_images = args.min_images or (4 if args.quick else 12)
    retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    wait_idle = args.wait_idle if args.wait_idle is not None else (0.0 if args.quick else 20.0)
    _wait_budget[0] = args.wait_budget
    methods = [m for m in args.methods.split(",") if m]
    if any(m not in METHODS for m in methods):
        ap.error(f"--methods takes a subset of a,b,c, got {args.methods!r}")
    for lv in args.levels:
        if not 1 <= lv <= 9:
            ap.error(f"levels must be in 1..9, got {lv}")
    if any(t < 1 for t in args.threads):
        ap.error("threads must be >= 1")
    if any(sz < 1 for sz in args.sizes):
        ap.error("sizes must be >= 1")
    if not 0 <= args.qp <= 51:
        ap.error(f"qp must be in 0..51, got {args.qp}")

    notes: list[str] = []
    naive_exe = tools = None
    if "b" in methods:
        try:
            naive_exe = build_naive()
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            notes.append(f"(b) not measured: could not compile naive_roundtrip ({e})")
            methods.remove("b")
    if "c" in methods:
        try:
            tools = find_tools(args.bpgenc, args.bpgdec)
            if TOOLS_STALE[0]:
                notes.append(
                    "the tools could not be rebuilt from the current sources (build error); "
                    "(c) used the existing bpgenc-npp/bpgdec-npp in build/bench-tools"
                )
        except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as e:
            notes.append(f"(c) not measured: bpgenc-npp/bpgdec-npp unavailable ({e})")
            methods.remove("c")

    from npp_ext import bpg  # noqa: F401  (fail early if the module is not built)

    stale = stale_module_note()
    if stale:
        notes.append(stale)
        log(stale)

    photos = load_photos()
    pools = {size: crop_pool(photos, size) for size in args.sizes}
    load_before = os.getloadavg()
    log(f"load average before: {load_before[0]:.2f} (cores: {os.cpu_count()})")

    results: dict[tuple[int, int, int], dict[str, Any]] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="codec_bench_") as tmp:
        workdir = Path(tmp)
        for size in args.sizes:
            pool = pools[size]
            for level in args.levels:
                ours = Ours(args.qp, level)
                naive = (
                    Naive(naive_exe, args.qp, level, workdir)
                    if "b" in methods and naive_exe
                    else None
                )
                sub = (
                    Subprocess(tools[0], tools[1], args.qp, level, workdir)
                    if "c" in methods and tools
                    else None
                )
                if not args.no_check:
                    notes += check_cell(pool, args.qp, level, naive, sub, workdir)
                runners = {"a": ours, "b": naive, "c": sub}
                for t in args.threads:
                    cells: dict[str, Any] = {}
                    for m in methods:
                        runner = runners[m]
                        if runner is None:
                            continue
                        c = measure(
                            runner.run,
                            pool,
                            t,
                            seconds,
                            repeats,
                            min_images,
                            args.max_images,
                            args.max_foreign,
                            retries,
                            wait_idle,
                        )
                        cells[m] = c
                        log(
                            f"{size}x{size} L{level} t{t} ({m}): {c['img_per_s']:.1f} img/s "
                            f"over {c['images']} images, runs "
                            f"{[f'{v:.3f}' for v in c['seconds']]} s, other load "
                            f"{[f'{v:.2f}' for v in c['foreign_cores']]} cores"
                            + (f", {c['reruns']} rerun(s)" if c["reruns"] else "")
                        )
                    results[(size, level, t)] = cells
                if naive is not None:
                    for p in naive._cache.values():
                        p.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t_start
    load_after = os.getloadavg()
    log(f"load average after: {load_after[0]:.2f}; benchmark took {elapsed:.0f} s")
    contended = [
        f"{s}x{s} L{lv} t{t} ({m})"
        for (s, lv, t), cells in sorted(results.items())
        for m, c in cells.items()
        if c["contended"]
    ]
    if contended:
        notes.append(
            f"{len(contended)} measurement(s) shared the CPU with other processes "
            f"(> {args.max_foreign} cores) even after reruns: " + ", ".join(contended)
        )

    breakdown_rows = breakdown(pools, args.levels, args.qp) if args.breakdown else []
    targets = evaluate_targets(results, args.levels, args.threads)
    print_report(results, targets, breakdown_rows, notes, args.qp)

    if args.json:
        payload = {
            "qp": args.qp,
            "chroma": "420",
            "methods": {m: METHOD_NAMES[m] for m in methods},
            "repeats": repeats,
            "target_seconds": seconds,
            "max_foreign_cores": args.max_foreign,
            "retries": retries,
            "wait_idle_s": wait_idle,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_before": load_before,
                "load_after": load_after,
            },
            "cells": [
                {"size": s, "level": lv, "threads": t, **{m: c for m, c in cells.items()}}
                for (s, lv, t), cells in sorted(results.items())
            ],
            "targets": targets,
            "breakdown": breakdown_rows,
            "notes": notes,
            "elapsed_s": elapsed,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
