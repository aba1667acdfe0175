"""The maths of :mod:`npp_ext.ops` in plain eager PyTorch.

The unfused path of the models (``NPP(use_fused_ops=False)``), the reference of the
tests and the baseline of the benchmarks: slower, but written so that it can be read
against the paper and ``docs/color.md``. The YUV
functions use the integer constants of ``bpg/color_math.h`` and give the same
bytes as the kernels; the float ones agree with them to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..options import chroma_name, yuv_layout

__all__ = [
    "branch_sum_clamp",
    "npp_pixel_branch",
    "qp_scale",
    "quantize8",
    "rgb_to_yuv",
    "yuv_to_rgb",
]

# color_math.h: RGB -> YCbCr with 23 fractional bits, YCbCr -> RGB with 22.
_FWD_SHIFT = 23
_Y = (2508194, 4924113, 956301)
_CB = (-1415459, -2778845, 4194304)
_CR = (4194304, -3512206, -682098)
_INV_SHIFT = 22
_INV_ONE, _INV_CR_R, _INV_CB_G, _INV_CR_G, _INV_CB_B = 4194304, 5880414, 1443412, 2995305, 7432307
# 4:2:0 decimation (10 taps, /128) and interpolation (7 taps, /64; odd = mirror).
_DOWN_TAPS = (2, -4, -8, 17, 57, 57, 17, -8, -4, 2)
_UP_TAPS_EVEN = (2, -6, 18, 57, -10, 4, -1)


def quantize8(x: Tensor) -> Tensor:
    """round(clamp(x, 0, 1) * 255) in float32 (half to even; NaN -> 0), as int64."""
    x = torch.nan_to_num(x.to(torch.float32), nan=0.0)
    return (x.clamp(0, 1) * 255).round().to(torch.int64)


def _matrix_row(r: Tensor, g: Tensor, b: Tensor, row: tuple[int, int, int]) -> Tensor:
    return (row[0] * r + row[1] * g + row[2] * b + (1 << (_FWD_SHIFT - 1))) >> _FWD_SHIFT


def _down420(c: Tensor) -> Tensor:
    """(N, H, W) 8-bit chroma -> (N, ceil(H/2), ceil(W/2)), edges replicated."""
    _, h, w = c.shape
    taps = torch.tensor(_DOWN_TAPS, device=c.device)
    k = torch.arange(10, device=c.device)
    cols = (2 * torch.arange((w + 1) // 2, device=c.device)[:, None] - 4 + k).clamp(0, w - 1)
    hor = ((c[:, :, cols] * taps).sum(-1) + 1) >> 1  # (N, H, cw), no clamp
    rows = (2 * torch.arange((h + 1) // 2, device=c.device)[:, None] - 4 + k).clamp(0, h - 1)
    ver = (hor[:, rows, :] * taps[:, None]).sum(-2)  # (N, ch, cw)
    return ((ver + (1 << 12)) >> 13).clamp(0, 255)


def _pad(plane: Tensor, rows: int, cols: int) -> Tensor:
    """Pad (N, h, w) to (N, rows, cols) by repeating the last column, then row."""
    h, w = plane.shape[-2:]
    r = torch.arange(rows, device=plane.device).clamp(max=h - 1)
    c = torch.arange(cols, device=plane.device).clamp(max=w - 1)
    return plane[:, r][:, :, c]


def rgb_to_yuv(x: Tensor, chroma: str | int = "420") -> Tensor:
    """Reference of :func:`npp_ext.ops.rgb_to_yuv`."""
    n, _, h, w = x.shape
    r, g, b = quantize8(x).unbind(1)
    y = _matrix_row(r, g, b, _Y).clamp(0, 255)
    cb = (_matrix_row(r, g, b, _CB) + 128).clamp(0, 255)
    cr = (_matrix_row(r, g, b, _CR) + 128).clamp(0, 255)
    if chroma_name(chroma) == "420":
        cb, cr = _down420(cb), _down420(cr)
    lay = yuv_layout(h, w, chroma)
    planes = (
        _pad(y, lay.coded_h, lay.coded_w),
        _pad(cb, lay.coded_ch, lay.coded_cw),
        _pad(cr, lay.coded_ch, lay.coded_cw),
    )
    return torch.cat([p.reshape(n, -1) for p in planes], 1).to(torch.uint8)


def _up420(c: Tensor, height: int, width: int) -> Tensor:
    """(N, ch, cw) chroma -> (N, height, width): vertical pass (full precision), then horizontal."""
    _, ch, cw = c.shape
    even = torch.tensor(_UP_TAPS_EVEN, device=c.device)
    taps = torch.stack([even, even.flip(0)])  # (parity, k)
    k = torch.arange(7, device=c.device)
    y = torch.arange(height, device=c.device)
    rows = (y[:, None] // 2 - 3 + k).clamp(0, ch - 1)  # (H, 7)
    ver = (c[:, rows, :] * taps[y % 2][:, :, None]).sum(-2)  # (N, H, cw)
    x = torch.arange(width, device=c.device)
    cols = (x[:, None] // 2 - 3 + k).clamp(0, cw - 1)  # (W, 7)
    hor = (ver[:, :, cols] * taps[x % 2]).sum(-1)  # (N, H, W)
    return ((hor + (1 << 11)) >> 12).clamp(0, 255)


def yuv_to_rgb(yuv: Tensor, height: int, width: int, chroma: str | int = "420") -> Tensor:
    """Reference of :func:`npp_ext.ops.yuv_to_rgb`."""
    lay = yuv_layout(height, width, chroma)
    n = yuv.shape[0]
    v = yuv.to(torch.int64)
    y = v[:, : lay.y_size].reshape(n, lay.coded_h, lay.coded_w)[:, :height, :width]
    planes = []
    for p in range(2):
        start = lay.y_size + p * lay.c_size
        c = v[:, start : start + lay.c_size].reshape(n, lay.coded_ch, lay.coded_cw)
        c = c[:, : lay.chroma_h, : lay.chroma_w]
        planes.append(_up420(c, height, width) if chroma_name(chroma) == "420" else c)
    cb, cr = planes[0] - 128, planes[1] - 128
    yy = y * _INV_ONE + (1 << (_INV_SHIFT - 1))
    r = (yy + _INV_CR_R * cr) >> _INV_SHIFT
    g = (yy - _INV_CB_G * cb - _INV_CR_G * cr) >> _INV_SHIFT
    b = (yy + _INV_CB_B * cb) >> _INV_SHIFT
    return torch.stack([r, g, b], 1).clamp(0, 255).to(torch.float32) / 255


def qp_scale(x: Tensor, scale: Tensor, act: str = "relu") -> Tensor:
    """Reference of :func:`npp_ext.ops.qp_scale`."""
    scale = scale.reshape(scale.shape[0], scale.shape[1], *([1] * (x.dim() - 2)))
    y = x * scale
    return F.relu(y) if act == "relu" else y


def npp_pixel_branch(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    """Reference of :func:`npp_ext.ops.npp_pixel_branch` (1x1 convs, scales, ReLUs)."""
    h = F.relu(F.conv2d(x, w1.reshape(3, 3, 1, 1), b1) * s1[:, :, None, None])
    return F.relu(F.conv2d(h, w2.reshape(3, 3, 1, 1), b2) * s2[:, :, None, None])


class _OneSidedStraightThroughClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        t = a + b
        ctx.high, ctx.low = t >= 1, t <= 0
        return t.clamp(0, 1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        # descent moves a + b by -grad: drop the steps that lead further out of [0, 1]
        outward = (ctx.high & (grad < 0)) | (ctx.low & (grad > 0))
        g = torch.where(outward, 0.0, grad)
        return g, g


def branch_sum_clamp(a: Tensor, b: Tensor) -> Tensor:
    """Reference of :func:`npp_ext.ops.branch_sum_clamp` (one-sided straight-through)."""
    return _OneSidedStraightThroughClamp.apply(a, b)
