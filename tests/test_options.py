"""The codec's vocabulary (npp_ext.options): one set of words, one message per bad value."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

import npp_ext
from npp_ext import _bpg, bpg, ops, options
from npp_ext.cli import main
from npp_ext.models import Proxy

IMG = np.full((16, 16, 3), 100, np.uint8)


def test_limits_are_the_c_librarys():
    assert options.MAX_SIDE == _bpg.MAX_SIDE
    assert options.MAX_PIXELS == _bpg.MAX_PIXELS
    assert bpg.MAX_SIDE == options.MAX_SIDE and bpg.MAX_PIXELS == options.MAX_PIXELS


@pytest.mark.parametrize("chroma", list(options.CHROMA_FORMATS))
def test_yuv_layout_is_the_c_librarys(chroma):
    code = options.chroma_code(chroma)
    for w in [*range(1, 20), 31, 32, 33, 63, 64, 65, 257]:
        for h in [1, 2, 7, 8, 9, 16, 17, 77]:
            ours = dataclasses.asdict(options.yuv_layout(h, w, chroma))
            theirs = _bpg.layout(w, h, code)  # the C API takes width first
            assert {k: ours[k] for k in theirs} == theirs, (w, h, chroma)


def test_chroma_names_and_codes():
    for name, code in options.CHROMA_FORMATS.items():
        assert options.chroma_name(name) == name
        assert options.chroma_name(code) == name  # the header's code
        assert options.chroma_code(name) == code
    for value in (420, 444, 422, np.int64(444), np.array(420), torch.tensor(444)):
        assert options.chroma_name(value) == str(int(value))
    for bad in ("411", "4:2:0", None, 420.0, 4, True, b"420"):
        with pytest.raises(ValueError, match="chroma must be one of"):
            options.chroma_name(bad)
    with pytest.raises(ValueError, match="chroma '422' is not supported by X"):
        options.kernel_chroma("422", "X")


def test_qp_lists():
    assert options.qp_list(30, 3) == [30, 30, 30]
    assert options.qp_list(np.int32(30), 2) == [30, 30]
    assert options.qp_list(torch.tensor(30), 2) == [30, 30]
    assert options.qp_list([1, np.int64(2)], 2) == [1, 2]
    assert options.qp_list(torch.tensor([22.0, 37.0]), 2) == [22, 37]  # whole floats
    assert options.qp_list(np.array([5, 6]), 2) == [5, 6]
    cases = [
        (29.0, TypeError, "qp must be an int or a sequence"),
        (True, TypeError, "qp must be an int or a sequence"),
        ("29", TypeError, "qp must be an int or a sequence"),
        (52, ValueError, "qp must be in 0..51, got 52"),
        ([30, 60], ValueError, "qp must be in 0..51, got 60"),
        ([30, 30, 30], ValueError, "2 images, 3 qps"),
        (torch.tensor([29.5, 30]), ValueError, "whole numbers"),
        (torch.tensor(29.5), ValueError, "whole numbers"),
        (np.zeros((2, 1), int), ValueError, r"shape \(2,\)"),
        ([30, 1.5], TypeError, "qp must be an int in 0..51, got float"),
    ]
    for value, exc, match in cases:
        with pytest.raises(exc, match=match):
            options.qp_list(value, 2)


def test_encode_options_are_validated_once_and_round_trip():
    opts = options.EncodeOptions(chroma=444, level=np.int64(3), x265_params=None)
    assert (opts.chroma, opts.level, opts.x265_params) == ("444", 3, "")
    assert opts.chroma_code == 3
    assert options.EncodeOptions(**opts.kwargs()) == opts
    assert bpg.encode(IMG, 30, **opts.kwargs()) == bpg.encode(IMG, 30, chroma="444", level=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.level = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="NUL"):
        options.EncodeOptions(x265_params="no-sao\0preset=slow")


def test_threads_and_verify():
    assert options.check_threads(None) == 0 and options.check_threads(np.int8(3)) == 3
    with pytest.raises(ValueError, match="threads must be in 0..1024"):
        options.check_threads(-1)
    assert options.check_verify(np.bool_(False)) is False
    with pytest.raises(TypeError, match="verify must be True or False"):
        options.check_verify(1)


# ---- every entry point refuses a bad value with the one message ----------------------------

_BAD = {  # setting -> (keyword arguments, the exception, its message)
    "chroma": ({"chroma": "411"}, ValueError),
    "qp": ({"qp": 52}, ValueError),
    "level": ({"level": 0}, ValueError),
}


def _message(call) -> tuple[type, str]:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return info.type, str(info.value)


def _entry_points(kw: dict, tmp_path) -> dict:
    """Calls of every public entry point with the settings in kw (defaults elsewhere)."""
    qp = kw.get("qp", 30)
    opts = {k: v for k, v in kw.items() if k != "qp"}
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    proxy = Proxy(N=8, M=12)
    yuv = bpg.rgb_to_yuv(IMG)
    pil = Image.fromarray(IMG)
    calls = {
        "bpg.encode": lambda: bpg.encode(IMG, qp, **opts),
        "bpg.roundtrip": lambda: bpg.roundtrip(IMG, qp, **opts),
        "bpg.encode_batch": lambda: bpg.encode_batch([IMG], qp, **opts),
        "bpg.roundtrip_batch": lambda: bpg.roundtrip_batch([IMG], qp, **opts),
        "bpg.write": lambda: bpg.write(tmp_path / "x.bpg", IMG, qp, **opts),
        "bpg.encode_yuv": lambda: bpg.encode_yuv(yuv, 16, 16, qp, **opts),
        "BPGProxyFn": lambda: npp_ext.BPGProxyFn.apply(
            x, qp, proxy, opts.get("level", 8), opts.get("chroma", "420")
        ),
        "bpg_proxy": lambda: npp_ext.bpg_proxy(x, qp, proxy, **opts),
        "Pillow save": lambda: pil.save(io.BytesIO(), format="BPG", qp=qp, **opts),
    }
    if "qp" not in kw:
        calls["BPGProxy"] = lambda: npp_ext.BPGProxy(proxy, **opts)
    if set(kw) == {"chroma"}:
        calls["bpg.rgb_to_yuv"] = lambda: bpg.rgb_to_yuv(IMG, kw["chroma"])
        calls["bpg.yuv_layout"] = lambda: bpg.yuv_layout(16, 16, kw["chroma"])
        calls["ops.rgb_to_yuv"] = lambda: ops.rgb_to_yuv(x.detach(), kw["chroma"])
        calls["ops.yuv_to_rgb"] = lambda: ops.yuv_to_rgb(
            torch.zeros(1, 384, dtype=torch.uint8), 16, 16, kw["chroma"]
        )
    return calls


@pytest.mark.parametrize("setting", list(_BAD))
def test_every_entry_point_refuses_a_bad_setting_with_one_message(setting, tmp_path, capsys):
    npp_ext.register_bpg_opener()
    kw, exc = _BAD[setting]
    results = {name: _message(call) for name, call in _entry_points(kw, tmp_path).items()}
    expected = _message(lambda: _entry_points(kw, tmp_path)["bpg.encode"]())
    assert expected[0] is exc
    assert {name: r for name, r in results.items() if r != expected} == {}, expected
    # The command line says the same (after its prefix).
    src = tmp_path / "in.png"
    Image.fromarray(IMG).save(src)
    flags = {"chroma": ["-f", "411"], "qp": ["-q", "52"], "level": ["-m", "0"]}[setting]
    assert main(["encode", str(src), str(tmp_path / "o.bpg"), *flags]) == 1
    assert capsys.readouterr().err.strip() == f"npp-ext: error: {expected[1]}"
    assert not (tmp_path / "o.bpg").exists()


def test_import_has_no_pillow_side_effect(tmp_path):
    import subprocess
    import sys

    from conftest import child_env

    code = (
        "import PIL.Image as I, npp_ext; print('BPG' in I.OPEN); "
        "npp_ext.register_bpg_opener(); print('BPG' in I.OPEN)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=child_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
