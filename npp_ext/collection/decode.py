"""Decoding a folder of ``.bpg`` files to PNG, mirroring the folder tree.

Each file is read, decoded (with the codec's truncation check) and written as PNG through
a temporary file and a rename, on ``workers`` threads (the codec and Pillow's PNG encoder
release the GIL). A file that does not decode is reported and skipped; a PNG that cannot
be written stops the run. Every run decodes everything again (decoding is cheap next to
encoding); a killed run leaves no partial PNG, and its temporaries are removed next time.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import os
import time
from dataclasses import dataclass

from .. import bpg
from .._fileio import write_atomic
from .discovery import (
    Item,
    check_workers,
    find_files,
    folder_roots,
    plan_outputs,
    remove_stale_temporaries,
)
from .pipeline import cpu_count
from .progress import Progress
from .records import output_error

__all__ = ["DecodeSummary", "decode_collection", "png_bytes"]


@dataclass
class DecodeSummary:
    """What a decode run did."""

    inputs: int
    written: int
    failed: list[tuple[str, str]]  #: (source, reason) of the files that did not decode
    bytes: int  #: size of the PNGs written
    seconds: float

    @property
    def images_per_second(self) -> float:
        """PNGs written per second."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


def png_bytes(image) -> bytes:
    """An (H, W, 3) uint8 image as PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def decode_collection(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: bool = True,
) -> DecodeSummary:
    """Decode every ``.bpg`` under ``input_dir`` to a PNG under ``output_dir`` (mirrored)."""
    workers = check_workers(workers, cpu_count())
    input_root, output_root = folder_roots(input_dir, output_dir)
    t0 = time.monotonic()
    items = plan_outputs(find_files(input_root, [".bpg"], exclude=[output_root]), ".png")
    os.makedirs(output_root, exist_ok=True)
    remove_stale_temporaries(output_root, [it.output for it in items])

    def one(item: Item) -> tuple[Item, int | str]:
        src = os.path.join(input_root, *item.source.split("/"))
        try:
            with open(src, "rb") as f:
                data = f.read()
            png = png_bytes(bpg.decode(data, verify=True))
        except OSError as e:
            return item, f"cannot read: {e.strerror or e}"
        except ValueError as e:  # BPGError
            return item, f"cannot decode: {e}"
        out = os.path.join(output_root, *item.output.split("/"))
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            write_atomic(out, png)
        except OSError as e:
            raise output_error(out, e) from e
        return item, len(png)

    bar = Progress(len(items), "decode", enabled=progress)
    failed: list[tuple[str, str]] = []
    written = nbytes = 0
    pending: collections.deque = collections.deque()
    pool = concurrent.futures.ThreadPoolExecutor(workers, "npp-ext-decode")
    try:

        def collect() -> None:
            nonlocal written, nbytes
            item, result = pending.popleft().result()
            if isinstance(result, str):
                failed.append((item.source, result))
                bar.message(f"npp-ext: failed: {item.source}: {result}")
            else:
                written += 1
                nbytes += result
            bar.advance(failed=isinstance(result, str))

        for item in items:
            pending.append(pool.submit(one, item))
            if len(pending) >= 2 * workers:
                collect()
        while pending:
            collect()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return DecodeSummary(len(items), written, failed, nbytes, time.monotonic() - t0)
