"""The ``npp-ext`` command: the demo (the default job), encode, decode, info, and its errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env
from PIL import Image

from npp_ext import bpg
from npp_ext.cli import main

_ROW = re.compile(r"^\| (\w+) \| (\d+)x(\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| \d+ \|$")


def test_demo_table_matches_the_library(capsys, photos):
    # Settings other than the defaults, so that an ignored one shows in the numbers.
    argv = ["codec-demo", "--qp", "37", "--threads", "1", "--chroma", "444", "--level", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "level 3, chroma 444" in out
    rows = [m.groups() for line in out.splitlines() if (m := _ROW.match(line))]
    assert [r[0] for r in rows] == ["astronaut", "chelsea", "coffee"]
    for name, w, h, qp, bpp, psnr in rows:
        img = photos[name]
        assert (int(w), int(h), int(qp)) == (img.shape[1], img.shape[0], 37)
        rec, bits = bpg.roundtrip(img, 37, chroma="444", level=3)
        assert float(bpp) == pytest.approx(bits / (img.shape[0] * img.shape[1]), abs=5e-4)
        mse = np.mean((rec.astype(float) - img) ** 2)
        assert float(psnr) == pytest.approx(10 * np.log10(255**2 / mse), abs=5e-3)


@pytest.mark.parametrize(
    "args", [["--qp", "99"], ["--level", "0"], ["--threads", "-1"], ["--qp", "29", "52"]]
)
def test_demo_refuses_bad_settings_before_printing(capsys, args):
    assert main(["codec-demo", *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("npp-ext: error: ")


def test_encode_decode_info(tmp_path, capsys, photo_crop):
    img = photo_crop(40, 56, index=2)
    src, dst, png = tmp_path / "in.png", tmp_path / "out.bpg", tmp_path / "back.png"
    Image.fromarray(img).save(src)
    assert main(["encode", str(src), str(dst), "-q", "33", "-f", "444", "-m", "5"]) == 0
    assert dst.read_bytes() == bpg.encode(img, 33, chroma="444", level=5)
    assert main(["decode", str(dst), str(png)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(png)), bpg.read(dst))
    capsys.readouterr()
    assert main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "width: 56" in out and "height: 40" in out and "chroma: 444" in out


def test_user_errors_are_one_line_and_exit_1(tmp_path, capsys, photo_crop):
    png = tmp_path / "in.png"
    Image.fromarray(photo_crop(16, 16)).save(png)
    before = png.read_bytes()
    good = tmp_path / "good.bpg"
    good.write_bytes(bpg.encode(photo_crop(16, 16), 30))
    cut = tmp_path / "cut.bpg"
    cut.write_bytes(good.read_bytes()[:-4])
    cases = {
        "missing input": ["encode", str(tmp_path / "nope.png"), str(tmp_path / "o.bpg")],
        "not an image": ["encode", str(good.with_suffix(".txt")), str(tmp_path / "o.bpg")],
        "same file": ["encode", str(png), str(png)],
        "qp": ["encode", str(png), str(tmp_path / "o.bpg"), "-q", "52"],
        "missing dir": ["encode", str(png), str(tmp_path / "no" / "o.bpg")],
        "cut file": ["decode", str(cut), str(tmp_path / "o.png")],
        "decode to bpg": ["decode", str(good), str(tmp_path / "again.bpg")],
        "info of a png": ["info", str(png)],
    }
    good.with_suffix(".txt").write_text("not an image")
    for name, argv in cases.items():
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("npp-ext: error: ") and err.count("\n") == 1, (name, err)
    assert png.read_bytes() == before  # "same file" left the input alone
    assert not (tmp_path / "again.bpg").exists()


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["encode", "a.png"])
    assert e.value.code == 2
    assert "the following arguments are required: output" in capsys.readouterr().err


def test_bad_settings_are_refused_by_the_library_with_exit_1(tmp_path, capsys):
    # Checked by npp_ext.options, so the message is the one every entry point gives.
    assert (
        main(["encode", str(tmp_path / "a.png"), str(tmp_path / "b.bpg"), "-f", "420_video"]) == 1
    )
    assert "chroma must be one of '420', '444', '422', 'gray'" in capsys.readouterr().err


def test_huge_images_are_refused_with_a_message(tmp_path, capsys, monkeypatch):
    wide = tmp_path / "wide.png"
    Image.new("1", (bpg.MAX_SIDE + 1, 1)).save(wide)
    assert main(["encode", str(wide), str(tmp_path / "o.bpg")]) == 1
    assert "exceeds the size limit" in capsys.readouterr().err
    # Pillow's decompression-bomb guard is not an OSError: still a one-line error.
    bomb = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert main(["encode", str(bomb), str(tmp_path / "o.bpg")]) == 1
    assert "decompression bomb" in capsys.readouterr().err


def test_no_command_runs_the_demo(monkeypatch):
    # `npp-ext` with no command is the README's main job: the method's demo.
    from npp_ext import demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.update(out=out, **kw))
    assert main([]) == 0
    assert seen["out"] is None and seen["settings"] == demo.DemoSettings()


def test_codec_demo_prints_the_four_qps(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "npp_ext", "codec-demo"], capture_output=True, text=True,
        timeout=300, cwd=tmp_path, env=child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [m.groups() for ln in proc.stdout.splitlines() if (m := _ROW.match(ln))]
    assert [int(r[3]) for r in rows] == [22] * 3 + [29] * 3 + [37] * 3 + [47] * 3


def test_an_unbuilt_source_tree_says_what_to_do(tmp_path):
    # From a clean checkout's root `python -m npp_ext` imports the source tree, which holds no
    # compiled modules: the error must say so, not just "cannot import name '_bpg'".
    import shutil

    import npp_ext

    src = Path(npp_ext.__file__).parent
    shutil.copytree(src, tmp_path / "npp_ext", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    env = {k: v for k, v in child_env().items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.run(
        [sys.executable, "-m", "npp_ext", "info", "x.bpg"], capture_output=True, text=True,
        timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "codec module _bpg is not built" in proc.stderr
    assert "pip install ." in proc.stderr
