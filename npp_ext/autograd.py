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

import concurrent.futures
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import bpg, ops
from .options import (
    CHROMA_DEFAULT,
    LEVEL_DEFAULT,
    EncodeOptions,
    check_threads,
    kernel_chroma,
    qp_list,
)

__all__ = ["BPGProxyFn", "BPGProxy", "bpg_proxy"]


def _proxy_outputs(out: Any) -> tuple[Tensor, Tensor]:
    """(reconstruction, bits per image) from a proxy's return value."""
    if hasattr(out, "x_hat") and hasattr(out, "bits"):
        return out.x_hat, out.bits
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        return out[0], out[1]
    raise TypeError(
        "the proxy must return (reconstruction, bits) or an object with .x_hat and .bits"
    )


class _Staging:
    """One pair of host buffers (codec input and output) and what the device last did with them."""

    def __init__(self, device: torch.device, n: int, total: int) -> None:
        pin = device.type == "cuda"
        self.shape = (n, total)
        self.src = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin)
        self.dst = torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin)
        # Recorded after the device's copy out of ``dst``: the next codec run must not write
        # ``dst`` before it, even when that run is enqueued on another stream.
        self.consumed: torch.cuda.Event | None = None
        self.busy = False


class _HostBuffers:
    """Host staging buffers, reused across calls (one set per device).

    Pinned when the images live on a GPU, so the copies are asynchronous DMA. Only the most
    recent shape is kept, so repeated steps do not grow memory. A call made while the cached
    set is in use (another thread on the same device) gets a set of its own for that call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, _Staging] = {}

    def acquire(self, device: torch.device, n: int, total: int) -> _Staging:
        """A free buffer set for ``n`` images of ``total`` bytes; give it back with release()."""
        key = str(device)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and not hit.busy and hit.shape == (n, total):
                hit.busy = True
                return hit
            cache = hit is None or not hit.busy  # a busy set stays: the common case is one caller
        # Pinned allocation is slow: not under the lock, which every device's calls share.
        staging = _Staging(device, n, total)
        staging.busy = True
        if cache:
            with self._lock:
                self._cache[key] = staging
        return staging

    def release(self, staging: _Staging) -> None:
        """Mark a set free again (its ``consumed`` event, if any, already recorded)."""
        with self._lock:
            staging.busy = False

    def cached(self) -> int:
        """Number of buffer sets held (for tests)."""
        return len(self._cache)

    def busy(self) -> int:
        """Number of held buffer sets in use (for tests)."""
        with self._lock:
            return sum(s.busy for s in self._cache.values())


_buffers = _HostBuffers()
# Grad mode as the caller had it: inside forward() autograd has always switched it off.
_grad_at_apply = threading.local()
_codec_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="npp_ext-bpg")


def _after_fork_in_child() -> None:
    # A forked child (a DataLoader worker, say) has none of the parent's threads, and the
    # executor would wait forever for its worker; buffers may have been busy mid-call.
    global _buffers, _codec_thread
    _buffers = _HostBuffers()
    _codec_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="npp_ext-bpg")


os.register_at_fork(after_in_child=_after_fork_in_child)


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


def _start_codec(
    x_bar: Tensor, qps: list[int], opts: EncodeOptions, threads: int
) -> tuple[Future, _Staging]:
    """Pack on the device, move to host, and start the pool's encode/decode in the background."""
    n, _, h, w = x_bar.shape
    yuv = ops.rgb_to_yuv(x_bar.detach(), opts.chroma)
    staging = _buffers.acquire(x_bar.device, n, yuv.shape[1])

    def run() -> Any:
        if ready is not None:
            ready.synchronize()  # the device-to-host copy has landed
        if consumed is not None:
            consumed.synchronize()  # the last call's copy out of dst has finished
        return bpg.roundtrip_yuv_batch(
            staging.src.numpy(), h, w, qps, staging.dst.numpy(), threads=threads, **opts.kwargs()
        )

    ready = consumed = None
    try:
        staging.src.copy_(yuv, non_blocking=True)
        if x_bar.device.type == "cuda":
            # On x_bar's stream, which the copy used: the current device may be another one.
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(x_bar.device))
            consumed, staging.consumed = staging.consumed, None
        return _codec_thread.submit(run), staging
    except BaseException:
        if consumed is not None:
            staging.consumed = consumed  # still owed by the next run that writes dst
        _buffers.release(staging)
        raise


def _finish_codec(
    future: Future, staging: _Staging, device: torch.device, h: int, w: int, chroma: str
) -> tuple[Tensor, list[int]]:
    """Wait for the pool, move the decoded YUV to the device and unpack it to float RGB."""
    try:
        nbits = future.result()
        yuv_back = staging.dst.to(device, non_blocking=True)
        x_hat = ops.yuv_to_rgb(yuv_back, h, w, chroma)
        if device.type == "cuda":
            staging.consumed = torch.cuda.Event()
            staging.consumed.record(torch.cuda.current_stream(device))
    finally:
        _buffers.release(staging)
    return x_hat, nbits


def _abandon_codec(future: Future, staging: _Staging) -> None:
    """After a failure between start and finish: let the pool finish with the buffers first."""
    try:
        future.result()
    except Exception:
        pass  # the caller is already raising the error that matters
    finally:
        _buffers.release(staging)


class BPGProxyFn(torch.autograd.Function):
    """``x_hat, bits = BPGProxyFn.apply(x_bar, qp, proxy, level=8, chroma="420", threads=0,
    proxy_grad=False)``.

    ``x_bar``: (N, 3, H, W) float RGB in [0, 1] on CPU or CUDA. ``qp``: int or (N,) ints.
    ``proxy``: a module called as ``proxy(x_bar, qp_tensor)`` returning the reconstruction and
    the estimated bits per image. Returns ``x_hat`` (real BPG pixels, ``x_bar``'s dtype) and
    ``bits`` (N,) float32 (real file sizes); gradients flow back through the proxy.

    With ``proxy_grad=True`` every backward through the op accumulates the proxy's
    parameter gradients into their ``.grad``, ``torch.autograd.grad`` included. Keep the op
    outside ``torch.utils.checkpoint`` regions: a recomputation runs real BPG again.
    Only first-order gradients are supported (double backward raises).
    """

    @classmethod
    @torch.compiler.disable  # host-side codec work: compiled code calls it as is
    def apply(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Run the op (see the class docstring), noting whether grad mode is on."""
        outer = getattr(_grad_at_apply, "enabled", True)
        _grad_at_apply.enabled = torch.is_grad_enabled()
        try:
            return super().apply(*args, **kwargs)
        finally:
            _grad_at_apply.enabled = outer

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
        if not isinstance(x_bar, Tensor) or not x_bar.is_floating_point():
            raise TypeError("x_bar must be a floating-point tensor")
        if x_bar.dim() != 4 or x_bar.shape[1] != 3:
            raise ValueError(f"x_bar must be (N, 3, H, W), got {tuple(x_bar.shape)}")
        opts = EncodeOptions(chroma=kernel_chroma(chroma, "BPGProxyFn"), level=level)
        threads = check_threads(threads)
        n, _, h, w = x_bar.shape
        qps = qp_list(qp, n)

        # Checked on the device now, read after the codec (no sync before the GPU work).
        non_finite = ~torch.isfinite(x_bar.detach()).all()
        future, staging = _start_codec(x_bar, qps, opts, threads)
        # The proxy only serves the backward pass: without one (no_grad, inference, or only
        # qp asking for a gradient) skip it.
        run_proxy = ctx.needs_input_grad[0] and getattr(_grad_at_apply, "enabled", True) and n > 0
        ctx.x_in = None
        try:
            if run_proxy:
                if x_bar.device.type == "cpu":
                    # A CPU proxy would compete with the codec pool for the same cores
                    # (measured: slower than one after the other), so let the pool finish.
                    concurrent.futures.wait([future])
                # e.g. bfloat16 images outside autocast into a float32 proxy: feed its dtype
                proxy_dtype = _proxy_input_dtype(proxy, x_bar)
                # The proxy's graph on a detached leaf (on a GPU while the pool still codes);
                # backward differentiates it.
                qp_t = torch.tensor(qps, dtype=torch.float32, device=x_bar.device)
                x_in = x_bar.detach().to(proxy_dtype).requires_grad_(True)
                # Plain saved tensors, even inside torch.utils.checkpoint: unpacking its
                # placeholders in backward() would recompute the whole region, codec too.
                identity = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
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
            _abandon_codec(future, staging)
            raise

        x_hat, nbits = _finish_codec(future, staging, x_bar.device, h, w, opts.chroma)
        if bool(non_finite):
            raise ValueError("x_bar holds NaN or infinite values; pixels must be finite")
        if x_bar.dtype == torch.float64:
            x_hat = (x_hat.to(torch.float64) * 255).round_() / 255  # exactly k / 255
        x_hat = x_hat.to(x_bar.dtype)
        bits = torch.tensor(nbits, dtype=torch.float32, device=x_bar.device)
        if not run_proxy:
            ctx.mark_non_differentiable(x_hat, bits)
        return x_hat, bits

    @staticmethod
    @once_differentiable  # the proxy's graph hangs off a detached leaf: no second order
    def backward(ctx: Any, grad_x_hat: Tensor, grad_bits: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
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
        if grad_x is not None:
            grad_x = grad_x.to(ctx.x_dtype)
        return grad_x, None, None, None, None, None, None


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
