"""``yuv_to_rgb``: padded planar 8-bit YUV -> float RGB, as the BPG reference decoder does
it (kernels: ``csrc/kernels/{cpu,cuda}/yuv_to_rgb``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..options import CHROMA_DEFAULT, CHROMA_FORMATS, kernel_chroma, yuv_layout
from ._common import check_tensors, int_arg, kernel_op, launch


def _check(yuv: Tensor, height: int, width: int, chroma: int) -> int:
    """Validates the op's arguments; returns the chroma's code for the kernels."""
    check_tensors(("yuv",), (yuv,), (torch.uint8,))
    height, width = int_arg("height", height), int_arg("width", width)
    name = kernel_chroma(int_arg("chroma", chroma))
    total = yuv_layout(height, width, name).total
    if yuv.dim() != 2 or yuv.shape[1] != total:
        raise ValueError(
            f"yuv must have shape (N, {total}) for a {height}x{width} (HxW) image with "
            f"chroma {name}, got {tuple(yuv.shape)}"
        )
    return CHROMA_FORMATS[name]


def _impl(yuv: Tensor, height: int, width: int, chroma: int) -> Tensor:
    code = _check(yuv, height, width, chroma)
    yuv = yuv.contiguous()
    n = yuv.shape[0]
    out = torch.empty((n, 3, height, width), dtype=torch.float32, device=yuv.device)
    if n:
        launch("yuv_to_rgb", yuv, yuv.data_ptr(), out.data_ptr(), n, height, width, code)
    return out


def _fake(yuv: Tensor, height: int, width: int, chroma: int) -> Tensor:
    _check(yuv, height, width, chroma)
    return yuv.new_empty((yuv.shape[0], 3, height, width), dtype=torch.float32)


_call = kernel_op("yuv_to_rgb", _impl, _fake, tensors=1)


def yuv_to_rgb(yuv: Tensor, height: int, width: int, chroma: str | int = CHROMA_DEFAULT) -> Tensor:
    """Padded planar 8-bit YUV -> float RGB, as the BPG reference decoder does it.

    Args:
        yuv: (N, L.total) uint8 in the layout of :func:`rgb_to_yuv` (only the
            real areas are read), on CPU or CUDA. Non-contiguous inputs are
            copied to contiguous memory.
        height, width: the real image size.
        chroma: "420" or "444" (or the ints 420, 444).

    For 4:2:0 the chroma is interpolated with the decoder's 7-tap filter pair,
    vertical pass first at full precision, then horizontal with rounding;
    then the integer YCbCr -> RGB conversion.

    Returns:
        (N, 3, height, width) float32, the 8-bit RGB divided by 255. No
        gradient (the input is uint8).
    """
    height, width = int_arg("height", height), int_arg("width", width)
    if isinstance(yuv, Tensor):
        yuv = yuv.contiguous()
    return _call(yuv, height, width, int(kernel_chroma(chroma)))
