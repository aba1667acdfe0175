"""Images at the numpy/torch/PIL edge: to the codec's (H, W, 3) uint8 and back.

The codec takes and gives 8-bit RGB rows. Inputs may be numpy arrays, torch CPU tensors or
PIL images; outputs mirror the input's type (an :class:`Output`). Used by ``npp_ext.bpg``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import check_image_size

__all__ = ["Output", "OUTPUTS", "from_rgb_u8", "pil_rgb", "to_rgb_u8", "is_torch"]


@dataclass(frozen=True)
class Output:
    """What a decoded image is handed back as: numpy, torch (uint8 or a float dtype) or PIL."""

    kind: str  # "numpy", "torch" or "pil"
    float_dtype: Any = None  # for kind "torch": None for uint8, else the float dtype


#: decode(output=...) names.
OUTPUTS = ("numpy", "torch", "torch_float", "pil")


def output_named(name: str) -> Output:
    """The :class:`Output` of a ``decode(output=...)`` name."""
    if name == "numpy" or name == "pil":
        return Output(name)
    if name == "torch":
        return Output("torch")
    if name == "torch_float":
        import torch

        return Output("torch", torch.float32)
    raise ValueError(f"output must be one of {list(OUTPUTS)}, got {name!r}")


def is_torch(obj: Any) -> bool:
    """Whether obj is a torch tensor (without importing torch)."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "dtype")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def pil_rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PIL image.

    16-bit grey (modes ``I;16*``, e.g. a 16-bit PNG) is scaled to 8 bits: Pillow's own
    conversion to RGB clips it, which turns almost every pixel white.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        raise TypeError(
            f"PIL mode {mode!r} has no fixed value range: convert the image to 8 bits "
            "(for example to 'L' or 'RGB') first"
        )
    if "A" in image.getbands() or "a" in image.getbands():
        warnings.warn(
            f"BPG: the alpha channel of a {mode} image is dropped (npp_ext codes colour only)",
            stacklevel=3,
        )
    return np.asarray(image.convert("RGB"))


def _torch_rgb(image: Any) -> tuple[np.ndarray, Output]:
    import torch

    if image.layout != torch.strided:
        raise TypeError(f"image tensors must be dense (strided), got layout {image.layout}")
    if image.device.type != "cpu":
        raise ValueError(
            f"npp_ext.bpg works on CPU tensors, got a {image.device.type} tensor: "
            "move it with .cpu(), or use npp_ext.BPGProxyFn for GPU batches"
        )
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        out, t = Output("torch"), image
    elif image.is_floating_point():
        t = image.detach()
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError("image holds NaN or infinite values; pixels must be finite")
        out = Output("torch", image.dtype)
        t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
    else:
        raise TypeError(f"tensor dtype must be uint8 or floating point, got {image.dtype}")
    return t.permute(1, 2, 0).contiguous().numpy(), out


def _numpy_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(
            f"numpy images must be uint8, got {image.dtype} "
            "(convert floats in [0, 1] with (x * 255).round().astype(np.uint8))"
        )
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"numpy images must be (H, W, 3) or (H, W), got shape {image.shape}")
    return image


def to_rgb_u8(image: Any) -> tuple[np.ndarray, Output]:
    """(H, W, 3) C-contiguous uint8 view or copy of ``image``, and how to hand it back."""
    if _is_pil(image):
        arr, out = pil_rgb(image), Output("pil")
    elif is_torch(image):
        arr, out = _torch_rgb(image)
    elif isinstance(image, np.ndarray):
        arr, out = _numpy_rgb(image), Output("numpy")
    else:
        raise TypeError(
            "image must be a uint8 numpy array, a torch CPU tensor or a PIL image, "
            f"got {type(image).__name__}"
        )
    check_image_size(arr.shape[0], arr.shape[1])
    return np.ascontiguousarray(arr), out


def from_rgb_u8(arr: np.ndarray, out: Output) -> Any:
    """A decoded (H, W, 3) uint8 array as ``out`` says: numpy, (3, H, W) tensor or PIL."""
    if out.kind == "pil":
        from PIL import Image

        return Image.fromarray(arr, "RGB")
    if out.kind == "torch":
        import torch

        t = torch.from_numpy(arr).permute(2, 0, 1)
        if out.float_dtype is None:
            return t
        return t.to(out.float_dtype).div_(255)
    return arr
