"""Latency of a small encode while other threads keep the encoder pool busy with big ones.

x265 keeps its CTU size in process globals, so the encoder pool runs one CTU configuration
at a time (README, "Notes on compatibility"). Here ``--busy`` threads encode 128x128
pictures (CTU 64) back to back while one thread encodes 8x8 pictures (CTU 16) one at a
time; the table gives that thread's latency per encode, and how many big encodes finished
while it waited. A fair pool switches as soon as the encodes in flight end.

    PYTHONPATH=. .venv/bin/python benchmarks/pool_switch_latency.py [--busy 3] [--small 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from npp_ext import bpg


def main() -> None:
    """Run the measurement and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=3, help="threads encoding 128x128 (3)")
    ap.add_argument("--small", type=int, default=10, help="8x8 encodes measured (10)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (128, 128, 3), np.uint8)
    small = rng.integers(0, 256, (8, 8, 3), np.uint8)
    bpg.encode(small, 30, level=1)  # load x265 and the lambda tables once
    stop = threading.Event()
    done = [0] * args.busy

    def busy(i: int) -> None:
        while not stop.is_set():
            bpg.encode(big, 30, level=1)
            done[i] += 1

    workers = [threading.Thread(target=busy, args=(i,)) for i in range(args.busy)]
    for w in workers:
        w.start()
    while sum(done) < 3 * args.busy:  # the big configuration is busy on every thread
        time.sleep(0.01)
    t0 = time.perf_counter()
    alone = []
    latencies, overtaken = [], []
    for _ in range(args.small):
        before = sum(done)
        t = time.perf_counter()
        bpg.encode(small, 30, level=1)
        latencies.append(time.perf_counter() - t)
        overtaken.append(sum(done) - before)
        resume = sum(done)
        while sum(done) < resume + args.busy:  # let the big configuration come back
            time.sleep(0.001)
    busy_rate = sum(done) / (time.perf_counter() - t0)
    stop.set()
    for w in workers:
        w.join()
    for _ in range(args.small):
        t = time.perf_counter()
        bpg.encode(small, 30, level=1)
        alone.append(time.perf_counter() - t)

    ms = [1000 * x for x in latencies]
    print(f"{args.busy} threads encoding 128x128 (level 1), one thread encoding 8x8")
    print("| 8x8 encode | median ms | worst ms | big encodes finished while it waited (worst) |")
    print("|---|---:|---:|---:|")
    print(
        f"| beside the busy threads | {statistics.median(ms):.1f} | {max(ms):.1f} | "
        f"{max(overtaken)} |"
    )
    print(f"| alone | {1000 * statistics.median(alone):.2f} | {1000 * max(alone):.2f} | - |")
    print(f"big encodes meanwhile: {busy_rate:.0f}/s")


if __name__ == "__main__":
    main()
