"""``branch_sum_clamp``: the NPP output, ``clamp(a + b, 0, 1)`` with a one-sided
straight-through gradient (kernels: ``csrc/kernels/{cpu,cuda}/branch_sum``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    KERNEL_DTYPES,
    check_tensor_args,
    check_tensors,
    dtype_name,
    empty,
    kernel_op,
    launch,
    upcast_half,
)


def _check(a: Tensor, b: Tensor) -> None:
    check_tensors(("a", "b"), (a, b), KERNEL_DTYPES)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _impl(a: Tensor, b: Tensor) -> Tensor:
    _check(a, b)
    a, b = a.contiguous(), b.contiguous()
    y = empty(a)
    if a.numel():
        launch(
            "branch_sum_clamp",
            a,
            dtype_name(a),
            a.data_ptr(),
            b.data_ptr(),
            y.data_ptr(),
            a.numel(),
        )
    return y


def _fake(a: Tensor, b: Tensor) -> Tensor:
    _check(a, b)
    return empty(a)


def clamp_grad(y: Tensor, grad: Tensor) -> Tensor:
    """The gradient of both branches: straight through, except where descent would push a
    clamped value further out (``y >= 1`` with ``grad < 0``, ``y <= 0`` with ``grad > 0``)."""
    outward = ((y >= 1) & (grad < 0)) | ((y <= 0) & (grad > 0))
    return torch.where(outward, torch.zeros_like(grad), grad)


def _grad(saved: tuple[Tensor, ...], grad: Tensor) -> tuple[Tensor, Tensor]:
    g = clamp_grad(saved[0], grad)
    return g, g


_call = kernel_op(
    "branch_sum_clamp", _impl, _fake, tensors=2, save=lambda inputs, y: (y,), grad=_grad
)


def branch_sum_clamp(a: Tensor, b: Tensor) -> Tensor:
    """NPP output: ``clamp(a + b, 0, 1)`` with a one-sided straight-through gradient.

    a and b (the pixel and U-Net branches) have the same shape, dtype
    (float32 or float64; float16/bfloat16 are computed in float32) and
    device. Non-contiguous inputs are copied to contiguous memory.

    The gradient is ``grad_a = grad_b = grad_y``, except at a clamped pixel
    where gradient descent would push ``a + b`` further out of range (above 1
    with ``grad_y < 0``, below 0 with ``grad_y > 0``): there it is 0. The codec
    only ever sees values in [0, 1], but a hard clamp's zero gradient would
    stop the task and rate gradients at every saturated pixel, so the NPP could
    never learn to pull such pixels back into range; a plain straight-through
    gradient would keep pushing them further out, where nothing changes the
    output, and drag the shared weights along. The distortion term D_pre is
    computed on the clamped value, which is what the codec sees.
    """
    check_tensor_args(("a", "b"), (a, b))
    return _call(upcast_half(a).contiguous(), upcast_half(b).contiguous())
