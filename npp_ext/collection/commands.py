"""The folder side of ``npp-ext encode`` and ``npp-ext decode``: options and what they run.

``npp_ext.cli`` owns the parser; this module adds the options of the collection runs and
carries out both commands, for a single file (the behaviour of old) and for folders.
Exit status: 0 when everything was done, 3 when the run finished but some inputs failed
(listed in the manifest and on stderr); errors that stop a run raise (the CLI prints
them and exits 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..options import EncodeOptions, check_qp

__all__ = [
    "EXIT_SOME_FAILED",
    "add_decode_options",
    "add_encode_options",
    "decode_folder",
    "encode",
]

#: Exit status of a run that finished with some inputs failed (2 is argparse's).
EXIT_SOME_FAILED = 3
#: Exit status after Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


def add_encode_options(p: argparse.ArgumentParser) -> None:
    """The options of ``encode`` beyond input, output, QP, level and chroma."""
    p.add_argument("--npp", metavar="CHECKPOINT", help="preprocess with this NPP checkpoint")
    p.add_argument(
        "--device", default="cpu",
        help="where the NPP runs: cpu, cuda or cuda:N (under torchrun cuda means "
        "cuda:LOCAL_RANK; default: cpu)",
    )  # fmt: skip
    p.add_argument(
        "--batch", type=int, default=None,
        help="images per NPP forward pass, always this many (default: 1 on cpu, 8 on cuda); "
        "the bytes written depend on it, so keep it when resuming",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=None,
        help="threads reading and decoding inputs (default: min(8, cores))",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="codec threads (default: per core)")
    p.add_argument(
        "--verify", action="store_true",
        help="decode every output of the run and check its size against the source",
    )  # fmt: skip
    p.add_argument("--manifest", help="manifest path (default: OUTPUT/manifest.jsonl)")
    p.add_argument(
        "--shard", metavar="I/N",
        help="do part I of N of the job (default: RANK/WORLD_SIZE under torchrun, else all)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def add_decode_options(p: argparse.ArgumentParser) -> None:
    """The options of ``decode`` beyond input and output."""
    p.add_argument("--workers", type=int, default=None, help="threads (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def _same_file(src: str, dst: str) -> None:
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"the output {dst!r} is the input: refusing to overwrite it")


def _npp_runner(args: argparse.Namespace, qp: int, opts: EncodeOptions) -> Any:
    if args.npp is None:
        return None
    from .npp_stage import NPPRunner

    if not os.path.isfile(args.npp):
        raise ValueError(f"--npp {args.npp!r}: no such checkpoint file")
    return NPPRunner(args.npp, qp=qp, codec=opts, device=args.device, batch=args.batch)


def _encode_file(args: argparse.Namespace, qp: int, opts: EncodeOptions) -> int:
    from .. import bpg
    from .records import verify_output

    for flag in ("shard", "manifest"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag} applies to a folder input, not to one file")
    _same_file(args.input, args.output)
    image = bpg.read_image(args.input)
    npp = _npp_runner(args, qp, opts)
    if npp is not None:
        image = npp.run([image])[0]
    n = bpg.write(args.output, image, qp, **opts.kwargs())
    if args.verify:
        reason = verify_output(args.output, *image.shape[:2])
        if reason:
            os.unlink(args.output)
            raise ValueError(f"{args.output}: {reason}")
    print(f"{args.output}: {n} bytes")
    return 0


def encode(args: argparse.Namespace) -> int:
    """Carry out ``npp-ext encode`` (a file, or a folder with everything under it)."""
    from .discovery import shard_from
    from .encode import encode_collection

    qp = check_qp(args.qp)  # settings first, before any file is read
    opts = EncodeOptions(chroma=args.chroma, level=args.level)
    if not os.path.isdir(args.input):
        return _encode_file(args, qp, opts)
    shard = shard_from(args.shard)
    try:
        s = encode_collection(
            args.input, args.output, qp=qp, options=opts, npp=_npp_runner(args, qp, opts),
            threads=args.threads, workers=args.workers, verify=args.verify,
            manifest=args.manifest, shard=shard, progress=not args.no_progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("npp-ext: interrupted: run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    part = "" if shard.count == 1 else f"shard {shard}: "
    print(
        f"{part}{s.inputs} images: {s.written} encoded, {s.reused} already done, "
        f"{s.failed} failed; {s.bytes} bytes, mean {s.mean_bpp:.4f} bpp; "
        f"{s.images_per_second:.2f} images/s ({s.seconds:.1f} s)"
    )
    if s.merged:
        print(f"manifest: {s.manifest}")
    else:
        print(f"manifest: {s.manifest} is written when all {shard.count} shards have finished")
    if s.failed:
        print(f"npp-ext: {s.failed} input(s) failed: see the manifest", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def decode_folder(args: argparse.Namespace) -> int:
    """Carry out ``npp-ext decode`` for a folder of .bpg files (to PNG, mirrored)."""
    from .decode import decode_collection

    s = decode_collection(
        args.input, args.output, workers=args.workers, progress=not args.no_progress
    )
    print(
        f"{s.inputs} files: {s.written} decoded, {len(s.failed)} failed; {s.bytes} bytes of PNG; "
        f"{s.images_per_second:.2f} images/s ({s.seconds:.1f} s)"
    )
    if s.failed:
        print(f"npp-ext: {len(s.failed)} file(s) failed to decode", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
