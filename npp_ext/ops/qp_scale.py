"""``qp_scale``: the QA layer's per-image channel scale and activation
(kernels: ``csrc/kernels/{cpu,cuda}/qp_scale``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    KERNEL_DTYPES,
    check_grad,
    check_tensor_args,
    check_tensors,
    dtype_name,
    empty,
    kernel_op,
    launch,
    upcast_half,
)

_ACTS = ("relu", "none")


def _check(x: Tensor, scale: Tensor, act: str) -> None:
    check_tensors(("x", "scale"), (x, scale), KERNEL_DTYPES)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {tuple(x.shape)}")
    if tuple(scale.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"scale must have shape (N, C) = {tuple(x.shape[:2])} for x of shape "
            f"{tuple(x.shape)}, got {tuple(scale.shape)}"
        )
    if act not in _ACTS:
        raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def _impl(x: Tensor, scale: Tensor, act: str) -> Tensor:
    _check(x, scale, act)
    x, scale = x.contiguous(), scale.contiguous()
    y = empty(x)
    if x.numel():
        rows, hw = scale.numel(), x.numel() // scale.numel()
        launch(
            "qp_scale_forward", x, dtype_name(x), x.data_ptr(), scale.data_ptr(), y.data_ptr(),
            rows, hw, act == "relu",
        )  # fmt: skip
    return y


def _fake(x: Tensor, scale: Tensor, act: str) -> Tensor:
    _check(x, scale, act)
    return empty(x)


def _backward_impl(grad: Tensor, x: Tensor, scale: Tensor, act: str) -> tuple[Tensor, Tensor]:
    _check(x, scale, act)
    check_grad(grad, x)
    grad, x, scale = grad.contiguous(), x.contiguous(), scale.contiguous()
    grad_x = empty(x)
    if x.numel() == 0:
        return grad_x, torch.zeros_like(scale)
    grad_scale = empty(scale)  # every row is written
    rows, hw = scale.numel(), x.numel() // scale.numel()
    ptrs = (grad.data_ptr(), x.data_ptr(), scale.data_ptr(), grad_x.data_ptr())
    if x.device.type == "cuda":  # the CUDA kernel reduces partial sums through a workspace
        from ._common import cuda_kernels

        workspace = x.new_empty(rows * cuda_kernels().qp_scale_backward_parts(hw))
        args = (*ptrs, grad_scale.data_ptr(), workspace.data_ptr())
    else:
        args = (*ptrs, grad_scale.data_ptr())
    launch("qp_scale_backward", x, dtype_name(x), *args, rows, hw, act == "relu")
    return grad_x, grad_scale


def _backward_fake(grad: Tensor, x: Tensor, scale: Tensor, act: str) -> tuple[Tensor, Tensor]:
    _check(x, scale, act)
    check_grad(grad, x)
    return empty(x), empty(scale)


_call = kernel_op(
    "qp_scale",
    _impl,
    _fake,
    tensors=2,
    save=lambda inputs, output: inputs,
    backward=(_backward_impl, _backward_fake),
)


def qp_scale(x: Tensor, scale: Tensor, act: str = "relu") -> Tensor:
    """QA-layer scaling: ``y = act(x * scale[n, c])``, one scale row per image.

    Args:
        x: (N, C, H, W) (or any (N, C, ...)) float32 or float64, CPU or CUDA.
        scale: (N, C) or (N, C, 1, 1), same dtype and device (one row per
            image, so a batch may mix QPs).
        act: "relu" or "none".

    float16/bfloat16 inputs (e.g. under ``torch.autocast``) are computed in
    float32 and give a float32 output. Non-contiguous inputs are copied to
    contiguous memory. Differentiable in x and scale; the backward is one
    fused kernel whose per-(n, c) reduction is deterministic.
    """
    check_tensor_args(("x", "scale"), (x, scale))
    x, scale = upcast_half(x), upcast_half(scale)
    if scale.dim() == 4 and x.dim() >= 2 and tuple(scale.shape[2:]) == (1, 1):
        scale = scale.reshape(scale.shape[0], scale.shape[1])
    return _call(x.contiguous(), scale.contiguous(), act)
