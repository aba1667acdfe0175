"""The ``npp-ext`` command: ``demo`` (the default job: the method end to end), the method's
``train-proxy``, ``train`` and ``eval`` (in :mod:`npp_ext.commands`), and the codec's
``encode``, ``decode``, ``info`` and ``codec-demo``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from .collection import commands as collection_commands
from .options import (
    CHROMA_DEFAULT,
    CHROMA_FORMATS,
    LEVEL_DEFAULT,
    LEVEL_MAX,
    LEVEL_MIN,
    QP_DEFAULT,
    QP_MAX,
    QP_MIN,
    EncodeOptions,
    check_qp,
    check_threads,
)


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
Preprocessing for machine vision before in-process BPG. With no command, runs the
demo: a proxy and an NPP trained on scikit-image's sample photos with EfficientNet-Lite0
as the task, then BPG and NPP+BPG evaluated on held-out photos (rate-accuracy, BD-rate).
"""
_CHROMAS = list(CHROMA_FORMATS)
_DEMO_QPS = [22, 29, 37, 47]


def codec_demo(qps: Sequence[int], level: int, threads: int | None, chroma: str) -> int:
    """Round-trip the sample photos through in-process BPG and print a rate/quality table."""
    from . import bpg

    for qp in qps:  # refuse bad settings before printing anything
        check_qp(qp)
    EncodeOptions(chroma=chroma, level=level)
    check_threads(threads)
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


def _check_not_same_file(src: str, dst: str) -> None:
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"the output {dst!r} is the input: refusing to overwrite it")


def _save_image(image: np.ndarray, path: str) -> None:
    """Write pixels in the format of the path's extension, atomically."""
    import io

    from PIL import Image

    from ._fileio import write_atomic

    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ValueError(f"unknown image format for {path!r}: give a .png (or other) output")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    write_atomic(path, buf.getvalue())


def _level_arg(parser: argparse.ArgumentParser, *flags: str) -> None:
    parser.add_argument(
        *flags, type=int, default=LEVEL_DEFAULT, dest="level",
        help=f"encoder effort, {LEVEL_MIN}..{LEVEL_MAX} (default: {LEVEL_DEFAULT})",
    )  # fmt: skip


def _chroma_arg(parser: argparse.ArgumentParser, *flags: str) -> None:
    # Checked by npp_ext.options (not argparse's choices), so the message is the library's.
    parser.add_argument(
        *flags, default=CHROMA_DEFAULT, dest="chroma", metavar="{" + ",".join(_CHROMAS) + "}",
        help=f"chroma format (default: {CHROMA_DEFAULT})",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``npp-ext`` command."""
    parser = argparse.ArgumentParser(
        prog="npp-ext", description=_DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    from . import commands

    commands.add_parsers(sub)
    p = sub.add_parser("codec-demo", help="round-trip scikit-image's sample photos through BPG")
    p.add_argument(
        "--qp", type=int, nargs="+", default=_DEMO_QPS, metavar="QP",
        help=f"quantizers, {QP_MIN}..{QP_MAX} (default: {' '.join(map(str, _DEMO_QPS))})",
    )  # fmt: skip
    _level_arg(p, "--level")
    p.add_argument("--threads", type=int, default=None, help="workers (default: one per core)")
    _chroma_arg(p, "--chroma")
    p = sub.add_parser(
        "encode", help="encode an image (PNG, JPEG, ...) or a folder of them to .bpg",
        description="Encode one image, or every image under a folder (mirrored into OUTPUT, "
        "with a manifest; a rerun resumes). Exit status 3: some inputs failed.",
    )  # fmt: skip
    p.add_argument("input", help="any image Pillow reads, or a folder of them")
    p.add_argument("output", help="the .bpg file to write, or the output folder")
    p.add_argument(
        "-q", "--qp", type=int, default=QP_DEFAULT,
        help=f"quantizer, {QP_MIN}..{QP_MAX} (default: {QP_DEFAULT})",
    )  # fmt: skip
    _level_arg(p, "-m", "--level")
    _chroma_arg(p, "-f", "--chroma")
    collection_commands.add_encode_options(p)
    p = sub.add_parser(
        "decode", help="decode a .bpg file to PNG (or any format Pillow writes), or a folder"
    )
    p.add_argument("input", help="the .bpg file, or a folder of them")
    p.add_argument(
        "output", help="the image to write (its extension picks the format), or a folder of PNGs"
    )
    collection_commands.add_decode_options(p)
    p = sub.add_parser("info", help="print a .bpg file's header (the picture data is not read)")
    p.add_argument("input")
    args = parser.parse_args(argv)

    from PIL import Image

    from . import bpg

    try:
        if args.command is None:
            args = parser.parse_args(["demo"])
        if args.command in ("demo", "train-proxy", "train", "eval"):
            return commands.run(args)
        if args.command == "codec-demo":
            return codec_demo(args.qp, args.level, args.threads, args.chroma)
        if args.command == "encode":
            return collection_commands.encode(args)
        elif args.command == "decode" and os.path.isdir(args.input):
            return collection_commands.decode_folder(args)
        elif args.command == "decode":
            if args.output.lower().endswith(".bpg"):
                raise ValueError("decode writes pixels: give a PNG (or other) output, not .bpg")
            _check_not_same_file(args.input, args.output)
            _save_image(bpg.read(args.input), args.output)
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
