#!/usr/bin/env python3
"""Decoding speed when picture sizes change from one file to the next.

A folder of photos rarely holds two images of one size in a row. This decodes the same
.bpg files (crops of scikit-image's photos, ``--sizes`` distinct sizes, ``--copies`` files
of each) on one thread in two orders: grouped by size, where the decoder sees a new size
only ``--sizes`` times, and interleaved, where every file has a size other than the last.
Same files, same pixels: any gap between the two is what a change of size costs. Each
order is timed with and without verification (``bpg.decode(..., verify=)``); a row
reports the median ms per image over ``--repeats`` runs.

Prints a markdown table; the target is interleaved within 10% of grouped. Exits 0
whatever the timings.

Usage:
  PYTHONPATH=. python benchmarks/decode_mixed_sizes.py [--sizes 16] [--copies 4]
      [--repeats 5] [--qp 37]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:  # the package as built in the source tree, unless it is importable already
    import npp_ext  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))

from npp_ext import bpg  # noqa: E402


def make_files(n_sizes: int, copies: int, qp: int) -> list[list[bytes]]:
    """``copies`` .bpg files for each of ``n_sizes`` sizes from 96x64 up, grouped by size."""
    from skimage import data as skdata

    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee()]
    groups = []
    for i in range(n_sizes):
        h, w = 64 + 8 * i, 96 + 12 * i
        group = []
        for j in range(copies):
            src = photos[(i + j) % len(photos)]
            y, x = (17 * j) % (src.shape[0] - h), (29 * j) % (src.shape[1] - w)
            group.append(bpg.encode(np.ascontiguousarray(src[y : y + h, x : x + w]), qp))
        groups.append(group)
    return groups


def ms_per_image(files: list[bytes], verify: bool, repeats: int) -> float:
    """Median over ``repeats`` runs of the time to decode ``files`` in turn, per file."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in files:
            bpg.decode(f, verify=verify)
        runs.append((time.perf_counter() - t0) * 1e3 / len(files))
    return statistics.median(runs)


def main() -> int:
    """Time both orders with and without verification and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, default=16, help="distinct picture sizes")
    ap.add_argument("--copies", type=int, default=4, help="files of each size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--qp", type=int, default=37)
    args = ap.parse_args()
    if args.sizes < 2 or args.copies < 1 or args.repeats < 1:
        ap.error("need --sizes >= 2, --copies >= 1 and --repeats >= 1")

    groups = make_files(args.sizes, args.copies, args.qp)
    grouped = [f for g in groups for f in g]
    interleaved = [g[j] for j in range(args.copies) for g in groups]
    for f in grouped:  # warm-up: thread decoder, page cache, lazy imports
        bpg.decode(f)

    print(
        f"{len(grouped)} files, {args.sizes} sizes (96x64 to "
        f"{96 + 12 * (args.sizes - 1)}x{64 + 8 * (args.sizes - 1)}), QP {args.qp}, 1 thread"
    )
    print()
    print("| verify | grouped (ms/image) | interleaved (ms/image) | ratio | target <= 1.10 |")
    print("|---|---|---|---|---|")
    for verify in (False, True):
        g = ms_per_image(grouped, verify, args.repeats)
        i = ms_per_image(interleaved, verify, args.repeats)
        verdict = "PASS" if i / g <= 1.10 else "MISS"
        print(f"| {verify} | {g:.2f} | {i:.2f} | {i / g:.2f}x | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
