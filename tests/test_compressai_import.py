"""A proxy started from CompressAI's mean-scale hyperprior codes as that model does."""

from __future__ import annotations

import pytest
import torch

from npp_ext.models.compressai_import import proxy_from_compressai, proxy_state_from_compressai

compressai_models = pytest.importorskip("compressai.models")


def test_mapped_weights_give_compressais_reconstruction_and_bits():
    torch.manual_seed(0)
    theirs = compressai_models.MeanScaleHyperprior(N=16, M=24).eval()
    with torch.no_grad():  # away from the initialisation, so every mapped weight matters
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ours = proxy_from_compressai(theirs.state_dict()).eval()
    assert (ours.N, ours.M) == (16, 24)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref, got = theirs(x), ours(x, 30)
        other_qp = ours(x, 45)
    ref_bits = sum((-torch.log2(v)).flatten(1).sum(1) for v in ref["likelihoods"].values())
    torch.testing.assert_close(got.x_hat, ref["x_hat"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.bits, ref_bits, rtol=1e-4, atol=1e-3)
    assert torch.equal(other_qp.bits, got.bits)  # gains at 1: every QP codes alike


def test_old_names_and_wrong_models_are_handled():
    torch.manual_seed(0)
    state = compressai_models.MeanScaleHyperprior(N=8, M=12).state_dict()
    old = {
        k.replace("entropy_bottleneck.matrices.", "entropy_bottleneck._matrix")
        .replace("entropy_bottleneck.biases.", "entropy_bottleneck._bias")
        .replace("entropy_bottleneck.factors.", "entropy_bottleneck._factor"): v
        for k, v in state.items()
    }
    assert proxy_state_from_compressai(old).keys() == proxy_state_from_compressai(state).keys()
    joint = compressai_models.JointAutoregressiveHierarchicalPriors(N=8, M=12).state_dict()
    with pytest.raises(ValueError, match="context model"):
        proxy_state_from_compressai(joint)
    with pytest.raises(ValueError, match="not a CompressAI"):
        proxy_state_from_compressai({"x": torch.zeros(1)})
