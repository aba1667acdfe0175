"""Numbers of rate-quality evaluation: PSNR, Bjontegaard delta rate, rank correlation.

BD-rate (Bjontegaard, VCEG-M33) compares two rate-quality curves: the average difference
of log-rate over the quality range both cover, as a percentage (negative: the test needs
fewer bits than the anchor for the same quality). "Quality" can be PSNR or a task's
accuracy (bits at equal accuracy). Curves are interpolated with a monotone piecewise
cubic (PCHIP, Fritsch-Carlson), as the later Bjontegaard tools do, or with the original
cubic polynomial fit. Details and the reasoning: ``docs/method.md#bd-rate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_rate", "pareto_points", "psnr", "spearman"]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images (inf when equal)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {a64.shape} and {b64.shape}")
    mse = float(np.mean((a64 - b64) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def pareto_points(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, ...]:
    """The points of a curve worth their bits: sorted by rate, each better than every
    cheaper one. (A task's accuracy is noisy and saturates: a point that costs more bits
    for no better accuracy says nothing about the trade-off.) Returns (rates, quality)."""
    r, q = np.asarray(rates, np.float64), np.asarray(quality, np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError("rates and quality must be 1-d sequences of one length")
    keep_r, keep_q = [], []
    for i in np.argsort(r, kind="stable"):
        if not math.isfinite(r[i]) or not math.isfinite(q[i]) or r[i] <= 0:
            continue
        if not keep_q or q[i] > keep_q[-1]:
            keep_r.append(r[i])
            keep_q.append(q[i])
    return np.array(keep_r), np.array(keep_q)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    if len(x) == 2:
        return np.full_like(y, delta[0])
    for k in range(1, len(x) - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for k, (i0, i1) in ((0, (0, 1)), (-1, (-1, -2))):
        # one-sided three-point ends, kept shape-preserving
        hk, hn = h[i0], h[i1]
        dk, dn = delta[i0], delta[i1]
        end = ((2 * hk + hn) * dk - hk * dn) / (hk + hn)
        if np.sign(end) != np.sign(dk):
            end = 0.0
        elif np.sign(dk) != np.sign(dn) and abs(end) > abs(3 * dk):
            end = 3 * dk
        d[k] = end
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] of the PCHIP interpolant of (x, y) (x increasing)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        # Hermite cubic on the segment, integrated with Simpson's rule on sub-intervals
        # (exact for cubics).
        ts = np.linspace((a - x[k]) / h, (b - x[k]) / h, 3)
        t2, t3 = ts**2, ts**3
        vals = (
            (2 * t3 - 3 * t2 + 1) * y[k]
            + (t3 - 2 * t2 + ts) * h * d[k]
            + (-2 * t3 + 3 * t2) * y[k + 1]
            + (t3 - t2) * h * d[k + 1]
        )
        total += (b - a) / 6 * (vals[0] + 4 * vals[1] + vals[2])
    return total


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    *,
    method: str = "pchip",
) -> float:
    """Bjontegaard delta rate of the test curve against the anchor, in percent.

    Each curve's points are reduced to its Pareto points (:func:`pareto_points`); log10 of
    the rate is interpolated as a function of quality (``method`` "pchip", or "cubic":
    a least-squares cubic polynomial, as in VCEG-M33, which needs 4 points) and averaged
    over the quality interval both curves cover. NaN when a curve has fewer than two
    points or the intervals do not overlap.
    """
    if method not in ("pchip", "cubic"):
        raise ValueError(f"method must be 'pchip' or 'cubic', got {method!r}")
    ra, qa = pareto_points(anchor_rates, anchor_quality)
    rt, qt = pareto_points(test_rates, test_quality)
    need = 4 if method == "cubic" else 2
    if len(ra) < need or len(rt) < need:
        return math.nan
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return math.nan
    if method == "pchip":
        ia = _pchip_integral(qa, np.log10(ra), lo, hi)
        it = _pchip_integral(qt, np.log10(rt), lo, hi)
    else:
        pa, pt = (
            np.polyint(np.polyfit(qa, np.log10(ra), 3)),
            np.polyint(np.polyfit(qt, np.log10(rt), 3)),
        )
        ia = np.polyval(pa, hi) - np.polyval(pa, lo)
        it = np.polyval(pt, hi) - np.polyval(pt, lo)
    return float((10 ** ((it - ia) / (hi - lo)) - 1) * 100)


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), np.float64)
    ranks[order] = np.arange(len(v), dtype=np.float64)
    for value in np.unique(v):  # ties share their mean rank
        tied = v == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two sequences (ties get their mean rank); NaN when
    either is constant or shorter than 2."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("a and b must be 1-d sequences of one length")
    if len(x) < 2:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])
