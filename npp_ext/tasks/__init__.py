"""Machine-vision tasks the NPP is trained for: a frozen network, its loss on the decoded
image, and the metric that rate-accuracy evaluation reports.

Every task takes float RGB images (N, 3, H, W) in [0, 1] (the BPG reconstruction ``x_hat``)
and does its own input normalization, so the codec never sees normalized values.

A training step does, per batch::

    with torch.no_grad():
        t = task.targets(x, batch)      # from the uncompressed image or the data
    d_task = task.loss(x_hat, t)        # (N,) when task.per_sample, else a scalar

and evaluation feeds ``task.metric()`` with ``update(x_hat, t)``. When ``per_sample`` is
True the loss is one value per image and a batch may be split into chunks
(``task.select(t, slice(a, b))``): the chunk losses add up to the whole batch's, so do
the gradients.

Modules: ``base`` (the interface), ``classification`` (``Classification``,
``efficientnet_lite0``), ``detection`` (``Detection``, COCO mAP), ``hooks``
(``LossHook``) and ``specs`` (``build_task``).
"""

from .base import Task, TaskMetric
from .classification import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    Classification,
    ClassificationMetric,
    ClassificationTargets,
    efficientnet_lite0,
)
from .detection import Detection, DetectionMetric, DetectionTargets
from .hooks import HookTargets, LossHook
from .specs import build_task

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "Classification",
    "ClassificationMetric",
    "ClassificationTargets",
    "Detection",
    "DetectionMetric",
    "DetectionTargets",
    "HookTargets",
    "LossHook",
    "Task",
    "TaskMetric",
    "build_task",
    "efficientnet_lite0",
]
