"""What the datasets hand out: items (dicts), the transform signature, and any RGB
image as an item's uint8 (3, H, W) tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

Item = dict[str, Any]
Transform = Callable[[Item, torch.Generator], Item]


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
