"""The ``npp-ext`` command: ``demo`` (the default job), ``encode``, ``decode``, ``info``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _demo_images() -> dict[str, np.ndarray]:
    """The embedded default: scikit-image's sample photos (they ship inside the package)."""
    try:
        from skimage import data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit("the demo needs scikit-image: pip install 'npp_ext[demo]'") from e
    return {
        name: np.ascontiguousarray(getattr(data, name)())
        for name in ("astronaut", "chelsea", "coffee")
    }


_DESCRIPTION = """\
In-process BPG. With no command, runs the demo: scikit-image's sample photos
round-tripped through BPG at four QPs, with a table of bpp, PSNR and time.
"""
_CHROMAS = ["420", "444", "422", "gray"]


def demo(qps: Sequence[int], level: int, threads: int | None, chroma: str) -> int:
    """Round-trip the sample photos through in-process BPG and print a rate/quality table."""
    from . import bpg

    for qp in qps:  # refuse bad settings before printing anything
        bpg._check_qp(qp)
    bpg._check_level(level)
    bpg._check_threads(threads)
    bpg._chroma_code(chroma)
    images = _demo_images()
    names = list(images)
    print(f"npp_ext demo: in-process BPG, level {level}, chroma {chroma}")
    print("| image | size | qp | bpp | PSNR (dB) | ms/image |")
    print("|---|---|---|---|---|---|")
    for qp in qps:
        t0 = time.perf_counter()
        result = bpg.roundtrip_batch(
            [images[n] for n in names], qp, chroma=chroma, level=level, threads=threads
        )
        ms = (time.perf_counter() - t0) * 1000 / len(names)
        for name, dec, bits in zip(names, result.images, result.bits, strict=True):
            h, w = dec.shape[:2]
            print(
                f"| {name} | {w}x{h} | {qp} | {bits / (w * h):.3f} | "
                f"{_psnr(dec, images[name]):.2f} | {ms:.0f} |"
            )
    return 0


def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    from .bpg import _check_size, _pil_rgb

    with Image.open(path) as im:
        _check_size(im.height, im.width)  # before Pillow decodes pixels BPG cannot take
        return _pil_rgb(im)


def _check_not_same_file(src: str, dst: str) -> None:
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"the output {dst!r} is the input: refusing to overwrite it")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``npp-ext`` command."""
    parser = argparse.ArgumentParser(
        prog="npp-ext", description=_DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("demo", help="round-trip scikit-image's sample photos through BPG")
    p.add_argument(
        "--qp", type=int, nargs="+", default=[22, 29, 37, 47], metavar="QP",
        help="quantizers, 0..51 (default: 22 29 37 47)",
    )  # fmt: skip
    p.add_argument("--level", type=int, default=8, help="encoder effort, 1..9 (default: 8)")
    p.add_argument("--threads", type=int, default=None, help="workers (default: one per core)")
    p.add_argument("--chroma", choices=_CHROMAS, default="420", help="(default: 420)")
    p = sub.add_parser("encode", help="encode an image file (PNG, JPEG, ...) to .bpg")
    p.add_argument("input", help="any image Pillow reads")
    p.add_argument("output", help="the .bpg file to write")
    p.add_argument("-q", "--qp", type=int, default=29, help="quantizer, 0..51 (default: 29)")
    p.add_argument("-m", "--level", type=int, default=8, help="encoder effort, 1..9 (default: 8)")
    p.add_argument("-f", "--chroma", choices=_CHROMAS, default="420", help="(default: 420)")
    p = sub.add_parser("decode", help="decode a .bpg file to PNG (or any format Pillow writes)")
    p.add_argument("input", help="the .bpg file")
    p.add_argument("output", help="the image to write; its extension picks the format")
    p = sub.add_parser("info", help="print a .bpg file's header (the picture data is not read)")
    p.add_argument("input")
    args = parser.parse_args(argv)

    from PIL import Image

    from . import bpg

    try:
        if args.command in (None, "demo"):
            if args.command is None:
                return demo([22, 29, 37, 47], 8, None, "420")
            return demo(args.qp, args.level, args.threads, args.chroma)
        if args.command == "encode":
            _check_not_same_file(args.input, args.output)
            n = bpg.write(
                args.output, _read_image(args.input), args.qp, chroma=args.chroma, level=args.level
            )
            print(f"{args.output}: {n} bytes")
        elif args.command == "decode":
            if args.output.lower().endswith(".bpg"):
                raise ValueError("decode writes pixels: give a PNG (or other) output, not .bpg")
            Image.fromarray(bpg.read(args.input)).save(args.output)
        elif args.command == "info":
            info = bpg.read_info(args.input)
            for key, value in info.__dict__.items():
                print(f"{key}: {value}")
    except (ValueError, TypeError, OSError, Image.DecompressionBombError) as e:
        print(f"npp-ext: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
