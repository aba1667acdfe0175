"""``npp_pixel_branch``: the NPP's pixel branch fused in one pass, and one pass backward
(kernels: ``csrc/kernels/{cpu,cuda}/npp_pixel_branch``)."""

from __future__ import annotations

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

_NAMES = ("x", "w1", "b1", "s1", "w2", "b2", "s2")
#: Partial sums per image and workspace slot of the CUDA backward's parameter gradients.
_GRAD_VALUES = 30


def _check(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> None:
    check_tensors(_NAMES, (x, w1, b1, s1, w2, b2, s2), KERNEL_DTYPES)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
    for name, t in (("w1", w1), ("w2", w2)):
        if tuple(t.shape) != (3, 3):
            raise ValueError(f"{name} must have shape (3, 3) or (3, 3, 1, 1), got {tuple(t.shape)}")
    for name, t in (("b1", b1), ("b2", b2)):
        if tuple(t.shape) != (3,):
            raise ValueError(f"{name} must have shape (3,), got {tuple(t.shape)}")
    for name, t in (("s1", s1), ("s2", s2)):
        if tuple(t.shape) != (x.shape[0], 3):
            raise ValueError(
                f"{name} must have shape (N, 3) = ({x.shape[0]}, 3), got {tuple(t.shape)}"
            )


def _impl(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    _check(x, w1, b1, s1, w2, b2, s2)
    inputs = [t.contiguous() for t in (x, w1, b1, s1, w2, b2, s2)]
    y = empty(inputs[0])
    if y.numel():
        n, hw = x.shape[0], x.shape[2] * x.shape[3]
        ptrs = [t.data_ptr() for t in (*inputs, y)]
        launch("npp_pixel_branch_forward", x, dtype_name(x), *ptrs, n, hw)
    return y


def _fake(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    _check(x, w1, b1, s1, w2, b2, s2)
    return empty(x)


Grads = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _backward_impl(
    grad: Tensor, x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Grads:
    _check(x, w1, b1, s1, w2, b2, s2)
    check_grad(grad, x)
    inputs = [t.contiguous() for t in (grad, x, w1, b1, s1, w2, b2, s2)]
    if x.numel() == 0:
        return tuple(t.new_zeros(t.shape) for t in inputs[1:])  # type: ignore[return-value]
    # The kernels write every element (x, w1, b1, s1, w2, b2, s2): no zero fill needed.
    grads = [empty(t) for t in inputs[1:]]
    n, hw = x.shape[0], x.shape[2] * x.shape[3]
    ptrs = [t.data_ptr() for t in inputs + grads]
    if x.device.type == "cuda":
        from ._common import cuda_kernels

        parts = cuda_kernels().npp_pixel_branch_backward_parts(hw)
        workspace = x.new_empty(n * parts * _GRAD_VALUES)
        ptrs.append(workspace.data_ptr())
    launch("npp_pixel_branch_backward", x, dtype_name(x), *ptrs, n, hw)
    return tuple(grads)  # type: ignore[return-value]


def _backward_fake(
    grad: Tensor, x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Grads:
    _check(x, w1, b1, s1, w2, b2, s2)
    check_grad(grad, x)
    return tuple(empty(t) for t in (x, w1, b1, s1, w2, b2, s2))  # type: ignore[return-value]


_call = kernel_op(
    "npp_pixel_branch",
    _impl,
    _fake,
    tensors=7,
    save=lambda inputs, output: inputs,  # x and the parameters; intermediates are recomputed
    backward=(_backward_impl, _backward_fake),
)


def npp_pixel_branch(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    """The NPP pixel branch, fused: ``relu(s2 * (W2 relu(s1 * (W1 x + b1)) + b2))`` per pixel.

    That is Conv1x1(3->3) -> QA scale -> ReLU -> Conv1x1(3->3) -> QA scale ->
    ReLU in one pass over the image.

    Args:
        x: (N, 3, H, W) float32 or float64, CPU or CUDA.
        w1, w2: (3, 3) as (out, in), or a Conv2d 1x1 weight (3, 3, 1, 1)
            (the gradient then has that shape too).
        b1, b2: (3,) biases.
        s1, s2: (N, 3) per-image QA scales.

    All inputs share x's dtype and device; float16/bfloat16 inputs (e.g. under
    ``torch.autocast``) are computed in float32. Non-contiguous inputs are
    copied to contiguous memory. The backward is one fused pass that
    recomputes the intermediates and reduces the parameter gradients in a
    fixed order (deterministic).
    """
    check_tensor_args(_NAMES, (x, w1, b1, s1, w2, b2, s2))
    x, w1, b1, s1, w2, b2, s2 = (upcast_half(t) for t in (x, w1, b1, s1, w2, b2, s2))
    if w1.dim() == 4 and tuple(w1.shape) == (3, 3, 1, 1):
        w1 = w1.reshape(3, 3)
    if w2.dim() == 4 and tuple(w2.shape) == (3, 3, 1, 1):
        w2 = w2.reshape(3, 3)
    return _call(*(t.contiguous() for t in (x, w1, b1, s1, w2, b2, s2)))
