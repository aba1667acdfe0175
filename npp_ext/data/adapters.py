"""Adapters of torchvision datasets (classification folders, COCO detection) to
item dicts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .items import Item, _to_chw_uint8


def _coco_targets(anns: Sequence[Mapping[str, Any]], h: int, w: int) -> tuple[Tensor, Tensor]:
    """COCO annotations -> (boxes xyxy float32 clipped to the image, labels int64);
    crowd regions and boxes without area dropped."""
    boxes, labels = [], []
    for a in anns:
        if a.get("iscrowd", 0):
            continue
        x, y, bw, bh = (float(v) for v in a["bbox"])
        x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
        x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            continue
        boxes.append((x1, y1, x2, y2))
        labels.append(int(a["category_id"]))
    return (
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(labels, dtype=torch.int64),
    )


class TorchvisionDataset(Dataset):
    """Adapter of a torchvision dataset returning ``(image, target)`` to item dicts.

    The image may be a PIL image or a tensor (uint8, or float in [0, 1]). Targets: an int
    (ImageFolder and other classification sets) becomes ``"label"``; a list of COCO
    annotations (CocoDetection) becomes ``"boxes"`` (xyxy float32, clipped to the image;
    crowd and empty boxes dropped; labels are the COCO category ids, as torchvision's
    COCO detectors expect) and ``"labels"``; a dict with "boxes"/"labels" (torchvision's
    v2 wrappers) is passed on as tensors. ``"path"`` is the image file when the dataset
    knows it, and CocoDetection items carry ``"image_id"``.
    """

    def __init__(self, ds: Any) -> None:
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise TypeError(f"expected a map-style dataset, got {type(ds).__name__}")
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def _path(self, index: int) -> str | None:
        ds = self.ds
        if hasattr(ds, "samples"):
            return str(ds.samples[index][0])
        if hasattr(ds, "coco") and hasattr(ds, "ids"):
            info = ds.coco.loadImgs(ds.ids[index])[0]
            return os.path.join(str(ds.root), info["file_name"])
        return None

    @property
    def paths(self) -> list[str] | None:
        """Image file paths, when the wrapped dataset knows them."""
        if len(self) and self._path(0) is None:
            return None
        return [self._path(i) for i in range(len(self))]  # type: ignore[misc]

    def __getitem__(self, index: int) -> Item:
        image, target = self.ds[index]
        where = f"{type(self.ds).__name__}[{index}]"
        item: Item = {"image": _to_chw_uint8(image, where)}
        path = self._path(index)
        item["path"] = path if path is not None else where
        h, w = item["image"].shape[-2:]
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"{where}: unsupported target type bool")
        if isinstance(target, (int, np.integer)) or (
            isinstance(target, Tensor) and target.dim() == 0 and not target.is_floating_point()
        ):
            item["label"] = int(target)
        elif isinstance(target, Mapping):
            if "boxes" in target:
                item["boxes"] = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
                item["labels"] = torch.as_tensor(target.get("labels", ()), dtype=torch.int64)
            if "image_id" in target:
                item["image_id"] = int(target["image_id"])
        elif isinstance(target, (list, tuple)) and all(isinstance(a, Mapping) for a in target):
            item["boxes"], item["labels"] = _coco_targets(target, h, w)
            if hasattr(self.ds, "ids"):
                item["image_id"] = int(self.ds.ids[index])
        else:
            raise TypeError(
                f"{where}: unsupported target type {type(target).__name__} "
                "(expected a class index, COCO annotations or a dict with boxes)"
            )
        return item


def coco(
    root: str | os.PathLike[str], ann_file: str | os.PathLike[str], *, drop_empty: bool = False
) -> TorchvisionDataset:
    """COCO detection (e.g. train2017 with instances_train2017.json) as items with
    ``"boxes"``/``"labels"``. ``drop_empty`` leaves out images without a usable box
    (as detection training usually does). Needs torchvision and pycocotools."""
    try:
        from torchvision.datasets import CocoDetection
    except ImportError as e:
        raise ImportError(
            f"coco() needs torchvision (pip install torchvision pycocotools): {e}"
        ) from e
    if not Path(root).is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {root}")
    if not Path(ann_file).is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    try:
        ds = CocoDetection(str(root), str(ann_file))
    except ImportError as e:
        raise ImportError(f"coco() needs pycocotools (pip install pycocotools): {e}") from e
    if drop_empty:
        keep = []
        for img_id in ds.ids:
            anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=img_id))
            info = ds.coco.loadImgs(img_id)[0]
            if _coco_targets(anns, info["height"], info["width"])[0].shape[0]:
                keep.append(img_id)
        ds.ids = keep
    return TorchvisionDataset(ds)
