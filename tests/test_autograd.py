"""BPGProxyFn: real BPG values forward, the proxy's gradients backward."""

from __future__ import annotations

import gc
import math
import resource
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import npp_ext
from npp_ext import bpg
from npp_ext._codec_jobs import host_buffers
from npp_ext.models import Proxy

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def proxy() -> Proxy:
    torch.manual_seed(0)
    return Proxy(N=8, M=12).eval()


def _images(n: int = 3, h: int = 37, w: int = 45, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth content plus noise, so BPG's output differs clearly between QPs
    base = torch.linspace(0, 1, w).expand(n, 3, h, w)
    return (0.7 * base + 0.3 * torch.rand(n, 3, h, w, generator=g)).contiguous()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("chroma", [420, 444])
def test_values_are_real_bpg_round_trips(proxy: Proxy, device: str, chroma: int) -> None:
    x = _images().to(device)
    qps = torch.tensor([22, 34, 47])
    x_hat, bits = npp_ext.BPGProxyFn.apply(x, qps, proxy.to(device), 8, chroma)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype and bits.shape == (3,)
    for i, q in enumerate(qps.tolist()):
        u8 = (x[i].cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        data = bpg.encode(u8, q, chroma=str(chroma))
        ref = bpg.decode(data, output="torch")
        got = (x_hat[i].cpu() * 255).round().to(torch.uint8)
        assert torch.equal(got, ref), f"image {i} differs from npp_ext.bpg's round trip"
        assert bits[i].item() == len(data) * 8
    # mixed QPs really were applied per image
    assert bits[0] > bits[1] > bits[2]


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_is_the_proxys_gradient(proxy: Proxy, device: str) -> None:
    proxy = proxy.to(device)
    x = _images().to(device)
    qps = torch.tensor([29, 37, 45], device=device)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).to(device)
    c = torch.tensor([0.5, -1.0, 2.0], device=device)

    x_bar = x.clone().requires_grad_(True)
    x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, qps, proxy)
    ((x_hat * w).sum() + (bits * c).sum()).backward()

    x_in = x.clone().requires_grad_(True)
    out = proxy(x_in, qps.float())
    ((out.x_hat * w).sum() + (out.bits * c).sum()).backward()
    assert x_bar.grad is not None and x_bar.grad.abs().sum() > 0
    torch.testing.assert_close(x_bar.grad, x_in.grad)


def test_rate_gradient_comes_from_the_proxy_rate(proxy: Proxy) -> None:
    x = _images(n=2)
    x_bar = x.clone().requires_grad_(True)
    _, bits = npp_ext.BPGProxyFn.apply(x_bar, 30, proxy)
    bits.sum().backward()
    x_in = x.clone().requires_grad_(True)
    proxy(x_in, torch.tensor([30.0, 30.0])).bits.sum().backward()
    torch.testing.assert_close(x_bar.grad, x_in.grad)


def test_proxy_parameters_get_no_gradient_unless_asked() -> None:
    torch.manual_seed(0)
    p = Proxy(N=8, M=12).eval()
    x = _images(n=2).requires_grad_(True)
    x_hat, bits = npp_ext.BPGProxyFn.apply(x, 30, p)
    (x_hat.sum() + bits.sum()).backward()
    assert all(q.grad is None for q in p.parameters())

    x2 = _images(n=2).requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x2, 30, p, proxy_grad=True)
    (x_hat.sum() + bits.sum()).backward()
    assert sum(q.grad is not None and q.grad.abs().sum() > 0 for q in p.parameters()) > 10
    assert x2.grad is not None


def test_module_form_keeps_the_proxy_in_eval(proxy: Proxy) -> None:
    m = npp_ext.BPGProxy(proxy, level=5)
    m.train()
    assert not m.proxy.training
    x = _images(n=2).requires_grad_(True)
    x_hat, bits = m(x, torch.tensor([25, 45]))
    (x_hat.mean() + bits.mean()).backward()
    assert x.grad is not None and bits[0] > bits[1]


def _live_tensors() -> int:
    with warnings.catch_warnings():
        # isinstance() on some lazily deprecated torch objects warns; irrelevant here
        warnings.simplefilter("ignore")
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def test_repeated_calls_do_not_grow_memory(proxy: Proxy) -> None:
    x = _images(n=4, h=64, w=64)

    def step() -> None:
        x_bar = x.clone().requires_grad_(True)
        x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, torch.tensor([22, 30, 38, 46]), proxy)
        (x_hat.mean() + 1e-4 * bits.mean()).backward()

    for _ in range(5):
        step()
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tensors0 = _live_tensors()
    for _ in range(30):
        step()
    gc.collect()
    tensors1 = _live_tensors()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert tensors1 <= tensors0, "live tensors grew across steps"
    assert host_buffers().cached() <= len(DEVICES)
    assert rss1 - rss0 < 64 * 1024, f"peak RSS grew by {(rss1 - rss0) / 1024:.1f} MiB"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": torch.rand(3, 8, 8)}, ValueError, r"\(N, 3, H, W\)"),
        ({"x": torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8)}, TypeError, "floating"),
        ({"qp": 52}, ValueError, "0..51"),
        ({"qp": torch.tensor([20, 30, 40])}, ValueError, r"shape \(2,\)"),
        ({"qp": "29"}, TypeError, "qp must be"),
        ({"level": 0}, ValueError, "level"),
        ({"chroma": 422}, ValueError, "chroma"),
        ({"threads": -1}, ValueError, "threads"),
    ],
)
def test_bad_arguments_raise(proxy: Proxy, kwargs: dict, error: type, match: str) -> None:
    args = {"x": torch.rand(2, 3, 8, 8), "qp": 29, "level": 8, "chroma": 420, "threads": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        npp_ext.BPGProxyFn.apply(
            args["x"], args["qp"], proxy, args["level"], args["chroma"], args["threads"]
        )


def test_half_precision_images_meet_a_float32_proxy(proxy: Proxy) -> None:
    """bfloat16 x_bar (outside autocast) reaches the float32 proxy in float32."""
    x16 = _images(n=2).to(torch.bfloat16)
    x_bar = x16.clone().requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x_bar, 30, proxy)
    assert x_hat.dtype == torch.bfloat16 and bits.dtype == torch.float32
    (x_hat.float().sum() + bits.sum()).backward()
    x_in = x16.float().requires_grad_(True)
    out = proxy(x_in, torch.tensor([30.0, 30.0]))
    (out.x_hat.sum() + out.bits.sum()).backward()
    assert x_bar.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x_bar.grad, x_in.grad.to(torch.bfloat16))


def test_proxy_on_the_meta_device_is_a_clear_error() -> None:
    with torch.device("meta"):
        proxy = Proxy(N=8, M=12)
    with pytest.raises(ValueError, match="proxy's parameters are on meta but x_bar is on cpu"):
        npp_ext.bpg_proxy(_images(n=1).requires_grad_(True), 30, proxy)
    assert host_buffers().busy() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_proxy_on_another_device_is_a_clear_error() -> None:
    proxy = Proxy(N=8, M=12).eval()  # stays on the CPU
    x = _images(n=1).cuda().requires_grad_(True)
    with pytest.raises(ValueError, match="proxy's parameters are on cpu"):
        npp_ext.bpg_proxy(x, 30, proxy)
    # the failed call left the staging buffers free for the next one
    x_hat, _ = npp_ext.bpg_proxy(x, 30, proxy.cuda())
    assert x_hat.is_cuda


def test_proxy_with_wrong_output_shape_is_refused() -> None:
    def bad_proxy(x: torch.Tensor, qp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :, :-1], qp

    with pytest.raises(ValueError, match="proxy returned shapes"):
        npp_ext.BPGProxyFn.apply(torch.rand(2, 3, 16, 16, requires_grad=True), 29, bad_proxy)


class _CountingProxy(torch.nn.Module):
    """Wraps a proxy and counts its calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor, qp: torch.Tensor):  # noqa: ANN201
        self.calls += 1
        return self.inner(x, qp)


def test_no_grad_skips_the_proxy(proxy: Proxy) -> None:
    counting = _CountingProxy(proxy)
    x = _images(n=2)
    with torch.no_grad():
        x_hat, bits = npp_ext.bpg_proxy(x.clone().requires_grad_(True), 33, counting)
    assert counting.calls == 0 and not x_hat.requires_grad
    # a plain tensor in grad mode needs no backward either
    x_hat2, bits2 = npp_ext.bpg_proxy(x, 33, counting)
    assert counting.calls == 0
    assert torch.equal(x_hat, x_hat2) and torch.equal(bits, bits2)
    npp_ext.bpg_proxy(x.clone().requires_grad_(True), 33, counting)
    assert counting.calls == 1


def test_proxy_grad_without_input_grad_trains_the_proxy() -> None:
    torch.manual_seed(0)
    p = Proxy(N=8, M=12).eval()
    x_hat, bits = npp_ext.bpg_proxy(_images(n=2), 30, p, proxy_grad=True)
    assert x_hat.requires_grad
    (x_hat.sum() + bits.sum()).backward()
    assert sum(q.grad is not None and q.grad.abs().sum() > 0 for q in p.parameters()) > 10


def _spy_on_codec(
    monkeypatch: pytest.MonkeyPatch,
    before_codec: Callable[[], None] = lambda: None,
    after_codec: Callable[[], None] = lambda: None,
) -> None:
    """Replace the codec call BPGProxyFn makes (bpg.start_roundtrip_yuv_batch) by one that
    calls before_codec() first and after_codec() once the batch is coded."""
    real = bpg.start_roundtrip_yuv_batch

    class Job:
        def __init__(self, job: bpg.YuvBatchJob) -> None:
            self.job = job

        def wait(self) -> Any:
            result = self.job.wait()
            after_codec()
            return result

    def spy(*args: Any, **kwargs: Any) -> Any:
        before_codec()
        return Job(real(*args, **kwargs))

    monkeypatch.setattr(bpg, "start_roundtrip_yuv_batch", spy)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_codec_runs_while_the_proxy_runs(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the GPU the pool's round trip and the proxy's forward are in flight together."""
    codec_started, proxy_started = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def before_codec() -> None:
        codec_started.set()
        # one after the other, the proxy would start only after the codec: this times out
        seen["codec saw the proxy running"] = proxy_started.wait(timeout=30)

    def waiting_proxy(x: torch.Tensor, qp: torch.Tensor) -> Any:
        proxy_started.set()
        seen["proxy saw the codec running"] = codec_started.wait(timeout=30)
        return proxy(x, qp)

    _spy_on_codec(monkeypatch, before_codec)
    proxy.cuda()
    x = _images(n=2).cuda().requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x, 30, waiting_proxy)
    assert seen == {"codec saw the proxy running": True, "proxy saw the codec running": True}
    assert bits.shape == (2,) and torch.isfinite(x_hat).all()


def test_cpu_proxy_waits_for_the_codec(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU both would compete for the same cores: the codec finishes first."""
    codec_done: list[int] = []
    seen: list[int] = []

    def recording_proxy(x: torch.Tensor, qp: torch.Tensor) -> Any:
        seen.append(len(codec_done))
        return proxy(x, qp)

    _spy_on_codec(monkeypatch, after_codec=lambda: codec_done.append(1))
    x_hat, bits = npp_ext.bpg_proxy(_images(n=2).requires_grad_(True), 30, recording_proxy)
    assert seen == [1]
    (x_hat.sum() + bits.sum()).backward()


def test_a_failing_proxy_releases_the_buffers(proxy: Proxy) -> None:
    def broken(x: torch.Tensor, qp: torch.Tensor):  # noqa: ANN202
        raise RuntimeError("proxy blew up")

    x = _images(n=2).requires_grad_(True)
    with pytest.raises(RuntimeError, match="proxy blew up"):
        npp_ext.bpg_proxy(x, 30, broken)
    # the same buffers serve the next call, with the right values
    x_hat, bits = npp_ext.bpg_proxy(x, 30, proxy)
    ref, ref_bits = npp_ext.bpg_proxy(x.detach(), 30, proxy)
    assert torch.equal(x_hat, ref) and torch.equal(bits, ref_bits)
    assert host_buffers().busy() == 0


def test_threads_sharing_a_device_get_their_own_results(proxy: Proxy) -> None:
    images = [_images(n=2, seed=s) for s in range(4)]
    expected = [npp_ext.bpg_proxy(x, 26 + 6 * i, proxy) for i, x in enumerate(images)]
    results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    barrier = threading.Barrier(len(images))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            x_bar = images[i].clone().requires_grad_(True)
            results[i] = npp_ext.bpg_proxy(x_bar, 26 + 6 * i, proxy)
            (results[i][0].sum() + results[i][1].sum()).backward()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for i, (x_hat, bits) in enumerate(expected):
        assert torch.equal(results[i][0].detach(), x_hat), f"thread {i} got another's pixels"
        assert torch.equal(results[i][1], bits)


def test_second_backward_is_a_clear_error(proxy: Proxy) -> None:
    x_hat, bits = npp_ext.bpg_proxy(_images(n=1).requires_grad_(True), 30, proxy)
    loss = x_hat.sum() + bits.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice"):
        loss.backward()


def test_training_step_under_torch_compile(proxy: Proxy) -> None:
    """A compiled NPP step calls the op eagerly (a graph break) with the same result."""
    from npp_ext.models import NPP

    torch.manual_seed(0)
    npp = NPP().eval()
    x = _images(n=2, h=32, w=40)
    qp = torch.tensor([28, 40])

    def step(direct: bool) -> torch.Tensor:
        x_bar = npp(x, qp)
        if direct:
            x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, qp, proxy)
        else:
            x_hat, bits = npp_ext.bpg_proxy(x_bar, qp, proxy)
        return ((x_hat - x) ** 2).mean() + 1e-5 * bits.mean()

    for direct in (False, True):
        npp.zero_grad()
        loss = step(direct)
        loss.backward()
        eager = [p.grad.clone() for p in npp.parameters()]
        npp.zero_grad()
        loss_c = torch.compile(step)(direct)
        loss_c.backward()
        torch.testing.assert_close(loss_c, loss)
        for g, p in zip(eager, npp.parameters(), strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)


def test_module_under_ddp_trains_the_npp_only(tmp_path) -> None:
    """DDP over NPP + BPGProxy: the frozen proxy's parameters are not waited for."""
    import torch.distributed as dist

    from npp_ext.models import NPP

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.npp = NPP()
            self.codec = npp_ext.BPGProxy(Proxy(N=8, M=12))

        def forward(self, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
            x_hat, bits = self.codec(self.npp(x, qp), qp)
            return ((x_hat - x) ** 2).mean() + 1e-5 * bits.mean()

    torch.manual_seed(0)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        pipeline = Pipeline()
        proxy_before = {k: v.clone() for k, v in pipeline.codec.proxy.state_dict().items()}
        model = torch.nn.parallel.DistributedDataParallel(pipeline)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = _images(n=2, h=32, w=32)
        npp_before = [p.detach().clone() for p in pipeline.npp.parameters()]
        for _ in range(3):  # DDP raises on the 2nd step if a parameter never got a gradient
            opt.zero_grad()
            model(x, torch.tensor([30, 40])).backward()
            opt.step()
    finally:
        dist.destroy_process_group()
    pairs = zip(npp_before, pipeline.npp.parameters(), strict=True)
    moved = sum(not torch.equal(a, p) for a, p in pairs)
    assert moved > 10, "the NPP did not train"
    for k, v in pipeline.codec.proxy.state_dict().items():
        assert torch.equal(v, proxy_before[k]), f"frozen proxy changed: {k}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_side_stream_and_steady_memory(proxy: Proxy) -> None:
    """Calls on a side stream give the default stream's values; device memory does not grow
    from step to step.

    What first calls create and keep (cuBLAS/cuDNN workspaces, a stream's first blocks) is
    allowed: memory is read at step 10 and at step 100 of one loop, after warm-up steps on
    both streams, and must not have grown in between. A step that leaks one small tensor
    (one 512-byte block of the caching allocator) shows up as 90 blocks.
    """
    proxy = proxy.cuda()
    x = _images(n=4, h=64, w=64).cuda()
    qps = torch.tensor([22, 30, 38, 46])
    ref, ref_bits = npp_ext.bpg_proxy(x, qps, proxy)

    def step() -> None:
        x_bar = x.clone().requires_grad_(True)
        x_hat, bits = npp_ext.bpg_proxy(x_bar, qps, proxy)
        (x_hat.mean() + 1e-4 * bits.mean()).backward()
        assert torch.equal(x_hat.detach(), ref) and torch.equal(bits, ref_bits)

    def allocated() -> int:
        gc.collect()  # garbage Python can still collect is not a leak
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.synchronize()
    at_start = allocated()
    at_step: dict[int, int] = {}
    for i in range(1, 101):
        step()
        if i in (10, 100):
            at_step[i] = allocated()
    growth = at_step[100] - at_step[10]
    assert growth <= 0, (
        f"device memory grew by {growth} bytes from step 10 to step 100 "
        f"({growth / 90:.0f} bytes a step); steps 1-10 added {at_step[10] - at_start}"
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_images_on_a_gpu_that_is_not_the_current_one(proxy: Proxy) -> None:
    """The copies run on x_bar's device: the codec must wait for them there, not on cuda:0."""
    dev = torch.device("cuda", 1)
    x = _images(n=4, h=64, w=64)
    qps = torch.tensor([22, 30, 38, 46])
    ref, ref_bits = npp_ext.bpg_proxy(x, qps, proxy)  # CPU values
    p1 = Proxy(N=8, M=12).eval().to(dev)
    torch.cuda.set_device(0)
    for _ in range(3):
        # a long queue of work on cuda:1 ahead of the op's copies
        busy = torch.randn(2048, 2048, device=dev)
        for _ in range(20):
            busy = busy @ busy / 2048
        x_bar = (x.to(dev) + busy.sum() * 0).requires_grad_(True)
        x_hat, bits = npp_ext.bpg_proxy(x_bar, qps.to(dev), p1)
        (x_hat.mean() + 1e-4 * bits.mean()).backward()
        assert torch.equal(x_hat.detach().cpu(), ref) and torch.equal(bits.cpu(), ref_bits)


def test_double_backward_is_refused(proxy: Proxy) -> None:
    """A gradient penalty would otherwise be dropped without a word."""
    x_bar = _images(n=2).requires_grad_(True)
    x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, 30, proxy)
    (g,) = torch.autograd.grad((x_hat**2).sum() + bits.sum(), x_bar, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.pow(2).sum().backward()


def test_qp_needing_a_gradient_alone_gives_outputs_without_one(proxy: Proxy) -> None:
    x = _images(n=2)
    qp = torch.tensor([30.0, 40.0], requires_grad=True)
    x_hat, bits = npp_ext.BPGProxyFn.apply(x, qp, proxy)
    assert not x_hat.requires_grad and not bits.requires_grad


def test_empty_batch_with_and_without_grad(proxy: Proxy) -> None:
    x = torch.rand(0, 3, 16, 24)
    with torch.no_grad():
        x_hat, bits = npp_ext.bpg_proxy(x, 30, proxy)
    assert x_hat.shape == x.shape and bits.shape == (0,)
    x_bar = x.clone().requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x_bar, 30, proxy)
    assert x_hat.shape == x.shape and bits.shape == (0,)
    ((x_bar - x) ** 2).sum().backward()  # the rest of a loss still trains
    assert x_bar.grad is not None and x_bar.grad.shape == x.shape


def test_float64_images_come_back_as_exact_8_bit_levels(proxy: Proxy) -> None:
    x = _images(n=2).double()
    x_hat, _ = npp_ext.bpg_proxy(x, 30, proxy)
    assert x_hat.dtype == torch.float64
    k = x_hat * 255
    assert torch.equal(k, k.round()), "float64 x_hat is not exactly k / 255"


def test_checkpointed_step_runs_the_codec_once_more_not_twice(
    proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint recomputes its region once (codec included); backward adds no more."""
    from torch.utils.checkpoint import checkpoint

    calls = []
    real = bpg.start_roundtrip_yuv_batch
    monkeypatch.setattr(
        bpg, "start_roundtrip_yuv_batch", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    x = _images(n=2)
    scale = torch.tensor(0.9, requires_grad=True)

    def region(s: torch.Tensor) -> torch.Tensor:
        x_hat, bits = npp_ext.bpg_proxy(x * s, 30, proxy)
        return (x_hat**2).mean() + 1e-4 * bits.mean()

    checkpoint(region, scale, use_reentrant=False).backward()
    grad_ckpt = scale.grad.clone()
    assert len(calls) == 2
    scale.grad = None
    region(scale).backward()
    torch.testing.assert_close(scale.grad, grad_ckpt)


@pytest.mark.parametrize("qp", [torch.tensor(29.5), torch.tensor([[30]])])
def test_bad_qp_tensors_raise(proxy: Proxy, qp: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="qp"):
        npp_ext.bpg_proxy(_images(n=1), qp, proxy)


def _qp_sensitive_proxy() -> Proxy:
    """A small proxy whose quantization step depends strongly on the QP (an untrained
    one's gains are ~1 at every QP, so a wrong QP would go unseen)."""
    torch.manual_seed(5)
    p = Proxy(N=8, M=12).eval()
    with torch.no_grad():
        p.gain_y.fc2.weight.normal_(0, 2.0)
        p.gain_y.fc2.bias.fill_(math.log(16.0))
    return p


def test_each_image_reaches_the_proxy_with_its_own_qp() -> None:
    p = _qp_sensitive_proxy()
    x = _images(n=2)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))

    def grad_through_op(qps: torch.Tensor) -> torch.Tensor:
        x_bar = x.clone().requires_grad_(True)
        x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, qps, p)
        ((x_hat * w).sum() + bits.sum()).backward()
        return x_bar.grad

    def grad_of_proxy(qps: torch.Tensor) -> torch.Tensor:
        x_in = x.clone().requires_grad_(True)
        out = p(x_in, qps.float())
        ((out.x_hat * w).sum() + out.bits.sum()).backward()
        return x_in.grad

    mixed = torch.tensor([12, 45])
    torch.testing.assert_close(grad_through_op(mixed), grad_of_proxy(mixed))
    # The QP matters to this proxy, per image: other orders give other gradients.
    for other in (torch.tensor([45, 12]), torch.tensor([30, 30])):
        assert not torch.allclose(grad_of_proxy(other), grad_of_proxy(mixed))


@pytest.mark.parametrize("form", ["apply", "function", "module"])
def test_level_and_chroma_reach_the_codec_in_every_form(proxy: Proxy, form: str) -> None:
    x = _images(n=2)
    qps = torch.tensor([25, 40])
    u8 = [(x[i].clamp(0, 1) * 255).round().to(torch.uint8) for i in range(2)]
    want = [bpg.encode(u8[i], int(q), chroma="444", level=3) for i, q in enumerate(qps)]
    # The setting changes the files, so an ignored one could not pass.
    assert want[0] != bpg.encode(u8[0], 25, chroma="444")
    assert want[0] != bpg.encode(u8[0], 25, level=3)
    x_bar = x.clone().requires_grad_(True)
    if form == "apply":
        x_hat, bits = npp_ext.BPGProxyFn.apply(x_bar, qps, proxy, 3, "444")
    elif form == "function":
        x_hat, bits = npp_ext.bpg_proxy(x_bar, qps, proxy, level=3, chroma=444)
    else:
        x_hat, bits = npp_ext.BPGProxy(proxy, level=3, chroma="444")(x_bar, qps)
    assert bits.tolist() == [8 * len(d) for d in want]
    for i, data in enumerate(want):
        got = (x_hat[i].detach() * 255).round().to(torch.uint8)
        assert torch.equal(got, bpg.decode(data, output="torch"))


def test_module_puts_the_proxy_in_eval_when_built() -> None:
    p = Proxy(N=8, M=12).train()
    m = npp_ext.BPGProxy(p)
    assert not p.training and not any(q.requires_grad for q in p.parameters())
    assert m.training  # the module itself trains with the pipeline


def test_no_proxy_intermediate_outlives_the_step() -> None:
    """The proxy's saved outputs must not keep themselves alive through their grad_fn (a
    reference cycle in C++ that gc cannot see: a few KB lost per step, seen on an H200)."""
    import weakref

    torch.manual_seed(0)
    proxy = Proxy(N=8, M=12).eval()
    refs: list[weakref.ref] = []
    hook = proxy.gain_y.register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    x = _images(n=2).requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x, 30, proxy, level=1)
    (x_hat.mean() + bits.mean()).backward()
    hook.remove()
    del x_hat, bits, x
    gc.collect()
    assert refs and all(r() is None for r in refs)
