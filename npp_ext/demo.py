"""``npp-ext demo``: the method end to end on what the dependencies ship.

scikit-image's sample photos are the data (training photos and held-out photos never
overlap: ``npp_ext.data.PHOTO_SPLITS``) and the ImageNet EfficientNet-Lite0 of the PyPI
packages is the frozen task network, without labels (the NPP learns to keep its
prediction on the uncompressed image). The demo trains a small proxy (rate-distortion,
then mimicking BPG), trains the NPP through real BPG, and evaluates plain BPG and NPP +
BPG on crops of the held-out photos over a QP sweep: the rate-accuracy table and the
BD-rate at equal top-1 agreement and at equal probability of the uncompressed top-1
class. An untrained NPP is evaluated beside it as a control: the spread of two untrained
NPPs is the noise floor a saving must clear.

Sized for a 2-core CPU in well under ten minutes; ``scale`` multiplies the steps and
images (a GPU machine can take 5-10x).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from .data import photo_crops
from .evaluate import evaluate, plot, sweep_table, write_json
from .models import NPP
from .options import EncodeOptions
from .tasks import efficientnet_lite0
from .train import NPPConfig, ProxyConfig, train_npp
from .train.proxy import train_proxy

__all__ = ["DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    """The demo's sizes (the defaults fit a 2-core CPU)."""

    proxy_steps: int = 150
    proxy_stage1: int = 100
    proxy_size: tuple[int, int] = (32, 48)
    npp_steps: int = 120
    npp_batch: int = 4
    npp_crop: int = 64
    npp_lr: float = 1e-3
    eval_crop: int = 128
    eval_images: int = 128
    qps: tuple[int, ...] = (27, 32, 37, 42, 47)
    level: int = 8
    seed: int = 0

    def scaled(self, scale: float) -> DemoSettings:
        """The same demo with ``scale`` times the steps and held-out images."""
        s = DemoSettings(**self.__dict__)
        s.proxy_steps = max(2, round(self.proxy_steps * scale))
        s.proxy_stage1 = round(self.proxy_stage1 * scale)
        s.npp_steps = max(1, round(self.npp_steps * scale))
        s.eval_images = max(4, round(self.eval_images * scale))
        return s


def run_demo(
    out: str | None = None,
    *,
    settings: DemoSettings | None = None,
    device: str = "auto",
    threads: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train a proxy and an NPP on the sample photos and evaluate them (an untrained NPP
    beside it as the control); returns the evaluation and writes ``npp.pt``,
    ``proxy.pt``, ``eval.json`` and ``eval.png`` into ``out`` (a temporary folder when
    None)."""
    s = settings or DemoSettings()
    out = out or tempfile.mkdtemp(prefix="npp_ext-demo-")
    os.makedirs(out, exist_ok=True)
    say = (lambda *a: None) if quiet else print
    t0 = time.perf_counter()
    n, m = s.proxy_size
    proxy_cfg = ProxyConfig(
        data="photos", out=os.path.join(out, "proxy"), steps=s.proxy_steps,
        stage1_steps=s.proxy_stage1, N=n, M=m, batch=8, crop=64, lr=1e-3, level=s.level,
        qp_range=(min(s.qps), max(s.qps)), calib_images=8, calib_every=25,
        report_images=8, seed=s.seed, device=device, threads=threads,
    )  # fmt: skip
    say(f"[1/3] proxy: {s.proxy_steps} steps (N={n}, M={m}) on the training photos")
    proxy_path = train_proxy(proxy_cfg, quiet=quiet)
    say(f"      done in {time.perf_counter() - t0:.0f} s")

    t1 = time.perf_counter()
    npp_cfg = NPPConfig(
        data="photos", out=os.path.join(out, "npp"), proxy=proxy_path, steps=s.npp_steps,
        batch=s.npp_batch, crop=s.npp_crop, lr=s.npp_lr, level=s.level,
        qp_range=(min(s.qps), max(s.qps)), seed=s.seed, device=device, threads=threads,
        ckpt_every=max(1, s.npp_steps), log_every=10, warmup=20,
    )  # fmt: skip
    say(f"[2/3] NPP: {s.npp_steps} steps through real BPG, EfficientNet-Lite0 as the teacher")
    npp_path = train_npp(npp_cfg, quiet=quiet)
    say(f"      done in {time.perf_counter() - t1:.0f} s")

    t2 = time.perf_counter()
    say(f"[3/3] evaluation: {s.eval_images} held-out crops of {s.eval_crop}x{s.eval_crop}")
    images = list(photo_crops("holdout", s.eval_crop, s.eval_images, seed=s.seed))
    task = efficientnet_lite0()
    codec = EncodeOptions(level=s.level)
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else device
    dev = "cpu" if dev == "auto" else dev
    trained = NPP.from_checkpoint(npp_path, codec=codec)
    torch.manual_seed(s.seed + 7)
    controls = {"untrained npp+bpg (control)": NPP()}
    result = evaluate(
        images, task, s.qps, npp=trained, controls=controls, codec=codec, threads=threads,
        device=dev,
    )  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 1)
    say(f"      done in {time.perf_counter() - t2:.0f} s")
    for name, src in (("npp.pt", npp_path), ("proxy.pt", proxy_path)):
        os.replace(src, os.path.join(out, name))
    write_json(result, os.path.join(out, "eval.json"))
    try:
        plot(result, os.path.join(out, "eval.png"))
    except ImportError as e:
        say(f"(no plot: {e})")
    say(sweep_table(result))
    say(f"written to {out} in {result['seconds']:.0f} s")
    return result
