"""``npp-ext eval``: rate-accuracy of plain BPG and of NPP + BPG over a QP sweep.

For every QP, each held-out image is coded by BPG as it is (plain) and after the NPP (the
NPP's output rounded to 8 bits as the codec's own input rule does), decoded, and given to
the task: bpp is the real file's bits over the image's pixels (averaged over images),
the task metric compares the decoded image with the uncompressed one (top-1 agreement and
the probability of the uncompressed top-1 class; top-1 accuracy with labels; mAP for
detection), and PSNR is against the original. The BD-rate of NPP + BPG against plain BPG
is computed at equal value of each metric (``npp_ext.metrics.bd_rate``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import bpg
from .metrics import bd_rate, psnr
from .models import NPP
from .options import EncodeOptions, check_qp, check_threads
from .tasks import Task

__all__ = ["QUALITY_KEYS", "evaluate", "plot", "sweep_table"]

#: Metrics that BD-rates are computed at, when the task gives them.
QUALITY_KEYS = ("top1_agreement", "teacher_class_prob", "top1_accuracy", "map", "psnr")


def _batches(images: Sequence[Tensor], batch: int) -> Iterable[list[int]]:
    """Index groups of at most ``batch`` images of one size (in the given order)."""
    group: list[int] = []
    for i, img in enumerate(images):
        if group and (len(group) == batch or img.shape != images[group[0]].shape):
            yield group
            group = []
        group.append(i)
    if group:
        yield group


def _to_u8(x: Tensor) -> Tensor:
    """Float images in [0, 1] -> uint8, by the codec's own rule round(clamp(x) * 255)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def evaluate(
    images: Sequence[Tensor],
    task: Task,
    qps: Sequence[int],
    *,
    npp: NPP | None = None,
    controls: dict[str, NPP] | None = None,
    codec: EncodeOptions | None = None,
    batch: int = 16,
    threads: int = 0,
    device: str | torch.device = "cpu",
    extras: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rate-accuracy points of plain BPG (and of NPP + BPG when ``npp`` is given).

    ``images``: uint8 (3, H, W) tensors (any sizes; same-size neighbours are batched);
    ``extras``: per image, what the task's targets need besides the pixels (e.g. a
    ``"label"`` or ``"boxes"``/``"labels"``). ``controls``: more NPPs by name (an untrained
    one, say), evaluated the same way. Returns ``{"points": [...], "bd_rate": {...}}`` with
    a point per (method, QP) (``bpp``, ``psnr`` and the task's metrics) and, per NPP
    method, its BD-rate against plain BPG at equal value of each metric
    (``bd_rate["npp+bpg"]["top1_agreement"]``...).
    """
    codec = codec or EncodeOptions()
    qps = [check_qp(q) for q in qps]
    threads = check_threads(threads)
    if not images:
        raise ValueError("no images to evaluate")
    for i, img in enumerate(images):
        if not isinstance(img, Tensor) or img.dtype != torch.uint8 or img.dim() != 3:
            raise TypeError(f"image {i} must be a uint8 (3, H, W) tensor")
    device = torch.device(device)
    task = task.to(device).eval()
    npps = dict(controls or {})
    if npp is not None:
        npps = {"npp+bpg": npp, **npps}
    for model in npps.values():
        model.to(device).eval()
    groups = list(_batches(images, batch))
    targets = []
    for g in groups:
        x = torch.stack([images[i] for i in g]).to(device).float() / 255
        meta = _collate_extras(extras, g)
        targets.append(task.targets(x, meta))
    methods = ["bpg", *npps]
    points = []
    for method in methods:
        for qp in qps:
            metric = task.metric()
            bits_per_px, psnrs = [], []
            for g, t in zip(groups, targets, strict=True):
                x = torch.stack([images[i] for i in g]).to(device)
                coded = x if method == "bpg" else _to_u8(npps[method](x.float() / 255, qp))
                res = bpg.roundtrip_batch(coded.cpu(), qp, threads=threads, **codec.kwargs())
                h, w = x.shape[2:]
                bits_per_px += [float(b) / (h * w) for b in res.bits]
                dec = res.images
                psnrs += [psnr(a.numpy(), b.numpy()) for a, b in zip(x.cpu(), dec, strict=True)]
                metric.update(dec.to(device).float() / 255, t)
            point = {"method": method, "qp": qp, "bpp": float(np.mean(bits_per_px))}
            point["psnr"] = float(np.mean([p for p in psnrs if math.isfinite(p)] or [math.inf]))
            point.update({k: float(v) for k, v in metric.compute().items()})
            points.append(point)
    return {"points": points, "bd_rate": {m: _bd_rates(points, m) for m in npps}}


def _collate_extras(extras: Sequence[dict[str, Any]] | None, group: list[int]) -> dict[str, Any]:
    if not extras:
        return {}
    keys = set.intersection(*(set(extras[i]) for i in group))
    out: dict[str, Any] = {}
    for k in sorted(keys):
        values = [extras[i][k] for i in group]
        out[k] = torch.tensor(values) if k == "label" else values
    return out


def _bd_rates(points: list[dict[str, Any]], method: str) -> dict[str, float]:
    def curve(name: str, key: str) -> tuple[list[float], list[float]]:
        sel = [p for p in points if p["method"] == name and key in p]
        return [p["bpp"] for p in sel], [p[key] for p in sel]

    out = {}
    for key in QUALITY_KEYS:
        ra, qa = curve("bpg", key)
        rt, qt = curve(method, key)
        if qa and qt:
            out[key] = bd_rate(ra, qa, rt, qt)
    return out


def sweep_table(result: dict[str, Any]) -> str:
    """The points and BD-rates as a Markdown table."""
    keys = [k for k in QUALITY_KEYS if any(k in p for p in result["points"]) and k != "psnr"]
    head = ["method", "qp", "bpp", "PSNR (dB)", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in result["points"]:
        cells = [p["method"], str(p["qp"]), f"{p['bpp']:.4f}", f"{p['psnr']:.2f}"]
        cells += [f"{p[k]:.4f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    for method, rates in result.get("bd_rate", {}).items():
        for key, value in rates.items():
            lines.append(f"BD-rate of {method} against bpg at equal {key}: {value:+.2f}%")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """A PNG of bpp against each metric, plain BPG and NPP + BPG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"the plot needs matplotlib (pip install matplotlib): {e}") from e
    keys = [k for k in QUALITY_KEYS if any(k in p for p in result["points"])]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        methods = dict.fromkeys(p["method"] for p in result["points"])
        for method, style in zip(methods, ("o-", "s-", "^--", "v--"), strict=False):
            pts = sorted((p["bpp"], p[key]) for p in result["points"] if p["method"] == method)
            ax.plot(*zip(*pts, strict=True), style, label=method)
        bd = result.get("bd_rate", {}).get("npp+bpg", {}).get(key)
        title = key if bd is None or not math.isfinite(bd) else f"{key} (BD-rate {bd:+.1f}%)"
        ax.set(xlabel="bpp", ylabel=key, title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """The result as JSON (NaN written as null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    with open(os.fspath(path), "w", encoding="utf-8") as f:
        json.dump(clean(result), f, indent=2)
