"""A process forked after the codec has run (a DataLoader worker, say) can still use it.

The child has none of the parent's threads: neither the C++ pool's workers, nor the x265
encoders' own threads, nor the Python worker that runs BPGProxyFn's codec job. Each test
forks a child that codes, and fails if it hangs or differs from the parent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from typing import Any

import numpy as np
import pytest
import torch

import npp_ext
from npp_ext import bpg
from npp_ext.models import Proxy

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="fork start method (Linux DataLoader default)"
)


def _images() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (3, 40, 72, 3), dtype=np.uint8)


def _work() -> dict[str, Any]:
    """Batch round trip on 2 pool threads, single encodes at two CTU sizes, BPGProxyFn."""
    imgs = _images()
    res = bpg.roundtrip_batch(imgs, qp=[25, 35, 45], threads=2)
    small = bpg.encode(imgs[0, :12, :20], 30)  # below 32x32: another x265 CTU size
    big = bpg.encode(imgs[1], 30)
    torch.manual_seed(0)
    proxy = Proxy(N=8, M=12).eval()
    x_bar = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    x_hat, bits = npp_ext.bpg_proxy(x_bar, torch.tensor([25, 35, 45]), proxy)
    (x_hat.mean() + 1e-4 * bits.mean()).backward()
    return {
        "files": res.files,
        "images": res.images,
        "small": bpg.decode(small),
        "big": big,
        "x_hat": x_hat.detach().numpy(),
        "grad": x_bar.grad.numpy(),
    }


def _child(queue: Any) -> None:
    torch.set_num_threads(1)  # as DataLoader workers do
    try:
        queue.put(_work())
    except BaseException as e:  # report, do not hang the parent
        queue.put(repr(e))


def test_a_forked_child_codes_like_its_parent() -> None:
    parent = _work()  # starts every pool and thread in this process first
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    try:
        got = queue.get(timeout=60)
    except Exception:
        got = None
    child.join(timeout=10)
    if child.is_alive():
        os.kill(child.pid, 9)
        child.join()
    assert got is not None, "the forked child hung while coding"
    assert not isinstance(got, str), f"the forked child failed: {got}"
    assert got["files"] == parent["files"] and got["big"] == parent["big"]
    for key in ("images", "small", "x_hat"):
        np.testing.assert_array_equal(got[key], parent[key], err_msg=key)
    # one torch thread in the child: the proxy's sums run in another order
    np.testing.assert_allclose(got["grad"], parent["grad"], rtol=1e-4, atol=1e-12)
