"""Smaller input defects of the Python layer: non-finite pixels, sparse tensors, NUL in
x265 parameters, partial files after a failed write, decoding onto the input, Pillow's
save_all and alpha."""

from __future__ import annotations

import errno
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import npp_ext
from npp_ext import bpg
from npp_ext.cli import main
from npp_ext.models import Proxy

IMG = np.full((16, 16, 3), 90, np.uint8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_refused_everywhere(bad):
    t = torch.full((3, 16, 16), 0.5)
    t[1, 3, 4] = bad
    for call in (
        lambda: bpg.encode(t, 30),
        lambda: bpg.roundtrip(t, 30),
        lambda: bpg.encode_batch(t[None], 30),
        lambda: bpg.roundtrip_batch([t], 30),
    ):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()
    x = t[None].clone().requires_grad_(True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        npp_ext.bpg_proxy(x, 30, Proxy(N=8, M=12))


def test_sparse_tensors_are_a_type_error():
    sparse = torch.zeros(3, 8, 8).to_sparse()
    with pytest.raises(TypeError, match="dense"):
        bpg.encode(sparse, 30)


def test_x265_params_with_a_nul_byte_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        bpg.encode(IMG, 30, x265_params="no-sao\0preset=slow")


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    path = tmp_path / "out.bpg"

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        bpg.write(path, IMG, 30)
    assert os.listdir(tmp_path) == []  # neither the file nor the temporary one
    # An existing file stays as it was.
    path.write_bytes(b"before")
    with pytest.raises(OSError):
        bpg.write(path, IMG, 30)
    assert path.read_bytes() == b"before" and os.listdir(tmp_path) == ["out.bpg"]


def test_written_files_get_the_usual_permissions(tmp_path):
    bpg.write(tmp_path / "a.bpg", IMG, 30)
    (tmp_path / "b").write_bytes(b"")
    assert os.stat(tmp_path / "a.bpg").st_mode == os.stat(tmp_path / "b").st_mode


def test_cli_decode_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "a.bpg"
    bpg.write(src, IMG, 30)
    data = src.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(src)
    assert main(["decode", str(link), str(link)]) == 1
    assert "is the input" in capsys.readouterr().err
    assert main(["decode", str(src), str(link)]) == 1  # through the link
    assert "is the input" in capsys.readouterr().err
    assert src.read_bytes() == data


def test_cli_decode_failure_leaves_no_partial_png(tmp_path, capsys):
    src = tmp_path / "a.bpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    data = bpg.encode(noise, 20)
    src.write_bytes(data[: len(data) // 2])  # cut short
    assert main(["decode", str(src), str(tmp_path / "out.png")]) == 1
    assert "npp-ext: error:" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["a.bpg"]


def test_pillow_save_all_of_several_frames_is_refused():
    npp_ext.register_bpg_opener()
    frames = [Image.fromarray(IMG), Image.fromarray(255 - IMG)]
    with pytest.raises(OSError, match="BPG animation is not supported"):
        frames[0].save(io.BytesIO(), format="BPG", save_all=True, append_images=frames[1:])
    buf = io.BytesIO()  # one frame with save_all is just a picture
    frames[0].save(buf, format="BPG", save_all=True, qp=30)
    assert buf.getvalue() == bpg.encode(IMG, 30)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_dropping_alpha_warns(mode):
    npp_ext.register_bpg_opener()
    img = Image.fromarray(IMG).convert(mode)
    with pytest.warns(UserWarning, match="alpha channel .* is dropped"):
        img.save(io.BytesIO(), format="BPG", qp=30)
    with pytest.warns(UserWarning, match="alpha"):
        bpg.encode(img, 30)
