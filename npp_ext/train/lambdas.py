"""QP -> lambda tables: the weight of the task loss (NPP) or the distortion (proxy) per QP.

A table holds (QP, lambda) pairs; between them lambda is interpolated linearly in log
space (lambda grows about exponentially as the QP falls), outside them it follows the
slope of the nearest segment. A QP listed twice gets the geometric mean of its lambdas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ..options import QP_MAX, QP_MIN, check_qp

__all__ = ["AUTHORS_PAIRS", "LambdaTable"]

#: The (QP, lambda) pairs of the authors' variable-QP detection run (lambda weights D_task).
AUTHORS_PAIRS: tuple[tuple[int, float], ...] = (
    (44, 0.25), (40, 0.5), (40, 0.8), (37, 1.0), (34, 2.0),
    (31, 4.0), (29, 6.0), (28, 8.0), (25, 16.0),
)  # fmt: skip


class LambdaTable:
    """lambda(qp) from (QP, lambda) pairs; see the module docstring."""

    def __init__(self, pairs: Iterable[tuple[int, float]]) -> None:
        grouped: dict[int, list[float]] = {}
        for item in pairs:
            try:
                qp, lam = item
            except (TypeError, ValueError):
                raise ValueError(f"a lambda table holds (qp, lambda) pairs, got {item!r}") from None
            qp = check_qp(qp)
            lam = float(lam)
            if not (math.isfinite(lam) and lam > 0):
                raise ValueError(f"lambda must be a positive number, got {lam!r} for QP {qp}")
            grouped.setdefault(qp, []).append(math.log(lam))
        if not grouped:
            raise ValueError("a lambda table needs at least one (qp, lambda) pair")
        self.qps = sorted(grouped)
        self.log_lambdas = [sum(grouped[q]) / len(grouped[q]) for q in self.qps]

    @classmethod
    def parse(cls, text: str) -> LambdaTable:
        """From ``"44:0.25,40:0.5,..."`` (the command line's form)."""
        pairs = []
        for part in text.split(","):
            qp, sep, lam = part.strip().partition(":")
            if not sep:
                raise ValueError(f"lambda table entries are QP:LAMBDA, got {part.strip()!r}")
            try:
                pairs.append((int(qp), float(lam)))
            except ValueError:
                raise ValueError(f"lambda table entries are QP:LAMBDA, got {part!r}") from None
        return cls(pairs)

    def __str__(self) -> str:
        return ",".join(f"{q}:{lam:.6g}" for q, lam in self.pairs())

    def pairs(self) -> list[tuple[int, float]]:
        """The table as (QP, lambda) pairs, one per QP."""
        return [(q, math.exp(v)) for q, v in zip(self.qps, self.log_lambdas, strict=True)]

    def log_lambda(self, qp: float) -> float:
        """log lambda at a QP (any real QP in 0..51)."""
        q, v = self.qps, self.log_lambdas
        if len(q) == 1:
            return v[0]
        k = (
            0
            if qp <= q[0]
            else len(q) - 2
            if qp >= q[-1]
            else next(i for i in range(len(q) - 1) if q[i] <= qp <= q[i + 1])
        )
        t = (qp - q[k]) / (q[k + 1] - q[k])
        return v[k] + t * (v[k + 1] - v[k])

    def __call__(self, qp: int | float | Sequence[int] | Tensor) -> float | Tensor:
        """lambda at a QP, or a float32 tensor of lambdas for a tensor/sequence of QPs."""
        if isinstance(qp, (int, float)) and not isinstance(qp, bool):
            if not QP_MIN <= qp <= QP_MAX:
                raise ValueError(f"qp must be in {QP_MIN}..{QP_MAX}, got {qp}")
            return math.exp(self.log_lambda(float(qp)))
        values = qp.tolist() if isinstance(qp, Tensor) else list(qp)
        device = qp.device if isinstance(qp, Tensor) else None
        return torch.tensor([self(float(v)) for v in values], dtype=torch.float32, device=device)
