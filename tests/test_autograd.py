"""BPGProxyFn: real BPG values forward, the proxy's gradients backward."""

from __future__ import annotations

import gc
import resource
import warnings

import pytest
import torch

import npp_ext
from npp_ext import autograd, bpg
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


def test_gradient_is_the_proxys_gradient(proxy: Proxy) -> None:
    x = _images()
    qps = torch.tensor([29, 37, 45])
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    c = torch.tensor([0.5, -1.0, 2.0])

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
    assert autograd._buffers.cached() <= len(DEVICES)
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


def test_proxy_with_wrong_output_shape_is_refused() -> None:
    def bad_proxy(x: torch.Tensor, qp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :, :-1], qp

    with pytest.raises(ValueError, match="proxy returned shapes"):
        npp_ext.BPGProxyFn.apply(torch.rand(2, 3, 16, 16), 29, bad_proxy)
