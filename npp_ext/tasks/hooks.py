"""Any other differentiable task loss, given as a plain function (``LossHook``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .base import Task, TaskMetric, _check_images, _check_index, _slice_batch_value


@dataclasses.dataclass
class HookTargets:
    """What a ``LossHook`` keeps of a batch: the uncompressed images and the batch."""

    x: Tensor
    batch: Mapping[str, Any]


class LossHook(Task):
    """Any other differentiable task loss as a plain function.

    ``fn(x_hat, x, batch)`` returns a scalar, or (N,) values per image when ``per_sample``
    is True (they must add up to the batch's loss). ``metric_fn(x_hat, x, batch)``, if
    given, returns a dict of per-batch means that the metric averages over images;
    without it the metric is the mean loss per image (``loss``). A ``fn`` that is an
    ``nn.Module`` is registered, so ``.to(device)`` moves it.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor, Mapping[str, Any]], Tensor],
        metric_fn: Callable[[Tensor, Tensor, Mapping[str, Any]], Mapping[str, float]] | None = None,
        *,
        per_sample: bool = False,
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if metric_fn is not None and not callable(metric_fn):
            raise TypeError(f"metric_fn must be callable or None, got {type(metric_fn).__name__}")
        self.fn = fn
        self.metric_fn = metric_fn
        self.per_sample = bool(per_sample)

    def targets(self, x: Tensor, batch: Mapping[str, Any]) -> HookTargets:
        """Keeps ``x`` (detached) and the batch for ``fn``."""
        _check_images(x, "x")
        return HookTargets(x.detach(), batch if isinstance(batch, Mapping) else {})

    def loss(self, x_hat: Tensor, targets: HookTargets) -> Tensor:
        """``fn(x_hat, x, batch)``, checked for shape."""
        _check_images(x_hat, "x_hat")
        out = self.fn(x_hat, targets.x, targets.batch)
        if not isinstance(out, Tensor):
            raise TypeError(f"the loss function must return a tensor, got {type(out).__name__}")
        n = x_hat.shape[0]
        if self.per_sample and tuple(out.shape) != (n,):
            raise ValueError(f"per_sample loss must have shape ({n},), got {tuple(out.shape)}")
        if not self.per_sample and out.dim() != 0:
            raise ValueError(
                "the loss must be a scalar (or set per_sample=True for (N,)), "
                f"got {tuple(out.shape)}"
            )
        return out

    def select(self, targets: HookTargets, index: slice) -> HookTargets:
        """The sub-batch: ``x`` and every per-image entry of the batch sliced."""
        _check_index(index)
        n = targets.x.shape[0]
        batch = {k: _slice_batch_value(v, index, n) for k, v in targets.batch.items()}
        return HookTargets(targets.x[index], batch)

    def metric(self) -> TaskMetric:
        """Mean of ``metric_fn`` (or of the loss) per image."""
        return _HookMetric(self)


class _HookMetric(TaskMetric):
    def __init__(self, hook: LossHook) -> None:
        self.hook = hook
        self._n = 0
        self._sums: dict[str, float] = {}

    def update(self, x_hat: Tensor, targets: HookTargets) -> None:
        n = x_hat.shape[0]
        with torch.no_grad():
            if self.hook.metric_fn is not None:
                values = {
                    k: float(v)
                    for k, v in self.hook.metric_fn(x_hat, targets.x, targets.batch).items()
                }
            else:
                loss = self.hook.loss(x_hat, targets)
                per_image = loss.sum() / n if self.hook.per_sample else loss
                values = {"loss": float(per_image)}
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v * n
        self._n += n

    def compute(self) -> dict[str, float]:
        out = {k: v / self._n for k, v in self._sums.items()} if self._n else {}
        out["images"] = float(self._n)
        return out
