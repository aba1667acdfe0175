"""Seeded item transforms (crops, flips, their composition) and ``to_float``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .items import Item, Transform


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
