"""``rgb_to_yuv``: float RGB -> the padded planar 8-bit YUV the BPG encoder takes
(kernels: ``csrc/kernels/{cpu,cuda}/rgb_to_yuv``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..options import CHROMA_DEFAULT, CHROMA_FORMATS, YUVLayout, kernel_chroma, yuv_layout
from ._common import check_tensors, int_arg, kernel_op, launch

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check(x: Tensor, chroma: int) -> YUVLayout:
    """Validates the op's arguments (sizes within the codec's limits); returns the layout."""
    check_tensors(("x",), (x,), _FLOATS)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
    return yuv_layout(x.shape[2], x.shape[3], kernel_chroma(int_arg("chroma", chroma)))


def _impl(x: Tensor, chroma: int) -> Tensor:
    layout = _check(x, chroma)
    x = x.to(torch.float32).contiguous()
    n, _, h, w = x.shape
    out = torch.empty((n, layout.total), dtype=torch.uint8, device=x.device)
    if n:
        code = CHROMA_FORMATS[kernel_chroma(chroma)]
        launch("rgb_to_yuv", x, x.data_ptr(), out.data_ptr(), n, h, w, code)
    return out


def _fake(x: Tensor, chroma: int) -> Tensor:
    return x.new_empty((x.shape[0], _check(x, chroma).total), dtype=torch.uint8)


_call = kernel_op("rgb_to_yuv", _impl, _fake, tensors=1)


def rgb_to_yuv(x: Tensor, chroma: str | int = CHROMA_DEFAULT) -> Tensor:
    """Float RGB -> the padded planar 8-bit YUV the BPG encoder takes.

    Args:
        x: (N, 3, H, W) RGB in [0, 1] on CPU or CUDA; float32 (float16,
            bfloat16 and float64 are accepted and converted to float32).
            Non-contiguous inputs are copied to contiguous memory.
        chroma: "420" or "444" (or the ints 420, 444; see :mod:`npp_ext.options`).

    Each value is quantized to 8 bits as ``round(clamp(x, 0, 1) * 255)`` in
    float32, rounding half to even like ``torch.round`` (NaN counts as 0),
    then converted with the BPG reference encoder's integer BT.601
    full-range maths; for 4:2:0 the chroma is decimated with its 10-tap
    filter (horizontal pass first, extra precision kept between the passes).

    Returns:
        (N, L.total) uint8, ``L = yuv_layout(H, W, chroma)``: the Y plane, then
        Cb, then Cr, each padded to its coded size by repeating the last
        column, then the last row. Not differentiable.
    """
    if isinstance(x, Tensor) and x.dtype != torch.float32 and x.is_floating_point():
        x = x.to(torch.float32)
    if isinstance(x, Tensor):
        x = x.contiguous()
    # the custom op's schema takes the chroma as an int (420 or 444)
    return _call(x, int(kernel_chroma(chroma)))
