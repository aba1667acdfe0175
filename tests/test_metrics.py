"""PSNR, BD-rate and rank correlation on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npp_ext.metrics import bd_rate, pareto_points, psnr, spearman

RATES = [0.2, 0.3, 0.55, 0.8, 1.4]
QUALITY = [30.0, 32.0, 35.0, 37.0, 40.0]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25])
def test_a_curve_scaled_in_rate_has_that_bd_rate(method, factor):
    got = bd_rate(RATES, QUALITY, [r * factor for r in RATES], QUALITY, method=method)
    assert got == pytest.approx((factor - 1) * 100, abs=1e-9)


def test_a_curve_shifted_in_quality_saves_bits():
    better = [q + 1.0 for q in QUALITY]  # the same bits buy 1 dB more
    assert bd_rate(RATES, QUALITY, RATES, better) < -5


def test_no_overlap_or_too_few_points_is_nan():
    assert math.isnan(bd_rate(RATES, QUALITY, RATES, [q + 100 for q in QUALITY]))
    assert math.isnan(bd_rate(RATES[:1], QUALITY[:1], RATES, QUALITY))
    assert math.isnan(bd_rate(RATES[:3], QUALITY[:3], RATES, QUALITY, method="cubic"))
    with pytest.raises(ValueError, match="method"):
        bd_rate(RATES, QUALITY, RATES, QUALITY, method="linear")


def test_pareto_points_drop_points_that_buy_nothing():
    r, q = pareto_points([0.5, 0.1, 0.3, 0.9, 0.7], [0.8, 0.5, 0.8, 0.95, 0.7])
    assert r.tolist() == [0.1, 0.3, 0.9] and q.tolist() == [0.5, 0.8, 0.95]
    r, _ = pareto_points([0.1, float("nan"), 0.0], [0.5, 0.6, 0.7])
    assert r.tolist() == [0.1]


def test_psnr_and_spearman():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[0, 0, 0] = 255
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, b[:2])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
