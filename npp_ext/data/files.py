"""Datasets, transforms and loaders for training and evaluating the NPP.

Items are dicts: ``"image"`` a uint8 tensor (3, H, W) RGB, ``"path"`` a str (a file path,
or a name for in-memory images), and per task ``"label"`` (int) or ``"boxes"`` (K, 4)
xyxy float32 pixels + ``"labels"`` (K,) int64. ``collate`` makes batches of them and
``to_float`` turns a batch's images into floats in [0, 1].

Randomness is explicit: a transform is ``transform(item, generator) -> item`` and the
loader's sampler hands each item its own seed, derived from (seed, epoch, pass, index),
so batches are the same for the same seed whatever the number of workers or ranks.

Nothing here needs torchvision; ``TorchvisionDataset`` and ``coco`` adapt its datasets
when it is installed.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

__all__ = [
    "IMAGE_EXTENSIONS",
    "CenterCrop",
    "Compose",
    "ImageFiles",
    "ImageList",
    "PHOTO_SPLITS",
    "RandomCrop",
    "RandomFlip",
    "SeededSampler",
    "TorchvisionDataset",
    "coco",
    "collate",
    "make_loader",
    "photo_crops",
    "sample_photos",
    "split_holdout",
    "to_float",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

Item = dict[str, Any]
Transform = Callable[[Item, torch.Generator], Item]


# --------------------------------------------------------------------------- decoding


def _rgb_array(path: str) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            # Pillow's convert() would clip 16-bit values at 255: scale to 8 bits instead.
            grey = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


def _to_chw_uint8(image: Any, where: str) -> Tensor:
    """An RGB image (PIL, HxWx3/HxW array, 3xHxW tensor) as a uint8 tensor (3, H, W)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"{where}: expected an RGB image (H, W, 3), got shape {image.shape}")
        if image.dtype != np.uint8:
            raise TypeError(f"{where}: expected a uint8 image array, got {image.dtype}")
        chw = np.array(image[..., :3].transpose(2, 0, 1), order="C", copy=True)  # writable
        return torch.from_numpy(chw)
    if isinstance(image, Tensor):
        t = image.as_subclass(Tensor)
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"{where}: expected an image tensor (3, H, W), got {tuple(t.shape)}")
        if t.is_floating_point():  # e.g. after torchvision's ToTensor: [0, 1]
            t = (t * 255).round_().clamp_(0, 255)
        return t.to(torch.uint8).contiguous()
    raise TypeError(f"{where}: unsupported image type {type(image).__name__}")


# --------------------------------------------------------------------------- datasets


class ImageFiles(Dataset):
    """Every image file under ``root``, in sorted (deterministic) order.

    ``recursive``: descend into subfolders (symbolic links followed, each real folder
    once). Names starting with "." are skipped (hidden files, macOS "._" resource forks).
    ``labels="folders"``: the layout of torchvision's ImageFolder: ``root/CLASS/...``;
    class indices follow the sorted names of the first-level subfolders (``classes``,
    ``class_to_idx``); files directly in ``root`` have no class and are left out, and a
    class folder without images is an error.
    Items: ``{"image": uint8 (3, H, W), "path": str}`` plus ``"label"`` when labelled.

    A file that cannot be decoded raises ``ValueError`` naming it. With ``skip_bad`` it
    is logged and the next readable file in order is returned in its place (so the
    dataset keeps its length and a batch its size); ``bad`` holds the skipped paths seen
    by this process.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        recursive: bool = True,
        labels: str | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if labels not in (None, "folders"):
            raise ValueError(f"labels must be None or 'folders', got {labels!r}")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not exts:
            raise ValueError("extensions must name at least one file extension")
        self.extensions = exts
        self.skip_bad = bool(skip_bad)
        self.bad: set[str] = set()
        self.classes: list[str] = []
        self.class_to_idx: dict[str, int] = {}
        self.labels: list[int] | None = None
        if labels == "folders":
            self.classes = sorted(
                e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")
            )
            if not self.classes:
                raise ValueError(f"labels='folders' but {self.root} has no subfolders")
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
            paths, lab = [], []
            for c in self.classes:
                found = self._list(self.root / c, recursive)
                if not found:
                    raise ValueError(f"class folder {self.root / c} holds no images ({exts})")
                paths += found
                lab += [self.class_to_idx[c]] * len(found)
            self.paths = paths
            self.labels = lab
        else:
            self.paths = self._list(self.root, recursive)
        if not self.paths:
            raise ValueError(f"no images with extensions {exts} under {self.root}")

    def _list(self, top: Path, recursive: bool) -> list[str]:
        found: list[str] = []
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a link back up the tree: walk each real folder once
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
            for f in filenames:
                if not f.startswith(".") and f.lower().endswith(self.extensions):
                    found.append(os.path.join(dirpath, f))
        return sorted(found, key=lambda p: Path(p).relative_to(top).as_posix())

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> Tensor:
        path = self.paths[index]
        try:
            return _to_chw_uint8(_rgb_array(path), path)
        except Exception as e:  # any decoder failure: name the file
            raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from e

    def __getitem__(self, index: int) -> Item:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index = int(index) % n
        for step in range(n):
            i = (index + step) % n
            try:
                image = self._read(i)
            except ValueError as e:
                if not self.skip_bad:
                    raise
                if self.paths[i] not in self.bad:
                    self.bad.add(self.paths[i])
                    log.warning("skipping unreadable image: %s", e)
                continue
            item: Item = {"image": image, "path": self.paths[i]}
            if self.labels is not None:
                item["label"] = self.labels[i]
            return item
        raise ValueError(f"no readable image under {self.root} (all {n} files failed)")


class ImageList(Dataset):
    """In-memory images as a dataset: a mapping name -> image or a sequence of images
    (uint8 (H, W, 3) arrays, grey (H, W), or (3, H, W) tensors). Items:
    ``{"image", "path": name}`` plus ``"label"`` when ``labels`` are given."""

    def __init__(
        self,
        images: Mapping[str, Any] | Sequence[Any],
        labels: Sequence[int] | None = None,
    ) -> None:
        if isinstance(images, Mapping):
            names, values = list(images.keys()), list(images.values())
        else:
            values = list(images)
            names = [f"image{i}" for i in range(len(values))]
        if not values:
            raise ValueError("ImageList needs at least one image")
        self.names = [str(n) for n in names]
        self.images = [_to_chw_uint8(v, f"image {n!r}") for n, v in zip(names, values, strict=True)]
        if labels is not None:
            labels = [int(v) for v in labels]
            if len(labels) != len(values):
                raise ValueError(f"{len(labels)} labels for {len(values)} images")
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        item: Item = {"image": self.images[index], "path": self.names[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item


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


# --------------------------------------------------------------------------- transforms


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _upscale_to_cover(item: Item, h: int, w: int) -> Item:
    """Scale an image up (aspect kept, bicubic) until it covers h x w; boxes follow."""
    img = item["image"]
    ih, iw = img.shape[-2:]
    if ih >= h and iw >= w:
        return item
    s = max(h / ih, w / iw)
    nh, nw = max(h, math.ceil(ih * s)), max(w, math.ceil(iw * s))
    up = F.interpolate(img[None].float(), size=(nh, nw), mode="bicubic", align_corners=False)
    out = dict(item)
    out["image"] = up[0].round_().clamp_(0, 255).to(torch.uint8)
    if "boxes" in item:
        scale = torch.tensor([nw / iw, nh / ih, nw / iw, nh / ih], dtype=torch.float32)
        out["boxes"] = item["boxes"] * scale
    return out


def _crop(item: Item, top: int, left: int, h: int, w: int) -> Item:
    out = dict(item)
    out["image"] = item["image"][:, top : top + h, left : left + w].contiguous()
    if "boxes" in item:
        b = item["boxes"] - torch.tensor([left, top, left, top], dtype=torch.float32)
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        # A box cut to less than a pixel wide or high is no longer a visible object.
        keep = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
        out["boxes"] = b[keep]
        out["labels"] = item["labels"][keep]
    return out


class RandomCrop:
    """A random ``size`` crop. Images smaller than the crop are first scaled up (aspect
    kept, bicubic) so they just cover it, the usual choice for classification crops;
    padding instead would show the NPP and the codec artificial borders. Boxes are
    scaled, shifted and clipped; boxes left under a pixel wide or high are dropped."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "size")

    def __call__(self, item: Item, generator: torch.Generator) -> Item:
        h, w = self.size
        item = _upscale_to_cover(item, h, w)
        ih, iw = item["image"].shape[-2:]
        top = int(torch.randint(0, ih - h + 1, (), generator=generator))
        left = int(torch.randint(0, iw - w + 1, (), generator=generator))
        return _crop(item, top, left, h, w)


class CenterCrop:
    """The central ``size`` crop (small images scaled up first, as in ``RandomCrop``)."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "size")

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        h, w = self.size
        item = _upscale_to_cover(item, h, w)
        ih, iw = item["image"].shape[-2:]
        return _crop(item, (ih - h) // 2, (iw - w) // 2, h, w)


class RandomFlip:
    """Horizontal flip with probability ``p``; boxes follow."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, item: Item, generator: torch.Generator) -> Item:
        if float(torch.rand((), generator=generator)) >= self.p:
            return item
        out = dict(item)
        out["image"] = item["image"].flip(-1)
        if "boxes" in item:
            w = item["image"].shape[-1]
            b = item["boxes"]
            out["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
        return out


class Compose:
    """Transforms applied in order, sharing the item's generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, item: Item, generator: torch.Generator) -> Item:
        for t in self.transforms:
            item = t(item, generator)
        return item


def to_float(batch: Mapping[str, Any] | Tensor, device: torch.device | str | None = None) -> Tensor:
    """A batch's uint8 images (N, 3, H, W) as float32 in [0, 1], on ``device`` (moved
    while still uint8: a quarter of the bytes)."""
    images = batch["image"] if isinstance(batch, Mapping) else batch
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise TypeError("to_float expects uint8 image tensors (a collated batch)")
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.float().div_(255)


# --------------------------------------------------------------------------- batching


def collate(items: Sequence[Item]) -> dict[str, Any]:
    """Items -> a batch: images stacked (N, 3, H, W) uint8 (they must have one size:
    crop first), ``"label"`` an int64 tensor, everything else (boxes, labels, paths,
    image ids) lists."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    keys = set(items[0])
    for it in items[1:]:
        if set(it) != keys:
            raise ValueError(f"items have different keys: {sorted(keys)} vs {sorted(it)}")
    sizes = {tuple(it["image"].shape) for it in items}
    if len(sizes) != 1:
        raise ValueError(
            f"images of different sizes cannot be stacked: {sorted(sizes)}; "
            "use a crop transform (RandomCrop/CenterCrop) or batch_size=1"
        )
    batch: dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    for k in sorted(keys - {"image"}):
        values = [it[k] for it in items]
        batch[k] = torch.tensor(values, dtype=torch.int64) if k == "label" else values
    return batch


def _mix(*words: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    data = b"".join(int(w).to_bytes(8, "little", signed=True) for w in words)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class SeededSampler(Sampler):
    """Yields ``(index, item_seed)``: the order and every item's random draws derive from
    (seed, epoch, pass, index), so they do not depend on workers or on which rank reads
    an item.

    Distributed (``world`` > 1): each pass's order is split into ``world`` strided
    parts, one per ``rank``, like ``torch.utils.data.DistributedSampler``: with
    ``drop_last`` the tail that does not divide evenly is dropped, otherwise the order
    is padded by repeating its start so every rank gets as many items (the repeats count
    twice in metrics). ``set_epoch(e)`` makes pass k of epoch e the same on every rank;
    without it, each new iteration is a new pass.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> None:
        if n < 1:
            raise ValueError(f"the dataset is empty (n={n})")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
        if drop_last and n < world:
            raise ValueError(f"drop_last with {n} items leaves nothing for {world} ranks")
        self.n, self.shuffle, self.seed = n, bool(shuffle), int(seed)
        self.rank, self.world, self.drop_last = rank, world, bool(drop_last)
        self.epoch = 0
        self._pass = 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (call before iterating, with the same value on all ranks)."""
        self.epoch = int(epoch)
        self._pass = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.world
        return math.ceil(self.n / self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        key = _mix(self.seed, self.epoch, self._pass)
        self._pass += 1
        g = torch.Generator().manual_seed(key)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        item_seeds = torch.randint(0, 2**62, (self.n,), generator=g)  # indexed by item
        total = len(self) * self.world
        if total <= self.n:
            order = order[:total]
        else:
            order = torch.cat([order, order[: total - self.n]])
        for i in order[self.rank :: self.world].tolist():
            yield i, int(item_seeds[i])


class _Transformed(Dataset):
    """Dataset view that receives ``(index, seed)`` from ``SeededSampler``."""

    def __init__(self, dataset: Any, transform: Transform | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Item:
        index, seed = key
        item = self.dataset[index]
        if self.transform is None:
            return item
        return self.transform(item, torch.Generator().manual_seed(seed))


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and numpy's RNGs in a worker from torch's (which the loader seeds
    from its generator), for transforms that use them."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    transform: Transform | Sequence[Transform] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of collated batches, reproducible from ``seed``.

    ``transform(item, generator)`` (or a list of them, composed) runs per item with a
    generator seeded per item by the ``SeededSampler``: the same seed gives the same
    batches with any number of ``workers``. When ``torch.distributed`` is initialized
    each rank reads its own part of every epoch (see ``SeededSampler``); call
    ``loader.sampler.set_epoch(epoch)`` at each epoch so all ranks agree on the order.
    ``drop_last`` drops the last incomplete batch.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, got {workers!r}")
    if transform is not None and not callable(transform):
        transform = Compose(transform)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = SeededSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world=world, drop_last=drop_last
    )
    if drop_last and len(sampler) < batch_size:
        raise ValueError(
            f"{len(sampler)} items per rank make no full batch of {batch_size} "
            "(use a smaller batch_size or drop_last=False)"
        )
    return DataLoader(
        _Transformed(dataset, transform),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(_mix(seed, -1)),
        persistent_workers=workers > 0,
    )


# --------------------------------------------------------------------------- held-out split


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(chunk)
    return h.digest()


def _dataset_paths(ds: Any) -> list[str] | None:
    if isinstance(ds, Subset):
        parent = _dataset_paths(ds.dataset)
        return None if parent is None else [parent[i] for i in ds.indices]
    paths = getattr(ds, "paths", None)
    if paths is not None and len(paths) == len(ds):
        return [str(p) for p in paths]
    return None


def split_holdout(
    data: Sequence[str | os.PathLike[str]] | Dataset, fraction: float, seed: int = 0
) -> tuple[Any, Any]:
    """Split files (a list of paths) or a dataset into (train, holdout) by the content
    of each image: a file goes to the holdout when sha256(seed, its bytes) falls under
    ``fraction``, so identical copies under other names always land on the same side
    and an image's side does not change as files are added. The holdout's share is
    ``fraction`` on average, not exactly.

    Lists of paths give two lists of paths; datasets give two ``Subset``s. A dataset
    whose items come from files (``paths``) is split by file bytes, others by the
    decoded pixels of ``item["image"]``. Raises ``ValueError`` when a side is empty.
    """
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    is_paths = isinstance(data, (list, tuple)) and all(
        isinstance(p, (str, os.PathLike)) for p in data
    )
    if is_paths:
        digests = [_file_digest(os.fspath(p)) for p in data]
    else:
        if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
            raise TypeError(f"expected a list of paths or a dataset, got {type(data).__name__}")
        paths = _dataset_paths(data)
        if paths is not None:
            digests = [_file_digest(p) for p in paths]
        else:
            digests = []
            for i in range(len(data)):
                img = data[i]["image"]
                arr = img.numpy() if isinstance(img, Tensor) else np.asarray(img)
                digests.append(hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).digest())
    n = len(digests)
    if n == 0:
        raise ValueError("nothing to split: no files")
    salt = int(seed).to_bytes(8, "little", signed=True)
    hold = []
    for d in digests:
        u = int.from_bytes(hashlib.sha256(salt + d).digest()[:8], "little") / 2**64
        hold.append(u < fraction)
    train_idx = [i for i in range(n) if not hold[i]]
    hold_idx = [i for i in range(n) if hold[i]]
    if not train_idx or not hold_idx:
        side = "holdout" if not hold_idx else "training"
        raise ValueError(
            f"the {side} side is empty ({n} files, fraction {fraction}); "
            "use more files or another fraction/seed"
        )
    if is_paths:
        return [data[i] for i in train_idx], [data[i] for i in hold_idx]
    return Subset(data, train_idx), Subset(data, hold_idx)


# --------------------------------------------------------------------------- sample photos

# The embedded default data: colour photos that ship inside scikit-image (no download).
# The held-out photos are those EfficientNet-Lite0 classifies confidently and
# consistently across crops (cats 281-285, espresso 967, moped 665), so top-1 agreement
# after compression measures something; the two views of the stereo motorcycle show the
# same scene and stay on one side. The training photos are the other colour photos.
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"),
    "holdout": ("chelsea", "coffee", "motorcycle_left", "motorcycle_right"),
}


def _load_photo(name: str) -> np.ndarray:
    try:
        import skimage.data as skd
    except ImportError as e:
        raise ImportError(
            f"the sample photos ship with scikit-image (pip install scikit-image): {e}"
        ) from e
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skd.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        img = getattr(skd, name)()
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[..., :3])


@functools.cache
def _cached_photo(name: str) -> np.ndarray:
    img = _load_photo(name)
    img.setflags(write=False)
    return img


def sample_photos(split: str) -> dict[str, np.ndarray]:
    """The sample photos of ``split`` ("train" or "holdout"), name -> RGB uint8 (H, W, 3)
    (copies). The two splits share no photo; see ``PHOTO_SPLITS``."""
    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    return {name: _cached_photo(name).copy() for name in PHOTO_SPLITS[split]}


def photo_crops(
    split: str,
    size: int,
    count: int,
    seed: int = 0,
    *,
    scale: tuple[float, float] = (1.0, 1.5),
) -> Tensor:
    """``count`` square crops (N, 3, size, size) uint8 of the sample photos of ``split``.

    Crop i comes from photo ``i % len(photos)`` (each photo equally often), scaled so its
    shorter side is ``size * s`` with s uniform in ``scale`` (Lanczos), at a uniform
    position; s and the position derive from (seed, i), so a longer list starts with
    the shorter one. Scaling keeps most of each photo in view, which keeps the
    classifier's prediction on the held-out photos confident.
    """
    from PIL import Image

    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    lo, hi = (float(v) for v in scale)
    if not 1.0 <= lo <= hi:
        raise ValueError(f"scale must be (lo, hi) with 1 <= lo <= hi, got {scale!r}")
    names = PHOTO_SPLITS.get(split)
    if names is None:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        photo = _cached_photo(names[i % len(names)])
        rng = np.random.default_rng([int(seed), i])
        s = rng.uniform(lo, hi)
        h, w = photo.shape[:2]
        r = size * s / min(h, w)
        nh, nw = max(size, round(h * r)), max(size, round(w * r))
        top = int(rng.integers(0, nh - size + 1))
        left = int(rng.integers(0, nw - size + 1))
        # Resample only the crop's region of the photo (as if the whole photo were scaled).
        box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
        crop = Image.fromarray(photo).resize((size, size), Image.Resampling.LANCZOS, box=box)
        out[i] = np.asarray(crop)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
