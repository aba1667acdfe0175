"""The settings of a training run, validated when made and saved with every checkpoint.

:class:`NPPConfig` (``npp-ext train``) and :class:`ProxyConfig` (``npp-ext train-proxy``)
are plain dataclasses: ``Config(**json)`` rebuilds one from its saved form.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..options import EncodeOptions, check_int, check_qp, check_threads
from .lambdas import AUTHORS_PAIRS, LambdaTable

__all__ = ["NPPConfig", "ProxyConfig"]


def _positive(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _qp_range(value: Any) -> tuple[int, int]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"qp_range must be (low, high), got {value!r}") from None
    lo, hi = check_qp(lo), check_qp(hi)
    if lo > hi:
        raise ValueError(f"qp_range must have low <= high, got {lo}..{hi}")
    return lo, hi


@dataclass
class _Common:
    """Settings every run has."""

    data: str = "photos"
    out: str = "runs/run"
    steps: int = 1000
    batch: int = 8
    crop: int = 256
    qp_range: tuple[int, int] = (22, 47)
    lr: float = 1e-4
    level: int = 8
    chroma: str = "420"
    x265_params: str = ""
    threads: int = 0
    holdout: float = 0.0
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    ckpt_every: int = 500
    log_every: int = 10

    def __post_init__(self) -> None:
        self.codec  # noqa: B018 - validates chroma/level/x265_params
        self.steps = check_int("steps", self.steps, 1, 1 << 40)
        self.batch = check_int("batch", self.batch, 1, 1 << 20)
        self.crop = check_int("crop", self.crop, 16, 1 << 14)
        self.qp_range = _qp_range(self.qp_range)
        self.lr = _positive("lr", self.lr)
        self.threads = check_threads(self.threads)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1)
        self.workers = check_int("workers", self.workers, 0, 1024)
        self.ckpt_every = check_int("ckpt_every", self.ckpt_every, 1, 1 << 40)
        self.log_every = check_int("log_every", self.log_every, 1, 1 << 40)
        if not isinstance(self.holdout, (int, float)) or not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be a fraction in [0, 1), got {self.holdout!r}")

    @property
    def codec(self) -> EncodeOptions:
        """The BPG settings of the run."""
        return EncodeOptions(chroma=self.chroma, level=self.level, x265_params=self.x265_params)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (JSON-ready)."""
        d = dataclasses.asdict(self)
        d["qp_range"] = list(self.qp_range)
        return d


@dataclass
class NPPConfig(_Common):
    """``npp-ext train``: the NPP through real BPG, L = bpp + lambda * D_task + beta * D_pre."""

    out: str = "runs/npp"
    proxy: str = ""
    task: str = "efficientnet_lite0"
    task_weights: str = ""
    labels: str = "teacher"
    qp_range: tuple[int, int] = (25, 44)
    lambdas: str = field(default_factory=lambda: str(LambdaTable(AUTHORS_PAIRS)))
    beta: float = 0.5
    weight_decay: float = 1e-4
    warmup: int = 500
    chunks: int = 1
    amp: str = "off"
    resume: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.proxy:
            raise ValueError("the NPP trains through a proxy: give --proxy CHECKPOINT")
        if self.labels not in ("teacher", "data"):
            raise ValueError(f"labels must be 'teacher' or 'data', got {self.labels!r}")
        self.lambda_table  # noqa: B018 - validates the table
        self.beta = float(self.beta)
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        self.weight_decay = float(self.weight_decay)
        self.warmup = check_int("warmup", self.warmup, 0, 1 << 40)
        self.chunks = check_int("chunks", self.chunks, 1, 1 << 20)
        if self.amp not in ("off", "bf16", "fp16"):
            raise ValueError(f"amp must be 'off', 'bf16' or 'fp16', got {self.amp!r}")

    @property
    def lambda_table(self) -> LambdaTable:
        """lambda of the task loss per QP."""
        return LambdaTable.parse(self.lambdas)


@dataclass
class ProxyConfig(_Common):
    """``npp-ext train-proxy``: stage 1 R + lambda_p(qp) * D(x), stage 2 R + lambda_p * d(x_bpg)."""

    out: str = "runs/proxy"
    N: int = 128
    M: int = 192
    context: bool = False
    stage1_steps: int = 0
    batch: int = 8
    crop: int = 128
    init: str = ""
    calib_images: int = 16
    calib_every: int = 50
    report_images: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        self.N = check_int("N", self.N, 1, 4096)
        self.M = check_int("M", self.M, 1, 4096)
        self.context = bool(self.context)
        self.stage1_steps = check_int("stage1_steps", self.stage1_steps, 0, self.steps)
        self.calib_images = check_int("calib_images", self.calib_images, 1, 1 << 16)
        self.calib_every = check_int("calib_every", self.calib_every, 1, 1 << 40)
        self.report_images = check_int("report_images", self.report_images, 1, 1 << 16)
