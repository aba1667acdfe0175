"""Tests of the npp_ext custom ops (npp_ext.ops) against the eager reference
(npp_ext.ops.eager) and, for the YUV ops, against an independent numpy
implementation of the BPG integer maths written from docs/color.md.

CUDA tests run only when a GPU is present.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from npp_ext import ops, options
from npp_ext.ops import _common
from npp_ext.ops import eager as ref

try:
    _common.cpu_kernels()
except RuntimeError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"CPU kernels not built: {e}", allow_module_level=True)

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

# (width, height) of the bit-exactness tests: odd, tiny, unit-16 and plain sizes.
SIZES = [(1, 1), (7, 5), (17, 9), (101, 77), (64, 64), (9, 8), (8, 9), (33, 130)]


# ------------------------------------------------------------------ numpy BPG
# Written from docs/color.md (8-bit, BT.601, full range),
# deliberately without looking at color_math.h's constants.

KR, KB = 0.299, 0.114
FWD_SHIFT, INV_SHIFT = 31 - 8, 30 - 8


def _fixed(k: float, shift: int) -> int:
    return int(np.rint(k * (1 << shift)))  # lrint; 255'/255 = 1 at 8 bits


FWD_ROWS = np.array(
    [
        [_fixed(k, FWD_SHIFT) for k in (KR, 1 - KR - KB, KB)],
        [
            _fixed(k, FWD_SHIFT)
            for k in (-0.5 * KR / (1 - KB), -0.5 * (1 - KR - KB) / (1 - KB), 0.5)
        ],
        [
            _fixed(k, FWD_SHIFT)
            for k in (0.5, -0.5 * (1 - KR - KB) / (1 - KR), -0.5 * KB / (1 - KR))
        ],
    ],
    dtype=np.int64,
)
INV_ONE = _fixed(1.0, INV_SHIFT)
INV_CR_R = _fixed(2 * (1 - KR), INV_SHIFT)
INV_CB_G = _fixed(2 * KB * (1 - KB) / (1 - KB - KR), INV_SHIFT)
INV_CR_G = _fixed(2 * KR * (1 - KR) / (1 - KB - KR), INV_SHIFT)
INV_CB_B = _fixed(2 * (1 - KB), INV_SHIFT)
DOWN = np.array([2, -4, -8, 17, 57, 57, 17, -8, -4, 2], dtype=np.int64)
UP = {0: np.array([2, -6, 18, 57, -10, 4, -1], dtype=np.int64)}
UP[1] = UP[0][::-1].copy()


def np_layout(w: int, h: int, chroma: int) -> dict[str, int]:
    unit = 16 if (w <= 8 or h <= 8) else 8
    cw_, ch_ = -(-w // unit) * unit, -(-h // unit) * unit
    if chroma == 420:
        c = dict(chroma_w=-(-w // 2), chroma_h=-(-h // 2), coded_cw=cw_ // 2, coded_ch=ch_ // 2)
    else:
        c = dict(chroma_w=w, chroma_h=h, coded_cw=cw_, coded_ch=ch_)
    return dict(coded_w=cw_, coded_h=ch_, **c)


def np_quantize(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x.astype(np.float32), nan=0.0)
    return np.rint(np.clip(x, np.float32(0), np.float32(1)) * np.float32(255)).astype(np.int64)


def np_decimate(c: np.ndarray) -> np.ndarray:
    """(H, W) 8-bit -> 4:2:0, horizontal pass first, extra precision between."""
    h, w = c.shape
    cw, ch = -(-w // 2), -(-h // 2)
    hor = np.zeros((h, cw), dtype=np.int64)
    for i in range(cw):
        for k in range(10):
            hor[:, i] += DOWN[k] * c[:, min(max(2 * i - 4 + k, 0), w - 1)]
    hor = (hor + 1) >> 1  # >> (bit_depth - 7), no clamp
    ver = np.zeros((ch, cw), dtype=np.int64)
    for j in range(ch):
        for k in range(10):
            ver[j] += DOWN[k] * hor[min(max(2 * j - 4 + k, 0), h - 1)]
    return np.clip((ver + (1 << 12)) >> 13, 0, 255)  # >> (21 - bit_depth)


def np_rgb_to_yuv(x: np.ndarray, chroma: int) -> np.ndarray:
    """(N, 3, H, W) float -> (N, total) uint8."""
    out = []
    for img in x:
        h, w = img.shape[1:]
        q = np_quantize(img)
        ycc = np.einsum("ck,khw->chw", FWD_ROWS, q) + (1 << (FWD_SHIFT - 1))
        ycc = ycc >> FWD_SHIFT
        ycc[1:] += 128
        ycc = np.clip(ycc, 0, 255)
        planes = [ycc[0], ycc[1], ycc[2]]
        if chroma == 420:
            planes[1], planes[2] = np_decimate(planes[1]), np_decimate(planes[2])
        lay = np_layout(w, h, chroma)
        sizes = [(lay["coded_h"], lay["coded_w"])] + [(lay["coded_ch"], lay["coded_cw"])] * 2
        parts = []
        for p, (rows, cols) in zip(planes, sizes, strict=True):
            padded = np.pad(p, ((0, rows - p.shape[0]), (0, cols - p.shape[1])), mode="edge")
            parts.append(padded.reshape(-1))
        out.append(np.concatenate(parts))
    return np.stack(out).astype(np.uint8)


def np_interpolate(c: np.ndarray, h: int, w: int) -> np.ndarray:
    """4:2:0 chroma (ch, cw) -> (h, w): vertical pass first at full precision."""
    ch, cw = c.shape
    ver = np.zeros((h, cw), dtype=np.int64)
    for y in range(h):
        for k in range(7):
            ver[y] += UP[y % 2][k] * c[min(max(y // 2 - 3 + k, 0), ch - 1)]
    hor = np.zeros((h, w), dtype=np.int64)
    for x in range(w):
        for k in range(7):
            hor[:, x] += UP[x % 2][k] * ver[:, min(max(x // 2 - 3 + k, 0), cw - 1)]
    return np.clip((hor + (1 << 11)) >> 12, 0, 255)  # >> (20 - bit_depth)


def np_yuv_to_rgb(yuv: np.ndarray, h: int, w: int, chroma: int) -> np.ndarray:
    lay = np_layout(w, h, chroma)
    ysz = lay["coded_w"] * lay["coded_h"]
    csz = lay["coded_cw"] * lay["coded_ch"]
    out = []
    for buf in yuv.astype(np.int64):
        y = buf[:ysz].reshape(lay["coded_h"], lay["coded_w"])[:h, :w]
        cs = []
        for p in range(2):
            c = buf[ysz + p * csz : ysz + (p + 1) * csz].reshape(lay["coded_ch"], lay["coded_cw"])
            c = c[: lay["chroma_h"], : lay["chroma_w"]]
            cs.append(np_interpolate(c, h, w) if chroma == 420 else c)
        cb, cr = cs[0] - 128, cs[1] - 128
        yy = y * INV_ONE + (1 << (INV_SHIFT - 1))
        r = (yy + INV_CR_R * cr) >> INV_SHIFT
        g = (yy - INV_CB_G * cb - INV_CR_G * cr) >> INV_SHIFT
        b = (yy + INV_CB_B * cb) >> INV_SHIFT
        out.append(np.clip(np.stack([r, g, b]), 0, 255))
    return np.stack(out).astype(np.float32) / np.float32(255)


def _test_image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g) * 1.2 - 0.1  # some values out of range
    flat = x.view(-1)
    # Exact halves of the 8-bit grid (round-half-even cases) and specials.
    ties = (torch.arange(256, dtype=torch.float32) + 0.5) / 255
    k = min(flat.numel(), ties.numel())
    flat[:k] = ties[:k]
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, 1.0, -0.0])
    flat[-min(flat.numel(), 6) :] = specials[: min(flat.numel(), 6)]
    return x


# ------------------------------------------------------------------ layout


def test_numpy_constants_match_header_constants() -> None:
    # The numpy model derives the constants from the formulas; the torch
    # reference copies color_math.h. They must agree.
    assert FWD_ROWS.tolist() == [list(ref._Y), list(ref._CB), list(ref._CR)]
    assert (INV_ONE, INV_CR_R, INV_CB_G, INV_CR_G, INV_CB_B) == (
        ref._INV_ONE, ref._INV_CR_R, ref._INV_CB_G, ref._INV_CR_G, ref._INV_CB_B,
    )  # fmt: skip


@pytest.mark.parametrize("chroma", [420, 444])
def test_layout_matches_color_math(chroma: int) -> None:
    from npp_ext import _bpg  # the codec's own bpg_cm_make_layout()

    for w in [*range(1, 40), 63, 64, 65, 101, 257]:
        for h in [1, 2, 7, 8, 9, 16, 17, 77]:
            lay = ops.yuv_layout(h, w, chroma)
            c_layout = _bpg.layout(w, h, options.chroma_code(chroma))
            assert c_layout == {k: v for k, v in lay.__dict__.items() if k in c_layout}
            assert {key: getattr(lay, key) for key in np_layout(w, h, chroma)} == np_layout(
                w, h, chroma
            )


def test_layout_examples() -> None:
    lay = ops.yuv_layout(9, 17, 420)
    assert (lay.coded_w, lay.coded_h, lay.chroma_w, lay.chroma_h) == (24, 16, 9, 5)
    assert (lay.coded_cw, lay.coded_ch, lay.total) == (12, 8, 24 * 16 + 2 * 12 * 8)
    lay = ops.yuv_layout(5, 7, 420)  # a side <= 8: coded to 16
    assert (lay.coded_w, lay.coded_h, lay.coded_cw, lay.coded_ch) == (16, 16, 8, 8)
    lay = ops.yuv_layout(9, 17, 444)
    assert (lay.coded_cw, lay.coded_ch, lay.total) == (24, 16, 3 * 24 * 16)
    with pytest.raises(ValueError, match="chroma '422' is not supported by the YUV kernels"):
        ops.rgb_to_yuv(torch.rand(1, 3, 4, 4), 422)


# ------------------------------------------------------------------ YUV ops


@pytest.mark.parametrize("chroma", [420, 444])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_rgb_to_yuv_bit_exact(size: tuple[int, int], chroma: int) -> None:
    w, h = size
    x = _test_image(2, h, w, seed=w * 1000 + h)
    expected = np_rgb_to_yuv(x.numpy(), chroma)
    got = ops.rgb_to_yuv(x, chroma)
    assert got.dtype == torch.uint8 and got.shape == (2, ops.yuv_layout(h, w, chroma).total)
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(ref.rgb_to_yuv(x, chroma).numpy(), expected)


@pytest.mark.parametrize("chroma", [420, 444])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_yuv_to_rgb_bit_exact(size: tuple[int, int], chroma: int) -> None:
    w, h = size
    g = torch.Generator().manual_seed(w * 7 + h)
    yuv = torch.randint(0, 256, (2, ops.yuv_layout(h, w, chroma).total), generator=g)
    yuv = yuv.to(torch.uint8)
    expected = np_yuv_to_rgb(yuv.numpy(), h, w, chroma)
    got = ops.yuv_to_rgb(yuv, h, w, chroma)
    assert got.dtype == torch.float32 and got.shape == (2, 3, h, w)
    np.testing.assert_array_equal(got.numpy(), expected)
    np.testing.assert_array_equal(ref.yuv_to_rgb(yuv, h, w, chroma).numpy(), expected)


@pytest.mark.parametrize("chroma", [420, 444])
def test_yuv_padding_layout(chroma: int) -> None:
    w, h = 17, 9
    x = _test_image(1, h, w, seed=3)
    yuv = ops.rgb_to_yuv(x, chroma)[0]
    lay = ops.yuv_layout(h, w, chroma)
    y = yuv[: lay.y_size].view(lay.coded_h, lay.coded_w)
    # Last column replicated, then the last row (corner = last real sample).
    assert torch.equal(y[:h, w:], y[:h, w - 1 : w].expand(h, lay.coded_w - w))
    assert torch.equal(y[h:], y[h - 1 : h].expand(lay.coded_h - h, lay.coded_w))
    for p in range(2):
        start = lay.y_size + p * lay.c_size
        c = yuv[start : start + lay.c_size].view(lay.coded_ch, lay.coded_cw)
        cw, ch = lay.chroma_w, lay.chroma_h
        assert torch.equal(c[:ch, cw:], c[:ch, cw - 1 : cw].expand(ch, lay.coded_cw - cw))
        assert torch.equal(c[ch:], c[ch - 1 : ch].expand(lay.coded_ch - ch, lay.coded_cw))
    # The decoder reads only the real areas: padding bytes do not matter.
    scrambled = yuv.clone().view(1, -1)
    y2 = scrambled[0, : lay.y_size].view(lay.coded_h, lay.coded_w)
    y2[h:] = 0
    y2[:, w:] = 255
    assert torch.equal(
        ops.yuv_to_rgb(scrambled, h, w, chroma), ops.yuv_to_rgb(yuv[None], h, w, chroma)
    )


def test_rgb_to_yuv_dtypes_and_layouts() -> None:
    x = _test_image(2, 13, 11)
    base = ops.rgb_to_yuv(x)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.to(dtype)
        assert torch.equal(ops.rgb_to_yuv(xh), ops.rgb_to_yuv(xh.float()))
    assert torch.equal(ops.rgb_to_yuv(x.double()), base)  # float64 -> float32 first
    assert torch.equal(ops.rgb_to_yuv(x.to(memory_format=torch.channels_last)), base)
    assert torch.equal(ops.rgb_to_yuv(x.transpose(2, 3).contiguous().transpose(2, 3)), base)
    empty = ops.rgb_to_yuv(x[:0])
    assert empty.shape == (0, base.shape[1])
    assert ops.yuv_to_rgb(empty, 13, 11).shape == (0, 3, 13, 11)


def test_yuv_roundtrip_is_close() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 24, 40, generator=g)
    back = ops.yuv_to_rgb(ops.rgb_to_yuv(x, 444), 24, 40, 444)
    assert (back - ref.quantize8(x) / 255).abs().max() <= 3 / 255
    smooth = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear")
    back = ops.yuv_to_rgb(ops.rgb_to_yuv(smooth, 420), 96, 160, 420)
    assert (back - smooth).abs().mean() < 2 / 255


@pytest.mark.parametrize("chroma", [420, 444])
def test_yuv_thread_count_does_not_matter(chroma: int) -> None:
    # Big enough that every pass (rows, 4:2:0 vertical filter, inverse) is cut
    # among several workers: smaller images run on one thread whatever is asked.
    x = _test_image(3, 517, 389)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.rgb_to_yuv(x, chroma)
        one_back = ops.yuv_to_rgb(one, 517, 389, chroma)
        torch.set_num_threads(max(4, threads))
        many = ops.rgb_to_yuv(x, chroma)
        many_back = ops.yuv_to_rgb(many, 517, 389, chroma)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many) and torch.equal(one_back, many_back)
    assert torch.equal(one, ref.rgb_to_yuv(x, chroma))


def test_yuv_errors() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="float"):
        ops.rgb_to_yuv((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ops.rgb_to_yuv(x[:, :2])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ops.rgb_to_yuv(x[0])
    with pytest.raises(ValueError, match="chroma"):
        ops.rgb_to_yuv(x, 422)
    with pytest.raises(ValueError, match="CPU or CUDA"):
        ops.rgb_to_yuv(x.to("meta"))
    with pytest.raises(ValueError, match="at least 1x1"):
        ops.rgb_to_yuv(torch.rand(1, 3, 0, 4))
    yuv = ops.rgb_to_yuv(x.requires_grad_())
    assert not yuv.requires_grad  # uint8: not differentiable
    with pytest.raises(TypeError, match="uint8"):
        ops.yuv_to_rgb(yuv.float(), 8, 8)
    with pytest.raises(ValueError, match=r"shape \(N, 384\)"):
        ops.yuv_to_rgb(yuv[:, :-1], 8, 8)
    with pytest.raises(ValueError, match=r"shape \(N, 768\)"):
        ops.yuv_to_rgb(yuv, 17, 8)
    with pytest.raises(ValueError, match="chroma"):
        ops.yuv_to_rgb(yuv, 8, 8, 400)
    # Int arguments are ints, as the custom ops (and compiled code) demand; a float chroma
    # is no chroma format (one message for every entry point: npp_ext.options).
    with pytest.raises(ValueError, match="chroma must be one of"):
        ops.rgb_to_yuv(x, 420.0)
    with pytest.raises(TypeError, match="height must be an int"):
        ops.yuv_to_rgb(yuv, True, 8)
    with pytest.raises(TypeError, match="width must be an int"):
        ops.yuv_to_rgb(yuv, 8, 8.0)
    numpy_ints = ops.yuv_to_rgb(yuv, np.int64(8), 8, np.int32(420))
    assert torch.equal(numpy_ints, ops.yuv_to_rgb(yuv, 8, 8))


# ------------------------------------------------------------------ float ops


def _pixel_branch_inputs(
    n: int = 2, h: int = 5, w: int = 6, dtype: torch.dtype = torch.float64, seed: int = 0
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, 3, h, w, generator=g, dtype=dtype),
        torch.randn(3, 3, generator=g, dtype=dtype),
        torch.randn(3, generator=g, dtype=dtype) * 0.3,
        torch.rand(n, 3, generator=g, dtype=dtype) + 0.5,
        torch.randn(3, 3, generator=g, dtype=dtype),
        torch.randn(3, generator=g, dtype=dtype) * 0.3,
        torch.rand(n, 3, generator=g, dtype=dtype) + 0.5,
    ]


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return (
        {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    )


def _grads(
    fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor
) -> list[torch.Tensor]:
    """[output, grad of each input] of fn(*inputs) backpropagating grad."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad)
    return [out.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("act", ["relu", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_qp_scale_matches_reference(act: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 33, 70, generator=g, dtype=dtype)
    s = torch.randn(3, 5, generator=g, dtype=dtype)
    gy = torch.randn(x.shape, generator=g, dtype=dtype)
    got = _grads(lambda a, b: ops.qp_scale(a, b, act), [x, s], gy)
    want = _grads(lambda a, b: ref.qp_scale(a, b, act), [x, s], gy)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **_tol(dtype))


@pytest.mark.parametrize("act", ["relu", "none"])
def test_qp_scale_gradcheck(act: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ops.qp_scale(a, b, act), (x, s))


def test_qp_scale_shapes_and_layouts() -> None:
    x = torch.randn(2, 3, 4, 5)
    s = torch.rand(2, 3)
    y = ops.qp_scale(x, s)
    assert torch.equal(ops.qp_scale(x, s[:, :, None, None]), y)  # (N, C, 1, 1) scale
    assert torch.equal(ops.qp_scale(x.to(memory_format=torch.channels_last), s), y)
    assert torch.equal(ops.qp_scale(x.transpose(0, 1).contiguous().transpose(0, 1), s), y)
    assert ops.qp_scale(x[:0], s[:0]).shape == (0, 3, 4, 5)
    x0 = torch.randn(2, 3, 0, 5, requires_grad=True)
    s0 = torch.rand(2, 3, requires_grad=True)
    ops.qp_scale(x0, s0).sum().backward()
    assert torch.equal(s0.grad, torch.zeros(2, 3))
    # Any (N, C, ...) works.
    x3 = torch.randn(2, 3, 7)
    torch.testing.assert_close(ops.qp_scale(x3, s), ref.qp_scale(x3, s))


def test_qp_scale_backward_deterministic_across_threads() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 150, 150, generator=g)  # several reduction chunks per row
    s = torch.randn(2, 3, generator=g)
    gy = torch.randn(x.shape, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _grads(ops.qp_scale, [x, s], gy)
        torch.set_num_threads(max(2, threads))
        many = _grads(ops.qp_scale, [x, s], gy)
        again = _grads(ops.qp_scale, [x, s], gy)
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(one, many, again, strict=True):
        assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixel_branch_matches_reference(dtype: torch.dtype) -> None:
    inputs = _pixel_branch_inputs(3, 37, 41, dtype=dtype)
    gy = torch.randn(inputs[0].shape, dtype=dtype)
    got = _grads(ops.npp_pixel_branch, inputs, gy)
    want = _grads(ref.npp_pixel_branch, inputs, gy)
    tol = _tol(dtype)
    if dtype == torch.float32:  # parameter grads sum 3*37*41 products
        tol = {"rtol": 1e-4, "atol": 1e-4}
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_pixel_branch_gradcheck() -> None:
    inputs = [t.requires_grad_() for t in _pixel_branch_inputs()]
    assert torch.autograd.gradcheck(ops.npp_pixel_branch, inputs)


def test_pixel_branch_conv_weight_shape() -> None:
    x, w1, b1, s1, w2, b2, s2 = _pixel_branch_inputs(dtype=torch.float32)
    w1c = w1.reshape(3, 3, 1, 1).clone().requires_grad_()
    w2c = w2.reshape(3, 3, 1, 1).clone().requires_grad_()
    y = ops.npp_pixel_branch(x, w1c, b1, s1, w2c, b2, s2)
    assert torch.equal(y, ops.npp_pixel_branch(x, w1, b1, s1, w2, b2, s2))
    y.sum().backward()
    assert w1c.grad.shape == (3, 3, 1, 1) and w2c.grad.shape == (3, 3, 1, 1)


def test_pixel_branch_deterministic_across_threads() -> None:
    inputs = _pixel_branch_inputs(2, 130, 90, dtype=torch.float32)
    gy = torch.randn(inputs[0].shape)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _grads(ops.npp_pixel_branch, inputs, gy)
        torch.set_num_threads(max(2, threads))
        many = _grads(ops.npp_pixel_branch, inputs, gy)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a, b)


def test_relu_gradient_follows_torch_at_nan() -> None:
    """torch's relu backward zeroes the gradient where the output is <= 0, so it passes
    where the pre-activation is NaN; the kernels follow that rule (ties at 0 are zeroed)."""
    x = torch.tensor([[[[float("nan"), 0.0, -1.0, 2.0, float("inf")]]]], dtype=torch.float64)
    s = torch.tensor([[1.0]], dtype=torch.float64)
    s0 = torch.tensor([[0.0]], dtype=torch.float64)  # inf * 0 = NaN
    gy = torch.full(x.shape, 3.0, dtype=torch.float64)
    for scale in (s, s0):
        got = _grads(ops.qp_scale, [x, scale], gy)
        want = _grads(ref.qp_scale, [x, scale], gy)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, equal_nan=True)
    xp = x.expand(1, 3, 1, 5).contiguous()
    xp[0, 1, 0, 1] = float("nan")
    inputs = list(_pixel_branch_inputs(1, 1, 5, dtype=torch.float64))
    inputs[0] = xp
    gy = torch.ones(1, 3, 1, 5, dtype=torch.float64)
    got = _grads(ops.npp_pixel_branch, inputs, gy)
    want = _grads(ref.npp_pixel_branch, inputs, gy)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)


def test_parameters_without_data_raise() -> None:
    """A parameter whose storage was freed (as FSDP does between uses) hands the
    kernels address 0: a RuntimeError, not a crash of the process."""
    x = torch.rand(2, 3, 4, 5)
    s = torch.rand(2, 3)
    s.untyped_storage().resize_(0)
    with pytest.raises(RuntimeError, match="null pointer"):
        ops.qp_scale(x, s)
    pb = list(_pixel_branch_inputs(2, 4, 5, dtype=torch.float32))
    for i in range(1, 7):
        args = [t.clone() for t in pb]
        args[i].untyped_storage().resize_(0)
        with pytest.raises(RuntimeError, match="null pointer"):
            ops.npp_pixel_branch(*args)


def test_fake_parameters_used_eagerly_raise() -> None:
    """Fake tensors are subclasses: they take the custom op, where torch refuses to mix
    them with real ones (the raw-pointer path would have read address 0)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fs = torch.empty(2, 3)
        fw = torch.empty(3, 3)
    x = torch.rand(2, 3, 4, 5)
    pb = list(_pixel_branch_inputs(2, 4, 5, dtype=torch.float32))
    with pytest.raises((RuntimeError, AssertionError)):
        ops.qp_scale(x, fs)
    with pytest.raises((RuntimeError, AssertionError)):
        ops.npp_pixel_branch(pb[0], fw, *pb[2:])


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")  # torch.func
def test_functorch_vmap_works_and_autodiff_transforms_refuse() -> None:
    x, s = torch.randn(4, 3, 5, 6, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    per_image = torch.func.vmap(lambda a, b: ops.qp_scale(a[None], b[None])[0])(x, s)
    assert torch.equal(per_image, ops.qp_scale(x, s))
    fns = [
        lambda a: ops.qp_scale(a, s).sum(),
        lambda a: ops.branch_sum_clamp(a, a).sum(),
        lambda a: ops.npp_pixel_branch(a[:, :3], *_pixel_branch_inputs(4, 5, 6)[1:]).sum(),
    ]
    for f in fns:
        with pytest.raises(NotImplementedError, match="torch.autograd"):
            torch.func.grad(f)(x)
        with pytest.raises(NotImplementedError, match="torch.autograd"):
            torch.func.jvp(f, (x,), (torch.ones_like(x),))


def test_jit_trace_records_the_ops() -> None:
    """The tracer cannot see a kernel called through a data pointer: traced code must
    hold the custom ops and compute on new inputs."""
    rgb = torch.rand(2, 3, 9, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's own warnings
        to_yuv = torch.jit.trace(ops.rgb_to_yuv, (rgb,))
        back = torch.jit.trace(lambda y: ops.yuv_to_rgb(y, 9, 10), (ops.rgb_to_yuv(rgb),))
    other = torch.rand(2, 3, 9, 10)
    assert torch.equal(to_yuv(other), ops.rgb_to_yuv(other))
    assert torch.equal(back(ops.rgb_to_yuv(other)), ops.yuv_to_rgb(ops.rgb_to_yuv(other), 9, 10))
    assert "npp_ext::rgb_to_yuv" in str(to_yuv.graph)


def test_outputs_are_contiguous_like_the_fakes() -> None:
    # channels_last with C == 1 is also is_contiguous(): empty_like would keep its strides.
    x = torch.rand(2, 1, 4, 4).to(memory_format=torch.channels_last)
    y = ops.qp_scale(x, torch.rand(2, 1))
    assert y.stride() == torch.empty(2, 1, 4, 4).stride()
    assert ops.branch_sum_clamp(x, x).stride() == (16, 16, 4, 1)


def test_pixel_branch_empty() -> None:
    x, w1, b1, s1, w2, b2, s2 = _pixel_branch_inputs(dtype=torch.float32)
    leaves = [t.requires_grad_() for t in (x[:, :, :0], w1, b1, s1, w2, b2, s2)]
    y = ops.npp_pixel_branch(*leaves)
    assert y.shape == (2, 3, 0, 6)
    y.sum().backward()
    assert all(torch.equal(t.grad, torch.zeros_like(t)) for t in leaves[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_branch_sum_clamp(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 9, 11, generator=g, dtype=dtype)
    b = torch.randn(2, 3, 9, 11, generator=g, dtype=dtype)
    gy = torch.randn(a.shape, generator=g, dtype=dtype)
    y, ga, gb = _grads(ops.branch_sum_clamp, [a, b], gy)
    assert torch.equal(y, (a + b).clamp(0, 1))
    assert ((a + b) < 0).any() and ((a + b) > 1).any()
    # One-sided straight-through: a clamped pixel passes the gradient that brings it back
    # into range and drops the one that pushes it further out.
    t = a + b
    outward = ((t > 1) & (gy < 0)) | ((t < 0) & (gy > 0))
    back = ((t > 1) & (gy > 0)) | ((t < 0) & (gy < 0))
    assert outward.any() and back.any()
    assert torch.equal(ga[outward], torch.zeros_like(ga[outward]))
    assert torch.equal(ga[~outward], gy[~outward]) and torch.equal(gb, ga)
    want = _grads(ref.branch_sum_clamp, [a, b], gy)
    for p, q in zip((y, ga, gb), want, strict=True):
        assert torch.equal(p, q)
    nan = ops.branch_sum_clamp(
        torch.tensor([float("nan"), 2.0], dtype=dtype), torch.zeros(2, dtype=dtype)
    )
    assert nan[0].isnan() and nan[1] == 1


def test_branch_sum_clamp_gradcheck() -> None:
    # Inside (0, 1) the straight-through gradient is the true one.
    a = (torch.rand(2, 3, 4, 5, dtype=torch.float64) * 0.4 + 0.05).requires_grad_()
    b = (torch.rand(2, 3, 4, 5, dtype=torch.float64) * 0.4 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(ops.branch_sum_clamp, (a, b))


def test_float_op_errors() -> None:
    x, s = torch.randn(2, 3, 4, 4), torch.rand(2, 3)
    with pytest.raises(ValueError, match="act"):
        ops.qp_scale(x, s, "gelu")
    with pytest.raises(ValueError, match=r"scale must have shape \(N, C\)"):
        ops.qp_scale(x, s[:1])
    with pytest.raises(TypeError, match="same dtype"):
        ops.qp_scale(x, s.double())
    with pytest.raises(TypeError, match="float32, float64"):
        ops.qp_scale(x.to(torch.int32), s)
    with pytest.raises(ValueError, match="scale must be on a CPU or CUDA device"):
        ops.qp_scale(x, s.to("meta"))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ops.qp_scale(x, [1.0, 2.0, 3.0])  # type: ignore[arg-type]
    p = _pixel_branch_inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match="w1 must have shape"):
        ops.npp_pixel_branch(p[0], p[1][:2], *p[2:])
    with pytest.raises(ValueError, match="s2 must have shape"):
        ops.npp_pixel_branch(*p[:6], p[6][:1])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ops.npp_pixel_branch(p[0][:, :2], *p[1:])
    with pytest.raises(TypeError, match="same dtype"):
        ops.npp_pixel_branch(p[0].double(), *p[1:])
    with pytest.raises(ValueError, match="grad must have x's shape"):
        torch.ops.npp_ext.qp_scale_backward(x[:1], x, s, "relu")
    with pytest.raises(ValueError, match="grad must have x's shape"):
        torch.ops.npp_ext.npp_pixel_branch_backward(p[0][:, :, :1], *p)
    with pytest.raises(ValueError, match="same shape"):
        ops.branch_sum_clamp(x, x[:1])
    with pytest.raises(TypeError, match="float32, float64"):
        ops.branch_sum_clamp(x.to(torch.int64), x.to(torch.int64))


# ------------------------------------------------------------------ torch integration


def _fwd_bwd(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> list[torch.Tensor]:
    """fn's output and the gradients of its floating inputs for a fixed weighting."""
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*leaves)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (out * w).sum().backward()
    return [out.detach()] + [t.grad for t in leaves if t.is_floating_point()]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_eager_direct_path_matches_the_custom_ops(device: str) -> None:
    """Plain eager calls skip the dispatcher; the results are the custom ops' to the bit."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    x, s = torch.randn(2, 3, 9, 10, device=device), torch.rand(2, 3, device=device)
    pb = [t.to(device) for t in _pixel_branch_inputs(2, 9, 10, dtype=torch.float32)]
    pairs = [
        (lambda a, b: ops.qp_scale(a, b), lambda a, b: torch.ops.npp_ext.qp_scale(a, b, "relu"),
         (x, s)),
        (ops.npp_pixel_branch, torch.ops.npp_ext.npp_pixel_branch, tuple(pb)),
        (ops.branch_sum_clamp, torch.ops.npp_ext.branch_sum_clamp, (x, 0.7 * x + 0.5)),
    ]  # fmt: skip
    for public, op, args in pairs:
        for a, b in zip(_fwd_bwd(public, *args), _fwd_bwd(op, *args), strict=True):
            assert torch.equal(a, b)
    rgb = torch.rand(2, 3, 9, 10, device=device)
    yuv = ops.rgb_to_yuv(rgb)
    assert torch.equal(yuv, torch.ops.npp_ext.rgb_to_yuv(rgb, 420))
    assert torch.equal(ops.yuv_to_rgb(yuv, 9, 10), torch.ops.npp_ext.yuv_to_rgb(yuv, 9, 10, 420))


def test_dispatch_modes_and_fake_tensors_see_the_custom_ops() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            self.ops.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    x, s = torch.randn(2, 3, 4, 5), torch.rand(2, 3)
    pb = _pixel_branch_inputs(2, 4, 5, dtype=torch.float32)
    with Recorder() as rec:
        y = ops.qp_scale(x, s)
        ops.npp_pixel_branch(*pb)
        ops.branch_sum_clamp(x, x)
        ops.yuv_to_rgb(ops.rgb_to_yuv(x.clamp(0, 1)), 4, 5)
    assert torch.equal(y, ops.qp_scale(x, s))
    for name in ("qp_scale", "npp_pixel_branch", "branch_sum_clamp", "rgb_to_yuv", "yuv_to_rgb"):
        assert f"npp_ext.{name}" in rec.ops, name
    with FakeTensorMode():
        fx, fs = torch.empty(2, 3, 64, 48), torch.empty(2, 3)
        assert ops.qp_scale(fx, fs).shape == (2, 3, 64, 48)
        assert ops.rgb_to_yuv(fx).shape == (2, ops.yuv_layout(64, 48).total)


def _opcheck_cases(device: str) -> list[tuple[object, tuple]]:
    x = torch.rand(2, 3, 9, 10, device=device)
    pb = [t.to(device) for t in _pixel_branch_inputs(2, 9, 10, dtype=torch.float32)]
    s = torch.rand(2, 3, device=device)
    gy = torch.randn(2, 3, 9, 10, device=device)
    yuv = ops.rgb_to_yuv(x)
    return [
        (torch.ops.npp_ext.rgb_to_yuv.default, (x, 420)),
        (torch.ops.npp_ext.rgb_to_yuv.default, (x, 444)),
        (torch.ops.npp_ext.yuv_to_rgb.default, (yuv, 9, 10, 420)),
        (
            torch.ops.npp_ext.qp_scale.default,
            (x.clone().requires_grad_(), s.clone().requires_grad_(), "relu"),
        ),
        (torch.ops.npp_ext.qp_scale.default, (x.double(), s.double(), "none")),
        (torch.ops.npp_ext.qp_scale_backward.default, (gy, x, s, "relu")),
        (torch.ops.npp_ext.npp_pixel_branch.default, tuple(t.clone().requires_grad_() for t in pb)),
        (torch.ops.npp_ext.npp_pixel_branch_backward.default, (gy, *pb)),
        (
            torch.ops.npp_ext.branch_sum_clamp.default,
            (x.clone().requires_grad_(), gy.clone().requires_grad_()),
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_opcheck_cpu(case: int) -> None:
    op, args = _opcheck_cases("cpu")[case]
    torch.library.opcheck(op, args)


def test_autocast_cpu_bfloat16() -> None:
    x, w1, b1, s1, w2, b2, s2 = _pixel_branch_inputs(2, 8, 8, dtype=torch.float32)
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)  # bfloat16 under autocast
        assert h.dtype == torch.bfloat16
        y = ops.qp_scale(h, s1)
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, ops.qp_scale(h.float(), s1))
        # The op itself also upcasts when called directly.
        assert torch.ops.npp_ext.qp_scale(h, s1.bfloat16(), "relu").dtype == torch.float32
        p = ops.npp_pixel_branch(h, w1, b1, s1, w2, b2, s2)
        assert p.dtype == torch.float32
        out = ops.branch_sum_clamp(p, h)
        assert out.dtype == torch.float32
        yuv = ops.rgb_to_yuv(out)
        rgb = ops.yuv_to_rgb(yuv, 8, 8)
        assert rgb.dtype == torch.float32
    leaf = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ops.qp_scale(leaf, s1).sum().backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16


# Inductor's CPU backend imports torch.jit-scripted mkldnn modules (torch's warning, not ours).
@pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning")
def test_torch_compile_fullgraph() -> None:
    torch._dynamo.reset()
    inputs = _pixel_branch_inputs(2, 16, 12, dtype=torch.float32)
    unet = torch.rand(2, 3, 16, 12)
    qa = torch.rand(2, 3) + 0.5

    def step(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, w1, b1, s1, w2, b2, s2, unet, qa = args
        pix = ops.npp_pixel_branch(x, w1, b1, s1, w2, b2, s2)
        out = ops.branch_sum_clamp(ops.qp_scale(pix, qa, "none"), unet)
        rgb = ops.yuv_to_rgb(ops.rgb_to_yuv(out), 16, 12)
        return out, rgb, (out * rgb).sum()

    compiled = torch.compile(step, fullgraph=True)
    leaves_e = [t.clone().requires_grad_() for t in [*inputs, unet, qa]]
    leaves_c = [t.clone().requires_grad_() for t in [*inputs, unet, qa]]
    out_e, rgb_e, loss_e = step(*leaves_e)
    out_c, rgb_c, loss_c = compiled(*leaves_c)
    torch.testing.assert_close(out_c, out_e)
    assert torch.equal(rgb_c, rgb_e)
    out_e.sum().backward()
    out_c.sum().backward()
    for a, b in zip(leaves_c, leaves_e, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_import_without_cuda_module(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import subprocess
    import sys

    from conftest import child_env

    # A fresh interpreter where _kernels_cuda cannot be imported at all.
    code = (
        "import sys; sys.modules['npp_ext._kernels_cuda'] = None; "
        "import torch, npp_ext.ops as o; print(o.rgb_to_yuv(torch.rand(1, 3, 4, 4)).shape)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=child_env()
    )
    assert done.returncode == 0, done.stderr

    monkeypatch.setitem(sys.modules, "npp_ext._kernels_cuda", None)  # import -> ImportError
    _common.cuda_kernels.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="_kernels_cuda"):
            _common.cuda_kernels()
    finally:
        _common.cuda_kernels.cache_clear()
    # The CPU path never touches it.
    assert ops.rgb_to_yuv(torch.rand(1, 3, 4, 4)).shape == (1, ops.yuv_layout(4, 4).total)


# ------------------------------------------------------------------ CUDA


@needs_cuda
@pytest.mark.parametrize("chroma", [420, 444])
def test_cuda_yuv_bit_exact(chroma: int) -> None:
    for w, h in [*SIZES, (255, 129), (300, 40)]:
        x = _test_image(3, h, w, seed=w + h)
        got = ops.rgb_to_yuv(x.cuda(), chroma)
        assert torch.equal(got.cpu(), ops.rgb_to_yuv(x, chroma)), (w, h)
        yuv = torch.randint(0, 256, got.shape, dtype=torch.uint8)
        rgb = ops.yuv_to_rgb(yuv.cuda(), h, w, chroma)
        assert torch.equal(rgb.cpu(), ops.yuv_to_rgb(yuv, h, w, chroma)), (w, h)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_float_ops_match_cpu(dtype: torch.dtype) -> None:
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else _tol(dtype)
    x = torch.randn(3, 5, 70, 90, dtype=dtype)
    s = torch.randn(3, 5, dtype=dtype)
    gy = torch.randn(x.shape, dtype=dtype)
    for act in ("relu", "none"):
        fn = functools.partial(ops.qp_scale, act=act)
        cpu = _grads(fn, [x, s], gy)
        gpu = _grads(fn, [x.cuda(), s.cuda()], gy.cuda())
        for a, b in zip(gpu, cpu, strict=True):
            torch.testing.assert_close(a.cpu(), b, **tol)
    pb = _pixel_branch_inputs(3, 70, 90, dtype=dtype)
    cpu = _grads(ops.npp_pixel_branch, pb, gy[:, :3])
    gpu = _grads(ops.npp_pixel_branch, [t.cuda() for t in pb], gy[:, :3].cuda())
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a.cpu(), b, **tol)
    a, b = x[:, :3], gy[:, :3]
    assert torch.equal(ops.branch_sum_clamp(a.cuda(), b.cuda()).cpu(), ops.branch_sum_clamp(a, b))


@needs_cuda
def test_cuda_deterministic_and_streams() -> None:
    pb = [t.cuda() for t in _pixel_branch_inputs(4, 200, 150, dtype=torch.float32)]
    gy = torch.randn(pb[0].shape, device="cuda")
    first = _grads(ops.npp_pixel_branch, pb, gy)
    second = _grads(ops.npp_pixel_branch, pb, gy)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    s = torch.rand(4, 3, device="cuda")
    q1 = _grads(ops.qp_scale, [pb[0], s], gy)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        q2 = _grads(ops.qp_scale, [pb[0], s], gy)
    torch.cuda.current_stream().wait_stream(stream)
    for a, b in zip(q1, q2, strict=True):
        assert torch.equal(a, b)


@needs_cuda
@pytest.mark.parametrize("case", range(9))
def test_opcheck_cuda(case: int) -> None:
    op, args = _opcheck_cases("cuda")[case]
    torch.library.opcheck(op, args)


@needs_cuda
def test_cuda_autocast_float16() -> None:
    x = torch.randn(2, 3, 8, 8, device="cuda", dtype=torch.float16)
    s = torch.rand(2, 3, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        y = ops.qp_scale(x, s)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ops.qp_scale(x.float(), s))


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_second_device() -> None:
    x = _test_image(2, 33, 47)
    assert torch.equal(ops.rgb_to_yuv(x.to("cuda:1")).cpu(), ops.rgb_to_yuv(x))
