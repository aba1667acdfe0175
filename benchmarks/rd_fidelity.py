#!/usr/bin/env python3
"""Rate-distortion fidelity of npp_ext's BPG encoder against the reference bpgenc 0.9.8.

For every entry of the shared test vectors' ``reference.json`` (made by bpgenc 0.9.8,
whose x265 dates from 2015) this encodes the same source at the same QP and chroma
format with ``npp_ext.bpg``, decodes it, and compares bits per pixel and RGB PSNR.

Targets (per point = same source, QP, chroma):
  * bpp within +-10 % of the reference (relative),
  * RGB PSNR within +-0.3 dB of the reference,
and over each (source, chroma) QP sweep a Bjontegaard delta rate within +-3 %
(negative = we need fewer bits than the reference for the same PSNR).

BD-rate method: log(rate) is interpolated as a function of PSNR with a monotone
piecewise-cubic Hermite interpolant (Fritsch-Carlson style derivatives, the same
shape rules as a PCHIP) through the 3 points of each curve; the two curves are
integrated exactly over their overlapping PSNR interval and the mean log-rate
difference is turned into a percentage.  The table also shows the BD-rate with
piecewise-linear interpolation for comparison; PASS/FAIL uses the PCHIP value.

x265 3.5 uses a smaller 8-bit RD lambda^2 table than the 2015 x265 bundled with
bpgenc 0.9.8 (about 0.76x at QP 19 up to 0.82x at QP 47 of the old
0.85 * lambda^2, lambda = 2^(QP/6 - 2)), so at the same QP it spends more bits
for a higher PSNR. The encoder therefore loads the 2015 tables into every x265
encoder it opens (third_party/libbpg/src/x265_pool.cpp); benchmarks/rd_notes.md
records how that was found.

This is a benchmark: the exit code is 0 whatever the outcome; PASS/FAIL is printed.

Usage:
  python benchmarks/rd_fidelity.py [--level 8] [--x265 "name=value:..."] [--vectors DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import OrderedDict

import numpy as np

BPP_TOL = 0.10  # relative
PSNR_TOL = 0.30  # dB
BD_TOL = 3.0  # percent

DEFAULT_VECTORS = os.environ.get(
    "NPP_EXT_TESTVECTORS",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "testvectors"),
)


# --------------------------------------------------------------------------- #
# Bjontegaard delta rate
# --------------------------------------------------------------------------- #


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of a monotone (shape-preserving) cubic Hermite interpolant.

    Interior knots: weighted harmonic mean of the neighbouring secant slopes, or 0
    where they change sign (Fritsch-Butland / Fritsch-Carlson).  End knots: the
    one-sided three-point estimate, clipped so that it keeps the sign of the first
    secant and never exceeds three times it.
    """
    n = len(x)
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        a, b = delta[k - 1], delta[k]
        if a * b <= 0.0:
            d[k] = 0.0
        else:
            w1 = 2.0 * h[k] + h[k - 1]
            w2 = h[k] + 2.0 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / a + w2 / b)

    def end(h0, h1, d0, d1):
        s = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if s * d0 <= 0.0:
            return 0.0
        if d0 * d1 <= 0.0 and abs(s) > abs(3.0 * d0):
            return 3.0 * d0
        return s

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _hermite_eval(x: np.ndarray, y: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate the cubic Hermite interpolant (knots x, values y, slopes d) at t."""
    t = np.asarray(t, dtype=float)
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00 = (1 + 2 * s) * (1 - s) ** 2
    h10 = s * (1 - s) ** 2
    h01 = s * s * (3 - 2 * s)
    h11 = s * s * (s - 1)
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Exact integral over [lo, hi] (inside [x0, xn]) of the interpolant of y(x)."""
    if method == "linear":
        d = None
    else:
        d = _pchip_slopes(x, y)
    # Two-point Gauss-Legendre is exact for cubics (and lines) on each piece.
    g = np.array([-1.0, 1.0]) / math.sqrt(3.0)
    total = 0.0
    for k in range(len(x) - 1):
        a = max(lo, x[k])
        b = min(hi, x[k + 1])
        if b <= a:
            continue
        t = 0.5 * (a + b) + 0.5 * (b - a) * g
        if d is None:
            v = y[k] + (y[k + 1] - y[k]) * (t - x[k]) / (x[k + 1] - x[k])
        else:
            v = _hermite_eval(x, y, d, t)
        total += 0.5 * (b - a) * float(v.sum())
    return total


def _curve(rates, psnrs):
    p = np.asarray(psnrs, dtype=float)
    r = np.asarray(rates, dtype=float)
    if p.shape != r.shape or p.ndim != 1 or len(p) < 2:
        raise ValueError("a curve needs at least 2 (rate, psnr) points of equal count")
    if np.any(r <= 0):
        raise ValueError("rates must be positive")
    order = np.argsort(p)
    p, lr = p[order], np.log(r[order])
    if np.any(np.diff(p) <= 0):
        raise ValueError("PSNR values of a curve must be distinct")
    return p, lr


def bd_rate(r1, p1, r2, p2, method: str = "pchip") -> float:
    """Bjontegaard delta rate (percent) of curve 2 (r2, p2) against curve 1 (r1, p1).

    Negative = curve 2 needs fewer bits for the same PSNR.  ``method`` is
    ``"pchip"`` (monotone piecewise-cubic, the default) or ``"linear"``.
    Returns NaN when the PSNR intervals of the two curves do not overlap.
    """
    if method not in ("pchip", "linear"):
        raise ValueError("method must be 'pchip' or 'linear'")
    x1, y1 = _curve(r1, p1)
    x2, y2 = _curve(r2, p2)
    lo = max(x1[0], x2[0])
    hi = min(x1[-1], x2[-1])
    if hi <= lo:
        return float("nan")
    a1 = _integral(x1, y1, lo, hi, method)
    a2 = _integral(x2, y2, lo, hi, method)
    return (math.exp((a2 - a1) / (hi - lo)) - 1.0) * 100.0


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #


def psnr_rgb(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over all RGB samples (one MSE over the three channels), peak 255."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(255.0 * 255.0 / mse)


def _load_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def load_reference(vectors: str = DEFAULT_VECTORS):
    with open(os.path.join(vectors, "reference.json")) as f:
        return json.load(f)


def evaluate(level: int = 8, x265_params: str = "", vectors: str = DEFAULT_VECTORS, entries=None):
    """Encode every reference point with our encoder.

    Returns a dict with ``points`` (one dict per reference entry: file, source, q,
    chroma, ref/our bpp and PSNR, deltas, pass flags, encode seconds), ``bd`` (one
    dict per (source, chroma) sweep with >= 2 QPs: BD-rate pchip and linear, pass
    flag) and ``summary`` (worst deltas and overall pass flags).
    """
    from npp_ext import bpg

    if entries is None:
        entries = load_reference(vectors)
    sources = {}
    points = []
    for e in entries:
        src = e["source"]
        if src not in sources:
            sources[src] = _load_rgb(os.path.join(vectors, src))
        img = sources[src]
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        data = bpg.encode(
            img, int(e["q"]), chroma=str(e["chroma"]), level=int(level), x265_params=x265_params
        )
        secs = time.perf_counter() - t0
        dec = bpg.decode(data, verify=False)
        bpp = len(data) * 8.0 / (w * h)
        ps = psnr_rgb(img, dec)
        d_bpp = (bpp / e["bpp"] - 1.0) * 100.0
        d_psnr = ps - e["psnr_rgb"]
        points.append(
            OrderedDict(
                file=e["file"],
                source=src,
                q=int(e["q"]),
                chroma=str(e["chroma"]),
                ref_bpp=float(e["bpp"]),
                bpp=bpp,
                d_bpp=d_bpp,
                ref_psnr=float(e["psnr_rgb"]),
                psnr=ps,
                d_psnr=d_psnr,
                bpp_ok=abs(d_bpp) <= BPP_TOL * 100.0,
                psnr_ok=abs(d_psnr) <= PSNR_TOL,
                seconds=secs,
            )
        )

    groups = OrderedDict()
    for p in points:
        groups.setdefault((p["source"], p["chroma"]), []).append(p)
    bd = []
    for (src, chroma), ps in groups.items():
        if len(ps) < 2:
            continue
        r1 = [p["ref_bpp"] for p in ps]
        p1 = [p["ref_psnr"] for p in ps]
        r2 = [p["bpp"] for p in ps]
        p2 = [p["psnr"] for p in ps]
        v = bd_rate(r1, p1, r2, p2, "pchip")
        vl = bd_rate(r1, p1, r2, p2, "linear")
        bd.append(
            OrderedDict(
                source=src,
                chroma=chroma,
                qps=[p["q"] for p in ps],
                bd_rate=v,
                bd_rate_linear=vl,
                ok=(not math.isnan(v)) and abs(v) <= BD_TOL,
            )
        )

    summary = OrderedDict(
        level=int(level),
        x265_params=x265_params,
        max_abs_d_bpp=max(abs(p["d_bpp"]) for p in points),
        max_abs_d_psnr=max(abs(p["d_psnr"]) for p in points),
        max_abs_bd=max((abs(b["bd_rate"]) for b in bd), default=float("nan")),
        bpp_pass=all(p["bpp_ok"] for p in points),
        psnr_pass=all(p["psnr_ok"] for p in points),
        bd_pass=all(b["ok"] for b in bd),
        seconds=sum(p["seconds"] for p in points),
    )
    summary["all_pass"] = summary["bpp_pass"] and summary["psnr_pass"] and summary["bd_pass"]
    return OrderedDict(points=points, bd=bd, summary=summary)


def _pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def format_report(res) -> str:
    s = res["summary"]
    out = []
    out.append(f'level {s["level"]}, x265_params "{s["x265_params"]}"')
    out.append("")
    out.append(
        "| file | ref bpp | our bpp | d bpp % | ref PSNR | our PSNR | d PSNR dB "
        "| bpp +-10% | PSNR +-0.3 dB |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|:---:|:---:|")
    for p in res["points"]:
        out.append(
            f"| {p['file']} | {p['ref_bpp']:.4f} | {p['bpp']:.4f} | {p['d_bpp']:+.2f} | "
            f"{p['ref_psnr']:.3f} | {p['psnr']:.3f} | {p['d_psnr']:+.3f} | "
            f"{_pf(p['bpp_ok'])} | {_pf(p['psnr_ok'])} |"
        )
    out.append("")
    out.append("| source | chroma | QPs | BD-rate % (pchip) | BD-rate % (linear) | BD +-3% |")
    out.append("|---|---|---|---:|---:|:---:|")
    for b in res["bd"]:
        qps = ",".join(str(q) for q in b["qps"])
        out.append(
            f"| {b['source']} | {b['chroma']} | {qps} | {b['bd_rate']:+.2f} | "
            f"{b['bd_rate_linear']:+.2f} | {_pf(b['ok'])} |"
        )
    out.append("")
    out.append(
        f"SUMMARY: bpp {_pf(s['bpp_pass'])} (max |d| {s['max_abs_d_bpp']:.2f}%), "
        f"PSNR {_pf(s['psnr_pass'])} (max |d| {s['max_abs_d_psnr']:.3f} dB), "
        f"BD-rate {_pf(s['bd_pass'])} (max |BD| {s['max_abs_bd']:.2f}%), "
        f"overall {_pf(s['all_pass'])}; encode time {s['seconds']:.2f} s"
    )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--level", type=int, default=8, help="compression level 1..9 (default 8)")
    ap.add_argument("--x265", default="", help='extra x265 parameters "name=value:name=value"')
    ap.add_argument("--vectors", default=DEFAULT_VECTORS, help="test vector directory")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead")
    args = ap.parse_args(argv)
    try:
        res = evaluate(args.level, args.x265, args.vectors)
    except Exception as exc:  # a benchmark: report and exit 0
        print(f"ERROR: {type(exc).__name__}: {exc}")
        return 0
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(format_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
