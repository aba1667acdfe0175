"""The task interface (``Task``, ``TaskMetric``) and the checks and helpers the
tasks share."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class TaskMetric(abc.ABC):
    """An accumulator over evaluation batches: ``update`` per batch, ``compute`` at the end."""

    @abc.abstractmethod
    def update(self, x_hat: Tensor, targets: Any) -> None:
        """Add one batch: the decoded images and the targets ``Task.targets`` gave."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric values over all batches seen so far."""


class Task(nn.Module, abc.ABC):
    """A frozen machine-vision task: per-batch targets from the uncompressed image or the
    data, a differentiable loss on the decoded image, and an evaluation metric.

    ``per_sample`` is True when ``loss`` returns one value per image whose sum is the
    batch's loss (a trainer may then split a batch into chunks and get the same gradient).
    """

    per_sample: bool = False
    #: Subclasses that hold a network in ``model`` and set ``freeze`` keep it in eval mode.
    freeze: bool = False

    def train(self, mode: bool = True) -> Task:
        """Set the task's mode; a frozen network (``freeze``) stays in eval mode."""
        super().train(mode)
        model = getattr(self, "model", None)
        if self.freeze and isinstance(model, nn.Module):
            model.eval()
        return self

    @abc.abstractmethod
    def targets(self, x: Tensor, batch: Mapping[str, Any]) -> Any:
        """Targets of a batch, from the uncompressed ``x`` in [0, 1] and the batch's data.
        Runs without gradients."""

    @abc.abstractmethod
    def loss(self, x_hat: Tensor, targets: Any) -> Tensor:
        """The task loss of the decoded images: shape (N,) when ``per_sample``, else a
        scalar; differentiable with respect to ``x_hat``."""

    @abc.abstractmethod
    def select(self, targets: Any, index: slice) -> Any:
        """The targets of the sub-batch ``index`` (a slice along the batch)."""

    @abc.abstractmethod
    def metric(self) -> TaskMetric:
        """A fresh metric accumulator for this task."""


# --------------------------------------------------------------------------- helpers


def _check_images(x: Any, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with values in [0, 1], got {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    return x


def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()


def _slice_batch_value(value: Any, index: slice, n: int) -> Any:
    """Slice one batch entry along the batch if it is per image (length n)."""
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
        return value[index]
    if isinstance(value, (list, tuple)) and len(value) == n:
        return value[index]
    return value


def _check_index(index: Any) -> slice:
    if not isinstance(index, slice):
        raise TypeError(f"index must be a slice along the batch, got {type(index).__name__}")
    return index
