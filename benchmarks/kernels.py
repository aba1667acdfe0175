"""Speed of the npp_ext kernels against eager PyTorch and torch.compile.

For a batch of 16 images at 256x256 (by default) it times:

- qp_scale (C=32) and npp_pixel_branch, forward and forward+backward: the
  fused op, the eager reference (npp_ext.ops.eager) and torch.compile of the
  reference;
- rgb_to_yuv / yuv_to_rgb (4:2:0): the op and the eager reference (on CUDA also
  the op at 4x the side, where the call overhead no longer hides the bandwidth).

GB/s counts the bytes an ideal implementation must move (every input read
once, every output written once), so it can be compared with the memory
bandwidth; "% of copy" sets it against a plain 256 MiB tensor copy on the same
device. On CUDA a second table marks the GPU targets PASS or MISS: fused ops >= 3x
eager and no slower than torch.compile, YUV ops >= 50% of the card's nominal
bandwidth (or of the copy, for cards it does not know). CUDA times come from CUDA
events, CPU times from perf_counter; each is the median of --repeats runs after
warm-up. On CUDA each case is timed twice: "ms" from an idle GPU, which includes the
time Python takes to launch the work (at 256x256 that is most of it), and "GPU ms" with
the GPU kept busy ahead of the call, so that only the kernels' execution is timed, as in
a training step whose host runs ahead. The targets are judged on GPU ms; the bandwidth
target only on the 4x-side YUV rows (16 x 256x256 moves 14 MB, launch-bound and
L2-resident). Each row is also printed as soon as it is measured, so that a run cut
short keeps what it measured. Prints markdown tables.
Informational only: nothing is asserted.

    python benchmarks/kernels.py [--device cpu|cuda|all] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from npp_ext import ops
from npp_ext.ops import eager as ref

COPY_OP = "copy (yardstick)"
# Nominal HBM bandwidth (vendor figures) of the cards the GPU check runs on.
NOMINAL_GBPS = {"H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0, "H200": 4800.0}
# Names that contain a key above but are other cards (GH200 comes with HBM3 or HBM3e).
NOT_NOMINAL = ("GH200",)
# About 10 ms of GPU time queued ahead of a timed call (torch.cuda._sleep counts cycles).
QUEUE_CYCLES = 20_000_000


@dataclass
class Row:
    op: str
    device: str
    impl: str
    ms: float
    nbytes: int
    gpu_ms: float | None = None  # CUDA: kernel time with the GPU kept busy ahead

    @property
    def best_ms(self) -> float:
        """GPU ms where measured, else ms: what the targets judge."""
        return self.gpu_ms if self.gpu_ms is not None else self.ms

    @property
    def gbps(self) -> float:
        return self.nbytes / (self.best_ms * 1e-3) / 1e9


def median_ms(
    fn: Callable[[], object], device: str, repeats: int, warmup: int = 3, queued: bool = False
) -> float:
    """Median time of fn() in milliseconds (CUDA: event time on the current stream).

    ``queued`` (CUDA): ~10 ms of GPU work is enqueued before the start event, so the whole
    call is launched before the GPU reaches it and the events time only its execution.
    """
    for _ in range(warmup):
        fn()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            if queued:
                torch.cuda._sleep(QUEUE_CYCLES)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def fwd_bwd(
    fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor
) -> Callable[[], None]:
    """A closure running fn forward and backward on fresh leaves of inputs."""
    leaves = [t.detach().requires_grad_() for t in inputs]

    def run() -> None:
        for t in leaves:
            t.grad = None
        fn(*leaves).backward(grad)

    return run


def bench_device(device: str, args: argparse.Namespace) -> list[Row]:
    n, size, c = args.batch, args.size, args.channels
    gen = torch.Generator().manual_seed(0)
    rows: list[Row] = []

    def add(op: str, impl: str, fn: Callable[[], object], nbytes: int) -> None:
        try:
            ms = median_ms(fn, device, args.repeats)
            gpu_ms = median_ms(fn, device, args.repeats, queued=True) if device == "cuda" else None
        except Exception as e:  # e.g. no C++ compiler for inductor, a failing kernel
            print(f"<!-- {op} / {impl} on {device} skipped: {type(e).__name__}: {e} -->")
            return
        rows.append(Row(op, device, impl, ms, nbytes, gpu_ms))
        gpu = f", GPU {gpu_ms:.3f} ms" if gpu_ms is not None else ""
        print(f"<!-- {op} / {impl} on {device}: {ms:.3f} ms{gpu} -->", flush=True)

    def compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return torch.compile(fn, fullgraph=True, dynamic=False)

    # qp_scale: (N, C, H, W) with one scale row per image.
    x = torch.randn(n, c, size, size, generator=gen).to(device)
    s = (torch.rand(n, c, generator=gen) + 0.5).to(device)
    g = torch.randn(n, c, size, size, generator=gen).to(device)
    fwd_bytes, fb_bytes = 2 * x.numel() * 4, 5 * x.numel() * 4
    impls = {"npp_ext op": ops.qp_scale, "eager reference": ref.qp_scale}
    if args.compile:
        impls["torch.compile(reference)"] = compiled(ref.qp_scale)
    with torch.no_grad():
        for name, fn in impls.items():
            add(f"qp_scale fwd (C={c})", name, lambda fn=fn: fn(x, s), fwd_bytes)
    for name, fn in impls.items():
        add(f"qp_scale fwd+bwd (C={c})", name, fwd_bwd(fn, [x, s], g), fb_bytes)
    del x, g

    # npp_pixel_branch: (N, 3, H, W) and its six parameters.
    x = torch.rand(n, 3, size, size, generator=gen).to(device)
    params = [
        torch.randn(3, 3, generator=gen),
        torch.randn(3, generator=gen) * 0.1,
        torch.rand(n, 3, generator=gen) + 0.5,
        torch.randn(3, 3, generator=gen),
        torch.randn(3, generator=gen) * 0.1,
        torch.rand(n, 3, generator=gen) + 0.5,
    ]
    params = [p.to(device) for p in params]
    g = torch.randn(n, 3, size, size, generator=gen).to(device)
    fwd_bytes, fb_bytes = 2 * x.numel() * 4, 5 * x.numel() * 4
    impls = {"npp_ext op": ops.npp_pixel_branch, "eager reference": ref.npp_pixel_branch}
    if args.compile:
        impls["torch.compile(reference)"] = compiled(ref.npp_pixel_branch)
    with torch.no_grad():
        for name, fn in impls.items():
            add("npp_pixel_branch fwd", name, lambda fn=fn: fn(x, *params), fwd_bytes)
    for name, fn in impls.items():
        add("npp_pixel_branch fwd+bwd", name, fwd_bwd(fn, [x, *params], g), fb_bytes)

    # What the memory system gives a plain copy: the yardstick for the GB/s column.
    src = torch.empty(64 << 20, dtype=torch.float32, device=device)  # 256 MiB
    dst = torch.empty_like(src)
    add(COPY_OP, "torch copy_", lambda a=dst, b=src: a.copy_(b), 2 * src.numel() * 4)
    del src, dst

    # YUV 4:2:0 packing and unpacking (what crosses the bus in training). The input of
    # yuv_to_rgb comes from the reference (the same bytes), so that a failing op costs
    # only its own rows.
    yuv = ref.rgb_to_yuv(x)
    rgb_bytes, yuv_bytes = x.numel() * 4, yuv.numel()
    for name, fn in {"npp_ext op": ops.rgb_to_yuv, "eager reference": ref.rgb_to_yuv}.items():
        add("rgb_to_yuv 4:2:0", name, lambda fn=fn: fn(x), rgb_bytes + yuv_bytes)
    for name, fn in {"npp_ext op": ops.yuv_to_rgb, "eager reference": ref.yuv_to_rgb}.items():
        add("yuv_to_rgb 4:2:0", name, lambda fn=fn: fn(yuv, size, size), rgb_bytes + yuv_bytes)

    if device == "cuda":
        # 16 x 256x256 moves 14 MB: a few microseconds of GPU time, so the row above mostly
        # measures the call itself. The bandwidth target is judged on 4x the side as well.
        big = 4 * size
        xb = torch.rand(n, 3, big, big, device=device)
        yb = ref.rgb_to_yuv(xb)
        nbytes = xb.numel() * 4 + yb.numel()
        add(f"rgb_to_yuv 4:2:0 ({big}x{big})", "npp_ext op", lambda: ops.rgb_to_yuv(xb), nbytes)
        add(
            f"yuv_to_rgb 4:2:0 ({big}x{big})",
            "npp_ext op",
            lambda: ops.yuv_to_rgb(yb, big, big),
            nbytes,
        )
    return rows


def markdown(rows: list[Row]) -> str:
    eager = {(r.op, r.device): r.best_ms for r in rows if r.impl == "eager reference"}
    copy = {r.device: r.gbps for r in rows if r.op == COPY_OP}
    lines = [
        "| op | device | implementation | median ms | GPU ms | GB/s | % of copy | vs eager |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = eager.get((r.op, r.device))
        speedup = f"{base / r.best_ms:.2f}x" if base else "-"
        of_copy = f"{100 * r.gbps / copy[r.device]:.0f}%" if r.device in copy else "-"
        gpu = f"{r.gpu_ms:.3f}" if r.gpu_ms is not None else "-"
        lines.append(
            f"| {r.op} | {r.device} | {r.impl} | {r.ms:.3f} | {gpu} | {r.gbps:.1f} | {of_copy} "
            f"| {speedup} |"
        )
    return "\n".join(lines)


def nominal_gbps(name: str) -> float | None:
    """The card's nominal memory bandwidth in GB/s, for the cards this project is run on."""
    if any(other in name for other in NOT_NOMINAL):
        return None
    for key, gbps in NOMINAL_GBPS.items():
        if key in name:
            return gbps
    return None


def targets(rows: list[Row], device_name: str, channels: int) -> str:
    """The GPU targets of the torch-integration issue, judged on the CUDA rows' GPU ms."""
    by = {(r.op, r.impl): r for r in rows if r.device == "cuda"}
    lines = ["| target | measured (GPU ms; from idle in brackets) | result |", "|---|---|---|"]
    for op in (f"qp_scale fwd+bwd (C={channels})", "npp_pixel_branch fwd+bwd"):
        fused, eager = by.get((op, "npp_ext op")), by.get((op, "eager reference"))
        comp = by.get((op, "torch.compile(reference)"))
        if fused and eager:
            ratio = eager.best_ms / fused.best_ms
            lines.append(
                f"| {op}: >= 3x eager | {ratio:.2f}x ({eager.ms / fused.ms:.2f}x) "
                f"| {_verdict(ratio >= 3)} |"
            )
        else:
            lines.append(f"| {op}: >= 3x eager | not measured | - |")
        if fused and comp:
            lines.append(
                f"| {op}: no slower than torch.compile | {fused.best_ms:.3f} vs "
                f"{comp.best_ms:.3f} ms ({fused.ms:.3f} vs {comp.ms:.3f}) "
                f"| {_verdict(fused.best_ms <= comp.best_ms)} |"
            )
        else:
            lines.append(f"| {op}: no slower than torch.compile | not measured | - |")
    peak = nominal_gbps(device_name)
    copy = by.get((COPY_OP, "torch copy_"))
    yardstick = peak if peak else (copy.gbps if copy else None)
    label = f"nominal {peak:.0f} GB/s" if peak else "the measured copy"
    # Only the 4x-side rows: 16 x 256x256 is launch-bound and fits in L2.
    yuv_ops = [
        r.op
        for r in rows
        if r.device == "cuda" and r.op.startswith(("rgb_to", "yuv_to")) and "(" in r.op
    ]
    for op in dict.fromkeys(yuv_ops):
        r = by.get((op, "npp_ext op"))
        if r and yardstick:
            share = r.gbps / yardstick
            lines.append(
                f"| {op}: >= 50% of the bandwidth ({label}) | {r.gbps:.0f} GB/s = "
                f"{100 * share:.0f}% | {_verdict(share >= 0.5)} |"
            )
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="all = CPU, plus CUDA when available (default)",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per case (median)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--channels", type=int, default=32, help="C of the qp_scale case")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the torch.compile baselines (slow to compile on CPU)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            parser.error("--device cuda: no CUDA device available")
        devices.remove("cuda")

    rows: list[Row] = []
    for device in devices:
        rows += bench_device(device, args)
    names = {"cpu": f"CPU, {torch.get_num_threads()} threads"}
    if "cuda" in devices:
        names["cuda"] = torch.cuda.get_device_name()
    names = {k: v for k, v in names.items() if k in devices}
    print(
        f"batch {args.batch} x {args.size}x{args.size}, median of {args.repeats}; "
        + ", ".join(f"{k} = {v}" for k, v in names.items())
        + "\n"
    )
    print(markdown(rows))
    if "cuda" in devices:
        print("\nTargets (" + names["cuda"] + "):\n")
        print(targets(rows, names["cuda"], args.channels))


if __name__ == "__main__":
    main()
