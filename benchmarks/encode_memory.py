#!/usr/bin/env python3
"""Resident memory of a process that encodes pictures of changing sizes.

x265 takes the picture size when an encoder opens, so every new size opens one, and
libx265 3.5 loses memory on every open (an x265_param copy and strings, about 1.3 KB;
with SAO off, as at levels 0 and 1, also its SAO row buffers, which grow with the picture
width). With libx265 linked statically the library gives that back
(third_party/libbpg/src/x265_open.cpp); this measures what reaches the process's RSS.

Each scenario runs in a fresh child process (the same interpreter and npp_ext) that
encodes flat pictures through ``npp_ext.bpg.encode`` and reads VmRSS from /proc. The
growth is counted from the end of a warm-up (the first tenth of the encodes, at least two
passes over the scenario's sizes: encoders, lambda tables, x265's per-QP tables and the
allocator's arenas in place) to the end of the run: what keeps growing.

Prints a markdown table with PASS/MISS against the target (growth within 5 MB). It never
fails on the numbers: the exit code is 0 unless the benchmark itself cannot run.

Usage:
  PYTHONPATH=. python benchmarks/encode_memory.py [--quick] [--scenarios a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 5.0


def issue_sizes() -> list[tuple[int, int]]:
    """The issue's loop: squares in four CTU configurations (16/16, 16/8, 32/8, 64/8)."""
    return [(s, s) for s in (1, 8, 16, 31, 45, 64, 77, 100, 128)]


def one_config_sizes() -> list[tuple[int, int]]:
    """Nine sizes that all use 64x64 CTUs."""
    return [(64 + 16 * k, 64 + 8 * k) for k in range(9)]


def thousand_sizes() -> list[tuple[int, int]]:
    """1,000 different sizes (64..376 x 64..160, all 64x64 CTUs), as (width, height)."""
    return [(64 + (k % 40) * 8, 64 + (k // 40) * 4) for k in range(1000)]


# name -> (description, sizes, encodes, quick encodes, compression level)
SCENARIOS = {
    "issue": ("the issue's loop: 9 sizes, 4 CTU configurations", issue_sizes, 6000, 1500, 8),
    "one_config": ("9 sizes, one CTU configuration", one_config_sizes, 6000, 1500, 8),
    "thousand": ("1,000 sizes, 20 passes", thousand_sizes, 20000, 3000, 8),
    "thousand_sao_off": (
        "1,000 sizes, 20 passes, level 1 (SAO off)",
        thousand_sizes,
        20000,
        3000,
        1,
    ),
    "same_size": ("one size (control)", lambda: [(128, 96)], 6000, 1500, 8),
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(name: str, encodes: int) -> None:
    """Runs one scenario and prints its numbers as JSON on stdout."""
    import numpy as np

    from npp_ext import bpg

    _, make_sizes, _, _, level = SCENARIOS[name]
    sizes = make_sizes()
    samples = []
    t0 = time.perf_counter()
    warmup = max(2 * len(sizes), encodes // 10)
    after_warmup = None
    for i in range(encodes):
        width, height = sizes[i % len(sizes)]
        bpg.encode(np.full((height, width, 3), 100, np.uint8), 30, level=level)
        if i + 1 == warmup:
            after_warmup = rss_mb()
        if (i + 1) % max(1, encodes // 10) == 0:
            samples.append(round(rss_mb(), 1))
    elapsed = time.perf_counter() - t0
    end = rss_mb()
    print(
        json.dumps(
            {
                "name": name,
                "encodes": encodes,
                "sizes": len(set(sizes)),
                "warmup_encodes": warmup,
                "rss_after_warmup_mb": after_warmup,
                "rss_end_mb": end,
                "samples_mb": samples,
                "seconds": elapsed,
            }
        )
    )


def run(name: str, encodes: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(encodes)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer encodes per scenario")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated names")
    ap.add_argument("--json", default=None, help="write the raw numbers to this file")
    ap.add_argument("--child", nargs=2, metavar=("NAME", "ENCODES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    names = [n for n in args.scenarios.split(",") if n]
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}; known: {', '.join(SCENARIOS)}")
    results = []
    print(f"Target: RSS growth after the warm-up within {TARGET_MB:g} MB.\n")
    print(
        "| scenario | encodes | sizes | RSS after warm-up MB | RSS at end MB | growth MB "
        "| KB per encode | s | result |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in names:
        desc, _, full, quick, _ = SCENARIOS[n]
        r = run(n, quick if args.quick else full)
        growth = r["rss_end_mb"] - r["rss_after_warmup_mb"]
        per = growth * 1024 / max(1, r["encodes"] - r["warmup_encodes"])
        r["growth_mb"] = growth
        r["result"] = "PASS" if growth <= TARGET_MB else "MISS"
        results.append(r)
        print(
            f"| {desc} | {r['encodes']} | {r['sizes']} | {r['rss_after_warmup_mb']:.1f} "
            f"| {r['rss_end_mb']:.1f} | {growth:.1f} | {per:.2f} | {r['seconds']:.0f} "
            f"| {r['result']} |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
