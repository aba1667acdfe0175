"""``npp-ext train-proxy``: a QP-conditioned learned codec that stands in for BPG.

Stage 1 (rate-distortion): L = R/(H W) + lambda_p(qp) * 255^2 MSE(x_proxy, x).
Stage 2 (mimic BPG):       L = R/(H W) + lambda_p(qp) * 255^2 MSE(x_proxy, x_bpg),
with x_bpg from the in-process codec at the run's level/chroma, at per-image QPs drawn
from the QP range.

lambda_p(qp) is calibrated from BPG on the training data. BPG is run on a calibration set
of crops at a grid of QPs; a codec trained with R + lambda D sits where its rate-distortion
curve has slope -lambda, so the starting table is minus BPG's slope dR/dD between
neighbouring QPs (fitted log-linear in QP). During training, every ``calib_every`` steps
the proxy codes the calibration set at the grid QPs and each QP's log lambda moves by half
the log ratio of BPG's bits to the proxy's (more lambda, more bits), so the proxy's rate
at each QP tracks BPG's. The table and BPG's reference points are stored in the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import bpg
from .. import checkpoint as ckpt_io
from ..data import Compose, RandomCrop, RandomFlip, open_dataset, step_loader, to_float
from ..data.loader import _mix
from ..metrics import psnr, spearman
from ..models import Proxy
from .config import ProxyConfig
from .lambdas import LambdaTable
from .npp import draw_qps
from .runtime import JsonLog, Runtime, progress, setup

__all__ = ["calibration_grid", "proxy_report", "train_proxy"]

_MSE_SCALE = 255.0**2  # distortion in 8-bit units, the scale of the usual lambdas


def calibration_grid(qp_range: tuple[int, int], points: int = 6) -> list[int]:
    """QPs spread over the range, both ends included."""
    lo, hi = qp_range
    return sorted({round(lo + (hi - lo) * i / max(1, points - 1)) for i in range(points)})


def _bpg_points(
    crops: Tensor, grid: list[int], cfg: ProxyConfig, threads: int
) -> dict[int, dict[str, float]]:
    """BPG's mean bpp and 255^2-MSE on the calibration crops at each grid QP."""
    arrays = [np.ascontiguousarray(c.permute(1, 2, 0).numpy()) for c in crops]
    pixels = crops.shape[2] * crops.shape[3]
    out = {}
    for qp in grid:
        res = bpg.roundtrip_batch(arrays, qp, threads=threads, **cfg.codec.kwargs())
        mse = [
            np.mean((a.astype(np.float64) - b) ** 2)
            for a, b in zip(arrays, res.images, strict=True)
        ]
        out[qp] = {"bpp": float(np.mean(res.bits)) / pixels, "mse": float(np.mean(mse))}
    return out


def _initial_table(points: dict[int, dict[str, float]]) -> LambdaTable:
    """lambda = -dR/dD from BPG's curve, smoothed by a log-linear fit in QP."""
    qps = sorted(points)
    slopes = []
    for a, b in zip(qps, qps[1:], strict=False):
        d_rate = points[a]["bpp"] - points[b]["bpp"]
        d_dist = points[b]["mse"] - points[a]["mse"]
        if d_rate > 0 and d_dist > 0:
            slopes.append(((a + b) / 2, math.log(d_rate / d_dist)))
    if len(slopes) < 2:  # a flat calibration set: the usual scale, falling with the QP
        return LambdaTable([(qps[0], 0.05), (qps[-1], 0.002)] if len(qps) > 1 else [(qps[0], 0.01)])
    x, y = np.array([s[0] for s in slopes]), np.array([s[1] for s in slopes])
    b, a = np.polyfit(x, y, 1)
    return LambdaTable([(q, math.exp(a + b * q)) for q in qps])


@torch.no_grad()
def _proxy_bpp(proxy: Proxy, x: Tensor, qp: int) -> float:
    was = proxy.training
    proxy.eval()
    out = proxy(x, qp)
    proxy.train(was)
    return float(out.bits.mean()) / (x.shape[2] * x.shape[3])


#: Per re-calibration, log lambda moves by at most this much; in all, it stays within
#: _MAX_DRIFT of the slope-derived start (a factor of 10 either way). A proxy far from
#: its equilibrium rate must not drive lambda to where training diverges.
_MAX_STEP, _MAX_DRIFT = 0.2, math.log(10.0)


def _recalibrate(
    table: LambdaTable,
    start: LambdaTable,
    proxy: Proxy,
    calib: Tensor,
    points: dict[int, dict[str, float]],
) -> tuple[LambdaTable, dict[int, float]]:
    """Move each grid QP's lambda by half the log ratio of BPG's bpp to the proxy's
    (bounded: see _MAX_STEP and _MAX_DRIFT)."""
    pairs, rates = [], {}
    for qp, ref in points.items():
        rate = _proxy_bpp(proxy, calib, qp)
        rates[qp] = rate
        step = 0.5 * math.log(max(ref["bpp"], 1e-6) / max(rate, 1e-6))
        step = max(-_MAX_STEP, min(_MAX_STEP, step))
        base = start.log_lambda(qp)
        moved = min(base + _MAX_DRIFT, max(base - _MAX_DRIFT, table.log_lambda(qp) + step))
        pairs.append((qp, math.exp(moved)))
    return LambdaTable(pairs), rates


@torch.no_grad()
def proxy_report(
    proxy: Proxy, images: Tensor, grid: list[int], cfg: ProxyConfig, threads: int
) -> list[dict[str, float]]:
    """Per QP on held-out images: PSNR of the proxy's reconstruction against BPG's, and
    the proxy's estimated bits against BPG's real bits (mean relative error, Spearman's
    rank correlation across images)."""
    proxy.eval()
    arrays = [np.ascontiguousarray(c.permute(1, 2, 0).numpy()) for c in images]
    x = images.float() / 255
    rows = []
    for qp in grid:
        res = bpg.roundtrip_batch(arrays, qp, threads=threads, **cfg.codec.kwargs())
        out = proxy(x, qp)
        rec = (out.x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        est, real = out.bits.numpy().astype(np.float64), res.bits.astype(np.float64)
        psnrs = [psnr(a, b) for a, b in zip(rec, res.images, strict=True)]
        rows.append({
            "qp": qp,
            "psnr_proxy_vs_bpg": float(np.mean(psnrs)),
            "bpg_bpp": float(real.mean()) / (x.shape[2] * x.shape[3]),
            "proxy_bpp": float(est.mean()) / (x.shape[2] * x.shape[3]),
            "bits_rel_error": float(np.mean(np.abs(est - real) / real)),
            "bits_spearman": spearman(est, real),
        })  # fmt: skip
    return rows


def _crops(ds: Any, count: int, size: int, seed: int) -> Tensor:
    """``count`` deterministic random crops (N, 3, size, size) uint8 of a dataset."""
    crop = RandomCrop(size)
    out = []
    for i in range(count):
        g = torch.Generator().manual_seed(_mix(seed, 3, i))
        item = ds[int(torch.randint(0, len(ds), (1,), generator=g))]
        out.append(crop(item, g)["image"])
    return torch.stack(out)


def _initial_proxy(cfg: ProxyConfig) -> Proxy:
    """A new proxy of the config's size, or one started from weights (``cfg.init``):
    ``compressai:PATH`` (a CompressAI mean-scale hyperprior state dict; its sizes win) or
    ``proxy:PATH`` (a proxy checkpoint)."""
    if not cfg.init:
        return Proxy(N=cfg.N, M=cfg.M, context=cfg.context)
    kind, _, path = cfg.init.partition(":")
    if kind == "compressai" and path:
        from ..models.compressai_import import proxy_from_compressai

        state = torch.load(path, map_location="cpu", weights_only=True)
        return proxy_from_compressai(state.get("state_dict", state))
    if kind == "proxy" and path:
        saved = ckpt_io.load(path, "proxy")
        proxy = Proxy(**saved["model"]["config"])
        proxy.load_state_dict(saved["model"]["state_dict"])
        return proxy
    raise ValueError(f"init must be 'compressai:PATH' or 'proxy:PATH', got {cfg.init!r}")


def _step_loss(
    proxy: Proxy, x: Tensor, target: Tensor, qps: Tensor, table: LambdaTable
) -> tuple[Tensor, dict[str, float]]:
    """The loss to minimise (rate-distortion plus the prior's quantile loss) and its
    terms: ``rd`` (the rate-distortion part), ``bpp``, ``mse`` (255^2 units)."""
    out = proxy(x, qps)
    bpp = out.bits / (x.shape[2] * x.shape[3])
    mse = ((out.x_hat - target) ** 2).flatten(1).mean(1) * _MSE_SCALE
    rd = (bpp + table(qps).to(x.device) * mse).mean()
    terms = {"rd": float(rd.detach()), "bpp": float(bpp.detach().mean())}
    terms["mse"] = float(mse.detach().mean())
    return rd + proxy.aux_loss(), terms


def train_proxy(cfg: ProxyConfig, *, quiet: bool = False) -> str:
    """Run ``npp-ext train-proxy``; returns the checkpoint path (``OUT/proxy.pt``).

    Also writes ``OUT/config.json``, ``OUT/log.jsonl`` and ``OUT/report.json`` (the
    per-QP report of :func:`proxy_report` on held-out crops, before and after training).
    """
    rt: Runtime = setup(cfg.device)
    if rt.world > 1:
        raise ValueError("train-proxy runs in one process (its model is small)")
    threads = rt.codec_threads(cfg.threads)
    torch.manual_seed(_mix(cfg.seed, 4))
    train_ds = open_dataset(cfg.data, side="train", holdout=cfg.holdout, seed=cfg.seed)
    try:
        held_ds = open_dataset(cfg.data, side="holdout", holdout=cfg.holdout, seed=cfg.seed)
    except ValueError:
        held_ds = None  # no held-out part: the report uses calibration-like training crops
    calib = _crops(train_ds, cfg.calib_images, cfg.crop, cfg.seed)
    report_crops = _crops(held_ds or train_ds, cfg.report_images, cfg.crop, cfg.seed + 1)
    grid = calibration_grid(cfg.qp_range)
    points = _bpg_points(calib, grid, cfg, threads)
    table = start_table = _initial_table(points)

    proxy = _initial_proxy(cfg).to(rt.device).train()
    quantiles = [p for n, p in proxy.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in proxy.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam([{"params": main_params}, {"params": quantiles, "lr": 1e-3}], lr=cfg.lr)
    os.makedirs(cfg.out, exist_ok=True)
    with open(os.path.join(cfg.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    report = {"before": proxy_report(proxy, report_crops, grid, cfg, threads)}
    proxy.train()
    calib_x = calib.float().div(255).to(rt.device)
    log = JsonLog(os.path.join(cfg.out, "log.jsonl"))
    loader = step_loader(
        train_ds, cfg.batch, transform=Compose([RandomCrop(cfg.crop), RandomFlip()]),
        seed=cfg.seed, start=0, steps=cfg.steps, workers=cfg.workers,
    )  # fmt: skip
    try:
        with progress(cfg.steps, 0, "train proxy", not quiet) as bar:
            for step, batch in enumerate(loader):
                x = to_float(batch, rt.device)
                qps = draw_qps(cfg.seed, step, x.shape[0], cfg.qp_range, True)
                stage = 1 if step < cfg.stage1_steps else 2
                if stage == 1:
                    target = x
                else:  # BPG's reconstruction at each image's QP
                    rec = bpg.roundtrip_batch(
                        batch["image"], qps.tolist(), threads=threads, **cfg.codec.kwargs()
                    ).images
                    target = rec.to(rt.device).float() / 255
                loss, terms = _step_loss(proxy, x, target, qps.to(rt.device), table)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                # Large lambdas on 255^2 MSE make rare huge gradients (GDN, the gains)
                torch.nn.utils.clip_grad_norm_(main_params, 1.0)
                opt.step()
                # Rate matching once the proxy has settled a little (calib_every steps in).
                if (step + 1) % cfg.calib_every == 0 and step + 1 > cfg.calib_every:
                    table, _ = _recalibrate(table, start_table, proxy, calib_x, points)
                bar.update(1)
                bar.set_postfix(stage=stage, rd=f"{terms['rd']:.4f}", bpp=f"{terms['bpp']:.3f}")
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    log.write({"step": step + 1, "stage": stage, **terms})
    finally:
        log.close()
    rates = {q: _proxy_bpp(proxy, calib_x, q) for q in grid}
    report["after"] = proxy_report(proxy, report_crops, grid, cfg, threads)
    report["calibration"] = {
        "qps": grid,
        "bpg": {str(q): v for q, v in points.items()},
        "proxy_bpp": {str(q): v for q, v in rates.items()},
        "lambdas": str(table),
    }
    with open(os.path.join(cfg.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    path = os.path.join(cfg.out, "proxy.pt")
    ckpt_io.save(
        path, "proxy", proxy, codec=cfg.codec, qp_range=cfg.qp_range, config=cfg.to_dict(),
        extra={"lambdas": str(table), "calibration": report["calibration"]},
    )  # fmt: skip
    return path
