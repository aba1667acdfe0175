"""``npp-ext encode/decode`` on folders: outputs, manifest, bad inputs, resume, shards, NPP.

Small folders on the CPU. The reference for every output is the library itself:
``bpg.encode`` of the pixels Pillow reads (after the NPP's own forward pass with an NPP).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env
from PIL import Image

from npp_ext import bpg
from npp_ext.cli import main
from npp_ext.collection import Shard, manifest, shard_from
from npp_ext.collection.discovery import plan_outputs
from npp_ext.collection.progress import Progress
from npp_ext.options import EncodeOptions

QP, LEVEL = 34, 3
ARGS = ["-q", str(QP), "-m", str(LEVEL), "--no-progress"]
# (relative path, (height, width)): formats, odd and tiny sizes, nested folders.
GOOD = [
    ("a.png", (40, 56)),
    ("b.jpg", (33, 47)),
    ("c.bmp", (17, 9)),
    ("sub/d.webp", (64, 48)),
    ("sub/e.tiff", (5, 7)),
    ("sub/deeper/f.png", (70, 31)),
    ("sub/deeper/g.gif", (24, 24)),
    ("sub/deeper/h.png", (48, 64)),
]
BAD = {  # relative path: what the manifest's reason must say
    "broken.png": "not an image",
    "empty.jpg": "empty file",
    "sub/cut.png": "truncated",
}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden ones too) by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def collection(tmp_path, photo_crop):
    """A folder of good images (several formats and sizes), bad files and a non-image."""
    root = tmp_path / "in"
    for i, (rel, (h, w)) in enumerate(GOOD):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(photo_crop(h, w, index=i))
        if rel.endswith(".gif"):
            img = img.convert("P")  # a palette image
        img.save(p)
    rgba = np.dstack([photo_crop(20, 30, index=9), np.full((20, 30), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "alpha.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    (root / "empty.jpg").write_bytes(b"")
    whole = (root / "a.png").read_bytes()
    (root / "sub" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not an image: not an input")
    return root


def _expected_pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BPG: the alpha channel")  # alpha.png
        return bpg.read_image(path)


def test_folder_encode_mirrors_the_tree_and_writes_a_manifest(collection, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["encode", str(collection), str(out), *ARGS]) == 3  # some inputs failed
    stdout, stderr = capsys.readouterr()
    assert "9 encoded, 0 already done, 3 failed" in stdout and "images/s" in stdout
    for rel, reason in BAD.items():
        assert f"failed: {rel}: " in stderr and reason in stderr.split(f"failed: {rel}: ")[1]
    rows = _rows(out / "manifest.jsonl")
    assert [r["source"] for r in rows] == sorted(r["source"] for r in rows)
    assert list(rows[0]) == list(manifest.FIELDS)
    by_source = {r["source"]: r for r in rows}
    assert set(by_source) == {rel for rel, _ in GOOD} | set(BAD) | {"sub/alpha.png"}
    for rel in [g for g, _ in GOOD] + ["sub/alpha.png"]:
        r = by_source[rel]
        src = collection / rel
        dst = out / r["output"]
        assert r["output"] == str(Path(rel).with_suffix(".bpg"))
        expected = bpg.encode(_expected_pixels(src), QP, level=LEVEL)
        assert dst.read_bytes() == expected, rel  # exactly the library's bytes
        h, w = _expected_pixels(src).shape[:2]
        assert (r["status"], r["reason"], r["width"], r["height"]) == ("ok", "", w, h)
        assert r["bytes"] == len(expected)
        assert r["bpp"] == pytest.approx(len(expected) * 8 / (w * h), abs=1e-6)
        assert r["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert r["output_sha256"] == hashlib.sha256(expected).hexdigest()
        assert (r["qp"], r["level"], r["chroma"], r["npp_sha256"]) == (QP, LEVEL, "420", None)
    for rel, reason in BAD.items():
        r = by_source[rel]
        assert r["status"] == "failed" and reason in r["reason"] and r["output"] is None
        assert not (out / Path(rel).with_suffix(".bpg")).exists()
    outputs = {p.relative_to(out).as_posix() for p in out.rglob("*.bpg")}
    assert outputs == {r["output"] for r in rows if r["status"] == "ok"}
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_same_stem_outputs_keep_their_whole_name(tmp_path, photo_crop):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_crop(16, 16, 0)).save(src / "x.png")
    Image.fromarray(photo_crop(16, 16, 1)).save(src / "x.jpg")
    Image.fromarray(photo_crop(16, 16, 2)).save(src / "y.png")
    out = src / "encoded"  # inside the input folder: must not be read back as input
    assert main(["encode", str(src), str(out), *ARGS]) == 0
    assert main(["encode", str(src), str(out), *ARGS]) == 0
    names = sorted(p.name for p in out.glob("*.bpg"))
    assert names == ["x.jpg.bpg", "x.png.bpg", "y.bpg"]
    assert len(_rows(out / "manifest.jsonl")) == 3
    items = plan_outputs(["a/p.jpg", "a/p.jpg.png", "a/p.png", "b/p.png"], ".bpg")
    outs = [it.output for it in items]
    assert len(set(outs)) == 4 and outs[-1] == "b/p.bpg"


def test_rerun_reuses_complete_outputs_and_redoes_damaged_ones(collection, tmp_path, capsys):
    out = tmp_path / "out"
    main(["encode", str(collection), str(out), *ARGS])
    reference = _tree(out)
    capsys.readouterr()
    assert main(["encode", str(collection), str(out), *ARGS]) == 3
    assert "0 encoded, 9 already done, 3 failed" in capsys.readouterr().out
    assert _tree(out) == reference
    # Damage: a truncated output, a missing one, a stale temporary, a torn manifest line.
    (out / "a.bpg").write_bytes(reference["a.bpg"][:-5])
    (out / "sub" / "d.bpg").unlink()
    (out / "sub" / ".e.bpg.0123456789ab.tmp").write_bytes(b"half")
    parts = out / ".manifest.jsonl.parts"
    (parts / "shard-00000-of-00001.journal.jsonl").write_text('{"source": "c.bmp", "sta')
    assert main(["encode", str(collection), str(out), *ARGS]) == 3
    assert "2 encoded, 7 already done, 3 failed" in capsys.readouterr().out
    assert _tree(out) == reference
    # A changed source is encoded again, and so is everything when a setting changes.
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(collection / "c.bmp")
    assert main(["encode", str(collection), str(out), *ARGS]) == 3
    assert "1 encoded, 8 already done" in capsys.readouterr().out
    argv = ["encode", str(collection), str(out), "-q", "40", "-m", str(LEVEL), "--no-progress"]
    assert main(argv) == 3
    assert "9 encoded, 0 already done" in capsys.readouterr().out


def _stop_midway(cmd: list[str], out: Path, total: int, sig: int, keep: bool = False):
    """Start cmd and send it ``sig`` once a third of the outputs exist.

    Returns how many outputs existed after it ended, or (``keep``) the finished process.
    """
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = len(list(out.rglob("*.bpg"))) if out.exists() else 0
            if done >= total // 3:
                break
            time.sleep(0.005)
        proc.send_signal(sig)
    finally:
        proc.wait(timeout=240)
    if keep:
        return proc
    assert proc.returncode == -sig, proc.stderr.read().decode()
    return len(list(out.rglob("*.bpg")))


SLOW = ["-q", "30", "-m", "8", "--threads", "1", "--no-progress"]  # ~20 images/s here


@pytest.fixture
def thirty(tmp_path, photo_crop):
    """30 photo crops of about 150x180 in 3 folders, and the output of one run (level 8)."""
    src = tmp_path / "in"
    for i in range(30):
        p = src / f"d{i % 3}" / f"img{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_crop(150 + 7 * (i % 5), 180 - 5 * (i % 4), index=i)).save(p)
    ref = tmp_path / "ref"
    assert main(["encode", str(src), str(ref), *SLOW]) == 0
    return src, ref


def test_a_killed_run_resumes_to_the_bytes_of_an_uninterrupted_run(tmp_path, thirty):
    src, ref = thirty
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "npp_ext", "encode", str(src), str(out), *SLOW]
    done_at_kill = _stop_midway(cmd, out, 30, signal.SIGKILL)
    print(f"outputs when killed: {done_at_kill} of 30")
    assert 0 < done_at_kill < 30  # the kill really came mid-way
    assert not (out / "manifest.jsonl").exists()
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    encoded, reused, _ = _counts(proc.stdout)
    assert reused >= done_at_kill - 2  # at most the ones whose journal line was not written
    assert _tree(out) == _tree(ref)  # outputs, manifest and shard file: every byte


def test_ctrl_c_stops_with_a_message_and_the_run_resumes(tmp_path, thirty):
    src, ref = thirty
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "npp_ext", "encode", str(src), str(out), *SLOW]
    proc = _stop_midway(cmd, out, 30, signal.SIGINT, keep=True)
    assert proc.returncode == 130
    assert len(list(out.rglob("*.bpg"))) < 30  # it stopped mid-way
    assert "interrupted: run the same command again to resume" in proc.stderr.read().decode()
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
    assert main(["encode", str(src), str(out), *SLOW]) == 0
    assert _tree(out) == _tree(ref)


def test_shards_merge_into_exactly_the_manifest_of_one_run(collection, tmp_path, monkeypatch):
    one, split = tmp_path / "one", tmp_path / "split"
    assert main(["encode", str(collection), str(one), *ARGS]) == 3
    for i in range(3):
        assert not (split / "manifest.jsonl").exists()  # only once every shard is done
        main(["encode", str(collection), str(split), *ARGS, "--shard", f"{i}/3"])
    assert (split / "manifest.jsonl").read_bytes() == (one / "manifest.jsonl").read_bytes()
    assert {k: v for k, v in _tree(split).items() if k.endswith(".bpg")} == {
        k: v for k, v in _tree(one).items() if k.endswith(".bpg")
    }
    # torchrun's environment splits the same way as --shard.
    torch_split = tmp_path / "torchrun"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        main(["encode", str(collection), str(torch_split), *ARGS])
    assert (torch_split / "manifest.jsonl").read_bytes() == (one / "manifest.jsonl").read_bytes()
    # Merging by hand gives the same bytes again.
    (split / "manifest.jsonl").unlink()
    from npp_ext.collection.__main__ import main as collection_main

    assert collection_main(["merge", str(split / "manifest.jsonl"), "3"]) == 0
    assert (split / "manifest.jsonl").read_bytes() == (one / "manifest.jsonl").read_bytes()
    assert collection_main(["merge", str(split / "manifest.jsonl"), "4"]) == 1


def test_under_torchrun_each_rank_takes_its_shard(collection, tmp_path):
    pytest.importorskip("torch.distributed.run")
    for rel in BAD:  # a failed input makes a rank exit 3, which torchrun reports as a failure
        (collection / rel).unlink()
    one, ranks = tmp_path / "one", tmp_path / "ranks"
    assert main(["encode", str(collection), str(one), *ARGS]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "npp_ext", "encode", str(collection), str(ranks), *ARGS]  # fmt: skip
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "shard 0/2" in proc.stdout and "shard 1/2" in proc.stdout
    assert _bpg_and_manifest(ranks) == _bpg_and_manifest(one)


def test_shards_partition_the_inputs_and_disagreements_are_refused():
    sources = [f"dir{i % 7}/file{i}.png" for i in range(500)]
    owners = [[s for s in sources if Shard(i, 4).owns(s)] for i in range(4)]
    assert sorted(sum(owners, [])) == sorted(sources)
    assert all(60 < len(o) < 190 for o in owners)  # spread, not all on one
    assert shard_from(None, {}) == Shard(0, 1)
    assert shard_from(None, {"RANK": "2", "WORLD_SIZE": "3"}) == Shard(2, 3)
    assert shard_from("1/3", {"RANK": "1", "WORLD_SIZE": "3"}) == Shard(1, 3)
    for text, env in [("3/3", {}), ("x", {}), ("0/2", {"RANK": "1", "WORLD_SIZE": "2"})]:
        with pytest.raises(ValueError):
            shard_from(text, env)


def test_a_full_disk_stops_the_run_with_no_partial_file(collection, tmp_path, monkeypatch, capsys):
    out, ref = tmp_path / "out", tmp_path / "ref"
    main(["encode", str(collection), str(ref), *ARGS])
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["encode", str(collection), str(out), *ARGS]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "cannot write" in err
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
    written = {k: v for k, v in _tree(out).items() if k.endswith(".bpg")}
    assert 0 < len(written) < 9
    assert all(ref.joinpath(k).read_bytes() == v for k, v in written.items())  # all complete
    monkeypatch.setattr(os, "fsync", real_fsync)  # space again: the rerun completes the job
    assert main(["encode", str(collection), str(out), *ARGS]) == 3
    assert _tree(out) == _tree(ref)


def test_an_unwritable_output_stops_the_run_with_a_clear_message(collection, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "deeper").write_text("a file where the run needs a folder")
    assert main(["encode", str(collection), str(out), *ARGS]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("npp-ext: error: cannot write ") and "/sub/deeper/" in last
    assert "a file is in the way" in last
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    assert main(["encode", str(collection), str(blocked / "out"), *ARGS]) == 1
    assert "npp-ext: error: " in capsys.readouterr().err


def test_verify_catches_an_output_that_does_not_decode(collection, tmp_path, monkeypatch, capsys):
    real = bpg.encode_batch

    def damaged(images, *args, **kwargs):  # cuts the file of every 17-pixel-high image
        files = real(images, *args, **kwargs)
        return [f[:-20] if im.shape[0] == 17 else f for im, f in zip(images, files, strict=True)]

    monkeypatch.setattr(bpg, "encode_batch", damaged)
    out = tmp_path / "out"
    assert main(["encode", str(collection), str(out), *ARGS, "--verify", "--threads", "1"]) == 3
    assert "failed: c.bmp: verification failed" in capsys.readouterr().err
    assert not (out / "c.bpg").exists()
    row = {r["source"]: r for r in _rows(out / "manifest.jsonl")}["c.bmp"]
    assert row["status"] == "failed" and "verification failed" in row["reason"]
    unverified = tmp_path / "unverified"  # the same damage goes unnoticed without --verify
    assert main(["encode", str(collection), str(unverified), *ARGS]) == 3
    assert (unverified / "c.bpg").exists()


def test_decode_folder_to_png(collection, tmp_path, capsys):
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    main(["encode", str(collection), str(enc), *ARGS])
    (enc / "sub" / "junk.bpg").write_bytes(b"BPG\xfb not really")
    assert main(["decode", str(enc), str(dec), "--no-progress"]) == 3
    assert "failed: sub/junk.bpg" in capsys.readouterr().err
    pngs = sorted(p.relative_to(dec).as_posix() for p in dec.rglob("*.png"))
    assert pngs == sorted(
        str(Path(p).with_suffix(".png")) for p, _ in GOOD + [("sub/alpha.png", 0)]
    )
    for rel in pngs:
        with Image.open(dec / rel) as im:
            assert im.format == "PNG"
            np.testing.assert_array_equal(
                np.asarray(im), bpg.read(enc / Path(rel).with_suffix(".bpg"))
            )


def test_progress_redraws_on_a_terminal_and_stays_quiet_in_logs():
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, tty = io.StringIO(), Tty()
    for stream in (log, tty):
        bar = Progress(200, "encode", stream=stream)
        for i in range(200):
            bar.advance(failed=i == 3)
            if i % 50 == 0:
                time.sleep(0.11)
        bar.close()
    assert log.getvalue() == ""  # nothing until a minute has passed
    assert tty.getvalue().count("\r") >= 3 and "200/200 (100%), 1 failed" in tty.getvalue()


# ---- with an NPP ---------------------------------------------------------------------------


@pytest.fixture
def npp_checkpoint(tmp_path, torch):
    from npp_ext import checkpoint
    from npp_ext.models import NPP
    from npp_ext.options import EncodeOptions

    torch.manual_seed(0)
    model = NPP()
    with torch.no_grad():  # not quite the identity, so that the NPP shows in the bytes
        model.head[-1].weight.mul_(30)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
    path = tmp_path / "npp.pt"
    checkpoint.save(path, "npp", model, codec=EncodeOptions(level=LEVEL), qp_range=(22, 47))
    return path


def test_npp_output_does_not_depend_on_its_batch_neighbours(npp_checkpoint, photo_crop, torch):
    from npp_ext.collection.npp_stage import NPPRunner
    from npp_ext.options import EncodeOptions

    runner = NPPRunner(npp_checkpoint, qp=QP, codec=EncodeOptions(level=LEVEL), batch=3)
    a, b, c = (photo_crop(40, 56, index=i) for i in range(3))
    small = photo_crop(33, 49, index=4)  # same padded size (48x64) as the others
    alone, alone_u8 = runner.run_float([a])[0], runner.run([a])[0]
    for batch in ([b, a], [a, small, c], [c, b, a]):
        where = next(i for i, x in enumerate(batch) if x is a)
        assert torch.equal(runner.run_float(batch)[where], alone)  # every bit of the floats
        np.testing.assert_array_equal(runner.run(batch)[where], alone_u8)
    # uint8 as the codec quantizes a float tensor: bpg.encode(float) == bpg.encode(run(...))
    assert bpg.encode(alone, QP, level=LEVEL) == bpg.encode(alone_u8, QP, level=LEVEL)
    assert runner.run([a, small])[1].shape == small.shape
    assert not np.array_equal(alone_u8, a)  # the NPP did something
    with pytest.raises(ValueError, match="padded size"):
        runner.run([a, photo_crop(100, 56)])


def test_npp_runs_resume_and_shard_to_the_same_bytes(
    collection, tmp_path, npp_checkpoint, monkeypatch, capsys
):
    npp = ["--npp", str(npp_checkpoint), "--batch", "2"]
    one = tmp_path / "one"
    assert main(["encode", str(collection), str(one), *ARGS, *npp]) == 3
    rows = {r["source"]: r for r in _rows(one / "manifest.jsonl")}
    digest = hashlib.sha256(npp_checkpoint.read_bytes()).hexdigest()
    assert rows["a.png"]["npp_sha256"] == digest
    assert (rows["a.png"]["npp_batch"], rows["a.png"]["npp_device"]) == (2, "cpu")
    plain = bpg.encode(_expected_pixels(collection / "a.png"), QP, level=LEVEL)
    assert (one / "a.bpg").read_bytes() != plain
    # One file through the single-file command: the same bytes as in the folder run.
    single = tmp_path / "single.bpg"
    assert main(["encode", str(collection / "a.png"), str(single), *ARGS, *npp]) == 0
    assert single.read_bytes() == (one / "a.bpg").read_bytes()
    # Shards (other batch neighbours) and an interrupted run give the same bytes.
    split = tmp_path / "split"
    for i in range(2):
        main(["encode", str(collection), str(split), *ARGS, *npp, "--shard", f"{i}/2"])
    assert _bpg_and_manifest(split) == _bpg_and_manifest(one)
    from npp_ext.collection import pipeline

    real_write, count = pipeline.write_atomic, []

    def dies_after_three(path, data):
        count.append(path)
        if len(count) > 3:
            raise RuntimeError("killed")  # stands for a kill between two outputs
        real_write(path, data)

    monkeypatch.setattr(pipeline, "write_atomic", dies_after_three)
    resumed = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        main(["encode", str(collection), str(resumed), *ARGS, *npp])
    monkeypatch.setattr(pipeline, "write_atomic", real_write)
    capsys.readouterr()
    assert main(["encode", str(collection), str(resumed), *ARGS, *npp]) == 3
    encoded, reused, failed = _counts(capsys.readouterr().out)
    assert 1 <= reused <= 3 and encoded + reused == 9 and failed == 3
    assert _tree(resumed) == _tree(one)
    # Another batch size may round differently: it is another job, nothing is reused.
    assert main(["encode", str(collection), str(resumed), *ARGS, "--npp", str(npp_checkpoint)]) == 3
    assert "9 encoded, 0 already done" in capsys.readouterr().out


def _counts(stdout: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) encoded, (\d+) already done, (\d+) failed", stdout)
    assert m is not None, stdout
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _bpg_and_manifest(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _tree(root).items() if k.endswith((".bpg", "manifest.jsonl"))}


def test_folder_options_are_checked(collection, tmp_path, capsys):
    out = tmp_path / "o.bpg"
    png = collection / "a.png"
    assert main(["encode", str(png), str(out), *ARGS, "--shard", "0/2"]) == 1
    assert "--shard applies to a folder" in capsys.readouterr().err
    assert main(["encode", str(collection), str(tmp_path / "x"), *ARGS, "--shard", "2/2"]) == 1
    assert "shard must be I/N" in capsys.readouterr().err
    assert main(["encode", str(collection), str(tmp_path / "x"), *ARGS, "--npp", "nope.pt"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["encode", str(collection), str(png), *ARGS]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_the_memory_budget_bounds_decoded_pixels(collection, tmp_path, monkeypatch):
    from npp_ext.collection import encode_collection, pipeline

    peaks = []
    real_acquire = pipeline._Budget.acquire

    def acquire(self, n):
        real_acquire(self, n)
        peaks.append(self.used)

    monkeypatch.setattr(pipeline._Budget, "acquire", acquire)
    ref, tight = tmp_path / "ref", tmp_path / "tight"
    main(["encode", str(collection), str(ref), *ARGS])
    peaks.clear()
    s = encode_collection(collection, tight, qp=QP, options=EncodeOptions(level=LEVEL),
                          memory_budget=1, progress=False)  # fmt: skip
    assert (s.written, s.failed) == (9, 3)
    largest = max(h * w * 3 for _, (h, w) in GOOD)
    assert len(peaks) == 9 + 1 and max(peaks) <= largest  # one image at a time
    assert _tree(tight) == _tree(ref)
