"""Images as datasets: the image files under a folder (``ImageFiles``) and
in-memory images (``ImageList``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from .items import Item, _to_chw_uint8

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


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
