"""Interoperability: the reference tools' test vectors, and FFmpeg as an independent decoder."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import ue7
from PIL import Image

import npp_ext
from npp_ext import bpg

npp_ext.register_bpg_opener()

PIX_FMT = {"gray": "gray", "420": "yuv420p", "422": "yuv422p", "444": "yuv444p"}
SUBSAMPLING = {"gray": None, "420": (1, 1), "422": (1, 0), "444": (0, 0)}


# ---- the reference decoder's outputs -----------------------------------------------------


def test_vector_decodes_exactly_to_the_reference_output(vector, load_png):
    expected = load_png(vector["dec_path"])
    data = vector["path"].read_bytes()
    got = bpg.decode(data)
    assert got.shape == expected.shape == (vector["height"], vector["width"], 3)
    assert int(np.abs(got.astype(np.int16) - expected).max()) == 0
    np.testing.assert_array_equal(bpg.read(vector["path"]), expected)


def test_vector_opens_exactly_with_pillow(vector, load_png):
    expected = load_png(vector["dec_path"])
    with Image.open(vector["path"]) as im:
        assert im.format == "BPG" and im.mode == "RGB"
        assert im.size == (vector["width"], vector["height"])
        np.testing.assert_array_equal(np.asarray(im), expected)


def test_vector_through_decode_yuv_and_the_colour_model(vector, load_png, colour_model):
    """decode_yuv + yuv_to_rgb (library) and + the numpy model of docs/color.md give the PNG."""
    expected = load_png(vector["dec_path"])
    yuv, info = bpg.decode_yuv(vector["path"].read_bytes())
    w, h, chroma = info.width, info.height, info.chroma
    np.testing.assert_array_equal(bpg.yuv_to_rgb(yuv, h, w, chroma), expected)
    np.testing.assert_array_equal(colour_model.yuv_to_rgb(yuv, w, h, chroma), expected)


def test_vector_header_fields(vector):
    data = vector["path"].read_bytes()
    assert len(data) == vector["bytes"]
    info = bpg.read_info(data)
    assert (info.width, info.height) == (vector["width"], vector["height"])
    assert info.chroma == vector["chroma"]
    assert (info.bit_depth, info.color_space, info.supported) == (8, 0, True)
    assert not (info.has_alpha or info.limited_range or info.animation)
    # the reference encoder's default hevc_header and picture_data_length 0
    pf = {"420": 1, "444": 3}[vector["chroma"]]
    w, h = vector["width"], vector["height"]

    prefix = b"BPG\xfb" + bytes([pf << 5, 0]) + ue7(w) + ue7(h) + b"\x00\x03\x92\x47\x40\x44\x01"
    assert data.startswith(prefix)
    assert info.hevc == {
        "log2_min_cb_size": 3,
        "log2_max_cb_size": 6,
        "log2_min_tb_size": 2,
        "log2_max_tb_size": 5,
        "max_transform_hierarchy_depth_intra": 2,
        "sao": True,
        "pcm": False,
        "strong_intra_smoothing": True,
    }


def test_all_vectors_decode_exactly_in_one_batch(vector_records, load_png):
    datas = [r["path"].read_bytes() for r in vector_records]
    expected = [load_png(r["dec_path"]) for r in vector_records]
    for threads in (1, 2):
        got = bpg.decode_batch(datas, threads=threads)
        assert len(got) == len(expected)
        for r, g, e in zip(vector_records, got, expected, strict=True):
            np.testing.assert_array_equal(g, e, err_msg=r["file"])
    # interleaved with our own files of other sizes (decoder contexts are reused)
    ours = [bpg.encode(e[:9, :17].copy(), 30) for e in expected[:3]]
    mixed = [d for pair in zip(datas, ours * 5, strict=False) for d in pair]
    got = bpg.decode_batch(mixed, threads=2)
    for i in range(0, len(got), 2):
        np.testing.assert_array_equal(got[i], expected[i // 2])
        np.testing.assert_array_equal(got[i + 1], bpg.decode(mixed[i + 1]))


def test_our_encoder_lands_near_the_reference_rate_and_quality(vector_records, load_png, psnr):
    """At the reference's settings our files are close in size and PSNR (x265 versions differ)."""
    chelsea = [r for r in vector_records if r["source"] == "chelsea.png"]
    assert chelsea
    source_dir = chelsea[0]["path"].parent
    for r in chelsea:
        img = load_png(source_dir / r["source"])
        assert img.shape == (r["height"], r["width"], 3)
        decoded, bits = bpg.roundtrip(img, r["q"], chroma=r["chroma"])
        ratio = bits / 8 / r["bytes"]
        delta = psnr(decoded, img) - r["psnr_rgb"]
        assert 0.8 < ratio < 1.25, (r["file"], ratio)
        assert -0.5 < delta < 1.0, (r["file"], delta)


# ---- FFmpeg as an independent decoder ----------------------------------------------------


def ffmpeg_decode(ffmpeg: str, stream: bytes, pix_fmt: str) -> bytes:
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-v", "error", "-f", "hevc", "-i", "-"]
        + ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
        input=stream,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert not proc.stderr, proc.stderr.decode(errors="replace")
    return proc.stdout


def compare_with_ffmpeg(ffmpeg: str, data: bytes) -> None:
    """FFmpeg's samples of to_annexb(data) equal decode_yuv(data) over the real area."""
    yuv, info = bpg.decode_yuv(data)
    w, h, chroma = info.width, info.height, info.chroma
    lay = bpg.yuv_layout(h, w, chroma)
    raw = ffmpeg_decode(ffmpeg, bpg.to_annexb(data), PIX_FMT[chroma])
    # The SPS conformance window crops in chroma units, so FFmpeg's frame is the real size
    # rounded up to the subsampling (one more column/row for odd 4:2:0 sizes).
    sub = SUBSAMPLING[chroma] or (0, 0)
    fw = -(-w // (1 << sub[0])) << sub[0]
    fh = -(-h // (1 << sub[1])) << sub[1]
    fcw, fch = (fw >> sub[0], fh >> sub[1]) if chroma != "gray" else (0, 0)
    assert len(raw) == fw * fh + 2 * fcw * fch, (len(raw), fw, fh, fcw, fch)
    planes_ff = [np.frombuffer(raw, np.uint8, fw * fh).reshape(fh, fw)]
    planes_ours = [yuv[: lay.y_size].reshape(lay.coded_h, lay.coded_w)]
    reals = [(h, w)]
    for i in range(2 if chroma != "gray" else 0):
        off = fw * fh + i * fcw * fch
        planes_ff.append(np.frombuffer(raw, np.uint8, fcw * fch, off).reshape(fch, fcw))
        start = lay.y_size + i * lay.c_size
        planes_ours.append(yuv[start : start + lay.c_size].reshape(lay.coded_ch, lay.coded_cw))
        reals.append((lay.chroma_h, lay.chroma_w))
    names = "YUV"[: len(planes_ff)]
    for name, ff, ours, (rh, rw) in zip(names, planes_ff, planes_ours, reals, strict=True):
        np.testing.assert_array_equal(ours[:rh, :rw], ff[:rh, :rw], err_msg=f"plane {name}")


# (height, width), chroma, qp
OUR_FFMPEG_CASES = [
    ((1, 1), "420", 30),
    ((2, 3), "420", 18),
    ((8, 8), "420", 40),
    ((9, 17), "420", 22),
    ((16, 16), "420", 35),
    ((33, 20), "420", 12),
    ((77, 101), "420", 30),
    ((64, 64), "420", 45),
    ((129, 255), "420", 20),
    ((1, 1), "444", 20),
    ((9, 17), "444", 40),
    ((33, 20), "444", 28),
    ((77, 101), "444", 16),
    ((5, 7), "422", 25),
    ((33, 20), "422", 35),
    ((9, 9), "gray", 30),
    ((77, 101), "gray", 20),
]


@pytest.mark.parametrize(
    ("size", "chroma", "qp"),
    OUR_FFMPEG_CASES,
    ids=[f"{h}x{w}-{c}-q{q}" for (h, w), c, q in OUR_FFMPEG_CASES],
)
def test_ffmpeg_decodes_our_files_to_the_same_samples(ffmpeg, photo_crop, size, chroma, qp):
    h, w = size
    compare_with_ffmpeg(ffmpeg, bpg.encode(photo_crop(h, w, index=w), qp, chroma=chroma))


def test_ffmpeg_decodes_the_vectors_to_the_same_samples(ffmpeg, vector):
    compare_with_ffmpeg(ffmpeg, vector["path"].read_bytes())
