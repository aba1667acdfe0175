"""What the npp_ext ops share: the native modules, argument checks, and one way to
register an op (custom op, fake, autograd, autocast, and the dispatcher-free eager path).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

DEVICES = ("cpu", "cuda")
KERNEL_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_PLAIN_TENSOR_TYPES = (Tensor, torch.nn.Parameter)


# ---- native modules, loaded on first use -------------------------------------------------


def _import_kernels(name: str, why: str) -> ModuleType:
    try:
        return importlib.import_module(f"npp_ext.{name}")
    except ImportError as e:
        raise RuntimeError(f"npp_ext.{name} {why}") from e


@functools.cache
def cpu_kernels() -> ModuleType:
    """npp_ext._kernels (the CPU kernels)."""
    return _import_kernels(
        "_kernels",
        "(the CPU kernels) is not built: install the package (`pip install .`) or build the "
        "`_kernels` CMake target",
    )


@functools.cache
def cuda_kernels() -> ModuleType:
    """npp_ext._kernels_cuda (the CUDA kernels), imported only when a CUDA tensor needs it."""
    return _import_kernels(
        "_kernels_cuda",
        "(the CUDA kernels) is not available: the package was built without a CUDA compiler "
        "(or the module failed to load); use CPU tensors or rebuild with nvcc on the PATH",
    )


def launch(name: str, t: Tensor, *args: Any, workspace: Tensor | None = None) -> None:
    """Run kernel ``name`` of t's device: on CPU with torch's thread count, on CUDA on the
    current stream of t's device (with ``workspace`` before the sizes where it takes one)."""
    if t.device.type == "cuda":
        index = t.device.index if t.device.index is not None else torch.cuda.current_device()
        stream = torch.cuda.current_stream(index).cuda_stream
        getattr(cuda_kernels(), name)(*args, index, stream)
    else:
        getattr(cpu_kernels(), name)(*args, max(1, torch.get_num_threads()))


def dtype_name(t: Tensor) -> str:
    """The kernels' name of t's dtype."""
    return "float64" if t.dtype == torch.float64 else "float32"


# ---- argument checks ----------------------------------------------------------------------


def check_tensors(
    names: Sequence[str], tensors: Sequence[Any], dtypes: Sequence[torch.dtype]
) -> None:
    """Tensors, all on one CPU/CUDA device, all of one dtype among ``dtypes``."""
    first_name, first = names[0], tensors[0]
    for name, t in zip(names, tensors, strict=True):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type not in DEVICES:
            raise ValueError(f"{name} must be on a CPU or CUDA device, got {t.device}")
        if t.device != first.device:
            raise ValueError(
                f"all inputs must be on the same device: {first_name} is on {first.device}, "
                f"{name} on {t.device}"
            )
    allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
    for name, t in zip(names, tensors, strict=True):
        if t.dtype not in dtypes:
            raise TypeError(f"{name} must have dtype {allowed}; got {t.dtype}")
        if t.dtype != first.dtype:
            raise TypeError(
                f"all inputs must have the same dtype: {first_name} is {first.dtype}, "
                f"{name} is {t.dtype}"
            )


def check_tensor_args(names: Sequence[str], tensors: Sequence[Any]) -> None:
    """Only that each is a tensor (before a wrapper reshapes or casts them)."""
    for name, t in zip(names, tensors, strict=True):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def check_grad(grad: Tensor, x: Tensor) -> None:
    """A backward's incoming gradient: x's shape, dtype and device."""
    check_tensors(("x", "grad"), (x, grad), (x.dtype,))
    if grad.shape != x.shape:
        raise ValueError(f"grad must have x's shape {tuple(x.shape)}, got {tuple(grad.shape)}")


def int_arg(name: str, value: Any) -> Any:
    """An int argument of a custom op as an int: numpy ints pass, floats and bools raise.

    Symbolic sizes (``torch.SymInt`` under ``torch.compile``) are passed through.
    """
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


# ---- tensors -------------------------------------------------------------------------------


def empty(t: Tensor) -> Tensor:
    """An uninitialized tensor like t with contiguous strides (also where t has size-1 or
    empty dimensions, which ``empty_like`` would give t's strides), as the fakes promise."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def upcast_half(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (the kernels compute in float32 or float64)."""
    return t.float() if t.dtype in _HALF_DTYPES else t


# ---- the eager path without the dispatcher -------------------------------------------------


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


def direct(tensors: Sequence[Tensor], differentiable: bool = True) -> bool:
    """Whether an eager call may skip the dispatcher and run the kernels directly.

    The custom ops go through torch's dispatcher (tens of microseconds a call, more than
    the GPU needs for a 256x256 batch). Plain tensors in eager mode take a direct path to
    the same implementation; compiled code, the JIT tracer (which cannot see a kernel
    called through a data pointer), tensor subclasses (FakeTensor, ...), functorch
    transforms and dispatch modes keep the custom op, which they understand.
    Differentiable ops refuse functorch's autodiff transforms (see the package docstring).
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


# ---- registration ------------------------------------------------------------------------


def _register_autocast(op: Any) -> None:
    # Under autocast, half inputs are cast to float32 (float64 is left alone).
    for device_type in DEVICES:
        try:
            op.register_autocast(device_type, torch.float32)
        except ValueError:  # autocast not available for this device type in this build
            pass


Saved = Callable[[tuple[Any, ...], Tensor], tuple[Tensor, ...]]


def kernel_op(
    name: str,
    impl: Callable[..., Tensor],
    fake: Callable[..., Tensor],
    *,
    tensors: int,
    save: Saved | None = None,
    backward: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
    grad: Callable[[tuple[Tensor, ...], Tensor], tuple[Tensor, ...]] | None = None,
) -> Callable[..., Tensor]:
    """Register ``npp_ext::<name>`` over ``impl`` and return the function that calls it.

    ``impl`` and ``fake`` take the same arguments, the first ``tensors`` of them tensors,
    the rest plain values; ``impl`` validates them (it is what ``torch.ops.npp_ext.<name>``
    runs). Differentiable ops say what ``save`` keeps of (tensor inputs, output) and either
    a fused ``backward = (impl, fake)`` (registered as ``npp_ext::<name>_backward``, called
    as ``backward(grad, *saved, *plain values)``) or a ``grad(saved, grad)`` in plain
    torch. Without either the op is not differentiable (its dtype ends the graph).

    The returned function runs ``impl`` through a small ``autograd.Function`` when
    :func:`direct` allows it, else the custom op; both paths share every formula.
    """
    op = torch.library.custom_op(f"npp_ext::{name}", impl, mutates_args=())
    op.register_fake(fake)
    _register_autocast(op)
    grad_op = grad_direct = grad
    if backward is not None:
        backward_impl, backward_fake = backward
        bop = torch.library.custom_op(f"npp_ext::{name}_backward", backward_impl, mutates_args=())
        bop.register_fake(backward_fake)
        _register_autocast(bop)

        def grad_op(saved: tuple[Tensor, ...], g: Tensor, *plain: Any) -> tuple[Tensor, ...]:
            return bop(g.contiguous(), *saved, *plain)

        def grad_direct(saved: tuple[Tensor, ...], g: Tensor, *plain: Any) -> tuple[Tensor, ...]:
            return backward_impl(g.contiguous(), *saved, *plain)

    if grad_op is None:

        def no_grad_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
            ctx.n_inputs = len(inputs)

        def no_grad(ctx: Any, *grads: Tensor) -> tuple[None, ...]:
            # Not reached in practice (uint8 inputs or outputs carry no gradient);
            # registered so that autograd knows the op.
            return (None,) * ctx.n_inputs

        op.register_autograd(no_grad, setup_context=no_grad_setup)

        def call(*args: Any) -> Tensor:
            if direct(args[:tensors], differentiable=False):
                with torch.no_grad():
                    return impl(*args)
            return op(*args)

        return call

    assert save is not None, "a differentiable op says what its backward keeps"

    def setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(*save(tuple(inputs[:tensors]), output))
        ctx.plain = tuple(inputs[tensors:])

    def backward_of(formula: Callable[..., tuple[Tensor, ...]]) -> Callable[..., Any]:
        def run(ctx: Any, g: Tensor) -> tuple[Any, ...]:
            return (*formula(ctx.saved_tensors, g, *ctx.plain), *(None,) * len(ctx.plain))

        return run

    op.register_autograd(backward_of(grad_op), setup_context=setup)
    direct_backward = backward_of(grad_direct)
    if backward is not None:  # a fused backward kernel is first order only
        direct_backward = once_differentiable(direct_backward)

    class Direct(torch.autograd.Function):
        """The eager path: the same implementations without the dispatcher."""

        @staticmethod
        def forward(ctx: Any, *args: Any) -> Tensor:  # type: ignore[override]
            out = impl(*args)
            setup(ctx, args, out)
            return out

        backward = staticmethod(direct_backward)

    Direct.__name__ = Direct.__qualname__ = f"_{name}_direct"

    def call(*args: Any) -> Tensor:
        if direct(args[:tensors]):
            return Direct.apply(*args)
        return op(*args)

    return call
