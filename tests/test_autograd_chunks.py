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


def test_batches_started_in_turn_share_the_pool_without_a_pause():
    """A worker that runs out of one batch's images takes up the next batch at once: a
    small batch started behind a big one finishes while the big one's last image codes."""
    import numpy as np

    from npp_ext import bpg

    rng = np.random.default_rng(0)

    def planes(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        rgb = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
        yuv = np.stack([bpg.rgb_to_yuv(np.ascontiguousarray(im.transpose(1, 2, 0))) for im in rgb])
        return yuv, np.empty_like(yuv)

    big, big_out = planes(3, 384)  # 3 images on 2 workers: one image runs alone at the end
    small, small_out = planes(1, 16)
    first = bpg.start_roundtrip_yuv_batch(big, 384, 384, 20, big_out, level=8, threads=2)
    second = bpg.start_roundtrip_yuv_batch(small, 16, 16, 20, small_out, level=8, threads=2)
    second.wait()
    assert not first.done(), "the small batch waited for the whole big one"
    bits = first.wait()
    assert bits.shape == (3,) and first.done()
    want = bpg.roundtrip_yuv_batch(big[:1], 384, 384, 20, np.empty_like(big[:1]), level=8)
    assert bits[0] == want[0]
