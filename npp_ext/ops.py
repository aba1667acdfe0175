"""Torch custom ops over the npp_ext kernels (namespace ``npp_ext``).

Five ops, each a ``torch.library.custom_op`` with a fake (meta) implementation,
its autograd formula and an autocast rule, so they work in eager mode, under
``torch.autocast`` and inside ``torch.compile(fullgraph=True)``, on CPU and CUDA:

- :func:`rgb_to_yuv` / :func:`yuv_to_rgb`: float RGB <-> the padded planar
  8-bit YUV the codec library takes and gives, bit-exact with the BPG
  reference tools (integer maths of ``bpg/color_math.h``).
- :func:`qp_scale`: the QA layer's per-image channel scale and activation.
- :func:`npp_pixel_branch`: the NPP pixel branch fused in one pass (and one
  pass backward).
- :func:`branch_sum_clamp`: the NPP output, ``clamp(a + b, 0, 1)`` with a
  one-sided straight-through gradient.

The native modules take raw data pointers: ``npp_ext._kernels`` (CPU) and
``npp_ext._kernels_cuda`` (CUDA, imported only when a CUDA tensor needs it), so
importing this module needs neither a GPU, nor a driver, nor the CUDA module.
Outputs and scratch buffers are allocated here with torch (on CUDA through its
caching allocator) and the kernels run on torch's current stream.

Non-contiguous inputs are accepted and copied to contiguous memory first; the
outputs are always contiguous.

Eager calls on plain tensors skip torch's dispatcher: they run the same
implementations through a small ``torch.autograd.Function`` (the dispatcher costs
tens of microseconds a call, more than the GPU needs for a training batch).
Compiled code, ``torch.jit.trace``, tensor subclasses, functorch transforms and
dispatch modes get the custom ops. Both paths give bit-identical results (tested).

Gradients come from ``torch.autograd`` (``backward()``, ``torch.autograd.grad``).
``torch.func.vmap`` works; ``torch.func.grad``/``jvp`` (and ``jacrev``,
``jacfwd``, ``hessian``) raise NotImplementedError: torch's custom ops give them
no formula (a custom op under ``jvp`` would silently get a zero tangent).
"""

from __future__ import annotations

import functools
import importlib
import operator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "CHROMA_FORMATS",
    "YUVLayout",
    "branch_sum_clamp",
    "npp_pixel_branch",
    "qp_scale",
    "rgb_to_yuv",
    "yuv_layout",
    "yuv_to_rgb",
]

#: Chroma formats accepted by the YUV ops, mapped to color_math.h's codes.
CHROMA_FORMATS: dict[int, int] = {420: 1, 444: 3}

_MAX_SIDE = 1 << 16  # kMaxSide in csrc/kernels/kernels.h
_ACTS = ("relu", "none")
_DEVICES = ("cpu", "cuda")
_KERNEL_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_PIXEL_BRANCH_NAMES = ("x", "w1", "b1", "s1", "w2", "b2", "s2")


# --------------------------------------------------------------------------
# Layout of the planar YUV buffers


@dataclass(frozen=True)
class YUVLayout:
    """Plane layout of one image, as ``bpg_cm_make_layout`` in color_math.h.

    Y (``coded_w x coded_h``), then Cb, then Cr (``coded_cw x coded_ch`` each),
    contiguous; the real areas (``width x height`` and ``chroma_w x chroma_h``)
    are padded to the coded sizes by repeating the last column, then the last
    row. ``total`` is the number of bytes per image.
    """

    width: int
    height: int
    coded_w: int
    coded_h: int
    chroma_w: int
    chroma_h: int
    coded_cw: int
    coded_ch: int
    y_size: int
    c_size: int
    total: int


def _int_arg(name: str, value: Any) -> Any:
    """An int argument as an int: numpy ints pass, floats and bools raise TypeError.

    Symbolic sizes (``torch.SymInt`` under ``torch.compile``) are passed through as they are.
    """
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return operator.index(value)


def _chroma_code(chroma: int) -> int:
    chroma = _int_arg("chroma", chroma)
    if chroma not in CHROMA_FORMATS:
        raise ValueError(f"chroma must be one of {sorted(CHROMA_FORMATS)}, got {chroma!r}")
    return CHROMA_FORMATS[chroma]


def yuv_layout(width: int, height: int, chroma: int = 420) -> YUVLayout:
    """Layout of the planar YUV of a ``width x height`` image (see :class:`YUVLayout`).

    The coded size is the image size rounded up to 8, or to 16 when a side is
    <= 8 (x265 needs one 16x16 CTU). Works with symbolic sizes under
    ``torch.compile``.
    """
    code = _chroma_code(chroma)
    width, height = _int_arg("width", width), _int_arg("height", height)
    unit = 16 if (width <= 8 or height <= 8) else 8
    coded_w = (width + unit - 1) // unit * unit
    coded_h = (height + unit - 1) // unit * unit
    if code == CHROMA_FORMATS[420]:
        chroma_w, chroma_h = (width + 1) // 2, (height + 1) // 2
        coded_cw, coded_ch = coded_w // 2, coded_h // 2
    else:
        chroma_w, chroma_h, coded_cw, coded_ch = width, height, coded_w, coded_h
    y_size, c_size = coded_w * coded_h, coded_cw * coded_ch
    return YUVLayout(
        width, height, coded_w, coded_h, chroma_w, chroma_h, coded_cw, coded_ch,
        y_size, c_size, y_size + 2 * c_size,
    )  # fmt: skip


# --------------------------------------------------------------------------
# Native modules, loaded on first use


@functools.cache
def _cpu_kernels() -> ModuleType:
    try:
        return importlib.import_module("npp_ext._kernels")
    except ImportError as e:
        raise RuntimeError(
            "npp_ext._kernels (the CPU kernels) is not built: install the package "
            "(`pip install .`) or build the `_kernels` CMake target"
        ) from e


@functools.cache
def _cuda_kernels() -> ModuleType:
    try:
        return importlib.import_module("npp_ext._kernels_cuda")
    except ImportError as e:
        raise RuntimeError(
            "npp_ext._kernels_cuda (the CUDA kernels) is not available: the package was "
            "built without a CUDA compiler (or the module failed to load); use CPU tensors "
            "or rebuild with nvcc on the PATH"
        ) from e


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _cuda_args(t: Tensor) -> tuple[int, int]:
    """(device index, current stream handle) for a launch on t's device."""
    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    return index, torch.cuda.current_stream(index).cuda_stream


def _dtype_name(t: Tensor) -> str:
    return "float64" if t.dtype == torch.float64 else "float32"


# --------------------------------------------------------------------------
# Input validation (shared by the public wrappers, the ops and their fakes)


def _check_inputs(
    names: tuple[str, ...], tensors: tuple[Any, ...], dtypes: tuple[torch.dtype, ...]
) -> None:
    """One pass over the inputs of a float op: Tensors, one device (CPU/CUDA), one dtype.

    Only when a check fails are the detailed checks below run, for their message.
    """
    first = tensors[0]
    if not isinstance(first, Tensor):
        raise TypeError(f"{names[0]} must be a torch.Tensor, got {type(first).__name__}")
    device, dtype = first.device, first.dtype
    for t in tensors:
        if not isinstance(t, Tensor) or t.device != device or t.dtype != dtype:
            named = dict(zip(names, tensors, strict=True))
            _check_device(named)
            _check_float(named, dtypes)
            _check_same_dtype(named)
    if device.type not in _DEVICES:
        _check_device({names[0]: first})
    if dtype not in dtypes:
        _check_float({names[0]: first}, dtypes)


def _check_device(tensors: dict[str, Tensor]) -> None:
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type not in _DEVICES:
            raise ValueError(f"{name} must be on a CPU or CUDA device, got {t.device}")
        if t.device != first.device:
            raise ValueError(
                f"all inputs must be on the same device: {first_name} is on {first.device}, "
                f"{name} on {t.device}"
            )


def _check_float(tensors: dict[str, Tensor], allowed: tuple[torch.dtype, ...]) -> None:
    names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
    for name, t in tensors.items():
        if t.dtype not in allowed:
            raise TypeError(f"{name} must have dtype {names}; got {t.dtype}")


def _check_same_dtype(tensors: dict[str, Tensor]) -> None:
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.dtype != first.dtype:
            raise TypeError(
                f"all inputs must have the same dtype: {first_name} is {first.dtype}, "
                f"{name} is {t.dtype}"
            )


def _check_rgb(x: Tensor) -> None:
    _check_device({"x": x})
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a float tensor (float32, float64, float16, bfloat16), got {x.dtype}"
        )
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
    _check_side(x.shape[2], x.shape[3])


def _check_side(height: int, width: int) -> None:
    if not (1 <= height <= _MAX_SIDE and 1 <= width <= _MAX_SIDE):
        raise ValueError(f"image sides must be in [1, {_MAX_SIDE}], got H={height}, W={width}")


def _check_act(act: str) -> None:
    if act not in _ACTS:
        raise ValueError(f"act must be one of {_ACTS}, got {act!r}")


def _check_qp_scale(x: Tensor, scale: Tensor) -> None:
    _check_inputs(("x", "scale"), (x, scale), _KERNEL_DTYPES)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, ...), got {tuple(x.shape)}")
    if tuple(scale.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"scale must have shape (N, C) = {tuple(x.shape[:2])} for x of shape "
            f"{tuple(x.shape)}, got {tuple(scale.shape)}"
        )


def _check_pixel_branch(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> None:
    _check_inputs(_PIXEL_BRANCH_NAMES, (x, w1, b1, s1, w2, b2, s2), _KERNEL_DTYPES)
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


def _check_branch_sum(a: Tensor, b: Tensor) -> None:
    _check_inputs(("a", "b"), (a, b), _KERNEL_DTYPES)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_grad(grad: Tensor, x: Tensor) -> None:
    _check_inputs(("x", "grad"), (x, grad), (x.dtype,))
    if grad.shape != x.shape:
        raise ValueError(f"grad must have x's shape {tuple(x.shape)}, got {tuple(grad.shape)}")


def _empty(t: Tensor) -> Tensor:
    """An uninitialized tensor like t with contiguous strides (also where t has size-1 or
    empty dimensions, which ``empty_like`` would give t's strides), as the fakes promise."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _upcast_half(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (the kernels compute in float32 or float64)."""
    return t.float() if t.dtype in _HALF_DTYPES else t


def _register_autocast(op: Any) -> None:
    # Under autocast, half inputs are cast to float32 (float64 is left alone).
    for device_type in _DEVICES:
        try:
            op.register_autocast(device_type, torch.float32)
        except ValueError:  # autocast not available for this device type in this build
            pass


def _check_tensor_args(names: tuple[str, ...], tensors: tuple[Any, ...]) -> None:
    for name, t in zip(names, tensors, strict=True):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


_PLAIN_TENSOR_TYPES = (Tensor, torch.nn.Parameter)


def _direct(tensors: tuple[Tensor, ...], differentiable: bool = True) -> bool:
    """Whether an eager call may skip the dispatcher and run the kernels directly.

    The custom ops go through torch's dispatcher (tens of microseconds a call, more than
    the GPU needs for a 256x256 batch). Plain tensors in eager mode take a direct path to
    the same implementation; compiled code, the JIT tracer (which cannot see a kernel
    called through a data pointer), tensor subclasses (FakeTensor, ...), functorch
    transforms and dispatch modes keep the custom op, which they understand.
    Differentiable ops refuse functorch's autodiff transforms (see the module docstring).
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if any(type(t) not in _PLAIN_TENSOR_TYPES for t in tensors):
        return False
    if torch.overrides.has_torch_function(tensors):
        return False
    try:
        if torch._C._are_functorch_transforms_active():
            if differentiable:
                _refuse_autodiff_transforms()
            return False
        return not torch._C._len_torch_dispatch_stack()
    except AttributeError:  # private hooks moved in another torch: take the safe path
        return False


def _refuse_autodiff_transforms() -> None:
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    keys = {i.key() for i in retrieve_all_functorch_interpreters()}
    if keys & {TransformType.Grad, TransformType.Jvp}:
        raise NotImplementedError(
            "npp_ext ops do not support torch.func.grad/jvp/jacrev/jacfwd/hessian (torch's "
            "custom ops give them no formula); use torch.autograd (loss.backward() or "
            "torch.autograd.grad). torch.func.vmap works."
        )


# --------------------------------------------------------------------------
# rgb_to_yuv


def _rgb_to_yuv_impl(x: Tensor, chroma: int) -> Tensor:
    _check_rgb(x)
    code = _chroma_code(chroma)
    x = x.to(torch.float32).contiguous()
    n, _, h, w = x.shape
    out = torch.empty((n, yuv_layout(w, h, chroma).total), dtype=torch.uint8, device=x.device)
    if n == 0:
        return out
    if x.device.type == "cuda":
        dev, stream = _cuda_args(x)
        _cuda_kernels().rgb_to_yuv(x.data_ptr(), out.data_ptr(), n, h, w, code, dev, stream)
    else:
        _cpu_kernels().rgb_to_yuv(x.data_ptr(), out.data_ptr(), n, h, w, code, _threads())
    return out


@torch.library.custom_op("npp_ext::rgb_to_yuv", mutates_args=())
def _rgb_to_yuv(x: Tensor, chroma: int) -> Tensor:
    return _rgb_to_yuv_impl(x, chroma)


@_rgb_to_yuv.register_fake
def _(x: Tensor, chroma: int) -> Tensor:
    _check_rgb(x)
    total = yuv_layout(x.shape[3], x.shape[2], chroma).total
    return x.new_empty((x.shape[0], total), dtype=torch.uint8)


def _no_grad_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.n_inputs = len(inputs)


def _no_grad_backward(ctx: Any, *grads: Tensor) -> tuple[None, ...]:
    # Never reached in practice: the outputs (uint8) or inputs (uint8) of the
    # YUV ops cannot carry gradients. Registered so autograd knows the op.
    return (None,) * ctx.n_inputs


_rgb_to_yuv.register_autograd(_no_grad_backward, setup_context=_no_grad_setup)
_register_autocast(_rgb_to_yuv)


def rgb_to_yuv(x: Tensor, chroma: int = 420) -> Tensor:
    """Float RGB -> the padded planar 8-bit YUV the BPG encoder takes.

    Args:
        x: (N, 3, H, W) RGB in [0, 1] on CPU or CUDA; float32 (float16,
            bfloat16 and float64 are accepted and converted to float32).
            Non-contiguous inputs are copied to contiguous memory.
        chroma: 420 or 444.

    Each value is quantized to 8 bits as ``round(clamp(x, 0, 1) * 255)`` in
    float32, rounding half to even like ``torch.round`` (NaN counts as 0),
    then converted with the BPG reference encoder's integer BT.601
    full-range maths; for 4:2:0 the chroma is decimated with its 10-tap
    filter (horizontal pass first, extra precision kept between the passes).

    Returns:
        (N, L.total) uint8, ``L = yuv_layout(W, H, chroma)``: the Y plane, then
        Cb, then Cr, each padded to its coded size by repeating the last
        column, then the last row. Not differentiable.
    """
    _check_rgb(x)
    _chroma_code(chroma)
    chroma = _int_arg("chroma", chroma)
    x = x.to(torch.float32).contiguous()
    if _direct((x,), differentiable=False):
        with torch.no_grad():  # uint8 output: nothing to differentiate
            return _rgb_to_yuv_impl(x, chroma)
    return _rgb_to_yuv(x, chroma)


# --------------------------------------------------------------------------
# yuv_to_rgb


def _check_yuv(yuv: Tensor, height: int, width: int, chroma: int) -> None:
    _check_device({"yuv": yuv})
    if yuv.dtype != torch.uint8:
        raise TypeError(f"yuv must have dtype uint8, got {yuv.dtype}")
    _chroma_code(chroma)
    _check_side(_int_arg("height", height), _int_arg("width", width))
    total = yuv_layout(width, height, chroma).total
    if yuv.dim() != 2 or yuv.shape[1] != total:
        raise ValueError(
            f"yuv must have shape (N, {total}) for a {width}x{height} image with chroma={chroma}, "
            f"got {tuple(yuv.shape)}"
        )


def _yuv_to_rgb_impl(yuv: Tensor, height: int, width: int, chroma: int) -> Tensor:
    _check_yuv(yuv, height, width, chroma)
    code = _chroma_code(chroma)
    yuv = yuv.contiguous()
    n = yuv.shape[0]
    out = torch.empty((n, 3, height, width), dtype=torch.float32, device=yuv.device)
    if n == 0:
        return out
    if yuv.device.type == "cuda":
        dev, stream = _cuda_args(yuv)
        _cuda_kernels().yuv_to_rgb(
            yuv.data_ptr(), out.data_ptr(), n, height, width, code, dev, stream
        )
    else:
        _cpu_kernels().yuv_to_rgb(
            yuv.data_ptr(), out.data_ptr(), n, height, width, code, _threads()
        )
    return out


@torch.library.custom_op("npp_ext::yuv_to_rgb", mutates_args=())
def _yuv_to_rgb(yuv: Tensor, height: int, width: int, chroma: int) -> Tensor:
    return _yuv_to_rgb_impl(yuv, height, width, chroma)


@_yuv_to_rgb.register_fake
def _(yuv: Tensor, height: int, width: int, chroma: int) -> Tensor:
    _check_yuv(yuv, height, width, chroma)
    return yuv.new_empty((yuv.shape[0], 3, height, width), dtype=torch.float32)


_yuv_to_rgb.register_autograd(_no_grad_backward, setup_context=_no_grad_setup)


def yuv_to_rgb(yuv: Tensor, height: int, width: int, chroma: int = 420) -> Tensor:
    """Padded planar 8-bit YUV -> float RGB, as the BPG reference decoder does it.

    Args:
        yuv: (N, L.total) uint8 in the layout of :func:`rgb_to_yuv` (only the
            real areas are read), on CPU or CUDA. Non-contiguous inputs are
            copied to contiguous memory.
        height, width: the real image size.
        chroma: 420 or 444.

    For 4:2:0 the chroma is interpolated with the decoder's 7-tap filter pair,
    vertical pass first at full precision, then horizontal with rounding;
    then the integer YCbCr -> RGB conversion.

    Returns:
        (N, 3, height, width) float32, the 8-bit RGB divided by 255. No
        gradient (the input is uint8).
    """
    _check_yuv(yuv, height, width, chroma)
    height, width = _int_arg("height", height), _int_arg("width", width)
    chroma = _int_arg("chroma", chroma)
    yuv = yuv.contiguous()
    if _direct((yuv,), differentiable=False):
        return _yuv_to_rgb_impl(yuv, height, width, chroma)
    return _yuv_to_rgb(yuv, height, width, chroma)


# --------------------------------------------------------------------------
# qp_scale


def _qp_scale_impl(x: Tensor, scale: Tensor, act: str) -> Tensor:
    _check_qp_scale(x, scale)
    _check_act(act)
    x, scale = x.contiguous(), scale.contiguous()
    y = _empty(x)
    if x.numel() == 0:
        return y
    rows, hw = scale.numel(), x.numel() // scale.numel()
    args = (_dtype_name(x), x.data_ptr(), scale.data_ptr(), y.data_ptr(), rows, hw, act == "relu")
    if x.device.type == "cuda":
        _cuda_kernels().qp_scale_forward(*args, *_cuda_args(x))
    else:
        _cpu_kernels().qp_scale_forward(*args, _threads())
    return y


@torch.library.custom_op("npp_ext::qp_scale", mutates_args=())
def _qp_scale(x: Tensor, scale: Tensor, act: str) -> Tensor:
    return _qp_scale_impl(x, scale, act)


@_qp_scale.register_fake
def _(x: Tensor, scale: Tensor, act: str) -> Tensor:
    _check_qp_scale(x, scale)
    _check_act(act)
    return _empty(x)


def _qp_scale_backward_impl(
    grad: Tensor, x: Tensor, scale: Tensor, act: str
) -> tuple[Tensor, Tensor]:
    _check_qp_scale(x, scale)
    _check_grad(grad, x)
    _check_act(act)
    grad, x, scale = grad.contiguous(), x.contiguous(), scale.contiguous()
    grad_x = _empty(x)
    if x.numel() == 0:
        return grad_x, torch.zeros_like(scale)
    grad_scale = _empty(scale)  # every row is written
    rows, hw = scale.numel(), x.numel() // scale.numel()
    relu = act == "relu"
    if x.device.type == "cuda":
        dev, stream = _cuda_args(x)
        k = _cuda_kernels()
        workspace = x.new_empty(rows * k.qp_scale_backward_parts(hw))
        k.qp_scale_backward(
            _dtype_name(x), grad.data_ptr(), x.data_ptr(), scale.data_ptr(), grad_x.data_ptr(),
            grad_scale.data_ptr(), workspace.data_ptr(), rows, hw, relu, dev, stream,
        )  # fmt: skip
    else:
        _cpu_kernels().qp_scale_backward(
            _dtype_name(x), grad.data_ptr(), x.data_ptr(), scale.data_ptr(), grad_x.data_ptr(),
            grad_scale.data_ptr(), rows, hw, relu, _threads(),
        )  # fmt: skip
    return grad_x, grad_scale


@torch.library.custom_op("npp_ext::qp_scale_backward", mutates_args=())
def _qp_scale_backward(grad: Tensor, x: Tensor, scale: Tensor, act: str) -> tuple[Tensor, Tensor]:
    return _qp_scale_backward_impl(grad, x, scale, act)


@_qp_scale_backward.register_fake
def _(grad: Tensor, x: Tensor, scale: Tensor, act: str) -> tuple[Tensor, Tensor]:
    _check_qp_scale(x, scale)
    _check_grad(grad, x)
    _check_act(act)
    return (
        _empty(x),
        _empty(scale),
    )


def _qp_scale_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, scale, act = inputs
    ctx.save_for_backward(x, scale)
    ctx.act = act


def _qp_scale_grad(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
    x, scale = ctx.saved_tensors
    grad_x, grad_scale = _qp_scale_backward(grad.contiguous(), x, scale, ctx.act)
    return grad_x, grad_scale, None


_qp_scale.register_autograd(_qp_scale_grad, setup_context=_qp_scale_setup)
_register_autocast(_qp_scale)
_register_autocast(_qp_scale_backward)


class _QPScaleDirect(torch.autograd.Function):
    """The eager path of qp_scale: the same implementations without the dispatcher."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, act: str) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, scale)
        ctx.act = act
        return _qp_scale_impl(x, scale, act)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        x, scale = ctx.saved_tensors
        grad_x, grad_scale = _qp_scale_backward_impl(grad.contiguous(), x, scale, ctx.act)
        return grad_x, grad_scale, None


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
    _check_tensor_args(("x", "scale"), (x, scale))
    _check_act(act)
    x, scale = _upcast_half(x), _upcast_half(scale)
    if scale.dim() == 4 and x.dim() >= 2 and tuple(scale.shape[2:]) == (1, 1):
        scale = scale.reshape(scale.shape[0], scale.shape[1])
    x, scale = x.contiguous(), scale.contiguous()
    if _direct((x, scale)):
        return _QPScaleDirect.apply(x, scale, act)
    _check_qp_scale(x, scale)
    return _qp_scale(x, scale, act)


# --------------------------------------------------------------------------
# npp_pixel_branch


def _pixel_branch_impl(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    _check_pixel_branch(x, w1, b1, s1, w2, b2, s2)
    x, w1, b1, s1, w2, b2, s2 = (t.contiguous() for t in (x, w1, b1, s1, w2, b2, s2))
    y = _empty(x)
    if x.numel() == 0:
        return y
    n, hw = x.shape[0], x.shape[2] * x.shape[3]
    ptrs = [t.data_ptr() for t in (x, w1, b1, s1, w2, b2, s2, y)]
    if x.device.type == "cuda":
        _cuda_kernels().npp_pixel_branch_forward(_dtype_name(x), *ptrs, n, hw, *_cuda_args(x))
    else:
        _cpu_kernels().npp_pixel_branch_forward(_dtype_name(x), *ptrs, n, hw, _threads())
    return y


@torch.library.custom_op("npp_ext::npp_pixel_branch", mutates_args=())
def _npp_pixel_branch(
    x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> Tensor:
    return _pixel_branch_impl(x, w1, b1, s1, w2, b2, s2)


@_npp_pixel_branch.register_fake
def _(x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor) -> Tensor:
    _check_pixel_branch(x, w1, b1, s1, w2, b2, s2)
    return _empty(x)


def _pixel_branch_backward_impl(
    grad: Tensor, x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_pixel_branch(x, w1, b1, s1, w2, b2, s2)
    _check_grad(grad, x)
    inputs = [t.contiguous() for t in (grad, x, w1, b1, s1, w2, b2, s2)]
    x = inputs[1]
    if x.numel() == 0:
        return tuple(torch.zeros_like(t) for t in inputs[1:])  # type: ignore[return-value]
    # The kernels write every element (x, w1, b1, s1, w2, b2, s2): no zero fill needed.
    grads = [_empty(t) for t in inputs[1:]]
    n, hw = x.shape[0], x.shape[2] * x.shape[3]
    ptrs = [t.data_ptr() for t in inputs + grads]
    if x.device.type == "cuda":
        k = _cuda_kernels()
        workspace = x.new_empty(n * k.npp_pixel_branch_backward_parts(hw) * 30)
        k.npp_pixel_branch_backward(
            _dtype_name(x), *ptrs, workspace.data_ptr(), n, hw, *_cuda_args(x)
        )
    else:
        _cpu_kernels().npp_pixel_branch_backward(_dtype_name(x), *ptrs, n, hw, _threads())
    return tuple(grads)  # type: ignore[return-value]


@torch.library.custom_op("npp_ext::npp_pixel_branch_backward", mutates_args=())
def _npp_pixel_branch_backward(
    grad: Tensor, x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _pixel_branch_backward_impl(grad, x, w1, b1, s1, w2, b2, s2)


@_npp_pixel_branch_backward.register_fake
def _(
    grad: Tensor, x: Tensor, w1: Tensor, b1: Tensor, s1: Tensor, w2: Tensor, b2: Tensor, s2: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_pixel_branch(x, w1, b1, s1, w2, b2, s2)
    _check_grad(grad, x)
    return tuple(_empty(t) for t in (x, w1, b1, s1, w2, b2, s2))  # type: ignore[return-value]


def _pixel_branch_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(*inputs)  # x and the parameters; intermediates are recomputed


def _pixel_branch_grad(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:
    return _npp_pixel_branch_backward(grad.contiguous(), *ctx.saved_tensors)


_npp_pixel_branch.register_autograd(_pixel_branch_grad, setup_context=_pixel_branch_setup)
_register_autocast(_npp_pixel_branch)
_register_autocast(_npp_pixel_branch_backward)


class _PixelBranchDirect(torch.autograd.Function):
    """The eager path of npp_pixel_branch: the same implementations without the dispatcher."""

    @staticmethod
    def forward(ctx: Any, *inputs: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(*inputs)  # x and the parameters; intermediates are recomputed
        return _pixel_branch_impl(*inputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return _pixel_branch_backward_impl(grad.contiguous(), *ctx.saved_tensors)


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
    _check_tensor_args(_PIXEL_BRANCH_NAMES, (x, w1, b1, s1, w2, b2, s2))
    x, w1, b1, s1, w2, b2, s2 = (_upcast_half(t) for t in (x, w1, b1, s1, w2, b2, s2))
    if w1.dim() == 4 and tuple(w1.shape) == (3, 3, 1, 1):
        w1 = w1.reshape(3, 3)
    if w2.dim() == 4 and tuple(w2.shape) == (3, 3, 1, 1):
        w2 = w2.reshape(3, 3)
    inputs = tuple(t.contiguous() for t in (x, w1, b1, s1, w2, b2, s2))
    if _direct(inputs):
        return _PixelBranchDirect.apply(*inputs)
    _check_pixel_branch(*inputs)
    return _npp_pixel_branch(*inputs)


# --------------------------------------------------------------------------
# branch_sum_clamp


def _branch_sum_impl(a: Tensor, b: Tensor) -> Tensor:
    _check_branch_sum(a, b)
    a, b = a.contiguous(), b.contiguous()
    y = _empty(a)
    if a.numel() == 0:
        return y
    ptrs = (a.data_ptr(), b.data_ptr(), y.data_ptr())
    if a.device.type == "cuda":
        _cuda_kernels().branch_sum_clamp(_dtype_name(a), *ptrs, a.numel(), *_cuda_args(a))
    else:
        _cpu_kernels().branch_sum_clamp(_dtype_name(a), *ptrs, a.numel(), _threads())
    return y


@torch.library.custom_op("npp_ext::branch_sum_clamp", mutates_args=())
def _branch_sum_clamp(a: Tensor, b: Tensor) -> Tensor:
    return _branch_sum_impl(a, b)


@_branch_sum_clamp.register_fake
def _(a: Tensor, b: Tensor) -> Tensor:
    _check_branch_sum(a, b)
    return _empty(a)


def _branch_sum_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(output)


def _branch_sum_grad(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
    # Straight through, except where descent would push a clamped value further out.
    (y,) = ctx.saved_tensors
    outward = ((y >= 1) & (grad < 0)) | ((y <= 0) & (grad > 0))
    g = torch.where(outward, torch.zeros_like(grad), grad)
    return g, g


_branch_sum_clamp.register_autograd(_branch_sum_grad, setup_context=_branch_sum_setup)
_register_autocast(_branch_sum_clamp)


class _BranchSumDirect(torch.autograd.Function):
    """The eager path of branch_sum_clamp: the same implementation without the dispatcher."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        y = _branch_sum_impl(a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return _branch_sum_grad(ctx, grad)


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
    _check_tensor_args(("a", "b"), (a, b))
    a, b = _upcast_half(a).contiguous(), _upcast_half(b).contiguous()
    if _direct((a, b)):
        return _BranchSumDirect.apply(a, b)
    _check_branch_sum(a, b)
    return _branch_sum_clamp(a, b)
