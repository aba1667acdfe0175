"""bpg_proxy_chunks: a batch coded chunk by chunk gives the unsplit batch's values and
gradients, and stopping early leaves no buffer busy."""

from __future__ import annotations

import pytest
import torch

import npp_ext
from npp_ext._codec_jobs import host_buffers
from npp_ext.autograd import bpg_proxy_chunks, chunk_rows
from npp_ext.models import Proxy


@pytest.fixture(scope="module")
def proxy() -> Proxy:
    torch.manual_seed(0)
    return Proxy(N=8, M=12).eval()


def _batch(n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(24, 32), mode="bilinear")


def test_chunk_rows_cover_the_batch():
    assert chunk_rows(5, 2) == [slice(0, 2), slice(2, 5)]
    assert chunk_rows(3, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert chunk_rows(4, 1) == [slice(0, 4)]


@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_chunks_give_the_unsplit_values_and_gradients(proxy, chunks):
    x = _batch()
    qps = torch.tensor([22, 30, 38, 46, 34])
    weights = torch.linspace(0.5, 2.0, 5)

    def per_image_loss(x_hat: torch.Tensor, bits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w * ((x_hat - 0.3) ** 2).mean((1, 2, 3)) + 1e-3 * bits).sum()

    whole = x.clone().requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(whole, qps, proxy, level=3)
    per_image_loss(x_hat, bits, weights).backward()

    leaf = x.clone().requires_grad_(True)
    seen = []
    for rows, xh, b in bpg_proxy_chunks(leaf, qps, proxy, chunks=chunks, level=3):
        assert torch.equal(xh, x_hat[rows]) and torch.equal(b, bits[rows])
        per_image_loss(xh, b, weights[rows]).backward()
        seen.append(rows)
    assert seen == chunk_rows(5, chunks)
    torch.testing.assert_close(leaf.grad, whole.grad, rtol=1e-5, atol=1e-7)
    assert host_buffers().busy() == 0


def test_stopping_early_frees_the_started_chunks(proxy):
    x = _batch(6).requires_grad_(True)
    it = bpg_proxy_chunks(x, 30, proxy, chunks=3, level=1)
    rows, _, _ = next(it)
    assert rows == slice(0, 2)
    it.close()  # the two other chunks were started: the codec finishes them, buffers free
    assert host_buffers().busy() == 0


def test_bad_chunk_counts_are_refused(proxy):
    with pytest.raises(ValueError, match="chunks must be in 1.."):
        next(bpg_proxy_chunks(_batch(2), 30, proxy, chunks=0))
