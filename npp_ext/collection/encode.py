"""``encode_collection``: a folder of images to a mirrored folder of ``.bpg`` files.

Sets a run up (finds the inputs, plans the outputs, takes this shard's part, cleans what
a killed run left, reads the records a resume can use), runs the :mod:`.pipeline`, then
writes the shard's records and merges the manifest when every shard is done.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..options import EncodeOptions, check_qp, check_threads
from . import manifest as mf
from .discovery import (
    Shard,
    check_workers,
    find_files,
    folder_roots,
    image_extensions,
    plan_outputs,
    remove_stale_temporaries,
)
from .pipeline import Run, cpu_count
from .progress import Progress
from .records import output_error

__all__ = ["EncodeSummary", "encode_collection"]


@dataclass
class EncodeSummary:
    """What a run did (its shard's part)."""

    inputs: int  #: inputs of this shard
    written: int  #: outputs encoded and written by this run
    reused: int  #: complete outputs of an earlier run, checked and kept
    failed: int  #: inputs that could not be encoded (see the manifest's reasons)
    bytes: int  #: size of all this shard's outputs
    mean_bpp: float  #: mean bits per pixel over this shard's outputs (0 if none)
    seconds: float
    manifest: str  #: the manifest path
    merged: bool  #: whether the manifest was written (all shards done)
    shard: Shard

    @property
    def images_per_second(self) -> float:
        """Outputs written per second of this run."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


def _settings(qp: int, options: EncodeOptions, npp: Any) -> dict[str, Any]:
    return {
        "qp": qp,
        "level": options.level,
        "chroma": options.chroma,
        "x265_params": options.x265_params,
        "npp_sha256": npp.sha256 if npp is not None else None,
        "npp_batch": npp.batch if npp is not None else None,
        "npp_device": npp.device_type if npp is not None else None,
    }


def encode_collection(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    qp: int,
    options: EncodeOptions | None = None,
    npp: Any = None,
    threads: int | None = None,
    workers: int | None = None,
    verify: bool = False,
    manifest: str | os.PathLike[str] | None = None,
    shard: Shard | None = None,
    progress: bool = True,
    memory_budget: int = 4 << 30,
) -> EncodeSummary:
    """Encode every image under ``input_dir`` to ``.bpg`` under ``output_dir`` (mirrored).

    ``npp``: an :class:`~npp_ext.collection.npp_stage.NPPRunner` to preprocess with, or
    None for plain BPG. ``threads``: codec workers (None/0: one per core); ``workers``:
    threads reading and decoding inputs (None: ``min(8, cores)``). ``manifest``: its path
    (default ``output_dir/manifest.jsonl``). ``shard``: this process's part of the job.
    ``memory_budget``: bytes of decoded pixels held at once (reads wait beyond it).
    Resumes a previous run of the same job: complete outputs are checked and kept. Raises
    OSError when outputs cannot be written; failed inputs are counted, not raised.
    """
    qp = check_qp(qp)
    options = options or EncodeOptions()
    threads = check_threads(threads)
    workers = check_workers(workers, min(8, cpu_count()))
    shard = shard or Shard()
    input_root, output_root = folder_roots(input_dir, output_dir)
    manifest = os.path.abspath(os.fspath(manifest or os.path.join(output_root, "manifest.jsonl")))

    t0 = time.monotonic()
    sources = find_files(input_root, image_extensions(), exclude=[output_root])
    plan = plan_outputs(sources, ".bpg")
    mine = [it for it in plan if shard.owns(it.source)]
    settings = _settings(qp, options, npp)
    key = mf.run_key(settings, shard.count, sources)
    try:
        os.makedirs(output_root, exist_ok=True)
    except OSError as e:
        raise output_error(output_root, e) from e
    remove_stale_temporaries(output_root, [it.output for it in mine])
    mf.remove_stale_temporaries(manifest, shard)
    previous = mf.read_records(manifest)
    try:
        os.unlink(mf.shard_file(manifest, shard))  # this shard is not done any more
    except FileNotFoundError:
        pass
    journal = mf.Journal(mf.journal_file(manifest, shard))
    job = dict(
        input_root=input_root, output_root=output_root, qp=qp, options=options, npp=npp,
        threads=threads, workers=workers, verify=verify, settings=settings,
        memory_budget=memory_budget,
    )  # fmt: skip
    label = "encode" if shard.count == 1 else f"encode {shard}"
    bar = Progress(len(mine), label, enabled=progress)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="BPG: the alpha channel")
            records, counts = Run(job, mine, previous, journal).execute(bar)
    finally:
        bar.close()
        journal.close()
    mf.write_shard(manifest, shard, key, records)
    journal.remove()
    merged = mf.merge(manifest, shard.count, key)
    ok = [r for r in records if r["status"] == "ok"]
    return EncodeSummary(
        inputs=len(mine), written=counts["written"], reused=counts["reused"],
        failed=counts["failed"], bytes=sum(r["bytes"] for r in ok),
        mean_bpp=float(np.mean([r["bpp"] for r in ok])) if ok else 0.0,
        seconds=time.monotonic() - t0, manifest=manifest, merged=merged, shard=shard,
    )  # fmt: skip
