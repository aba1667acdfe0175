"""Torch custom ops over the npp_ext kernels (namespace ``npp_ext``).

Five ops, one module each (like ``csrc/kernels/{cpu,cuda}/``), each a
``torch.library.custom_op`` with a fake (meta) implementation, its autograd formula and
an autocast rule, so they work in eager mode, under ``torch.autocast`` and inside
``torch.compile(fullgraph=True)``, on CPU and CUDA:

- :func:`rgb_to_yuv` / :func:`yuv_to_rgb`: float RGB <-> the padded planar
  8-bit YUV the codec library takes and gives, bit-exact with the BPG
  reference tools (integer maths of ``bpg/color_math.h``; ``docs/color.md``).
- :func:`qp_scale`: the QA layer's per-image channel scale and activation.
- :func:`npp_pixel_branch`: the NPP pixel branch fused in one pass (and one
  pass backward).
- :func:`branch_sum_clamp`: the NPP output, ``clamp(a + b, 0, 1)`` with a
  one-sided straight-through gradient.

:mod:`npp_ext.ops.eager` holds the same maths in plain PyTorch (the models' unfused
path, the tests' reference). What the ops share (native modules, checks, registration)
is in ``_common``; the chroma formats, sizes and the YUV layout are those of
:mod:`npp_ext.options` (sizes as ``(height, width)``).

The native modules take raw data pointers: ``npp_ext._kernels`` (CPU) and
``npp_ext._kernels_cuda`` (CUDA, imported only when a CUDA tensor needs it), so
importing this package needs neither a GPU, nor a driver, nor the CUDA module.
Outputs and scratch buffers are allocated here with torch (on CUDA through its
caching allocator) and the kernels run on torch's current stream.

Non-contiguous inputs are accepted and copied to contiguous memory first; the
outputs are always contiguous.

Eager calls on plain tensors skip torch's dispatcher: they run the same
implementations through a small ``torch.autograd.Function`` (the dispatcher costs
tens of microseconds a call, more than the GPU needs for a training batch).
Compiled code, ``torch.jit.trace``, tensor subclasses, functorch transforms and
dispatch modes get the custom ops. Both paths give bit-identical results (tested),
and each validates its arguments once per call.

Gradients come from ``torch.autograd`` (``backward()``, ``torch.autograd.grad``).
``torch.func.vmap`` works; ``torch.func.grad``/``jvp`` (and ``jacrev``,
``jacfwd``, ``hessian``) raise NotImplementedError: torch's custom ops give them
no formula (a custom op under ``jvp`` would silently get a zero tangent).
"""

from ..options import YUVLayout, yuv_layout
from .branch_sum import branch_sum_clamp
from .npp_pixel_branch import npp_pixel_branch
from .qp_scale import qp_scale
from .rgb_to_yuv import rgb_to_yuv
from .yuv_to_rgb import yuv_to_rgb

__all__ = [
    "YUVLayout",
    "branch_sum_clamp",
    "npp_pixel_branch",
    "qp_scale",
    "rgb_to_yuv",
    "yuv_layout",
    "yuv_to_rgb",
]
