"""x265_params that the encoder cannot honour are refused with a message naming them."""

from __future__ import annotations

import numpy as np
import pytest

from npp_ext import bpg

IMG = np.zeros((16, 16, 3), np.uint8)
BIG = np.zeros((72, 80, 3), np.uint8)  # 64x64 CTUs


@pytest.mark.parametrize("params", ["no-sao\0preset=slow", "\0", "rd=3\0", "sao=0:rd\0=2"])
def test_a_nul_character_is_refused_not_cut(params):
    """'no-sao\\0preset=slow' used to act as 'no-sao'."""
    with pytest.raises(ValueError, match="NUL"):
        bpg.encode(IMG, 30, x265_params=params)
    with pytest.raises(ValueError, match="NUL"):
        bpg.encode_batch([IMG, IMG], 30, x265_params=params, threads=2)
    with pytest.raises(ValueError, match="NUL"):
        bpg.roundtrip_batch([IMG, IMG], 30, x265_params=params, threads=2)


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ("rd=99", "rd=99"),
        ("max-tu-size=64", "max-tu-size=64"),
        ("no-sao:rd=99", "rd=99"),
        ("rd=3:max-tu-size=64:no-sao", "max-tu-size=64"),
        ("rdoq-level=7", "rdoq-level=7"),
    ],
)
def test_the_parameter_x265_refuses_is_named(params, culprit):
    before = [bpg.encode(IMG, 30, x265_params="no-sao"), bpg.encode(BIG, 30)]
    for img in (IMG, BIG):
        with pytest.raises(bpg.BPGError, match=f"parameter '{culprit}'"):
            bpg.encode(img, 30, x265_params=params)
    # the probes leave the encoders as they were: same bytes afterwards
    assert [bpg.encode(IMG, 30, x265_params="no-sao"), bpg.encode(BIG, 30)] == before


def test_valid_values_of_the_same_names_are_accepted():
    for img in (IMG, BIG):
        for params in ("rd=6", "max-tu-size=16", "rdoq-level=2", "no-sao:rd=1:max-tu-size=8"):
            assert bpg.decode(bpg.encode(img, 30, x265_params=params)).shape == img.shape
