"""Tests for npp_ext.models: layers, entropy models, the NPP and the proxy codec."""

from __future__ import annotations

import copy
import functools
import importlib
import io
import math
import re

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from npp_ext.models import (  # noqa: E402
    GDN,
    IGDN,
    NPP,
    EntropyBottleneck,
    GaussianConditional,
    MaskedConv2d,
    Proxy,
    ProxyOutput,
    QALayer,
    QPGain,
    estimate_bits,
    lower_bound,
    normalize_qp,
)

# Small proxy so that the whole file stays fast on two CPU cores.
PN, PM = 8, 12


# --------------------------------------------------------------------------- fused ops


@pytest.fixture
def fused_ops():
    """npp_ext.ops, for the tests that compare the fused path with plain PyTorch."""
    return importlib.import_module("npp_ext.ops")


# --------------------------------------------------------------------------- helpers


def _perturb_qa(npp: NPP, std: float = 0.5, seed: int = 0) -> None:
    # Untrained QA layers give scales near 1 for every QP; randomise the last
    # layers so that QP differences are large enough to see.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in npp.modules():
            if isinstance(m, QALayer):
                m.fc2.weight.add_(torch.randn(m.fc2.weight.shape, generator=g) * std)


def _assert_all_grads(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def _smooth_image(h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    f = torch.rand(3, 1, 1, generator=g) * 4 + 1
    img = 0.5 + 0.35 * torch.sin(f * 3 * xx + 1.0) * torch.cos(f * 2 * yy)
    return img[None].clamp(0, 1)


@pytest.fixture(scope="module")
def npp():
    torch.manual_seed(0)
    model = NPP()
    _perturb_qa(model)
    return model


# --------------------------------------------------------------------------- QP validation


@pytest.mark.parametrize(
    "qp, exc, match",
    [
        (52, ValueError, r"0\.\.51"),
        (-1, ValueError, r"0\.\.51"),
        (30.0, TypeError, "qp must be an int"),
        (True, TypeError, "qp must be an int"),
        ("30", TypeError, "qp must be an int"),
        (torch.tensor([[30, 30]]), ValueError, r"shape \(2,\)"),
        (torch.tensor([30, 30, 30]), ValueError, r"shape \(2,\)"),
        (torch.tensor([30, 60]), ValueError, "max 60"),
        (torch.tensor([-0.5, 3.0]), ValueError, "min -0.5"),
        (torch.tensor([30.0, float("nan")]), ValueError, "finite"),
        (torch.tensor([True, False]), TypeError, "dtype"),
    ],
)
def test_qp_validation(qp, exc, match):
    with pytest.raises(exc, match=match):
        normalize_qp(qp, 2)


def test_qp_normalization_accepts_int_scalar_and_per_image_tensors():
    assert torch.allclose(normalize_qp(51, 3), torch.ones(3, 1))
    per_image = normalize_qp(torch.tensor([0, 17, 51]), 3)
    assert torch.allclose(per_image[:, 0], torch.tensor([0.0, 1 / 3, 1.0]))
    assert torch.allclose(normalize_qp(torch.tensor(34), 2), torch.full((2, 1), 34 / 51))
    assert normalize_qp(torch.tensor([12.5, 40.0]), 2).dtype == torch.float32


@pytest.mark.parametrize("make", [lambda: NPP(use_fused_ops=False), lambda: Proxy(PN, PM)])
def test_models_validate_inputs(make):
    model = make()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="qp"):
        model(x, 99)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        model(x, torch.tensor([30]))
    with pytest.raises(TypeError, match="floating"):
        model((x * 255).to(torch.uint8), 30)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(2, 1, 16, 16), 30)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(x.numpy(), 30)


# --------------------------------------------------------------------------- layers


def test_qa_layer_and_gain_start_near_one_and_keep_their_sign():
    torch.manual_seed(0)
    q = torch.linspace(0, 1, 52)[:, None]
    s = QALayer(16, 8)(q)
    assert s.shape == (52, 8)
    # QALayer promises scales within ~1% of 1: s - 1 = sum of m=16 hidden units in
    # [0, 1.5] times N(0, 1e-3) weights, a std of at most 6e-3. Measured max here: 0.0085.
    assert ((s - 1).abs() < 0.025).all()
    gain = QPGain(16, 8)
    with torch.no_grad():
        gain.fc2.bias.fill_(-50.0)  # far beyond the bound: still positive and finite
    g = gain(q)
    assert (g > 0).all() and torch.isfinite(g).all()
    # QPGain's last weights are 10x larger (N(0, 0.01)): measured max |g - 1| here 0.076.
    assert ((QPGain(16, 8)(q) - 1).abs() < 0.2).all()
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        QALayer(4, 3)(torch.zeros(3))


@pytest.mark.parametrize("max_log_gain", [8.0, 2.0])
def test_qp_gain_is_softly_bounded_by_tanh(max_log_gain):
    q = torch.linspace(0, 1, 11)[:, None]
    gain = QPGain(4, 3, max_log_gain=max_log_gain)
    lo, hi = math.exp(-max_log_gain), math.exp(max_log_gain)
    with torch.no_grad():
        gain.fc2.weight.zero_()
        for bias, edge in ((50.0, hi), (-50.0, lo)):
            gain.fc2.bias.fill_(bias)
            g = gain(q)
            # within [exp(-b), exp(b)] (float32 rounding aside) and pressed against the edge
            assert (g >= lo * (1 - 1e-6)).all() and (g <= hi * (1 + 1e-6)).all(), g
            torch.testing.assert_close(g, torch.full_like(g, edge), rtol=1e-3, atol=0)
        # inside the bound the log-gain is b * tanh(l / b), not a hard clamp
        gain.fc2.bias.copy_(torch.tensor([0.5, 1.5, -1.0]))
        want = [math.exp(max_log_gain * math.tanh(v / max_log_gain)) for v in (0.5, 1.5, -1.0)]
        torch.testing.assert_close(gain(q), torch.tensor(want).expand(11, 3), rtol=1e-6, atol=0)


def test_lower_bound_lets_only_upward_gradients_through_below_the_bound():
    x = torch.tensor([-1.0, -1.0, 2.0], requires_grad=True)
    y = lower_bound(x, 0.5)
    assert torch.equal(y.detach(), torch.tensor([0.5, 0.5, 2.0]))
    y.backward(torch.tensor([-1.0, 1.0, 1.0]))
    # Below the bound: a negative gradient (descent would raise x) passes,
    # a positive one (would lower x further) is blocked.
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0]))


def test_gdn_parameters_stay_non_negative_and_igdn_inverts_gdn_when_linearised():
    torch.manual_seed(0)
    gdn, igdn = GDN(4), IGDN(4)
    with torch.no_grad():
        gdn.beta.fill_(-3.0)  # raw storage below the bound
        gdn.gamma.fill_(-3.0)
    assert (gdn.beta_reparam(gdn.beta) >= 1e-6 - 1e-12).all()
    assert (gdn.gamma_reparam(gdn.gamma) >= 0).all()
    x = torch.randn(2, 4, 5, 5) * 0.01
    # Tiny inputs: x^2 terms vanish and both reduce to x / sqrt(1) with beta = 1.
    assert torch.allclose(igdn(GDN(4)(x)), x, atol=1e-6)
    big = torch.randn(2, 4, 5, 5) * 10
    assert (GDN(4)(big).abs() < big.abs()).all()  # divisive: shrinks large responses


def test_masked_conv_is_causal():
    torch.manual_seed(0)
    conv = MaskedConv2d(2, 3, 5, padding=2, mask_type="A")
    x = torch.randn(1, 2, 7, 7)
    base = conv(x)
    i, j = 3, 4
    x2 = x.clone()
    x2[:, :, i, j] += 10.0
    diff = (conv(x2) - base).abs().sum(1)[0]
    changed = diff > 1e-6
    # An output may depend on an input only if that input comes earlier in raster order.
    for a in range(7):
        for b in range(7):
            if (a, b) <= (i, j):
                assert not changed[a, b], f"output {(a, b)} saw input {(i, j)}"
    assert changed.any()
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 1, 3, mask_type="C")


# --------------------------------------------------------------------------- entropy models


def test_estimate_bits_sums_minus_log2_over_each_image():
    # image 0: 1 + 2 + 3 + 0 + 1 + 1 = 8 bits; image 1: 10 + 0 + 4 + 2 + 1 + 7 = 24 bits
    p = [[0.5, 0.25, 0.125, 1.0, 0.5, 0.5], [2.0**-10, 1.0, 2.0**-4, 0.25, 0.5, 2.0**-7]]
    lik = torch.tensor(p).view(2, 2, 1, 3)
    want = torch.tensor([sum(-math.log2(v) for v in row) for row in p])
    assert want.tolist() == [8.0, 24.0]
    torch.testing.assert_close(estimate_bits(lik), want, rtol=1e-6, atol=0)
    g = torch.Generator().manual_seed(0)
    lik = torch.rand(3, 4, 5, 6, generator=g, dtype=torch.float64) * 0.999 + 1e-3
    want = [sum(-math.log2(v) for v in img.flatten().tolist()) for img in lik]
    torch.testing.assert_close(
        estimate_bits(lik), torch.tensor(want, dtype=lik.dtype), rtol=1e-12, atol=0
    )


def _assert_unit_uniform_noise(noise: torch.Tensor) -> None:
    """``noise`` looks like U(-0.5, 0.5) samples: full range, zero mean, variance 1/12."""
    noise = noise.detach().double().flatten()
    assert noise.abs().max() <= 0.5
    assert noise.max() > 0.45 and noise.min() < -0.45  # reaches both ends of the bin
    assert abs(noise.mean().item()) < 0.01
    # 1/12 = 0.0833; the sample variance of 1e5 draws is within ~3e-4 of it
    assert abs(noise.var().item() - 1 / 12) < 0.02 / 12, noise.var().item()


def test_training_noise_of_both_entropy_models_is_uniform_over_one_bin():
    torch.manual_seed(0)
    # Integer latents: k + n (|n| <= 0.5) rounds to at most k +- 0.5, both representable,
    # and (k + n) - k is exact, so the noise is recovered without float error.
    eb = EntropyBottleneck(4).train()
    z = torch.randint(-3, 4, (4, 4, 80, 80)).float()
    z_hat, _ = eb(z)
    _assert_unit_uniform_noise(z_hat - z)
    gc = GaussianConditional().train()
    y = torch.randint(-3, 4, (4, 4, 80, 80)).float()
    means = torch.randn_like(y)
    y_hat, _ = gc(y, torch.ones_like(y), means)
    _assert_unit_uniform_noise(y_hat - y)
    # the context model's path quantizes without means
    _assert_unit_uniform_noise(gc.quantize(y, noise=True) - y)


def test_entropy_bottleneck_is_a_normalised_pmf_and_rounds_around_medians():
    torch.manual_seed(0)
    eb = EntropyBottleneck(3)
    with torch.no_grad():
        for p in eb.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    values = torch.arange(-400, 401, dtype=torch.float32)
    grid = values.view(-1, 1, 1, 1).expand(-1, 3, 1, 1)
    pmf = eb.likelihood(grid)
    assert ((pmf > 0) & (pmf <= 1)).all()
    assert torch.allclose(pmf.sum(0).flatten(), torch.ones(3), atol=1e-3)

    z = torch.randn(2, 3, 4, 4) * 3
    eb.eval()
    z_hat, lik = eb(z)
    offset = z_hat - eb.medians.view(1, -1, 1, 1)
    assert torch.allclose(offset, offset.round(), atol=1e-5)
    assert lik.shape == z.shape
    eb.train()
    z_noisy, _ = eb(z)
    assert 0 < (z_noisy - z).abs().max() <= 0.5


def test_entropy_bottleneck_aux_loss_trains_only_the_quantiles():
    torch.manual_seed(0)
    eb = EntropyBottleneck(2)
    before = [p.detach().clone() for p in eb.matrices]
    # The initial density is wide (its tails lie near +-200), hence the big steps.
    opt = torch.optim.Adam(eb.parameters(), lr=2.0)
    losses = []
    for _ in range(100):
        loss = eb.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    for a, b in zip(before, eb.matrices, strict=True):
        assert torch.equal(a, b)
    q = eb.quantiles.detach()[:, 0]
    assert (q[:, 0] < q[:, 1]).all() and (q[:, 1] < q[:, 2]).all()


@pytest.mark.parametrize("scale, mean", [(0.05, 0.0), (0.7, 0.3), (4.0, -2.2)])
def test_gaussian_conditional_pmf_sums_to_one(scale, mean):
    gc = GaussianConditional()
    values = (torch.arange(-60, 61, dtype=torch.float32) + mean).view(1, -1, 1, 1)
    lik = gc.likelihood(values, torch.full_like(values, scale), torch.full_like(values, mean))
    assert abs(lik.sum().item() - 1.0) < 1e-4
    # The mode sits on the mean; the lower scale bound caps its mass below 1.
    assert lik.argmax().item() == 60
    assert lik.max().item() < 1.0


def test_gaussian_conditional_eval_rounds_relative_to_the_mean_with_ste():
    torch.manual_seed(0)
    gc = GaussianConditional().eval()
    y = (torch.randn(2, 3, 4, 4) * 3).requires_grad_()
    means = torch.rand(2, 3, 4, 4) - 0.5
    y_hat, lik = gc(y, torch.ones_like(y), means)
    assert torch.allclose(y_hat - means, (y_hat - means).round(), atol=1e-5)
    assert ((y_hat - y).abs() <= 0.5 + 1e-6).all()
    y_hat.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through
    with pytest.raises(ValueError, match="shape"):
        gc.likelihood(y_hat, torch.ones(3), means)


# --------------------------------------------------------------------------- NPP


@pytest.mark.parametrize("size", [(1, 1), (1, 17), (16, 5), (33, 47), (64, 64)])
def test_npp_shapes_and_range(npp, fused_ops, size):
    x = torch.rand(2, 3, *size)
    for train in (True, False):
        npp.train(train)
        with torch.no_grad():
            y = npp(x, torch.tensor([10, 45]))
        assert y.shape == x.shape
        assert y.min() >= 0 and y.max() <= 1
    npp.train()


def test_npp_untrained_is_close_to_identity(fused_ops):
    torch.manual_seed(1)
    model = NPP().eval()
    x = _smooth_image(40, 24)
    head = []
    hook = model.head.register_forward_hook(lambda mod, args, out: head.append(out))
    try:
        with torch.no_grad():
            y = model(x, 30)
    finally:
        hook.remove()
    # The U-Net branch, relu(head(.)), starts tiny: its last conv is 1/100 of PyTorch's
    # default init. Measured: 1.5e-4 for this seed, at most 1.6e-4 over seeds 0-7.
    assert F.relu(head[0]).abs().max() < 5e-4
    # The pixel branch is the identity up to its two QA scales (each within ~1% of 1, so
    # <= ~2% of a value in [0, 1]). Measured: 0.0079 for this seed, 0.0004-0.0089 over
    # seeds 0-7 and QPs 0/30/51.
    assert (y - x).abs().max() < 0.02


def test_npp_mixed_qps_per_image(npp, fused_ops):
    npp.eval()
    x = _smooth_image(32, 48).expand(2, -1, -1, -1)
    with torch.no_grad():
        mixed = npp(x, torch.tensor([5, 45]))
        lo = npp(x[:1], 5)
        hi = npp(x[1:], torch.tensor([45]))
    assert (mixed[0] - mixed[1]).abs().max() > 1e-3
    torch.testing.assert_close(mixed[:1], lo, atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[1:], hi, atol=1e-5, rtol=0)
    npp.train()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_npp_fused_path_matches_plain_pytorch(npp, fused_ops, device, monkeypatch):
    if device == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("needs a GPU")
        # TF32 convolutions would turn the fused ops' last-bit differences into 1e-3 ones
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
        npp = copy.deepcopy(npp).to(device)
    npp.train()
    x = torch.rand(2, 3, 40, 24).to(device)
    qp = torch.tensor([12, 40], device=device)

    def run(fn):
        npp.zero_grad()
        xi = x.clone().requires_grad_()
        out = fn(xi, qp)
        (out * torch.linspace(0, 1, out.numel(), device=device).view_as(out)).sum().backward()
        grads = {n: p.grad.clone() for n, p in npp.named_parameters()}
        return out.detach(), xi.grad.clone(), grads

    out_f, gx_f, g_f = run(npp.forward)
    out_r, gx_r, g_r = run(npp.reference_forward)
    torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx_f, gx_r, atol=1e-5, rtol=1e-4)
    for name in g_r:
        torch.testing.assert_close(g_f[name], g_r[name], atol=1e-5, rtol=1e-4, msg=name)
    flag = NPP(use_fused_ops=False).to(device)
    flag.load_state_dict(npp.state_dict())
    torch.testing.assert_close(flag.eval()(x, qp), npp.eval().reference_forward(x, qp))
    npp.train()


def test_npp_gradients_reach_every_parameter(fused_ops):
    torch.manual_seed(0)
    model = NPP().train()
    x = torch.rand(2, 3, 32, 32)
    y = model(x, torch.tensor([20, 40]))
    F.mse_loss(y, 1 - x).backward()
    _assert_all_grads(model)


def _npp_with_visible_unet(seed: int = 0) -> NPP:
    """An NPP whose U-Net branch matters: QP-dependent QA scales, the head's last conv at
    PyTorch's default init scale (not 1/100) and biases that make its ReLU cut."""
    torch.manual_seed(seed)
    model = NPP()
    _perturb_qa(model, seed=seed)
    last = model.head[-1]
    with torch.no_grad():
        last.weight.mul_(100.0)
        last.bias.copy_(torch.tensor([-0.3, 0.05, -0.1]))
        # BatchNorm running stats of one training batch: untrained ones (0 and 1) let the
        # features shrink level by level in eval mode, so the U-Net's bottom hardly counted
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.momentum = 1.0
        model.train()(torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed)), 25)
        for bn in bns:
            bn.momentum = 0.1
    return model


def _npp_from_notes(model: NPP, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
    """The NPP forward as docs/method.md#npp describes it, written out independently.

    Uses ``model``'s Conv/BN/Linear modules as primitives, but its own ReLUs, QA placement,
    skips and branch sum. ``x``'s sides must be multiples of 16 and >= 32 (no padding).
    """
    q = (qp.double() / 51).float().reshape(-1, 1)

    def qa(layer: QALayer) -> torch.Tensor:  # Linear(1->m) ReLU Linear(m->C) ReLU
        h = F.relu(F.linear(q, layer.fc1.weight, layer.fc1.bias))
        return F.relu(F.linear(h, layer.fc2.weight, layer.fc2.bias))[:, :, None, None]

    def cbr(block: torch.nn.Module, t: torch.Tensor) -> torch.Tensor:  # conv, BN, then ReLU
        return F.relu(block[1](block[0](t)))

    def down(level, t):  # 2 x [Conv3x3 BN ReLU] (the skip), Conv3x3/2 BN ReLU
        skip = cbr(level.body[1], cbr(level.body[0], t))
        return skip, cbr(level.down, skip)

    def up(level, t, skip):  # 2 x [Conv3x3 BN ReLU], ConvT3x3/2 BN ReLU, concat the skip
        t = cbr(level.body[1], cbr(level.body[0], t))
        return torch.cat([cbr(level.up, t), skip], dim=1)

    # pixel branch: Conv1x1, QA (before the ReLU), ReLU, Conv1x1, QA, ReLU
    pixel = F.relu(model.pixel_conv1(x) * qa(model.qa_pixel1))
    pixel = F.relu(model.pixel_conv2(pixel) * qa(model.qa_pixel2))
    # QA at the inputs of down levels 2-4 and the outputs of up levels 2-4
    skip1, d = down(model.down1, x)
    skip2, d = down(model.down2, d * qa(model.qa_down2))
    skip3, d = down(model.down3, d * qa(model.qa_down3))
    skip4, d = down(model.down4, d * qa(model.qa_down4))
    u = up(model.up1, d, skip4)
    u = up(model.up2, u, skip3) * qa(model.qa_up2)
    u = up(model.up3, u, skip2) * qa(model.qa_up3)
    u = up(model.up4, u, skip1) * qa(model.qa_up4)
    # head: Conv3x3 64->32 BN ReLU, Conv3x3 32->32 BN ReLU, Conv1x1 32->3, ReLU
    unet = F.relu(model.head[2](cbr(model.head[1], cbr(model.head[0], u))))
    return (pixel + unet).clamp(0, 1)


def _npp_from_notes_pixel_only(model: NPP, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
    empty = copy.deepcopy(model)
    with torch.no_grad():
        empty.head[-1].weight.zero_()
        empty.head[-1].bias.zero_()
    return _npp_from_notes(empty, x, qp)


@pytest.mark.parametrize("train", [False, True])
def test_npp_matches_the_architecture_of_the_method_notes(fused_ops, train):
    model = _npp_with_visible_unet().train(train)
    x = torch.rand(2, 3, 48, 32) * 0.6 + 0.1  # room below the clamp at 1
    qp = torch.tensor([8, 47])
    with torch.no_grad():
        want = _npp_from_notes(copy.deepcopy(model), x, qp)
        fused = model(x, qp)
        plain = model.reference_forward(x, qp)
    unet_part = want - _npp_from_notes_pixel_only(model, x, qp)
    assert unet_part.abs().max() > 0.05  # the U-Net branch is not negligible here
    torch.testing.assert_close(fused, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, want, atol=1e-5, rtol=0)


def test_npp_feeds_every_qa_layer_the_normalized_qp_of_each_image(fused_ops):
    model = _npp_with_visible_unet().eval()
    qp = torch.tensor([3, 29, 51])
    want = torch.tensor([[3 / 51], [29 / 51], [51 / 51]])
    for forward in (model.forward, model.reference_forward):
        seen: dict[str, list[torch.Tensor]] = {}
        hooks = [
            m.register_forward_pre_hook(
                lambda mod, args, name=name, seen=seen: seen.setdefault(name, []).append(
                    args[0].clone()
                )
            )
            for name, m in model.named_modules()
            if isinstance(m, QALayer)
        ]
        try:
            with torch.no_grad():
                forward(torch.rand(3, 3, 32, 32), qp)
        finally:
            for h in hooks:
                h.remove()
        assert len(seen) == 8, sorted(seen)
        for name, inputs in seen.items():
            assert len(inputs) == 1, f"{name} ran {len(inputs)} times"
            torch.testing.assert_close(inputs[0], want, rtol=1e-6, atol=0, msg=name)


def test_npp_qa_widths_and_parameter_count_follow_the_method_notes():
    # (m, C) of each QA layer, from docs/method.md#qa-layers
    widths = {
        "qa_pixel1": (16, 3),
        "qa_pixel2": (16, 3),
        "qa_down2": (32, 32),
        "qa_down3": (32, 64),
        "qa_down4": (64, 128),
        "qa_up2": (64, 256),
        "qa_up3": (64, 128),
        "qa_up4": (32, 64),
    }
    model = NPP()
    for name, (m, c) in widths.items():
        layer = getattr(model, name)
        shapes = (tuple(layer.fc1.weight.shape), tuple(layer.fc2.weight.shape))
        assert shapes == ((m, 1), (c, m)), f"{name}: {shapes}"

    def qa(m: int, c: int) -> int:  # Linear(1->m) + Linear(m->C), with biases
        return (m + m) + (m * c + c)

    def cbr(cin: int, cout: int) -> int:  # Conv3x3 without bias (BN follows) + BN affine
        return 9 * cin * cout + 2 * cout

    # U-Net widths 32/64/128/256; an up level's body keeps the width it receives and its
    # ConvT halves it, so that the concat with the skip gives the C of the next QA layer
    down_io = [(3, 32), (32, 64), (64, 128), (128, 256)]
    up_io = [(256, 256, 256), (512, 256, 128), (256, 128, 64), (128, 64, 32)]
    want = {
        "pixel_conv1": 3 * 3 + 3,
        "pixel_conv2": 3 * 3 + 3,
        "head": cbr(64, 32) + cbr(32, 32) + (32 * 3 + 3),
    }
    want.update({name: qa(m, c) for name, (m, c) in widths.items()})
    for i, (cin, c) in enumerate(down_io, 1):
        want[f"down{i}"] = cbr(cin, c) + 2 * cbr(c, c)
    for i, (cin, cmid, cout) in enumerate(up_io, 1):
        want[f"up{i}"] = cbr(cin, cmid) + cbr(cmid, cmid) + cbr(cmid, cout)
    got = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == sum(want.values())


def test_npp_pads_by_replicating_the_border(fused_ops):
    model = _npp_with_visible_unet().eval()
    x = torch.rand(1, 3, 37, 45)  # padded inside to 48 x 48
    replicated = F.pad(x, (0, 3, 0, 11), mode="replicate")
    zeros = F.pad(x, (0, 3, 0, 11))
    with torch.no_grad():
        got = model(x, 30)
        want = model(replicated, 30)[:, :, :37, :45]
        zero_padded = model(zeros, 30)[:, :, :37, :45]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # the check can tell: zero padding would change the last rows and columns
    assert (zero_padded - want).abs()[:, :, -4:, :].max() > 1e-3
    assert (zero_padded - want).abs()[:, :, :, -4:].max() > 1e-3


@pytest.mark.parametrize("size", [(1, 1), (17, 5), (5, 17), (16, 16), (20, 40)])
def test_npp_trains_on_one_small_image(fused_ops, size):
    # BatchNorm in training mode needs more than one value per channel; with one image
    # the U-Net's bottom only has that if the padded sides are at least 32.
    torch.manual_seed(0)
    model = NPP().train()
    x = torch.rand(1, 3, *size)
    for forward in (model.forward, model.reference_forward):
        y = forward(x, 30)
        assert y.shape == x.shape and torch.isfinite(y).all()
        y.sum().backward()


def test_npp_state_dict_round_trip(npp, fused_ops):
    npp.eval()
    buf = io.BytesIO()
    torch.save(npp.state_dict(), buf)
    buf.seek(0)
    other = NPP().eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(1, 3, 20, 36)
    with torch.no_grad():
        assert torch.equal(npp(x, 33), other(x, 33))
    partial = {k: v for k, v in npp.state_dict().items() if not k.startswith("qa_up4")}
    with pytest.raises(ValueError, match="qa_up4"):
        other.load_state_dict(partial)
    npp.train()


# --------------------------------------------------------------------------- proxy


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (33, 47), (64, 64), (65, 3)])
def test_proxy_shapes_and_bits(context, size):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context)
    x = torch.rand(2, 3, *size)
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            out = model(x, torch.tensor([20, 45]))
        assert isinstance(out, ProxyOutput)
        assert out.x_hat.shape == x.shape
        assert out.bits.shape == (2,)
        assert (out.bits > 0).all() and torch.isfinite(out.bits).all()
        hp, wp = (math.ceil(s / 64) for s in size)
        assert out.likelihoods["y"].shape == (2, PM, 4 * hp, 4 * wp)
        assert out.likelihoods["z"].shape == (2, PN, hp, wp)
        for lik in out.likelihoods.values():
            assert ((lik > 0) & (lik <= 1)).all()


@pytest.mark.parametrize("context", [False, True])
def test_proxy_eval_deterministic_train_noisy(context):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x, 30), model(x, 30)
        assert not torch.equal(a.bits, b.bits)
        model.eval()
        c, d = model(x, 30), model(x, 30)
    assert torch.equal(c.bits, d.bits) and torch.equal(c.x_hat, d.x_hat)


@pytest.mark.parametrize("context", [False, True])
def test_proxy_gradients_reach_every_parameter(context):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x, torch.tensor([15, 40]))
    loss = out.bits.mean() / x[0, 0].numel() + 100 * F.mse_loss(out.x_hat, x) + model.aux_loss()
    loss.backward()
    _assert_all_grads(model)


@pytest.mark.parametrize("context", [False, True])
def test_proxy_bits_are_the_rate_of_its_likelihoods(context):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context)
    with torch.no_grad():
        model.gain_y.fc2.bias.fill_(math.log(16.0))  # non-trivial rounded latents
    x = torch.rand(2, 3, 40, 72)
    for train in (True, False):
        with torch.no_grad():
            out = model.train(train)(x, torch.tensor([12, 40]))
        # bits per image = -sum log2(likelihood) over every y and z element of that image
        want = sum(-torch.log2(lik.double()).sum(dim=(1, 2, 3)) for lik in out.likelihoods.values())
        assert (want > 100).all()
        torch.testing.assert_close(out.bits.double(), want, rtol=1e-5, atol=0)


def _set_gain(gain: QPGain, log_gain_at_0: float, log_gain_at_1: float) -> None:
    """Make ``gain``'s pre-tanh log-gain exactly linear in the normalized QP."""
    with torch.no_grad():
        gain.fc1.weight.fill_(1.0)  # every hidden unit = relu(q) = q
        gain.fc1.bias.zero_()
        gain.fc2.weight.fill_((log_gain_at_1 - log_gain_at_0) / gain.m)
        gain.fc2.bias.fill_(log_gain_at_0)


@pytest.mark.parametrize("context", [False, True])
def test_proxy_hyper_synthesis_sees_z_at_unit_scale_whatever_the_qp(context):
    # gain_z only sets the step (1 / gain_z) with which z is quantized: h_s gets
    # z_hat / gain_z, i.e. h_a(y) up to half a step, so with a fine step its means and
    # scales must not depend on how large gain_z is.
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context).eval()
    _set_gain(model.gain_y, 3.0, 3.0)  # y's step is the same at every QP ...
    _set_gain(model.gain_z, 3.0, 6.0)  # ... z's step is 1/17.6 at QP 0 and 1/161 at QP 51
    with torch.no_grad():
        model.h_a[-1].weight.mul_(30.0)  # h_a(y) of order 1, so that h_s has work to do
    q = normalize_qp(torch.tensor([0, 51]), 2)
    with torch.no_grad():
        gz = model.gain_z(q)
        assert gz[0, 0] < 20 and gz[1, 0] > 150
    hyper = []
    hook = model.h_s.register_forward_hook(lambda mod, args, out: hyper.append(out))
    x = torch.rand(1, 3, 64, 64).expand(2, -1, -1, -1)
    try:
        with torch.no_grad():
            out = model(x, torch.tensor([0, 51]))
            y = model.g_a(x) * model.gain_y(q)[:, :, None, None]
            h = model.h_a(y)
            assert h.abs().max() > 1.0
            at_zero = model.h_s(torch.zeros_like(h))
            unquantized = model.h_s(h) - at_zero
    finally:
        hook.remove()
    # Compare the part of the means/scales that depends on z. Measured: off by <= 10% of
    # its range at QP 0 and <= 0.6% at QP 51 over seeds 0-2; h_s fed z_hat instead of
    # z_hat / gain_z was off by 14x-200x.
    spread = unquantized.abs().max().item()
    for i in range(2):
        torch.testing.assert_close(
            hyper[0][i] - at_zero[i], unquantized[i], atol=0.25 * spread, rtol=0
        )
    # and so the rate of y (whose step does not depend on the QP) is the same at both QPs
    y_bits = estimate_bits(out.likelihoods["y"])
    torch.testing.assert_close(y_bits[0], y_bits[1], rtol=1e-4, atol=0)


def test_proxy_context_model_sees_only_the_quantized_latents():
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=True)
    _set_gain(model.gain_y, 0.0, 0.0)  # gain_y == 1: y_hat is round(y) / noisy y itself
    g = torch.Generator().manual_seed(0)
    integers = torch.randint(-3, 4, (1, PM, 4, 4), generator=g).float()
    offset = {"y": None}
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        # replace g_a's output by integers + an offset the test controls
        model.g_a.register_forward_hook(lambda mod, args, out: integers + offset["y"]),
        model.context_prediction.register_forward_hook(
            lambda mod, args, out: seen.update(ctx_in=args[0], ctx_out=out)
        ),
        model.g_s.register_forward_pre_hook(lambda mod, args: seen.update(g_s_in=args[0])),
    ]
    x = torch.rand(1, 3, 64, 64)
    try:
        ctx = []
        model.eval()
        for seed in (1, 2):
            # less than half a step either way: round(y) stays the same integers
            d = torch.rand(integers.shape, generator=torch.Generator().manual_seed(seed))
            offset["y"] = (d - 0.5) * 0.8
            with torch.no_grad():
                model(x, 30)
            assert torch.equal(seen["ctx_in"], integers)
            assert torch.equal(seen["ctx_in"], seen["g_s_in"])  # the same y_hat
            ctx.append(seen["ctx_out"])
        assert torch.equal(ctx[0], ctx[1])

        model.train()  # y_hat = y + noise: the context sees the noisy y, as g_s does
        with torch.no_grad():
            model(x, 30)
        noise = seen["ctx_in"] - (integers + offset["y"])
        assert (noise.abs() <= 0.5 + 1e-6).all() and (noise.abs() > 1e-3).any()
        assert torch.equal(seen["ctx_in"], seen["g_s_in"])
    finally:
        for h in hooks:
            h.remove()


def test_proxy_eval_mode_is_differentiable_with_respect_to_the_input():
    # BPGProxyFn runs the proxy in eval mode inside its backward.
    torch.manual_seed(0)
    model = Proxy(PN, PM).eval()
    with torch.no_grad():
        model.gain_y.fc2.bias.fill_(math.log(16.0))  # make the rounded latents non-trivial
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    out = model(x, 30)
    (out.bits.sum() + out.x_hat.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_proxy_coarser_gain_gives_fewer_bits_and_mixed_qps_are_per_image():
    torch.manual_seed(0)
    model = Proxy(PN, PM).eval()
    x = torch.rand(2, 3, 32, 32)
    bits = []
    with torch.no_grad():
        for gain in (64.0, 16.0, 4.0):  # step 1/64 -> 1/4
            model.gain_y.fc2.bias.fill_(math.log(gain))
            bits.append(model(x, 30).bits)
        assert (bits[0] > bits[1]).all() and (bits[1] > bits[2]).all()

        # Make the gain depend strongly on the QP, then check per-image QPs.
        model.gain_y.fc2.weight.normal_(0, 2.0)
        mixed = model(x, torch.tensor([5, 45]))
        alone = torch.cat([model(x[:1], 5).bits, model(x[1:], 45).bits])
        swapped = model(x, torch.tensor([45, 5])).bits
    torch.testing.assert_close(mixed.bits, alone, rtol=1e-5, atol=1e-3)
    assert (mixed.bits - swapped).abs().min() > 1.0


def test_proxy_learns_coarser_quantization_for_higher_qp():
    # Train only the QP gains with a rate-distortion loss whose lambda falls
    # with the QP: the gains (1 / step) must end up larger at QP 10 than at 45.
    torch.manual_seed(0)
    model = Proxy(PN, PM)
    x = torch.rand(2, 3, 32, 32)
    gains = [*model.gain_y.parameters(), *model.gain_z.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in gains:
        p.requires_grad_(True)
    opt = torch.optim.Adam(gains, lr=0.05)
    qp = torch.tensor([10, 45])
    lam = 0.0018 * 2 ** ((45 - qp.float()) / 3)
    for _ in range(50):
        out = model(x, qp)
        mse = (out.x_hat - x).pow(2).flatten(1).mean(1)
        loss = (out.bits / 1024 + lam * 255**2 * mse).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        g = model.gain_y(normalize_qp(qp, 2)).mean(1)
        b10, b45 = model(x, 10).bits, model(x, 45).bits
    assert g[0] > 2 * g[1]
    assert (b10 > b45).all()


def test_proxy_overfits_one_image():
    torch.manual_seed(0)
    model = Proxy(16, 24)
    x = _smooth_image(32, 32, seed=3)
    lam = 0.01

    def rd_loss() -> torch.Tensor:
        out = model(x, 30)
        return out.bits.mean() / x[0, 0].numel() + lam * 255**2 * F.mse_loss(out.x_hat, x)

    model.eval()
    with torch.no_grad():
        start = rd_loss().item()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = rd_loss() + model.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = rd_loss().item()
    assert end < 0.5 * start


@pytest.mark.parametrize("context", [False, True])
def test_proxy_state_dict_round_trip(context):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context).eval()
    with torch.no_grad():
        model.gain_y.fc2.bias.fill_(math.log(16.0))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(1)
    other = Proxy(PN, PM, context=context).eval()
    other.load_state_dict(state)
    rebuilt = Proxy.from_state_dict(state).eval()
    assert rebuilt.config == model.config
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        ref = model(x, 27)
        for m in (other, rebuilt):
            out = m(x, 27)
            assert torch.equal(out.x_hat, ref.x_hat) and torch.equal(out.bits, ref.bits)


@pytest.mark.parametrize("context", [False, True])
def test_proxy_config_from_state_dict_finds_a_non_default_gain_hidden(context):
    torch.manual_seed(0)
    model = Proxy(PN, PM, context=context, gain_hidden=5, entropy_filters=(3, 2, 3, 3)).eval()
    state = model.state_dict()
    want = {
        "N": PN, "M": PM, "context": context, "gain_hidden": 5, "entropy_filters": [3, 2, 3, 3]
    }  # fmt: skip
    assert Proxy.config_from_state_dict(state) == want
    rebuilt = Proxy.from_state_dict(state).eval()
    assert rebuilt.config == want == model.config
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(rebuilt(x, 40).bits, model(x, 40).bits)


@pytest.mark.parametrize("make", [lambda: NPP(), lambda: Proxy(PN, PM)], ids=["npp", "proxy"])
def test_non_strict_loading_allows_missing_keys_but_not_wrong_shapes(make):
    torch.manual_seed(0)
    source, target = make(), make()
    state = source.state_dict()
    # strict=False: missing (and unexpected) keys are allowed, present ones are loaded
    name = next(k for k, v in state.items() if v.dim() == 4)
    value = state[name] + 1.0  # differs from what either model holds
    partial = {name: value, "not_a_key": torch.zeros(1)}
    target.load_state_dict(partial, strict=False)
    assert torch.equal(target.state_dict()[name], value)
    # ... but a tensor of the wrong shape is still refused, naming its key
    bad = dict(partial)
    bad[name] = value[:, :1].clone()
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        target.load_state_dict(bad, strict=False)


def test_proxy_mismatched_state_dict_raises_a_clear_error():
    state = Proxy(PN, PM).state_dict()
    with pytest.raises(ValueError, match=r"'g_a\.6\.(weight|bias)'.*M=16.*M=12"):
        Proxy(PN, 16).load_state_dict(state)
    with pytest.raises(ValueError, match=r"missing keys \['context_prediction"):
        Proxy(PN, PM, context=True).load_state_dict(state)
    with pytest.raises(ValueError, match=r"'g_a\.0\.(weight|bias)'"):
        Proxy(PN + 1, PM).load_state_dict(state)


# --------------------------------------------------------------------------- torch.compile


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare_compiled(model: torch.nn.Module, loss_fn, *inputs) -> None:
    """One fwd+bwd under torch.compile(fullgraph=True) is as accurate as eager float32.

    ``loss_fn(model, *inputs)``. Truth is eager float64 on a copy of the model: inductor
    re-associates sums, so compiled and eager float32 differ by rounding, and the check is
    that the compiled error stays of the eager error's size.
    """
    ref = copy.deepcopy(model).double()
    truth_loss = loss_fn(ref, *(t.double() if t.is_floating_point() else t for t in inputs))
    truth_loss.backward()
    truth = _grads(ref)

    model.zero_grad()
    loss = loss_fn(model, *inputs)
    loss.backward()
    eager = _grads(model)
    model.zero_grad()
    loss_c = torch.compile(functools.partial(loss_fn, model), fullgraph=True)(*inputs)
    loss_c.backward()
    compiled = _grads(model)

    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
    assert eager.keys() == compiled.keys() == truth.keys() and len(eager) > 10
    for name, t in truth.items():
        t = t.float()
        scale = t.abs().max().item() + 1e-12
        err_e = (eager[name] - t).abs().max().item()
        err_c = (compiled[name] - t).abs().max().item()
        # a wrong fake kernel or dropped term is off by the gradient's own size; the slack
        # covers BatchNorm gradients that are small sums of cancelling terms
        assert err_c <= 4 * err_e + 2e-2 * scale, (
            f"{name}: compiled gradient off by {err_c:g}, eager by {err_e:g} (scale {scale:g})"
        )


@pytest.mark.parametrize("train", [True, False])
def test_npp_compiles_fullgraph(train: bool) -> None:
    torch.manual_seed(0)
    npp = NPP().train(train)
    _perturb_qa(npp)
    x = torch.rand(2, 3, 37, 45)  # padded inside: 48x48
    qp = torch.tensor([22, 41])

    def loss_fn(m: NPP, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        y = m(x, qp)
        return ((y - x) ** 2).mean() + y.mean()

    _compare_compiled(npp, loss_fn, x, qp)


def test_proxy_compiles_fullgraph() -> None:
    torch.manual_seed(0)
    proxy = Proxy(N=PN, M=PM).eval()
    x = torch.rand(2, 3, 32, 48)
    qp = torch.tensor([25.0, 40.0])

    def loss_fn(m: Proxy, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
        out = m(x, qp)
        return ((out.x_hat - x) ** 2).mean() + 1e-3 * out.bits.mean()

    _compare_compiled(proxy, loss_fn, x, qp)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_proxy_rate_stays_finite_and_accurate_under_autocast(dtype: torch.dtype) -> None:
    """The entropy models and GDN run in float32 whatever autocast is on.

    In float16 a tail likelihood underflowed to 0 (the 1e-9 bound is 0 there too), which
    made the rate infinite, and a sum of bits past 65504 overflowed.
    """
    torch.manual_seed(0)
    proxy = Proxy(N=16, M=24).eval()
    x = torch.rand(2, 3, 64, 96)
    ref = proxy(x, 30).bits
    x_in = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        out = proxy(x_in, 30)
    assert out.bits.dtype == torch.float32 and torch.isfinite(out.bits).all()
    torch.testing.assert_close(out.bits, ref, rtol=0.02, atol=0)
    (out.bits.sum() + out.x_hat.float().sum()).backward()
    assert torch.isfinite(x_in.grad).all()


def test_half_precision_likelihoods_keep_their_floor() -> None:
    gc = GaussianConditional().eval()
    y = torch.tensor([[[[0.0, 3.0, 5.0, 20.0]]]], dtype=torch.float16)
    lik = gc.likelihood(y, torch.full_like(y, 0.2))
    # the floor, up to float32's rounding of exp(log(1e-9))
    assert lik.dtype == torch.float32 and (lik >= 0.9999e-9).all()
    eb = EntropyBottleneck(1).eval()
    z = torch.tensor([[[[0.0, 300.0, 3000.0]]]], dtype=torch.float16)
    assert (eb.likelihood(z) >= 0.9999e-9).all()
    assert torch.isfinite(estimate_bits(lik)).all()


def test_gdn_of_a_large_value_under_float16_autocast_is_finite() -> None:
    """float16's x * x overflowed at 256, and 0 * inf made every channel of the pixel NaN."""
    gdn, igdn = GDN(4), IGDN(4)
    x = torch.zeros(1, 4, 2, 2)
    x[0, 0] = 300.0
    x[0, 1] = 0.5
    for layer in (gdn, igdn):
        want = layer(x)
        with torch.autocast("cpu", dtype=torch.float16):
            got = layer(x.half())
        assert torch.isfinite(got[0, 1:]).all(), layer
        torch.testing.assert_close(got[0, 1:].float(), want[0, 1:], rtol=1e-3, atol=1e-3)


def test_the_rate_keeps_a_gradient_far_from_the_mean() -> None:
    """In linear space the bin mass and its gradient underflow a dozen scales out: such
    elements cost a flat ~30 bits and told the scale and the mean nothing."""
    gc = GaussianConditional().eval()
    y = torch.tensor([[[[0.3, 1.5, 3.0, 6.0]]]])
    scales = torch.full_like(y, 0.11, requires_grad=True)
    means = torch.zeros_like(y, requires_grad=True)
    bits = estimate_bits(gc.likelihood(y, scales, means))
    bits.sum().backward()
    assert torch.isfinite(bits).all()
    assert (scales.grad[..., 1:] < 0).all(), scales.grad  # wider: fewer bits out there
    assert (means.grad[..., 1:] < 0).all(), means.grad  # moving the mean towards y helps


def test_log_space_likelihood_matches_the_gaussian_bin_mass() -> None:
    gc = GaussianConditional().eval()
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 8, 6, 6, generator=g, dtype=torch.float64) * 3
    scales = torch.rand(4, 8, 6, 6, generator=g, dtype=torch.float64) * 5 + 0.11
    means = torch.randn(4, 8, 6, 6, generator=g, dtype=torch.float64)
    normal = torch.distributions.Normal(means, scales)
    want = (normal.cdf(y + 0.5) - normal.cdf(y - 0.5)).clamp_min(1e-9)
    got = gc.likelihood(y, scales, means)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-15)


def test_the_factorized_rate_keeps_a_gradient_in_its_tails() -> None:
    torch.manual_seed(0)
    eb = EntropyBottleneck(2).eval()
    z = torch.tensor([[[[0.0, 400.0, 1500.0]], [[0.0, -400.0, -1500.0]]]], requires_grad=True)
    lik = eb.likelihood(z)
    bits = estimate_bits(lik)
    bits.sum().backward()
    assert torch.isfinite(bits).all() and lik[0, 0, 0, 2] < 1.01e-9  # at the floor
    # far out, moving z back towards the bulk of the density costs fewer bits; in linear
    # space this gradient was 1e-10 at 400 and exactly 0 at 1500
    assert (z.grad[0, 0, 0, 1:] > 0.01).all() and (z.grad[0, 1, 0, 1:] < -0.01).all(), z.grad
