"""One input's work outside the pipeline's threads: reading it, checking it, its record.

A source is read once: its bytes are hashed (the manifest's ``source_sha256``) and decoded
from memory. Anything wrong with an input (unreadable, empty, not an image, truncated,
too large, a pixel format without a fixed range) becomes a failed record with the reason;
only problems with the outputs stop a run.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .discovery import Item
from .manifest import SETTINGS

__all__ = [
    "InputError",
    "OutputError",
    "output_error",
    "decode_source",
    "make_record",
    "output_matches",
    "read_source",
    "reusable",
    "sha256",
    "verify_output",
]


class InputError(Exception):
    """An input that cannot be encoded; the message is the manifest's ``reason``."""


class OutputError(OSError):
    """An output that cannot be written: stops the run. The message names the file."""

    def __str__(self) -> str:
        return str(self.strerror)


def output_error(path: str, e: OSError) -> OutputError:
    """An OutputError for ``path`` saying why (keeping the errno)."""
    why = "a file is in the way" if isinstance(e, FileExistsError) else (e.strerror or str(e))
    return OutputError(e.errno, f"cannot write {path}: {why}")


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_source(path: str) -> bytes:
    """The bytes of an input file; InputError when unreadable or empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}") from e
    if not data:
        raise InputError("empty file")
    return data


def decode_source(data: bytes, reserve: Callable[[int, int], None] | None = None) -> np.ndarray:
    """An image file's bytes as (H, W, 3) uint8 RGB (Pillow; sizes checked before pixels).

    ``reserve(height, width)`` is called once the size is known, before any pixel is
    decoded (the pipeline's memory budget waits there).
    """
    from PIL import Image

    from .._images import pil_rgb
    from ..options import check_image_size

    try:
        with Image.open(io.BytesIO(data)) as im:
            check_image_size(im.height, im.width)
            if reserve is not None:
                reserve(im.height, im.width)
            return np.array(pil_rgb(im), order="C")  # writable: torch takes it as it is
    except Image.UnidentifiedImageError as e:
        raise InputError("not an image Pillow can read") from e
    except Exception as e:  # noqa: BLE001 - any decoder failure is this input's problem
        raise InputError(f"cannot decode: {type(e).__name__}: {e}") from e


def make_record(
    item: Item,
    settings: Mapping[str, Any],
    *,
    reason: str = "",
    height: int | None = None,
    width: int | None = None,
    nbytes: int | None = None,
    source_sha256: str | None = None,
    output_sha256: str | None = None,
) -> dict[str, Any]:
    """A manifest record: "ok" with the output's numbers, or "failed" with ``reason``."""
    ok = not reason
    rec: dict[str, Any] = {
        "source": item.source,
        "output": item.output if ok else None,
        "status": "ok" if ok else "failed",
        "reason": reason,
        "width": width,
        "height": height,
        "bytes": nbytes if ok else None,
        "bpp": round(nbytes * 8 / (width * height), 6) if ok and nbytes and width else None,
        "source_sha256": source_sha256,
        "output_sha256": output_sha256 if ok else None,
    }
    rec.update({k: settings[k] for k in SETTINGS})
    return rec


def output_matches(path: str, nbytes: Any, digest: Any) -> bool:
    """Whether the file at ``path`` has exactly ``nbytes`` bytes hashing to ``digest``."""
    try:
        if os.stat(path).st_size != nbytes:
            return False
        with open(path, "rb") as f:
            return sha256(f.read()) == digest
    except OSError:
        return False


def reusable(
    record: Mapping[str, Any],
    item: Item,
    settings: Mapping[str, Any],
    source_sha256: str,
    output_path: str,
) -> dict[str, Any] | None:
    """A fresh record for an output a previous run completed, or None to redo it.

    Reused only when the previous record was a success for the same source bytes, output
    path and settings, and the output file on disk is the one it describes (size and hash).
    """
    try:
        if record.get("status") != "ok" or record.get("output") != item.output:
            return None
        if record.get("source_sha256") != source_sha256:
            return None
        if any(record.get(k) != settings[k] for k in SETTINGS):
            return None
        width, height, nbytes = (int(record[k]) for k in ("width", "height", "bytes"))
    except (KeyError, TypeError, ValueError):
        return None
    if width < 1 or height < 1 or nbytes < 1:
        return None
    if not output_matches(output_path, nbytes, record.get("output_sha256")):
        return None
    return make_record(
        item, settings, height=height, width=width, nbytes=nbytes,
        source_sha256=source_sha256, output_sha256=record["output_sha256"],
    )  # fmt: skip


def verify_output(path: str, height: int, width: int) -> str:
    """Decode the file at ``path``; "" when it decodes to ``height x width``, else why not."""
    from .. import bpg

    try:
        with open(path, "rb") as f:
            decoded = bpg.decode(f.read(), verify=True)
    except OSError as e:
        return f"verification failed: cannot read the output: {e.strerror or e}"
    except ValueError as e:  # BPGError
        return f"verification failed: the output does not decode: {e}"
    if decoded.shape[:2] != (height, width):
        got = f"{decoded.shape[1]}x{decoded.shape[0]}"
        return f"verification failed: the output decodes to {got}, the source is {width}x{height}"
    return ""
