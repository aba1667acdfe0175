"""``BPGProxyFn``: real BPG in the forward pass, a learned proxy codec in the backward pass.

Forward: each image of ``x_bar`` is packed to 8-bit YUV on its device (the
reference-exact ``ops.rgb_to_yuv``), moved to reused (pinned) host buffers, encoded and
decoded by the C++ thread pool with real BPG at its own QP, moved back and unpacked
(``ops.yuv_to_rgb``). ``x_hat`` holds the real decoded pixels and ``bits`` the real file
sizes. While the CPU pool codes, the proxy's forward runs on the GPU (with CPU tensors the
proxy waits for the pool instead: both would compete for the same cores).

Backward: straight through the proxy. The gradient reaching ``x_hat`` and ``bits`` is
sent back through the proxy's reconstruction and estimated rate (``proxy(x_bar, qp) ->
(x_tilde, rate_tilde)``), so ``d loss / d x_bar`` is what it would be if the proxy's
outputs had BPG's values. The proxy's own parameters get gradients only with
``proxy_grad=True``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._codec_jobs import CodecJob
from .options import (
    CHROMA_DEFAULT,
    LEVEL_DEFAULT,
    EncodeOptions,
    check_int,
    check_threads,
    kernel_chroma,
    qp_list,
)

__all__ = ["BPGProxyFn", "BPGProxy", "bpg_proxy", "bpg_proxy_chunks"]

# Grad mode as the caller had it: inside forward() autograd has always switched it off.
_grad_at_apply = threading.local()


def _proxy_outputs(out: Any) -> tuple[Tensor, Tensor]:
    """(reconstruction, bits per image) from a proxy's return value."""
    if hasattr(out, "x_hat") and hasattr(out, "bits"):
        return out.x_hat, out.bits
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        return out[0], out[1]
    raise TypeError(
        "the proxy must return (reconstruction, bits) or an object with .x_hat and .bits"
    )


def _proxy_input_dtype(proxy: Any, x_bar: Tensor) -> torch.dtype:
    """The dtype the proxy takes: its parameters' (checking their device), else x_bar's."""
    if isinstance(proxy, nn.Module):
        param = next(proxy.parameters(), None)
        if param is not None:
            if param.device != x_bar.device:
                raise ValueError(
                    f"the proxy's parameters are on {param.device} but x_bar is on "
                    f"{x_bar.device}: move the proxy to x_bar's device"
                )
            if param.is_floating_point():
                return param.dtype
    return x_bar.dtype


def _check_x_bar(x_bar: Any) -> None:
    if not isinstance(x_bar, Tensor) or not x_bar.is_floating_point():
        raise TypeError("x_bar must be a floating-point tensor")
    if x_bar.dim() != 4 or x_bar.shape[1] != 3:
        raise ValueError(f"x_bar must be (N, 3, H, W), got {tuple(x_bar.shape)}")


def _forward(
    ctx: Any, x_bar: Tensor, qps: list[int], proxy: Any, job: CodecJob, proxy_grad: bool
) -> tuple[Tensor, Tensor]:
    """The op's forward once the codec runs: the proxy's graph meanwhile, then BPG's values."""
    n = x_bar.shape[0]
    # The proxy only serves the backward pass: without one (no_grad, inference, or only
    # qp asking for a gradient) skip it.
    run_proxy = ctx.needs_input_grad[0] and getattr(_grad_at_apply, "enabled", True) and n > 0
    ctx.x_in = None
    try:
        if run_proxy:
            if x_bar.device.type == "cpu":
                # A CPU proxy would compete with the codec pool for the same cores
                # (measured: slower than one after the other), so let the pool finish.
                job.wait()
            # e.g. bfloat16 images outside autocast into a float32 proxy: feed its dtype
            proxy_dtype = _proxy_input_dtype(proxy, x_bar)
            # The proxy's graph on a detached leaf (on a GPU while the pool still codes);
            # backward differentiates it.
            qp_t = torch.tensor(qps, dtype=torch.float32, device=x_bar.device)
            x_in = x_bar.detach().to(proxy_dtype).requires_grad_(True)
            # Plain saved tensors, even inside torch.utils.checkpoint: unpacking its
            # placeholders in backward() would recompute the whole region, codec too.
            # Detached when packed: a saved output kept with its grad_fn would make a
            # node -> tensor -> node cycle that gc cannot see, and with proxy_grad=False
            # the nodes leading only to the proxy's weights never run to break it (a
            # leak of a few KB per step). Unpacking reattaches the grad_fn.
            identity = torch.autograd.graph.saved_tensors_hooks(lambda t: t.detach(), lambda t: t)
            with torch.enable_grad(), identity:
                x_tilde, rate = _proxy_outputs(proxy(x_in, qp_t))
            if x_tilde.shape != x_bar.shape or rate.shape != (n,):
                raise ValueError(
                    f"the proxy returned shapes {tuple(x_tilde.shape)} and "
                    f"{tuple(rate.shape)}, expected {tuple(x_bar.shape)} and ({n},)"
                )
            ctx.x_in, ctx.x_tilde, ctx.rate = x_in, x_tilde, rate
            ctx.proxy, ctx.proxy_grad = proxy, proxy_grad
            ctx.x_dtype = x_bar.dtype
    except BaseException:
        job.abandon()
        raise

    x_hat, nbits = job.finish()
    if x_bar.dtype == torch.float64:
        x_hat = (x_hat.to(torch.float64) * 255).round_() / 255  # exactly k / 255
    x_hat = x_hat.to(x_bar.dtype)
    bits = torch.tensor(nbits, dtype=torch.float32, device=x_bar.device)
    if not run_proxy:
        ctx.mark_non_differentiable(x_hat, bits)
    return x_hat, bits


def _backward(ctx: Any, grad_x_hat: Tensor, grad_bits: Tensor) -> Tensor | None:
    """Straight through the proxy: d loss / d x_bar from the gradients of x_hat and bits."""
    if ctx.x_in is None:
        raise RuntimeError(
            "BPGProxyFn's backward ran twice on one forward: the proxy's graph is freed "
            "after the first (call the op again instead of retain_graph=True)"
        )
    outputs = [ctx.x_tilde, ctx.rate]
    grads = [grad_x_hat.to(ctx.x_tilde.dtype), grad_bits.to(ctx.rate.dtype)]
    if ctx.proxy_grad:
        params = [p for p in ctx.proxy.parameters() if p.requires_grad]
        # Accumulates into the proxy's .grad, under torch.autograd.grad() too (documented).
        torch.autograd.backward(outputs, grads, inputs=[ctx.x_in, *params])
        grad_x = ctx.x_in.grad
    else:
        (grad_x,) = torch.autograd.grad(outputs, [ctx.x_in], grads, allow_unused=True)
    ctx.x_in = ctx.x_tilde = ctx.rate = None
    return grad_x.to(ctx.x_dtype) if grad_x is not None else None


class _GradModeAtApply:
    """``apply`` that notes whether grad mode was on (inside forward() it is always off)."""

    @classmethod
    @torch.compiler.disable  # host-side codec work: compiled code calls it as is
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run the op, noting whether grad mode is on."""
        outer = getattr(_grad_at_apply, "enabled", True)
        _grad_at_apply.enabled = torch.is_grad_enabled()
        try:
            return super().apply(*args, **kwargs)  # type: ignore[misc]
        finally:
            _grad_at_apply.enabled = outer


class BPGProxyFn(_GradModeAtApply, torch.autograd.Function):
    """``x_hat, bits = BPGProxyFn.apply(x_bar, qp, proxy, level=8, chroma="420", threads=0,
    proxy_grad=False)``.

    ``x_bar``: (N, 3, H, W) float RGB in [0, 1] on CPU or CUDA. ``qp``: int or (N,) ints.
    ``proxy``: a module called as ``proxy(x_bar, qp_tensor)`` returning the reconstruction and
    the estimated bits per image. Returns ``x_hat`` (real BPG pixels, ``x_bar``'s dtype) and
    ``bits`` (N,) float32 (real file sizes); gradients flow back through the proxy.
    Defaults and ranges are those of :mod:`npp_ext.options` (chroma "420" or "444" here).

    With ``proxy_grad=True`` every backward through the op accumulates the proxy's
    parameter gradients into their ``.grad``, ``torch.autograd.grad`` included. Keep the op
    outside ``torch.utils.checkpoint`` regions: a recomputation runs real BPG again.
    Only first-order gradients are supported (double backward raises).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_bar: Tensor,
        qp: int | Tensor,
        proxy: nn.Module,
        level: int = LEVEL_DEFAULT,
        chroma: int | str = CHROMA_DEFAULT,
        threads: int = 0,
        proxy_grad: bool = False,
    ) -> tuple[Tensor, Tensor]:
        _check_x_bar(x_bar)
        opts = EncodeOptions(chroma=kernel_chroma(chroma, "BPGProxyFn"), level=level)
        qps = qp_list(qp, x_bar.shape[0])
        job = CodecJob(x_bar, qps, opts, check_threads(threads))
        return _forward(ctx, x_bar, qps, proxy, job, proxy_grad)

    @staticmethod
    @once_differentiable  # the proxy's graph hangs off a detached leaf: no second order
    def backward(ctx: Any, grad_x_hat: Tensor, grad_bits: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        return _backward(ctx, grad_x_hat, grad_bits), None, None, None, None, None, None


class _ChunkFn(_GradModeAtApply, torch.autograd.Function):
    """BPGProxyFn for one chunk whose codec job was started beforehand."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x_bar: Tensor, qps: list[int], proxy: Any, job: CodecJob, proxy_grad: bool
    ) -> tuple[Tensor, Tensor]:
        return _forward(ctx, x_bar, qps, proxy, job, proxy_grad)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x_hat: Tensor, grad_bits: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        return _backward(ctx, grad_x_hat, grad_bits), None, None, None, None


def chunk_rows(n: int, chunks: int) -> list[slice]:
    """``chunks`` contiguous row ranges covering ``n`` rows, sizes differing by at most 1."""
    chunks = max(1, min(chunks, n))
    bounds = [n * i // chunks for i in range(chunks + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def bpg_proxy_chunks(
    x_bar: Tensor,
    qp: int | Tensor,
    proxy: nn.Module,
    *,
    chunks: int,
    level: int = LEVEL_DEFAULT,
    chroma: int | str = CHROMA_DEFAULT,
    threads: int = 0,
    proxy_grad: bool = False,
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """:func:`bpg_proxy` over a batch split into ``chunks``, handing out each as it is decoded.

    The codec gets every chunk at once and codes them one after the other, each on the
    whole pool; this yields ``(rows, x_hat, bits)`` for chunk after chunk as soon as each is
    decoded, so the caller can run the task's forward and backward of a chunk (on the GPU)
    while the pool codes the next ones. ``x_hat`` and ``bits`` are differentiable with
    respect to ``x_bar[rows]`` exactly as :class:`BPGProxyFn`'s outputs are; summed
    per-image losses of the chunks give the gradient of the unsplit batch.

    To backward each chunk on its own, pass a leaf (``x_bar.detach().requires_grad_()``)
    and send its gradient through the network afterwards: a chunk's backward through a
    shared graph would free it for the next chunk. The codec starts on every chunk when
    this returns (before the first one is asked for), so work done between the call and
    the loop overlaps it; ``close()`` (or dropping the iterator) lets the codec finish the
    chunks not handed out and frees their buffers.
    """
    _check_x_bar(x_bar)
    opts = EncodeOptions(chroma=kernel_chroma(chroma, "BPGProxyFn"), level=level)
    threads = check_threads(threads)
    chunks = check_int("chunks", chunks, 1, 1 << 20)
    qps = qp_list(qp, x_bar.shape[0])
    started = _Chunks(x_bar, qps, proxy, proxy_grad)
    try:
        for rows in chunk_rows(x_bar.shape[0], chunks):
            started.jobs.append((rows, CodecJob(x_bar[rows], qps[rows], opts, threads)))
    except BaseException:
        started.close()
        raise
    return started


class _Chunks:
    """The iterator of :func:`bpg_proxy_chunks`: its codec jobs are already running."""

    def __init__(self, x_bar: Tensor, qps: list[int], proxy: Any, proxy_grad: bool) -> None:
        self.x_bar, self.qps, self.proxy, self.proxy_grad = x_bar, qps, proxy, proxy_grad
        self.jobs: list[tuple[slice, CodecJob]] = []

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> tuple[slice, Tensor, Tensor]:
        if not self.jobs:
            raise StopIteration
        rows, job = self.jobs.pop(0)
        try:
            x_hat, bits = _ChunkFn.apply(
                self.x_bar[rows], self.qps[rows], self.proxy, job, self.proxy_grad
            )
        except BaseException:
            self.close()
            raise
        return rows, x_hat, bits

    def close(self) -> None:
        """Let the codec finish the chunks not handed out, and free their buffers."""
        jobs, self.jobs = self.jobs, []
        for _, job in jobs:
            job.abandon()

    def __del__(self) -> None:
        self.close()


def bpg_proxy(
    x_bar: Tensor,
    qp: int | Tensor,
    proxy: nn.Module,
    *,
    level: int = LEVEL_DEFAULT,
    chroma: int | str = CHROMA_DEFAULT,
    threads: int = 0,
    proxy_grad: bool = False,
) -> tuple[Tensor, Tensor]:
    """Functional form of :class:`BPGProxyFn` with keyword options.

    Returns ``(x_hat, bits)``: the real BPG reconstruction of each image at its QP and the
    real file sizes in bits; gradients go through ``proxy``. With ``proxy_grad=True`` the
    proxy is trained through the op even when ``x_bar`` itself needs no gradient.
    """
    if (
        proxy_grad
        and torch.is_grad_enabled()
        and isinstance(x_bar, Tensor)
        and x_bar.is_floating_point()
        and not x_bar.requires_grad
    ):
        # autograd records the op only when an input needs a gradient; the proxy's parameters
        # are not inputs, so give it a leaf that does (its own gradient is simply dropped)
        x_bar = x_bar.detach().requires_grad_(True)
    return BPGProxyFn.apply(x_bar, qp, proxy, level, chroma, threads, proxy_grad)


class BPGProxy(nn.Module):
    """A module holding the proxy: ``BPGProxy(proxy)(x_bar, qp) -> (x_hat, bits)``.

    The proxy is frozen, as the method uses a fixed proxy for the NPP's gradients: kept in
    eval mode (rounding, no noise) and its parameters set to ``requires_grad=False``, so
    DistributedDataParallel and optimizers over the whole model skip them. Pass
    ``proxy_grad=True`` to train it through this op too (then it is left as given).
    """

    def __init__(
        self,
        proxy: nn.Module,
        *,
        level: int = LEVEL_DEFAULT,
        chroma: int | str = CHROMA_DEFAULT,
        threads: int = 0,
        proxy_grad: bool = False,
    ) -> None:
        super().__init__()
        opts = EncodeOptions(chroma=kernel_chroma(chroma, "BPGProxyFn"), level=level)
        self.proxy = proxy
        self.level, self.chroma = opts.level, opts.chroma  # refused here, not at the first step
        self.threads = check_threads(threads)
        self.proxy_grad = proxy_grad
        if not proxy_grad:
            proxy.requires_grad_(False)
            proxy.eval()

    def train(self, mode: bool = True) -> BPGProxy:
        """Set this module's mode; the proxy follows only when it is trained too."""
        super().train(mode)
        if not self.proxy_grad:
            self.proxy.eval()
        return self

    def forward(self, x_bar: Tensor, qp: int | Tensor) -> tuple[Tensor, Tensor]:
        """Real BPG forward, proxy backward (see :class:`BPGProxyFn`)."""
        return bpg_proxy(
            x_bar,
            qp,
            self.proxy,
            level=self.level,
            chroma=self.chroma,
            threads=self.threads,
            proxy_grad=self.proxy_grad,
        )
