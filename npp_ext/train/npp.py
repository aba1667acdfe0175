"""``npp-ext train``: the NPP trained through real BPG (values) and the proxy (gradients).

Per step: a batch of crops x, per-image QPs drawn from the QP range (one QP for the batch
when the task's loss is not per image, e.g. detection) and lambda = table(QP);
x_bar = NPP(x, qp); (x_hat, bits) = BPGProxyFn(x_bar, qp, proxy); and

    L = mean over images of  bits / (H W)  +  lambda * D_task(x_hat)  +  beta * MSE(x_bar, x)

with Adam (linear warm-up). The batch may be split into chunks: the codec codes them one
after the other while the task's forward and backward of the chunks already decoded run
(bpg_proxy_chunks); the NPP's backward then takes the summed gradient of x_bar, which is
the unsplit batch's.

A run is a function of its config: batch t and its QPs derive from (seed, t), so a run
resumed from a checkpoint repeats the steps of an uninterrupted one, and under torchrun
each rank takes its share of the same global batch (and its part of the cores).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch
from torch import Tensor, nn

from .. import checkpoint as ckpt_io
from ..autograd import bpg_proxy_chunks
from ..data import Compose, RandomCrop, RandomFlip, open_dataset, step_loader, to_float
from ..data.loader import _mix
from ..models import NPP, Proxy
from ..tasks import Task, build_task
from .config import NPPConfig
from .runtime import JsonLog, Runtime, autocast, progress, setup

__all__ = ["draw_qps", "train_npp"]


def draw_qps(seed: int, step: int, n: int, qp_range: tuple[int, int], per_image: bool) -> Tensor:
    """The QPs of step ``step``'s global batch of ``n`` images: uniform in ``qp_range``,
    one per image (or one for all), a fixed function of (seed, step)."""
    g = torch.Generator().manual_seed(_mix(seed, step, 1))
    lo, hi = qp_range
    draws = torch.randint(lo, hi + 1, (n if per_image else 1,), generator=g)
    return draws if per_image else draws.expand(n).clone()


def _task(cfg: NPPConfig) -> Task:
    kw: dict[str, Any] = {"labels": cfg.labels}
    if cfg.task_weights:
        kw["weights"] = cfg.task_weights
    return build_task(cfg.task, **kw)


def _lr_factor(step: int, warmup: int) -> float:
    return 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)


class NPPTrainer:
    """The NPP, its optimizer and the frozen proxy and task, for one process of a run."""

    def __init__(self, cfg: NPPConfig, rt: Runtime, task: Task | None = None) -> None:
        self.cfg, self.rt = cfg, rt
        torch.manual_seed(_mix(cfg.seed, 2))
        self.npp = NPP().to(rt.device).train()
        self.proxy = Proxy.from_checkpoint(cfg.proxy, codec=cfg.codec, map_location=rt.device)
        self.proxy.requires_grad_(False)
        self.task = (task if task is not None else _task(cfg)).to(rt.device)
        self.table = cfg.lambda_table
        self.model: nn.Module = self.npp
        if rt.world > 1:
            if rt.device.type == "cuda":  # one BatchNorm over the global batch
                self.npp = nn.SyncBatchNorm.convert_sync_batchnorm(self.npp)
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.npp, device_ids=ids)
        self.opt = torch.optim.Adam(self.npp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=cfg.amp == "fp16")
        self.step = 0
        self.threads = rt.codec_threads(cfg.threads)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str) -> None:
        """Write a checkpoint (main process only) with everything a resume needs."""
        if not self.rt.main:
            return
        state = {
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        ckpt_io.save(
            path, "npp", self.npp, codec=self.cfg.codec, qp_range=self.cfg.qp_range,
            task=self.cfg.task, config=self.cfg.to_dict(),
            extra={"lambdas": str(self.table)}, train_state=state,
        )  # fmt: skip

    def resume(self, path: str) -> None:
        """Continue from a checkpoint of this run: weights, optimizer, step."""
        saved = ckpt_io.load(path, "npp")
        if "train_state" not in saved:
            raise ValueError(f"{path!r} holds no training state to resume from")
        self.npp.load_state_dict(saved["model"]["state_dict"])
        self.opt.load_state_dict(saved["train_state"]["optimizer"])
        self.scaler.load_state_dict(saved["train_state"]["scaler"])
        self.step = int(saved["train_state"]["step"])

    # ------------------------------------------------------------------ one step

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimizer step on this rank's part of the batch; returns its loss terms."""
        cfg, rt = self.cfg, self.rt
        x = to_float(batch, rt.device)
        n, _, h, w = x.shape
        global_n = n * rt.world
        qps = draw_qps(cfg.seed, self.step, global_n, cfg.qp_range, self.task.per_sample)
        qps = qps[rt.rank :: rt.world].to(rt.device)
        lam = self.table(qps).to(rt.device)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(self.step, cfg.warmup)

        with autocast(rt.device, cfg.amp):
            x_bar = self.model(x, qps)
        leaf = x_bar.detach().float().requires_grad_(True)
        chunks = bpg_proxy_chunks(
            leaf, qps, self.proxy, chunks=cfg.chunks if self.task.per_sample else 1,
            level=cfg.level, chroma=cfg.chroma, threads=self.threads,
        )  # fmt: skip
        try:
            with torch.no_grad():  # the teacher's forward while the pool codes
                targets = self.task.targets(x, batch)
        except BaseException:
            chunks.close()
            raise
        loss_total = torch.zeros((), device=rt.device)
        sums = torch.zeros(3, device=rt.device)  # bpp, d_task, d_pre over the images
        for rows, x_hat, bits in chunks:
            with autocast(rt.device, cfg.amp):
                d_task = self.task.loss(x_hat, self.task.select(targets, rows)).float()
            bpp = bits / (h * w)
            d_pre = ((leaf[rows] - x[rows]) ** 2).flatten(1).mean(1)
            if self.task.per_sample:  # this chunk's share of the batch mean
                loss = (bpp + lam[rows] * d_task + cfg.beta * d_pre).sum() / n
                task_sum = d_task.detach().sum()
            else:  # one scalar task loss for the batch, one lambda (one chunk)
                loss = (bpp + cfg.beta * d_pre).mean() + lam[0] * d_task
                task_sum = d_task.detach() * n
            self.scaler.scale(loss).backward()
            # On the device: a host read here would stall the next chunk's queue.
            loss_total += loss.detach()
            sums += torch.stack([bpp.detach().sum(), task_sum, d_pre.detach().sum()])
        # The NPP's backward once, with the gradient of x_bar the chunks added up.
        x_bar.float().backward(leaf.grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        bpp_mean, task_mean, pre_mean = (sums.double() / n).tolist()
        return {
            "loss": float(loss_total), "bpp": bpp_mean, "d_task": task_mean, "d_pre": pre_mean,
            "qp": float(qps.float().mean()),
        }  # fmt: skip


def _loader(cfg: NPPConfig, rt: Runtime, start: int) -> Any:
    ds = open_dataset(cfg.data, side="train", holdout=cfg.holdout, seed=cfg.seed)
    transform = Compose([RandomCrop(cfg.crop), RandomFlip()])
    return step_loader(
        ds, cfg.batch, transform=transform, seed=cfg.seed, start=start, steps=cfg.steps,
        rank=rt.rank, world=rt.world, workers=cfg.workers,
        pin_memory=rt.device.type == "cuda",
    )  # fmt: skip


def train_npp(cfg: NPPConfig, *, task: Task | None = None, quiet: bool = False) -> str:
    """Run ``npp-ext train``; returns the path of the final checkpoint (``OUT/npp.pt``).

    Writes ``OUT/config.json``, ``OUT/log.jsonl`` (one line per ``log_every`` steps:
    loss terms, real bpp, learning rate, images/s) and ``OUT/npp.pt`` every
    ``ckpt_every`` steps and at the end. ``task`` replaces ``cfg.task`` (a Python hook).
    """
    rt = setup(cfg.device)
    trainer = NPPTrainer(cfg, rt, task)
    final = os.path.join(cfg.out, "npp.pt")
    if cfg.resume:
        trainer.resume(final if cfg.resume == "auto" else cfg.resume)
    if rt.main:
        os.makedirs(cfg.out, exist_ok=True)
        with open(os.path.join(cfg.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg.to_dict(), f, indent=2)
    log = JsonLog(os.path.join(cfg.out, "log.jsonl"), enabled=rt.main)
    t0, seen = time.perf_counter(), 0
    try:
        with progress(cfg.steps, trainer.step, "train NPP", rt.main and not quiet) as bar:
            for batch in _loader(cfg, rt, trainer.step):
                terms = rt.all_mean(trainer.train_step(batch))
                seen += cfg.batch
                bar.update(1)
                bar.set_postfix(
                    loss=f"{terms['loss']:.4f}", bpp=f"{terms['bpp']:.3f}",
                    task=f"{terms['d_task']:.4f}", pre=f"{terms['d_pre']:.5f}",
                )  # fmt: skip
                if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
                    rate = seen / max(1e-9, time.perf_counter() - t0)
                    log.write({"step": trainer.step, **terms, "images_per_s": rate,
                               "lr": trainer.opt.param_groups[0]["lr"]})  # fmt: skip
                if trainer.step % cfg.ckpt_every == 0 and trainer.step < cfg.steps:
                    trainer.save(final)
        trainer.save(final)
    finally:
        log.close()
    if rt.world > 1:
        torch.distributed.barrier()
    return final
