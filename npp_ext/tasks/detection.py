"""Detection tasks: a frozen torchvision-style detector, its summed losses, and
COCO mAP (pycocotools) as the metric."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .base import Task, TaskMetric, _check_images, _check_index, _freeze


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
