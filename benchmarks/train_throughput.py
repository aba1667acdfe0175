#!/usr/bin/env python3
"""Images/s of one NPP training step against the codec alone and the authors' pattern.

One step is ``NPPTrainer.train_step`` (npp_ext/train/npp.py) on a batch of real photo
crops (``npp_ext.data.photo_crops("train", size, batch)``): the NPP's forward, real BPG
through ``bpg_proxy_chunks`` (the codec thread on the C++ pool, the proxy's graph for
the backward), the task's loss and backward per chunk, the NPP's backward and Adam. The
task is a ResNet-50 from torchvision (``weights=None``: random weights time the same) when
torchvision is importable, else the built-in EfficientNet-Lite0; the header says which.
The proxy is an untrained ``Proxy(N, M)`` saved to a temporary checkpoint.

Rows (medians over ``--repeats`` steps after one untimed warm-up step):

  (a)  the full step, for each ``--chunks`` value;
  (b)  the codec alone: ``bpg.roundtrip_yuv_batch`` of the same batch (the NPP's output,
       packed to YUV 4:2:0) at the same QPs on the same threads, one call;
  (b') the codec alone in the step's chunks, one call per chunk after the other (as
       ``bpg_proxy_chunks`` codes them): what splitting costs the codec itself;
  (c)  the compute alone: the same ``train_step`` with the codec replaced by
       ``x_hat = x_bar`` behind the proxy's graph (NPP, proxy, task forward and backward,
       Adam; no pack, no copies, no BPG);
  (d)  the authors' pattern: per image write a PNG (Pillow), run ``bpgenc-npp``, run
       ``bpgdec-npp``, read the PNG, one image after another, then the same compute as
       (c) with the real pixels and bits (``benchmarks/codec_throughput.py``'s
       ``find_tools`` builds the tools in build/bench-tools/).

The QPs of step t are ``draw_qps(seed, t, ...)`` as in training; every row uses those of
steps 1..repeats, so each row codes the same images at the same QPs. Targets (set for an
H200 at 64 x 256x256, level 8): the best step <= 1.15x (b), and >= 8x (d) in images/s;
PASS/MISS on CUDA, "(a GPU target)" elsewhere.

``--profile`` also runs each chunks value with a clock at every boundary of the step
(synchronizing the device there, so these steps run a little slower) and prints where the
time goes: teacher targets, NPP forward, waiting in ``bpg_proxy_chunks`` (codec and proxy
forward apart), task forward, the chunks' backward (task + proxy), NPP backward, Adam;
and when the codec pool was busy within the step.

    PYTHONPATH=. python benchmarks/train_throughput.py [--device cpu|cuda] [--batch 64]
        [--size 256] [--level 8] [--chunks 1 4 8] [--threads 0] [--repeats 5]
        [--task auto] [--profile]

Prints markdown tables; exits 0 whatever the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
try:  # the package as built in the source tree, unless it is importable already
    import npp_ext  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))

import npp_ext.train.npp as npp_train  # noqa: E402
from npp_ext import bpg, checkpoint, ops  # noqa: E402
from npp_ext.autograd import chunk_rows  # noqa: E402
from npp_ext.data import photo_crops  # noqa: E402
from npp_ext.models import Proxy  # noqa: E402
from npp_ext.tasks import Task, build_task  # noqa: E402
from npp_ext.train import NPPConfig  # noqa: E402
from npp_ext.train.npp import NPPTrainer, draw_qps  # noqa: E402
from npp_ext.train.runtime import setup  # noqa: E402

TARGET_CODEC_RATIO = 1.15
TARGET_AUTHORS_SPEEDUP = 8.0


def log(msg: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up


def pick_task(spec: str) -> tuple[str, str]:
    """(build_task spec, why) for ``--task``: "auto" is ResNet-50 if torchvision imports."""
    if spec == "auto":
        try:
            import torchvision  # noqa: F401
        except ImportError:
            return "efficientnet_lite0", "torchvision is not importable here"
        return "torchvision:resnet50", "torchvision's ResNet-50, weights=None"
    if spec == "resnet50":
        return "torchvision:resnet50", "asked for"
    return spec, "asked for"


def save_proxy(folder: str, n: int, m: int, level: int) -> str:
    """An untrained proxy checkpoint (the step's cost does not depend on its weights)."""
    torch.manual_seed(0)
    path = os.path.join(folder, "proxy.pt")
    codec = NPPConfig(proxy="unused", level=level).codec
    checkpoint.save(path, "proxy", Proxy(N=n, M=m).eval(), codec=codec, qp_range=(22, 47))
    return path


def make_trainer(
    args: argparse.Namespace, proxy: str, out: str, task: Task, chunks: int
) -> NPPTrainer:
    """A fresh trainer (same seed, so step t has the same QPs and the NPP the same init)."""
    cfg = NPPConfig(
        proxy=proxy, out=out, task=args.task_spec, level=args.level, chunks=chunks,
        threads=args.threads, device=args.device, batch=args.batch, crop=args.size,
        amp=args.amp,
    )  # fmt: skip
    return NPPTrainer(cfg, setup(args.device), task)


def sync_fn(device: str) -> Callable[[], None]:
    """What waits for the device's queued work (nothing on the CPU)."""
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def step_qps(trainer: NPPTrainer, step: int, n: int) -> list[int]:
    """The QPs train_step draws at ``step`` (one process)."""
    cfg = trainer.cfg
    return draw_qps(cfg.seed, step, n, cfg.qp_range, trainer.task.per_sample).tolist()


def _proxy_pair(out: Any) -> tuple[Tensor, Tensor]:
    if hasattr(out, "x_hat"):
        return out.x_hat, out.bits
    return out[0], out[1]


@contextlib.contextmanager
def codec_replaced(
    make_chunks: Callable[..., Iterator[tuple[slice, Tensor, Tensor]]],
) -> Iterator[None]:
    """train_step with ``bpg_proxy_chunks`` swapped for another generator (same contract)."""
    real = npp_train.bpg_proxy_chunks
    npp_train.bpg_proxy_chunks = make_chunks
    try:
        yield
    finally:
        npp_train.bpg_proxy_chunks = real


def through_proxy(
    leaf: Tensor, rows: slice, qps: Tensor, proxy: Any, x_val: Tensor, bits_val: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(x_hat, bits) with the given values and the proxy's graph (as BPGProxyFn has)."""
    x_in = leaf[rows]
    qp_t = torch.as_tensor(qps[rows], dtype=torch.float32, device=leaf.device)
    x_tilde, rate = _proxy_pair(proxy(x_in, qp_t))
    x_hat = x_tilde + (x_val.to(x_tilde.dtype) - x_tilde).detach()
    bits = rate if bits_val is None else rate + (bits_val.to(rate) - rate).detach()
    return x_hat, bits


def no_codec_chunks(
    leaf: Tensor, qp: Any, proxy: Any, *, chunks: int, **_: Any
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """(c): x_hat = x_bar and bits = the proxy's estimate, with BPGProxyFn's graph."""
    qps = torch.as_tensor(qp)
    for rows in chunk_rows(leaf.shape[0], chunks):
        yield (rows, *through_proxy(leaf, rows, qps, proxy, leaf[rows].detach(), None))


class AuthorsPattern:
    """(d): per image PNG write, bpgenc, bpgdec, PNG read, one after another."""

    def __init__(self, enc: Path, dec: Path, level: int, workdir: str) -> None:
        self.enc, self.dec, self.level, self.workdir = enc, dec, level, Path(workdir)

    def roundtrip(self, image: np.ndarray, qp: int) -> tuple[np.ndarray, int]:
        """One (H, W, 3) uint8 image through the tools: (decoded pixels, bits)."""
        from PIL import Image

        src, coded, back = (self.workdir / f"img.{ext}" for ext in ("png", "bpg", "dec.png"))
        Image.fromarray(image).save(src)
        run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        enc = [str(self.enc), "-q", str(qp), "-m", str(self.level), "-f", "420"]
        subprocess.run([*enc, "-o", str(coded), str(src)], **run)
        subprocess.run([str(self.dec), "-o", str(back), str(coded)], **run)
        with Image.open(back) as im:
            return np.asarray(im.convert("RGB")), 8 * coded.stat().st_size

    def chunks(
        self, leaf: Tensor, qp: Any, proxy: Any, **_: Any
    ) -> Iterator[tuple[slice, Tensor, Tensor]]:
        """The whole batch as one chunk, coded image after image by the tools."""
        qps = torch.as_tensor(qp)
        pixels = leaf.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
        decoded, bits = [], []
        for image, q in zip(pixels, qps.tolist(), strict=True):
            rgb, nbits = self.roundtrip(np.ascontiguousarray(image), int(q))
            decoded.append(torch.from_numpy(rgb.copy()))
            bits.append(nbits)
        x_val = torch.stack(decoded).permute(0, 3, 1, 2).to(leaf.device).float() / 255
        bits_val = torch.tensor(bits, dtype=torch.float32, device=leaf.device)
        rows = slice(0, leaf.shape[0])
        yield (rows, *through_proxy(leaf, rows, qps, proxy, x_val, bits_val))


# --------------------------------------------------------------------------- timing


class Timing:
    """Median ms of some runs, and the CPU cores other processes used meanwhile (median)."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.foreign: list[float] = []

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        """Time the block and estimate the other processes' load from /proc/stat."""
        busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        self.ms.append(wall * 1000)
        if busy0 is not None:
            foreign = (_busy_seconds() - busy0) - (_own_seconds() - own0)
            self.foreign.append(max(0.0, foreign / max(wall, 1e-9)))

    @property
    def median(self) -> float:
        """Median ms of the runs."""
        return statistics.median(self.ms)

    @property
    def load(self) -> float:
        """Median CPU cores other processes used during the runs (nan without /proc)."""
        return statistics.median(self.foreign) if self.foreign else float("nan")


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (None without /proc)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_steps(trainer: NPPTrainer, batch: dict[str, Tensor], repeats: int, device: str) -> Timing:
    """train_step over ``repeats`` steps after one untimed warm-up step."""
    sync = sync_fn(device)
    trainer.train_step(batch)
    sync()
    timing = Timing()
    for _ in range(repeats):
        with timing.run():
            trainer.train_step(batch)
            sync()
    return timing


def codec_alone(
    trainer: NPPTrainer, x: Tensor, args: argparse.Namespace, chunks: list[int]
) -> dict[int, Timing]:
    """Median ms of the codec on the NPP's output of x: one call (chunks 1) or one per chunk."""
    n, _, h, w = x.shape
    with torch.no_grad():
        qps0 = torch.tensor(step_qps(trainer, 0, n), device=x.device)
        x_bar = trainer.npp(x, qps0)
        yuv = ops.rgb_to_yuv(x_bar, 420).cpu().numpy()
    out = np.empty_like(yuv)
    steps = [step_qps(trainer, t, n) for t in range(1, args.repeats + 1)]
    kw = {"chroma": trainer.cfg.chroma, "level": args.level, "threads": args.threads}
    bpg.roundtrip_yuv_batch(yuv, h, w, steps[0], out, **kw)  # warm-up
    result = {}
    for c in sorted(set(chunks) | {1}):
        result[c] = timing = Timing()
        for qps in steps:
            with timing.run():
                for rows in chunk_rows(n, c):
                    bpg.roundtrip_yuv_batch(yuv[rows], h, w, qps[rows], out[rows], **kw)
    return result


# --------------------------------------------------------------------------- profile


class StepClock:
    """Timestamps of the pieces of train_step, taken with the device synchronized."""

    def __init__(self, device: str) -> None:
        self.sync = sync_fn(device)
        self.spans: list[tuple[str, float, float]] = []
        self.codec: list[tuple[float, float]] = []  # the pool's calls (codec thread)
        self.lock = threading.Lock()

    def now(self) -> float:
        """The time once the device has caught up."""
        self.sync()
        return time.perf_counter()

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """fn, its calls noted as spans called ``name``."""

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = self.now()
            try:
                return fn(*a, **kw)
            finally:
                self.spans.append((name, t0, self.now()))

        return wrapper

    def chunks(self, real: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        """bpg_proxy_chunks with each wait for the next chunk timed."""

        def gen(*a: Any, **kw: Any) -> Iterator[Any]:
            it = real(*a, **kw)
            while True:
                t0 = self.now()
                try:
                    item = next(it)
                except StopIteration:
                    self.spans.append(("chunks done", t0, self.now()))
                    return
                self.spans.append(("next chunk", t0, self.now()))
                yield item

        return gen

    def pool_call(self, real: Callable[..., Any]) -> Callable[..., Any]:
        """bpg.start_roundtrip_yuv_batch noting when the pool was busy: from the start of a
        batch to the end of its wait (no sync: the codec's own threads)."""
        clock = self

        class Job:
            def __init__(self, job: Any, t0: float) -> None:
                self.job, self.t0 = job, t0

            def wait(self) -> Any:
                try:
                    return self.job.wait()
                finally:
                    with clock.lock:
                        clock.codec.append((self.t0, time.perf_counter()))

        def wrapper(*a: Any, **kw: Any) -> Any:
            return Job(real(*a, **kw), time.perf_counter())

        return wrapper


PHASES = (
    "teacher targets",
    "NPP fwd",
    "codec wait",
    "proxy fwd",
    "task fwd",
    "chunk bwd (task+proxy)",
    "NPP bwd",
    "Adam",
    "other",
)


def profile_step(trainer: NPPTrainer, batch: dict[str, Tensor], device: str) -> dict[str, float]:
    """One train_step, its time split into PHASES and the pool's busy/idle time (ms)."""
    clock = StepClock(device)
    task, proxy = trainer.task, trainer.proxy
    model, scaler = trainer.model, trainer.scaler
    real_chunks, real_pool = npp_train.bpg_proxy_chunks, bpg.start_roundtrip_yuv_batch
    proxy_t0: list[float] = []

    def pre_hook(*_: Any) -> None:
        proxy_t0.append(clock.now())

    def post_hook(*_: Any) -> None:
        clock.spans.append(("proxy fwd", proxy_t0.pop(), clock.now()))

    hooks = [proxy.register_forward_pre_hook(pre_hook), proxy.register_forward_hook(post_hook)]
    task.targets = clock.timed("teacher targets", task.targets)
    task.loss = clock.timed("task fwd", task.loss)
    trainer.model = clock.timed("NPP fwd", model)
    scaler.step = clock.timed("Adam", scaler.step)
    npp_train.bpg_proxy_chunks = clock.chunks(real_chunks)
    bpg.start_roundtrip_yuv_batch = clock.pool_call(real_pool)
    try:
        t0 = clock.now()
        trainer.train_step(batch)
        t1 = clock.now()
    finally:
        for h in hooks:
            h.remove()
        del task.targets, task.loss, scaler.step
        trainer.model = model
        npp_train.bpg_proxy_chunks, bpg.start_roundtrip_yuv_batch = real_chunks, real_pool
    return split_phases(clock, t0, t1)


def split_phases(clock: StepClock, t0: float, t1: float) -> dict[str, float]:
    """The step [t0, t1] in ms per phase, from the clock's spans, and the pool's idle time."""
    ms = dict.fromkeys(PHASES, 0.0)
    spans = sorted(clock.spans, key=lambda s: s[1])
    for name, a, b in spans:
        if name in ("next chunk", "chunks done"):
            ms["codec wait"] += (b - a) * 1000
        elif name in ms:
            ms[name] += (b - a) * 1000
    ms["codec wait"] -= ms["proxy fwd"]  # the proxy runs inside the wait for a chunk
    # Between a chunk's task loss and the wait for the next chunk: its backward.
    ends = [b for name, _, b in spans if name == "task fwd"]
    waits = [a for name, a, _ in spans if name in ("next chunk", "chunks done")]
    for end in ends:
        later = [a for a in waits if a >= end]
        if later:
            ms["chunk bwd (task+proxy)"] += (min(later) - end) * 1000
    done = [b for name, _, b in spans if name == "chunks done"]
    adam = [a for name, a, _ in spans if name == "Adam"]
    if done and adam:
        ms["NPP bwd"] = (adam[0] - done[0]) * 1000
    total = (t1 - t0) * 1000
    ms["other"] = total - sum(v for k, v in ms.items() if k != "other")
    ms["step"] = total
    calls = sorted(clock.codec)
    if calls:
        ms["pool busy"] = sum(b - a for a, b in calls) * 1000
        ms["pool idle before"] = (calls[0][0] - t0) * 1000
        ms["pool idle after"] = (t1 - calls[-1][1]) * 1000
        ms["pool idle between"] = total - ms["pool busy"] - ms["pool idle before"]
        ms["pool idle between"] -= ms["pool idle after"]
    return ms


# --------------------------------------------------------------------------- report


def fmt_row(name: str, chunks: str, t: Timing, n: int, codec_ms: float) -> str:
    """One line of the main table."""
    ms = t.median
    return (
        f"| {name} | {chunks} | {ms:.1f} | {1000 * n / ms:.1f} | {ms / codec_ms:.2f}x "
        f"| {t.load:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64, help="images per step")
    ap.add_argument("--size", type=int, default=256, help="crop side")
    ap.add_argument("--level", type=int, default=8, help="BPG compression level (1..9)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 8], help="values to run")
    ap.add_argument("--threads", type=int, default=0, help="codec threads (0: one per core)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per row (median)")
    ap.add_argument(
        "--task", default="auto", help="auto (ResNet-50 if torchvision, else "
        "efficientnet_lite0), resnet50, or any npp_ext.tasks.build_task spec",
    )  # fmt: skip
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument(
        "--torch-threads", type=int, default=0,
        help="torch's CPU threads (0: torch's default); 1 is steadier on a loaded machine",
    )  # fmt: skip
    ap.add_argument("--proxy-n", type=int, default=128)
    ap.add_argument("--proxy-m", type=int, default=192)
    ap.add_argument("--authors-repeats", type=int, default=2, help="timed steps of (d)")
    ap.add_argument("--no-authors", action="store_true", help="skip (d)")
    ap.add_argument("--bpgenc", help="bpgenc-npp for (d) instead of build/bench-tools/")
    ap.add_argument("--bpgdec", help="bpgdec-npp for (d) instead of build/bench-tools/")
    ap.add_argument("--profile", action="store_true", help="also print where the time goes")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.size < 16 or args.repeats < 1 or min(args.chunks) < 1:
        ap.error("--batch, --repeats and --chunks must be >= 1, --size >= 16")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args.threads = args.threads or cores or 1
    args.task_spec, why = pick_task(args.task)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    dev = args.device
    n, s = args.batch, args.size
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    task = build_task(args.task_spec, labels="teacher")
    batch = {"image": photo_crops("train", s, n)}
    full: dict[int, Timing] = {}
    compute: dict[int, Timing] = {}
    profiles: dict[int, dict[str, float]] = {}
    authors: Timing | None = None
    authors_note = ""
    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        proxy = save_proxy(tmp, args.proxy_n, args.proxy_m, args.level)
        for c in args.chunks:
            log(f"(a) full step, chunks {c}")
            trainer = make_trainer(args, proxy, tmp, task, c)
            full[c] = time_steps(trainer, batch, args.repeats, dev)
            if args.profile:
                log(f"profile, chunks {c}")
                runs = [profile_step(trainer, batch, dev) for _ in range(args.repeats)]
                profiles[c] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
            log(f"(c) compute alone, chunks {c}")
            with codec_replaced(no_codec_chunks):
                trainer = make_trainer(args, proxy, tmp, task, c)
                compute[c] = time_steps(trainer, batch, args.repeats, dev)
        log("(b) codec alone")
        trainer = make_trainer(args, proxy, tmp, task, 1)
        x = batch["image"].to(trainer.rt.device).float() / 255
        codec = codec_alone(trainer, x, args, args.chunks)
        if not args.no_authors:
            authors, authors_note = run_authors(args, proxy, tmp, task, batch)
    load_after = os.getloadavg()

    print(
        f"NPP training step: {n} x {s}x{s}, level {args.level}, device {dev}, task "
        f"{args.task_spec} ({why}), proxy N={args.proxy_n} M={args.proxy_m}, amp {args.amp}, "
        f"codec threads {args.threads}, torch threads {torch.get_num_threads()}, {cores} cores, "
        f"torch {torch.__version__}; median of "
        f"{args.repeats} steps after a warm-up step; load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after; {time.perf_counter() - t_start:.0f} s in all"
    )
    print()
    print("| row | chunks | ms/step | images/s | / codec alone | other load (cores) |")
    print("|---|---:|---:|---:|---:|---:|")
    base = codec[1].median
    for c in args.chunks:
        print(fmt_row("(a) full step", str(c), full[c], n, base))
    print(fmt_row("(b) codec alone (roundtrip_yuv_batch)", "1", codec[1], n, base))
    for c in sorted(codec):
        if c != 1:
            print(fmt_row("(b') codec alone, chunk after chunk", str(c), codec[c], n, base))
    for c in args.chunks:
        print(fmt_row("(c) compute alone (no codec)", str(c), compute[c], n, base))
    if authors is not None:
        print(fmt_row("(d) authors' pattern (PNG + bpgenc + bpgdec per image)", "1",
                      authors, n, base))  # fmt: skip
    print(
        "\nother load: CPU cores that other processes used during the timed runs "
        "(/proc/stat less this process), median."
    )
    if authors_note:
        print(f"(d): {authors_note}")

    best_c = min(full, key=lambda c: full[c].median)
    best = full[best_c].median
    on_gpu = dev.startswith("cuda")

    def verdict(ok: bool) -> str:
        return ("PASS" if ok else "MISS") if on_gpu else "(a GPU target)"

    print(f"\nTargets (set for 64 x 256x256, level 8, on the H200; this run: {n} x {s}x{s}, "
          f"level {args.level}; best step: chunks {best_c}):\n")  # fmt: skip
    print("| target | measured | result |")
    print("|---|---:|---|")
    ratio = best / base
    print(f"| step <= {TARGET_CODEC_RATIO}x codec alone | {ratio:.2f}x | "
          f"{verdict(ratio <= TARGET_CODEC_RATIO)} |")  # fmt: skip
    if authors is not None:
        speed = authors.median / best
        print(f"| step >= {TARGET_AUTHORS_SPEEDUP:g}x the authors' pattern (images/s) | "
              f"{speed:.2f}x | {verdict(speed >= TARGET_AUTHORS_SPEEDUP)} |")  # fmt: skip
    else:
        print(f"| step >= {TARGET_AUTHORS_SPEEDUP:g}x the authors' pattern | not run | - |")
    if profiles:
        print_profile(profiles, base)
    return 0


def run_authors(
    args: argparse.Namespace, proxy: str, tmp: str, task: Task, batch: dict[str, Tensor]
) -> tuple[Timing | None, str]:
    """(d)'s step times, or None and why it could not run."""
    try:
        from codec_throughput import TOOLS_STALE, find_tools

        enc, dec = find_tools(args.bpgenc, args.bpgdec)
    except Exception as e:  # no tools: the other rows still stand
        return None, f"not run: the tools could not be found or built ({e})"
    log(f"(d) authors' pattern with {enc} and {dec}")
    pattern = AuthorsPattern(enc, dec, args.level, tmp)
    probe = batch["image"][0].permute(1, 2, 0).contiguous().numpy()
    try:
        pattern.roundtrip(probe, 37)  # warm-up: the tools in the page cache
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", None)
        detail = f" ({err.decode(errors='replace').strip()})" if err else ""
        return None, f"not run: {e}{detail}"
    with codec_replaced(pattern.chunks):
        trainer = make_trainer(args, proxy, tmp, task, 1)
        sync = sync_fn(args.device)
        trainer.step = 1  # the QPs of steps 1.., as the other rows; compute warmed up there
        timing = Timing()
        for _ in range(max(1, args.authors_repeats)):
            with timing.run():
                trainer.train_step(batch)
                sync()
    note = f"median of {len(timing.ms)} steps; tools in {enc.parent}"
    if TOOLS_STALE[0]:
        note += " (older binaries: their rebuild failed)"
    return timing, note


def print_profile(profiles: dict[int, dict[str, float]], codec_ms: float) -> None:
    """The --profile table: phases per chunks value."""
    chunks = list(profiles)
    print(
        "\nWhere a step's time goes (ms, median of the profiled steps; the device is "
        "synchronized at each boundary). codec wait: blocked waiting for a decoded chunk, "
        "less the proxy forward run inside that wait; chunk bwd: the task's and the "
        "proxy's backward of each chunk, with the loss bookkeeping. pool: when the codec "
        "pool was coding (bpg.start_roundtrip_yuv_batch batches, start to end of wait).\n"
    )
    print("| phase | " + " | ".join(f"chunks {c}" for c in chunks) + " |")
    print("|---|" + "---:|" * len(chunks))
    keys = [*PHASES, "step", "pool busy", "pool idle before", "pool idle between"]
    keys.append("pool idle after")
    for k in keys:
        cells = " | ".join(f"{profiles[c].get(k, float('nan')):.1f}" for c in chunks)
        print(f"| {k} | {cells} |")
    print(f"| (codec alone, one call) | {' | '.join(f'{codec_ms:.1f}' for _ in chunks)} |")


if __name__ == "__main__":
    raise SystemExit(main())
