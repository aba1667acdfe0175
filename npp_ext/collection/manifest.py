"""The manifest of a collection run: one JSON object per input, and how shards make one.

The manifest (``manifest.jsonl`` in the output folder unless told otherwise) holds one line
per input, sorted by source path, with the fields of :data:`FIELDS`. It holds nothing
that depends on timing, process or machine, so any split of the same job into shards,
interrupted and resumed or not, gives the same manifest byte for byte.

Beside it, a hidden state folder ``.<manifest name>.parts/`` holds per shard ``I/N``:

* ``shard-IIIII-of-NNNNN.journal.jsonl``: a line appended (and synced) after each output
  is renamed into place; what a killed run leaves for the next one to resume from;
* ``shard-IIIII-of-NNNNN.json``: the shard's records, written atomically when the shard
  is done (its journal is then removed), tagged with the run's key (settings, shard
  count, the list of inputs).

When a shard finishes it writes its file and, if the files of all N shards exist with the
same key, merges them into the manifest (atomically; two shards finishing together write
the same bytes). :func:`merge` does the same by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .._fileio import write_atomic
from .discovery import Shard

__all__ = [
    "FIELDS",
    "SETTINGS",
    "Journal",
    "dumps",
    "journal_file",
    "merge",
    "parts_folder",
    "read_records",
    "remove_stale_temporaries",
    "run_key",
    "shard_file",
    "write_shard",
]

#: The fields of a manifest line, in order. ``status`` is "ok" or "failed" (with
#: ``reason``); paths are relative to the input and output folders; ``bpp`` is
#: ``bytes * 8 / (width * height)``; ``npp_*`` are null for plain BPG.
FIELDS = (
    "source",
    "output",
    "status",
    "reason",
    "width",
    "height",
    "bytes",
    "bpp",
    "qp",
    "level",
    "chroma",
    "x265_params",
    "npp_sha256",
    "npp_batch",
    "npp_device",
    "source_sha256",
    "output_sha256",
)

#: The fields that say how an output was made: a record is reused only when they match.
SETTINGS = ("qp", "level", "chroma", "x265_params", "npp_sha256", "npp_batch", "npp_device")


def dumps(record: Mapping[str, Any]) -> str:
    """One manifest line (no newline): the fields in :data:`FIELDS` order, compact."""
    return json.dumps({k: record.get(k) for k in FIELDS}, separators=(",", ":"), ensure_ascii=False)


def parts_folder(manifest_path: str | os.PathLike[str]) -> str:
    """The hidden folder beside the manifest that holds the shards' files."""
    folder, name = os.path.split(os.path.abspath(os.fspath(manifest_path)))
    return os.path.join(folder, f".{name}.parts")


def _stem(shard: Shard) -> str:
    return f"shard-{shard.index:05d}-of-{shard.count:05d}"


def shard_file(manifest_path: str | os.PathLike[str], shard: Shard) -> str:
    """Path of the file a finished shard writes."""
    return os.path.join(parts_folder(manifest_path), _stem(shard) + ".json")


def journal_file(manifest_path: str | os.PathLike[str], shard: Shard) -> str:
    """Path of the journal a running shard appends to."""
    return os.path.join(parts_folder(manifest_path), _stem(shard) + ".journal.jsonl")


def run_key(settings: Mapping[str, Any], shard_count: int, sources: Iterable[str]) -> str:
    """A hash naming one job: its settings, how many shards, which inputs."""
    inputs = hashlib.sha256("\n".join(sources).encode("utf-8", "surrogateescape")).hexdigest()
    blob = json.dumps(
        {"settings": dict(settings), "shards": shard_count, "inputs": inputs}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class Journal:
    """Append-only record of the outputs a shard has completed (one JSON line each)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._f = open(path, "ab")

    def append(self, record: Mapping[str, Any], sync: bool = True) -> None:
        """Add a line (and sync it to disk); a torn line (a kill mid-write) is skipped when read.

        Without ``sync`` the line still survives a killed process (it is in the kernel's
        cache), not a power cut: for records that are only copies of older ones.
        """
        line = ("\n" + dumps(record) + "\n").encode("utf-8", "surrogateescape")
        with self._lock:
            try:
                self._f.write(line)
                self._f.flush()
                if sync:
                    os.fsync(self._f.fileno())
            except OSError as e:
                from .records import output_error

                raise output_error(self.path, e) from e

    def close(self) -> None:
        """Close the file (the records stay)."""
        with self._lock:
            self._f.close()

    def remove(self) -> None:
        """Close and delete the journal (once the shard's file holds its records)."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _lines(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("utf-8", "surrogateescape")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    out = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn by a kill
        if isinstance(rec, dict) and isinstance(rec.get("source"), str):
            out.append(rec)
    return out


def _shard_records(path: str) -> tuple[str | None, list[dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None, []
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        return None, []
    return doc.get("run"), [r for r in doc["records"] if isinstance(r, dict)]


def read_records(manifest_path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Every record a previous run left (journals, shard files, the manifest), by source.

    The newest kinds come first (journals, then shard files, then the manifest). Nothing
    here is trusted: a caller reuses a record only after checking it against the files.
    """
    parts = parts_folder(manifest_path)
    try:
        names = sorted(os.listdir(parts))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    found: dict[str, list[dict[str, Any]]] = {}

    def add(records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            found.setdefault(r["source"], []).append(r)

    for name in names:
        if name.endswith(".journal.jsonl"):
            add(_lines(os.path.join(parts, name)))
    for name in names:
        if name.startswith("shard-") and name.endswith(".json"):
            add(_shard_records(os.path.join(parts, name))[1])
    add(_lines(os.fspath(manifest_path)))
    return found


def remove_stale_temporaries(manifest_path: str | os.PathLike[str], shard: Shard) -> None:
    """Delete the temporary files a killed run of ``shard`` left for its state files.

    The manifest's own temporary is removed only for an unsharded job: with shards,
    another process may be merging right now.
    """
    from .discovery import remove_stale_temporaries as remove

    remove(parts_folder(manifest_path), [os.path.basename(shard_file(manifest_path, shard))])
    if shard.count == 1:
        folder, name = os.path.split(os.path.abspath(os.fspath(manifest_path)))
        remove(folder, [name])


def write_shard(
    manifest_path: str | os.PathLike[str], shard: Shard, key: str, records: list[dict[str, Any]]
) -> None:
    """Write a finished shard's records (sorted by source) with the run's key, atomically."""
    records = sorted(records, key=lambda r: r["source"])
    doc = {
        "run": key,
        "shard": [shard.index, shard.count],
        "records": [{k: r.get(k) for k in FIELDS} for r in records],
    }
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    path = shard_file(manifest_path, shard)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, text.encode("utf-8", "surrogateescape"))


def merge(manifest_path: str | os.PathLike[str], shard_count: int, key: str | None = None) -> bool:
    """Merge the files of shards ``0..N-1`` into the manifest if all are there and agree.

    ``key``: the run they must belong to (``None``: whichever run shard 0's file names).
    Returns whether the manifest was written. Idempotent: the same shard files always
    give the same bytes.
    """
    records: list[dict[str, Any]] = []
    for i in range(shard_count):
        run, recs = _shard_records(shard_file(manifest_path, Shard(i, shard_count)))
        if run is None:
            return False
        if key is None:
            key = run
        if run != key:
            return False
        records.extend(recs)
    records.sort(key=lambda r: r["source"])
    text = "".join(dumps(r) + "\n" for r in records)
    write_atomic(manifest_path, text.encode("utf-8", "surrogateescape"))
    return True
