"""Checkpoints: what they record, loading in eval mode, warnings for other settings."""

from __future__ import annotations

import warnings

import pytest
import torch

from npp_ext import checkpoint
from npp_ext.models import NPP, Proxy
from npp_ext.options import EncodeOptions


def _npp_with_changed_weights() -> NPP:
    torch.manual_seed(3)
    npp = NPP()
    with torch.no_grad():
        for p in npp.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return npp.train()


def test_npp_round_trips_with_its_settings(tmp_path):
    npp = _npp_with_changed_weights()
    path = tmp_path / "npp.pt"
    codec = EncodeOptions(chroma="444", level=5)
    checkpoint.save(path, "npp", npp, codec=codec, qp_range=(25, 44), task="t", config={"lr": 1e-4})
    loaded = NPP.from_checkpoint(path)
    assert not loaded.training
    x = torch.rand(2, 3, 40, 48)
    npp.eval()
    torch.testing.assert_close(loaded(x, 30), npp(x, 30), rtol=0, atol=0)
    assert loaded.checkpoint["codec"] == codec.kwargs()
    assert loaded.checkpoint["qp_range"] == [25, 44] and loaded.checkpoint["task"] == "t"
    assert loaded.checkpoint["config"] == {"lr": 1e-4}
    assert len(checkpoint.file_hash(path)) == 64


def test_proxy_round_trips_with_its_size(tmp_path):
    proxy = Proxy(N=8, M=12, context=True)
    path = tmp_path / "proxy.pt"
    checkpoint.save(path, "proxy", proxy, codec=EncodeOptions(), qp_range=(22, 47))
    loaded = Proxy.from_checkpoint(path)
    assert (loaded.N, loaded.M, loaded.context) == (8, 12, True) and not loaded.training
    for k, v in proxy.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_other_settings_warn_and_the_trained_ones_do_not(tmp_path):
    path = tmp_path / "npp.pt"
    checkpoint.save(path, "npp", NPP(), codec=EncodeOptions(), qp_range=(22, 47))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NPP.from_checkpoint(path, codec=EncodeOptions(), qp=22)
    with pytest.warns(UserWarning, match=r"trained for chroma '420' \(used now: '444'\)"):
        NPP.from_checkpoint(path, codec=EncodeOptions(chroma="444"))
    with pytest.warns(UserWarning, match="trained for QP 22..47, used now at QP 50"):
        NPP.from_checkpoint(path, qp=50)


def test_wrong_files_are_clear_errors(tmp_path):
    path = tmp_path / "npp.pt"
    checkpoint.save(path, "npp", NPP(), codec=EncodeOptions(), qp_range=(22, 47))
    with pytest.raises(ValueError, match="kind 'npp', not 'proxy'"):
        Proxy.from_checkpoint(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable npp_ext checkpoint"):
        NPP.from_checkpoint(junk)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an npp_ext checkpoint"):
        NPP.from_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        NPP.from_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="low <= high"):
        checkpoint.save(path, "npp", NPP(), codec=EncodeOptions(), qp_range=(40, 30))
