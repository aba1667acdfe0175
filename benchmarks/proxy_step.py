"""Time one BPGProxyFn forward+backward and its parts.

For a batch of crops (default 16 x 256x256, level 8, QPs spread over 22..47) this times,
each on its own (synchronized): pack (ops.rgb_to_yuv), the device->host and host->device
copies, BPG encode+decode on the C++ pool, unpack (ops.yuv_to_rgb), the proxy forward and
backward; then the whole op as a training step uses it. ``overlap saved`` is the sum of
the parts minus the whole step: the proxy runs on the device while the pool codes.

"Everything but x265/libde265" is measured inside each step: the pool's call is timed
within the step and subtracted from that step's time (median over the steps). A
difference of two separately measured medians would be mostly the codec's jitter, as the
codec is most of the step. On CUDA it ends with PASS/MISS against the 15% target.

    python benchmarks/proxy_step.py [--device cuda] [--batch 16] [--size 256] [--level 8]

Prints a markdown table; never asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from npp_ext import _bpg, bpg, ops
from npp_ext.autograd import BPGProxyFn
from npp_ext.models import Proxy


def _photos() -> list[np.ndarray]:
    """scikit-image's sample photos, or smooth synthetic images where it is missing."""
    try:
        from skimage import data

        return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    except ImportError:
        yy, xx = np.mgrid[0:512, 0:512] / 512.0
        return [
            (255 * np.stack([np.sin(k * xx) ** 2, yy, np.cos(k * yy * xx) ** 2], -1)).astype(
                np.uint8
            )
            for k in (3, 7, 11, 17)
        ]


def _crops(n: int, size: int, device: str) -> torch.Tensor:
    photos = _photos()
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        p = photos[i % len(photos)]
        if p.shape[0] < size or p.shape[1] < size:
            p = np.tile(p, (2, 2, 1))
        y = int(rng.integers(0, p.shape[0] - size + 1))
        x = int(rng.integers(0, p.shape[1] - size + 1))
        out.append(torch.from_numpy(np.ascontiguousarray(p[y : y + size, x : x + size])))
    return torch.stack(out).permute(0, 3, 1, 2).float().div(255).contiguous().to(device)


def _timeit(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median milliseconds of fn() over repeats, after one warm-up call."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--level", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="codec threads (0: one per core)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--proxy-n", type=int, default=128)
    ap.add_argument("--proxy-m", type=int, default=192)
    args = ap.parse_args(argv)
    dev = args.device
    n, s = args.batch, args.size
    x = _crops(n, s, dev)
    qps = [22 + (25 * i) // max(1, n - 1) for i in range(n)]
    proxy = Proxy(N=args.proxy_n, M=args.proxy_m).to(dev).eval()
    qp_t = torch.tensor(qps, dtype=torch.float32, device=dev)

    yuv = ops.rgb_to_yuv(x, 420)
    total = yuv.shape[1]
    pin = dev == "cuda"
    host_in = torch.empty((n, total), dtype=torch.uint8, pin_memory=pin)
    host_out = torch.empty_like(host_in, pin_memory=pin)
    host_in.copy_(yuv)
    bpg.roundtrip_yuv_batch(
        host_in.numpy(), s, s, qps, host_out.numpy(), level=args.level, threads=args.threads
    )

    def proxy_fwd_bwd() -> None:
        x_in = x.detach().requires_grad_(True)
        out = proxy(x_in, qp_t)
        torch.autograd.grad([out.x_hat.sum() + out.bits.sum()], [x_in])

    def step() -> None:
        x_bar = x.detach().requires_grad_(True)
        x_hat, bits = BPGProxyFn.apply(
            x_bar, torch.tensor(qps), proxy, args.level, 420, args.threads
        )
        (x_hat.mean() + bits.mean()).backward()

    parts = {
        "pack (rgb_to_yuv)": lambda: ops.rgb_to_yuv(x, 420),
        "device -> host": lambda: host_in.copy_(yuv, non_blocking=pin),
        "BPG encode+decode (pool)": lambda: bpg.roundtrip_yuv_batch(
            host_in.numpy(), s, s, qps, host_out.numpy(), level=args.level, threads=args.threads
        ),
        "host -> device": lambda: host_out.to(dev, non_blocking=pin),
        "unpack (yuv_to_rgb)": lambda: ops.yuv_to_rgb(yuv, s, s, 420),
        "proxy forward+backward": proxy_fwd_bwd,
    }
    ms = {name: _timeit(fn, dev, args.repeats) for name, fn in parts.items()}
    whole, outside = _time_step(step, dev, args.repeats)
    parts_sum = sum(ms.values())
    print(
        f"BPGProxyFn step: {n} x {s}x{s}, level {args.level}, device {dev}, "
        f"proxy N={args.proxy_n} M={args.proxy_m}, codec threads "
        f"{_bpg.pool_threads(args.threads)}"
    )
    print("| part | ms | % of step |")
    print("|---|---:|---:|")
    for name, v in ms.items():
        print(f"| {name} | {v:.2f} | {100 * v / whole:.1f} |")
    print(f"| sum of parts | {parts_sum:.2f} | {100 * parts_sum / whole:.1f} |")
    print(f"| **whole step (forward+backward)** | {whole:.2f} | 100.0 |")
    print(
        f"| overlap saved (sum - step) | {parts_sum - whole:.2f} | "
        f"{100 * (parts_sum - whole) / whole:.1f} |"
    )
    share = outside / whole
    verdict = ("PASS" if share < 0.15 else "MISS") if dev == "cuda" else "(a GPU target)"
    print(
        f"\neverything but x265/libde265 (step minus the pool's call, in each step): "
        f"{outside:.2f} ms = {100 * share:.1f}% of the step; target < 15%: {verdict}"
    )
    return 0


def _time_step(step: Callable[[], None], device: str, repeats: int) -> tuple[float, float]:
    """Median step time and median of (step time - the codec pool's call within that step)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    real = bpg.start_roundtrip_yuv_batch
    codec_ms: list[float] = []

    class Timed:  # a batch, timed from its start to the end of its wait
        def __init__(self, job: bpg.YuvBatchJob) -> None:
            self.job, self.t0 = job, time.perf_counter()

        def wait(self) -> object:
            try:
                return self.job.wait()
            finally:
                codec_ms.append((time.perf_counter() - self.t0) * 1000)

    def timed(*args: object, **kwargs: object) -> object:
        return Timed(real(*args, **kwargs))

    bpg.start_roundtrip_yuv_batch = timed  # BPGProxyFn looks it up on the module each call
    try:
        step()
        sync()
        wholes, outsides = [], []
        for _ in range(repeats):
            codec_ms.clear()
            t0 = time.perf_counter()
            step()
            sync()
            wholes.append((time.perf_counter() - t0) * 1000)
            outsides.append(wholes[-1] - sum(codec_ms))
    finally:
        bpg.start_roundtrip_yuv_batch = real
    return statistics.median(wholes), statistics.median(outsides)


if __name__ == "__main__":
    raise SystemExit(main())
