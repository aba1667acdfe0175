"""Which files a collection run works on, where each output goes, and which process owns it.

Inputs are found by walking the input folder recursively in sorted order. Hidden files and
folders (names starting with ``.``, which is also how temporary files and the run's state
folder are named) and symbolic links to folders are skipped. Paths are handled relative to
the roots, as POSIX strings, so runs on machines that mount the data elsewhere agree.

A shard ``I/N`` owns the inputs whose path hashes to ``I`` modulo ``N``: the split depends
on nothing but the path, so every process computes the same split on its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = [
    "Item",
    "Shard",
    "image_extensions",
    "find_files",
    "plan_outputs",
    "remove_stale_temporaries",
    "shard_from",
]


@dataclass(frozen=True)
class Item:
    """One input and its output, both relative to their roots (POSIX paths)."""

    source: str
    output: str


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count`` (``Shard(0, 1)``: the whole job in one process)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.index, int) and isinstance(self.count, int)):
            raise TypeError("shard index and count must be ints")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard must be I/N with N >= 1 and 0 <= I < N, got {self.index}/{self.count}"
            )

    def owns(self, source: str) -> bool:
        """Whether this shard works on ``source`` (a relative input path)."""
        if self.count == 1:
            return True
        digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _parse_shard(text: str) -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise ValueError(f"--shard must look like I/N (for example 0/4), got {text!r}")
    return Shard(int(m.group(1)), int(m.group(2)))


def shard_from(text: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """The shard of this process: ``--shard I/N`` if given, else torchrun's RANK/WORLD_SIZE.

    Both given and disagreeing is an error (two schedulers splitting the same work).
    """
    env = os.environ if environ is None else environ
    from_env = None
    if env.get("WORLD_SIZE"):
        try:
            from_env = Shard(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]))
        except ValueError as e:
            raise ValueError(
                f"RANK={env.get('RANK')!r} WORLD_SIZE={env.get('WORLD_SIZE')!r} "
                f"do not name a process of the job: {e}"
            ) from e
    if text is None:
        return from_env or Shard()
    shard = _parse_shard(text)
    if from_env is not None and from_env.count > 1 and from_env != shard:
        raise ValueError(
            f"--shard {shard} disagrees with RANK/WORLD_SIZE {from_env} from the environment"
        )
    return shard


def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of the formats Pillow can open, ``.bpg`` aside."""
    from PIL import Image

    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    exts.discard(".bpg")  # the registered BPG opener would make outputs inputs
    return frozenset(exts)


def check_workers(workers: int | None, default: int) -> int:
    """Reader threads: as asked, else ``default``; at least one."""
    workers = default if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


def folder_roots(
    input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str]
) -> tuple[str, str]:
    """Absolute (input, output) roots of a folder job: the input a folder, the output a
    folder or nothing yet."""
    input_root = os.path.abspath(os.fspath(input_dir))
    output_root = os.path.abspath(os.fspath(output_dir))
    if not os.path.isdir(input_root):
        raise ValueError(f"input folder {input_root!r} does not exist or is not a folder")
    if os.path.exists(output_root) and not os.path.isdir(output_root):
        raise ValueError(f"output {output_root!r} exists and is not a folder")
    return input_root, output_root


def _is_inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def find_files(
    root: str | os.PathLike[str],
    extensions: Iterable[str],
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> list[str]:
    """Relative POSIX paths of the files under ``root`` with one of ``extensions``, sorted.

    ``exclude``: folders left out (the output folder when it lies inside the input folder).
    Files whose extension matches are listed whatever their content: a corrupt one is
    reported by the run, not silently dropped here.
    """
    root = os.path.realpath(os.fspath(root))
    exts = {e.lower() for e in extensions}
    skip = {os.path.realpath(os.fspath(e)) for e in exclude}
    skip = {s for s in skip if s != root and _is_inside(s, root)}
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and os.path.join(folder, d) not in skip
            and not os.path.islink(os.path.join(folder, d))
        )
        rel = os.path.relpath(folder, root)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in exts:
                continue
            path = name if rel == "." else f"{PurePosixPath(*rel.split(os.sep))}/{name}"
            found.append(path)
    found.sort()
    return found


def plan_outputs(sources: list[str], suffix: str) -> list[Item]:
    """Pair every source with its output path: the same folders, the extension ``suffix``.

    ``a/photo.jpg`` becomes ``a/photo<suffix>``. Sources that would share an output (say
    ``photo.jpg`` and ``photo.png``) keep their whole name instead (``photo.jpg<suffix>``),
    for all of them, so the names do not depend on which of them a process sees.
    """
    full = set()
    while True:
        names = {}
        for s in sources:
            names[s] = s + suffix if s in full else str(PurePosixPath(s).with_suffix(suffix))
        counts = Counter(names.values())
        clash = {s for s, n in names.items() if counts[n] > 1 and s not in full}
        if not clash:
            break
        full |= clash  # whole names never clash with each other: sources are distinct
    return [Item(s, names[s]) for s in sources]


_TMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")


def remove_stale_temporaries(root: str | os.PathLike[str], outputs: Iterable[str]) -> int:
    """Delete the temporary files that a killed run left next to ``outputs``; returns how many.

    Only temporaries of the given outputs (this process's own) are touched: others may
    belong to a process that is writing them right now.
    """
    root = os.fspath(root)
    mine = set(outputs)
    folders = {str(PurePosixPath(o).parent) for o in mine}
    removed = 0
    for folder in sorted(folders):
        path = root if folder == "." else os.path.join(root, *folder.split("/"))
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            m = _TMP.match(name)
            if m is None:
                continue
            rel = m.group("name") if folder == "." else f"{folder}/{m.group('name')}"
            if rel in mine:
                try:
                    os.unlink(os.path.join(path, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
