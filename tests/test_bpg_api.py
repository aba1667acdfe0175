"""npp_ext.bpg: round trips, header fields, colour maths, input and output types, files."""

from __future__ import annotations

import dataclasses
import io
from itertools import pairwise

import numpy as np
import pytest
from conftest import ue7

from npp_ext import bpg

SIZES = [(1, 1), (2, 3), (8, 8), (9, 9), (16, 16), (17, 9), (64, 64), (101, 77), (255, 129)]
CHROMAS = ["420", "444", "422", "gray"]
QPS = [10, 29, 45]
PIXEL_FORMAT = {"gray": 0, "420": 1, "422": 2, "444": 3}
# The colour hevc_header of the reference encoder's default (-m 8) for pictures of at
# least one 64x64 CTU: min CB 8, max CB 64, min TB 4, max TB 32, intra depth 2, SAO on,
# PCM off, strong intra smoothing on, no extension (docs/format.md#default-header).
DEFAULT_HEVC_HEADER = bytes([0x03, 0x92, 0x47, 0x40])
PPS_NAL_HEADER = bytes([0x44, 0x01])


def size_id(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# ---- an independent header parser (docs/format.md#layout) ---------------------------------


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        self.pos += 1
        return (byte >> (7 - ((self.pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)


def parse_bpg_header(data: bytes) -> dict:
    """Fields of a BPG file header, parsed from the format description alone."""
    assert data[:4] == b"BPG\xfb"
    pos = 4

    def read_ue7() -> int:
        nonlocal pos
        v = 0
        for i in range(5):
            b = data[pos]
            pos += 1
            assert not (i == 0 and b == 0x80)
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v
        raise AssertionError("ue7 longer than 5 bytes")

    b4, b5 = data[4], data[5]
    pos = 6
    f = dict(
        pixel_format=b4 >> 5,
        alpha1=(b4 >> 4) & 1,
        bit_depth=(b4 & 15) + 8,
        color_space=b5 >> 4,
        extension_present=(b5 >> 3) & 1,
        alpha2=(b5 >> 2) & 1,
        limited_range=(b5 >> 1) & 1,
        animation=b5 & 1,
    )
    f["width"] = read_ue7()
    f["height"] = read_ue7()
    f["picture_data_length"] = read_ue7()
    if f["extension_present"]:
        ext_len = read_ue7()
        pos += ext_len
    hevc_start = pos
    hevc_len = read_ue7()
    f["hevc_header"] = data[hevc_start : pos + hevc_len]  # with its ue7 length
    br = BitReader(data[pos : pos + hevc_len])
    f["log2_min_cb_size"] = br.ue() + 3
    f["log2_max_cb_size"] = f["log2_min_cb_size"] + br.ue()
    f["log2_min_tb_size"] = br.ue() + 2
    f["log2_max_tb_size"] = f["log2_min_tb_size"] + br.ue()
    f["max_transform_hierarchy_depth_intra"] = br.ue()
    f["sao"] = br.bit()
    f["pcm"] = br.bit()
    assert f["pcm"] == 0, "PCM fields are not expected from this encoder"
    f["strong_intra_smoothing"] = br.bit()
    f["sps_extension_present"] = br.bit()
    # the rest of the last byte is zero padding
    assert (br.pos + 7) // 8 == hevc_len, (br.pos, hevc_len)
    if br.pos % 8:
        assert br.bits(8 - br.pos % 8) == 0
    pos += hevc_len
    f["hevc_data_offset"] = pos
    return f


# ---- round trips -------------------------------------------------------------------------


@pytest.fixture
def roundtrip_input(photo_crop):
    def make(size: tuple[int, int], chroma: str) -> tuple[np.ndarray, np.ndarray]:
        """(input image, what a lossless HEVC stage would give back: the colour round trip)."""
        h, w = size
        img = photo_crop(h, w, index=h + w)
        if chroma == "gray":  # a gray input: the gray mode loses nothing else
            img = np.ascontiguousarray(img[:, :, 1])
        return img, bpg.yuv_to_rgb(bpg.rgb_to_yuv(img, chroma), h, w, chroma)

    return make


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_roundtrip_quality_and_bits_across_qps(roundtrip_input, psnr, size, chroma):
    img, expected = roundtrip_input(size, chroma)
    h, w = size
    psnrs, bits = [], []
    for qp in QPS:
        decoded, nbits = bpg.roundtrip(img, qp, chroma=chroma)
        assert isinstance(decoded, np.ndarray) and decoded.dtype == np.uint8
        assert decoded.shape == (h, w, 3)
        assert isinstance(nbits, int)
        data = bpg.encode(img, qp, chroma=chroma)
        assert nbits == len(data) * 8
        np.testing.assert_array_equal(bpg.decode(data), decoded)
        info = bpg.read_info(data)
        assert (info.width, info.height, info.chroma) == (w, h, chroma)
        if chroma == "gray":
            assert np.array_equal(decoded[..., 0], decoded[..., 1])
            assert np.array_equal(decoded[..., 0], decoded[..., 2])
        psnrs.append(psnr(decoded, expected))
        bits.append(nbits)
    # quality rises and size grows as QP falls
    assert psnrs[0] >= psnrs[1] >= psnrs[2], psnrs
    assert psnrs[0] > psnrs[2], psnrs
    assert bits[0] >= bits[1] >= bits[2], bits
    assert bits[0] > bits[2], bits
    # against the colour round trip alone (noise and garbage score 10..15 dB)
    assert psnrs[0] > 44 and psnrs[1] > 28 and psnrs[2] > 16, psnrs


def test_psnr_strictly_rises_as_qp_falls_on_a_photo(photo_crop, psnr):
    img = photo_crop(96, 128, index=4)
    qps = [45, 40, 35, 30, 25, 20, 15, 10]
    res = bpg.roundtrip_batch([img] * len(qps), qps)
    values = [psnr(d, img) for d in res.images]
    assert all(a < b for a, b in pairwise(values)), values
    assert all(a < b for a, b in pairwise(res.bits)), res.bits
    assert res.bits.dtype == np.int64
    assert list(res.bits) == [len(f) * 8 for f in res.files]


def test_low_qp_444_is_near_lossless(photo_crop, psnr):
    img = photo_crop(40, 56, index=2)
    decoded, _ = bpg.roundtrip(img, 0, chroma="444")
    assert psnr(decoded, img) > 50


def test_flat_image_roundtrips_almost_exactly(psnr):
    img = np.empty((24, 40, 3), np.uint8)
    img[:] = (200, 30, 90)
    for chroma in ("420", "444", "422"):
        decoded, _ = bpg.roundtrip(img, 22, chroma=chroma)
        assert np.abs(decoded.astype(int) - img).max() <= 2, chroma


@pytest.mark.parametrize("level", range(1, 10))
@pytest.mark.parametrize("size", [(1, 1), (16, 16), (17, 9), (48, 40)], ids=size_id)
def test_every_level_encodes_every_size(photo_crop, psnr, level, size):
    img = photo_crop(*size, index=5)
    data = bpg.encode(img, 20, level=level)
    expected = bpg.yuv_to_rgb(bpg.rgb_to_yuv(img), size[0], size[1])
    assert psnr(bpg.decode(data), expected) > 35


def test_x265_params_are_applied(photo_crop):
    img = photo_crop(64, 64, index=1)
    plain = bpg.encode(img, 29)
    assert bpg.encode(img, 29, x265_params="") == plain
    no_sao = bpg.encode(img, 29, x265_params="no-sao=1")
    assert parse_bpg_header(plain)["sao"] == 1
    assert parse_bpg_header(no_sao)["sao"] == 0
    assert bpg.read_info(no_sao).hevc["sao"] is False
    assert bpg.decode(no_sao).shape == (64, 64, 3)


# ---- header fields -----------------------------------------------------------------------


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_header_fields_follow_the_format(photo_crop, size, chroma):
    h, w = size
    data = bpg.encode(photo_crop(h, w, index=3), 33, chroma=chroma)
    f = parse_bpg_header(data)
    # fixed fields of this encoder
    assert f["pixel_format"] == PIXEL_FORMAT[chroma]
    assert (f["alpha1"], f["alpha2"], f["extension_present"]) == (0, 0, 0)
    assert (f["bit_depth"], f["color_space"], f["limited_range"], f["animation"]) == (8, 0, 0, 0)
    assert (f["width"], f["height"]) == (w, h)
    assert f["picture_data_length"] == 0
    assert data[:6] == bytes([0x42, 0x50, 0x47, 0xFB, PIXEL_FORMAT[chroma] << 5, 0x00])
    assert data[6:].startswith(ue7(w) + ue7(h) + b"\x00")
    # hevc_data starts with the PPS NAL unit, without a start code
    assert data[f["hevc_data_offset"] :].startswith(PPS_NAL_HEADER)
    # hevc_header: block sizes consistent with each other and with the padded layout
    lay = bpg.yuv_layout(h, w, chroma)
    min_cb, max_cb = f["log2_min_cb_size"], f["log2_max_cb_size"]
    assert 3 <= min_cb <= max_cb <= 6
    assert (1 << max_cb) <= min(lay.coded_w, lay.coded_h)  # at least one whole CTU
    assert lay.coded_w % (1 << min_cb) == 0 and lay.coded_h % (1 << min_cb) == 0
    assert f["log2_min_tb_size"] == 2
    assert f["log2_max_tb_size"] == min(5, max_cb)
    assert f["max_transform_hierarchy_depth_intra"] == 2
    assert (f["sao"], f["pcm"], f["strong_intra_smoothing"]) == (1, 0, 1)
    assert f["sps_extension_present"] == 0
    if min(lay.coded_w, lay.coded_h) >= 64:
        assert f["hevc_header"] == DEFAULT_HEVC_HEADER
    # read_info reports the same fields
    info = bpg.read_info(data)
    assert isinstance(info, bpg.BPGInfo)
    assert (info.width, info.height, info.chroma, info.bit_depth) == (w, h, chroma, 8)
    assert info.color_space == 0
    assert not (info.has_alpha or info.limited_range or info.animation)
    assert info.supported is True
    assert info.hevc == {
        "log2_min_cb_size": min_cb,
        "log2_max_cb_size": max_cb,
        "log2_min_tb_size": f["log2_min_tb_size"],
        "log2_max_tb_size": f["log2_max_tb_size"],
        "max_transform_hierarchy_depth_intra": 2,
        "sao": True,
        "pcm": False,
        "strong_intra_smoothing": True,
    }


def test_header_of_768x512_matches_the_notes_example(photos):
    img = np.ascontiguousarray(np.concatenate([photos["astronaut"]] * 2, axis=1)[:, :768])
    assert img.shape == (512, 768, 3)
    data = bpg.encode(img)
    expected = bytes.fromhex("425047FB2000860084000003924740")
    assert data[: len(expected)] == expected
    assert data[len(expected) : len(expected) + 2] == PPS_NAL_HEADER


def test_header_ue7_of_multi_byte_sizes(photo_crop):
    for w, h in [(127, 9), (128, 10), (300, 129)]:
        data = bpg.encode(photo_crop(h, w, index=w), 40, level=1)
        assert data[6:].startswith(ue7(w) + ue7(h) + b"\x00"), (w, h, data[:12].hex())
        assert len(ue7(w)) == (1 if w < 128 else 2)


def test_read_info_accepts_bytes_like_and_paths(tmp_path, photo_crop):
    data = bpg.encode(photo_crop(20, 30), 30)
    path = tmp_path / "x.bpg"
    path.write_bytes(data)
    infos = [
        bpg.read_info(data),
        bpg.read_info(bytearray(data)),
        bpg.read_info(memoryview(data)),
        bpg.read_info(np.frombuffer(data, np.uint8)),
        bpg.read_info(path),
        bpg.read_info(str(path)),
    ]
    assert all(i == infos[0] for i in infos)
    assert (infos[0].width, infos[0].height) == (30, 20)


# ---- colour maths: library against an independent numpy model ---------------------------

COLOUR_SIZES = [(1, 1), (1, 7), (6, 1), (3, 5), (7, 9), (9, 17), (33, 20), (77, 101), (130, 67)]


@pytest.mark.parametrize("chroma", CHROMAS)
def test_yuv_layout_matches_the_documented_rule(colour_model, chroma):
    for w in [1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 101, 255]:
        for h in [1, 5, 8, 9, 24, 77, 129]:
            want = colour_model.layout(w, h, chroma)
            got = dataclasses.asdict(bpg.yuv_layout(h, w, chroma))
            assert {k: got[k] for k in want} == want, (w, h)


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", COLOUR_SIZES, ids=size_id)
def test_rgb_to_yuv_is_bit_exact_with_the_notes(colour_model, random_image, size, chroma):
    h, w = size
    img = random_image(h, w)
    got = bpg.rgb_to_yuv(img, chroma)
    assert got.dtype == np.uint8 and got.ndim == 1
    assert got.size == bpg.yuv_layout(h, w, chroma).total
    np.testing.assert_array_equal(got, colour_model.rgb_to_yuv(img, chroma))


@pytest.mark.parametrize("chroma", CHROMAS)
def test_rgb_to_yuv_is_bit_exact_on_photos_and_extremes(colour_model, photo_crop, chroma):
    cases = [photo_crop(77, 101, index=i) for i in range(3)]
    extremes = np.zeros((9, 11, 3), np.uint8)
    extremes[::2, ::3] = 255
    extremes[1::2, :, 0] = 255
    cases += [extremes, np.full((5, 5, 3), 255, np.uint8), np.zeros((5, 5, 3), np.uint8)]
    for img in cases:
        np.testing.assert_array_equal(
            bpg.rgb_to_yuv(img, chroma), colour_model.rgb_to_yuv(img, chroma)
        )


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", COLOUR_SIZES, ids=size_id)
def test_rgb_to_yuv_pads_by_replicating_the_last_column_and_row(
    colour_model, random_image, size, chroma
):
    h, w = size
    lay = bpg.yuv_layout(h, w, chroma)
    planes = colour_model.split_planes(bpg.rgb_to_yuv(random_image(h, w), chroma), w, h, chroma)
    reals = [(h, w)] + [(lay.chroma_h, lay.chroma_w)] * (len(planes) - 1)
    for plane, (rh, rw) in zip(planes, reals, strict=True):
        real = plane[:rh, :rw]
        np.testing.assert_array_equal(
            plane[:rh, rw:], np.repeat(real[:, -1:], plane.shape[1] - rw, 1)
        )
        np.testing.assert_array_equal(
            plane[rh:, :], np.repeat(plane[rh - 1 : rh], plane.shape[0] - rh, 0)
        )


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", COLOUR_SIZES, ids=size_id)
def test_yuv_to_rgb_is_bit_exact_with_the_notes(colour_model, rng, size, chroma):
    h, w = size
    total = bpg.yuv_layout(h, w, chroma).total
    yuv = rng.integers(0, 256, total, dtype=np.uint8)
    got = bpg.yuv_to_rgb(yuv, h, w, chroma)
    assert got.shape == (h, w, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, colour_model.yuv_to_rgb(yuv, w, h, chroma))


@pytest.mark.parametrize("chroma", CHROMAS)
def test_yuv_to_rgb_ignores_the_padding(rng, chroma):
    w, h = 13, 11
    lay = bpg.yuv_layout(h, w, chroma)
    yuv = rng.integers(0, 256, lay.total, dtype=np.uint8)
    noisy = yuv.copy()
    y = noisy[: lay.y_size].reshape(lay.coded_h, lay.coded_w)
    y[h:, :] = rng.integers(0, 256, y[h:, :].shape)
    y[:, w:] = rng.integers(0, 256, y[:, w:].shape)
    for i in range(2 if chroma != "gray" else 0):
        start = lay.y_size + i * lay.c_size
        c = noisy[start : start + lay.c_size].reshape(lay.coded_ch, lay.coded_cw)
        c[lay.chroma_h :, :] = 0
        c[:, lay.chroma_w :] = 255
    np.testing.assert_array_equal(
        bpg.yuv_to_rgb(noisy, h, w, chroma), bpg.yuv_to_rgb(yuv, h, w, chroma)
    )


def test_gray_yuv_converts_to_equal_rgb_channels(rng):
    yuv = rng.integers(0, 256, bpg.yuv_layout(9, 10, "gray").total, dtype=np.uint8)
    rgb = bpg.yuv_to_rgb(yuv, 9, 10, "gray")
    y = yuv[: 16 * 16].reshape(16, 16)[:9, :10]
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], y)


def test_colour_conversion_accepts_the_other_input_types(random_image, torch):
    from PIL import Image

    img = random_image(9, 14)
    expected = bpg.rgb_to_yuv(img)
    np.testing.assert_array_equal(bpg.rgb_to_yuv(torch.from_numpy(img).permute(2, 0, 1)), expected)
    np.testing.assert_array_equal(bpg.rgb_to_yuv(Image.fromarray(img)), expected)
    yuv_t = torch.from_numpy(expected.copy())
    np.testing.assert_array_equal(bpg.yuv_to_rgb(yuv_t, 9, 14), bpg.yuv_to_rgb(expected, 9, 14))
    # a 2-D view with the right number of bytes is accepted as well
    lay = bpg.yuv_layout(9, 14)
    np.testing.assert_array_equal(
        bpg.yuv_to_rgb(expected.reshape(-1, lay.coded_w), 9, 14), bpg.yuv_to_rgb(expected, 9, 14)
    )


# ---- planar YUV encode/decode ------------------------------------------------------------


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", [(1, 1), (9, 17), (33, 20), (64, 64), (77, 101)], ids=size_id)
def test_encode_yuv_of_rgb_to_yuv_equals_encode(photo_crop, size, chroma):
    h, w = size
    img = photo_crop(h, w, index=7)
    data = bpg.encode(img, 31, chroma=chroma)
    assert bpg.encode_yuv(bpg.rgb_to_yuv(img, chroma), h, w, 31, chroma=chroma) == data


@pytest.mark.parametrize("chroma", CHROMAS)
@pytest.mark.parametrize("size", [(1, 1), (9, 17), (33, 20), (64, 64), (77, 101)], ids=size_id)
def test_decode_yuv_is_consistent_with_decode(colour_model, photo_crop, size, chroma):
    h, w = size
    data = bpg.encode(photo_crop(h, w, index=8), 27, chroma=chroma)
    yuv, info = bpg.decode_yuv(data)
    lay = bpg.yuv_layout(h, w, chroma)
    assert yuv.dtype == np.uint8 and yuv.shape == (lay.total,)
    assert info == bpg.read_info(data)
    rgb = bpg.decode(data)
    np.testing.assert_array_equal(bpg.yuv_to_rgb(yuv, h, w, chroma), rgb)
    np.testing.assert_array_equal(colour_model.yuv_to_rgb(yuv, w, h, chroma), rgb)
    # the padding of decoded planes replicates the real area's last column and row
    planes = colour_model.split_planes(yuv, w, h, chroma)
    reals = [(h, w)] + [(lay.chroma_h, lay.chroma_w)] * (len(planes) - 1)
    for plane, (rh, rw) in zip(planes, reals, strict=True):
        expected = np.pad(
            plane[:rh, :rw], ((0, plane.shape[0] - rh), (0, plane.shape[1] - rw)), "edge"
        )
        np.testing.assert_array_equal(plane, expected)


def test_encode_yuv_roundtrips_planes(rng, psnr):
    w, h = 40, 24
    lay = bpg.yuv_layout(h, w, "444")
    # smooth planes so that QP 4 keeps them almost exactly
    yy, xx = np.mgrid[0 : lay.coded_h, 0 : lay.coded_w]
    plane = (xx * 3 + yy * 2).astype(np.uint8)
    yuv = np.concatenate(
        [plane.reshape(-1), (255 - plane).reshape(-1), (plane // 2 + 64).reshape(-1)]
    )
    back, info = bpg.decode_yuv(bpg.encode_yuv(yuv, h, w, 4, chroma="444"))
    a = yuv.reshape(3, lay.coded_h, lay.coded_w)[:, :h, :w]
    b = back.reshape(3, lay.coded_h, lay.coded_w)[:, :h, :w]
    assert psnr(a, b) > 45
    assert (info.width, info.height, info.chroma) == (w, h, "444")


# ---- input and output types --------------------------------------------------------------


def test_gray_numpy_input_equals_replicated_rgb(photo_crop):
    gray = np.ascontiguousarray(photo_crop(21, 30)[:, :, 0])
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert bpg.encode(gray, 30) == bpg.encode(rgb, 30)
    decoded, bits = bpg.roundtrip(gray, 30)
    assert decoded.shape == (21, 30, 3)
    assert bits == len(bpg.encode(rgb, 30)) * 8


def test_non_contiguous_numpy_input_equals_its_copy(photos):
    view = photos["coffee"][10:80:2, 300:100:-3]
    assert not view.flags.c_contiguous
    assert bpg.encode(view, 28) == bpg.encode(np.ascontiguousarray(view), 28)
    channels_last = np.asfortranarray(np.ascontiguousarray(view))
    assert bpg.encode(channels_last, 28) == bpg.encode(np.ascontiguousarray(view), 28)


def test_one_row_arrays_with_odd_row_strides(photo_crop):
    # numpy calls these C-contiguous (a size-1 dimension's stride is free), and torch's
    # .numpy() of a one-row image gives them: the row stride must not be checked.
    for row in (photo_crop(1, 1), photo_crop(1, 5)):
        odd = np.lib.stride_tricks.as_strided(row, strides=(1, *row.strides[1:]))
        assert odd.flags.c_contiguous and odd.strides[0] != row.strides[0]
        assert bpg.encode(odd, 28) == bpg.encode(row.copy(), 28)
        assert bpg.rgb_to_yuv(odd).tobytes() == bpg.rgb_to_yuv(row.copy()).tobytes()


def test_torch_uint8_input_and_output(photo_crop, torch):
    img = photo_crop(19, 26, index=1)
    t = torch.from_numpy(img).permute(2, 0, 1)
    assert t.shape == (3, 19, 26)
    assert bpg.encode(t, 30) == bpg.encode(img, 30)
    decoded, bits = bpg.roundtrip(t, 30)
    assert isinstance(decoded, torch.Tensor) and decoded.dtype == torch.uint8
    assert decoded.shape == (3, 19, 26)
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), bpg.roundtrip(img, 30)[0])
    assert bits == len(bpg.encode(img, 30)) * 8


def test_torch_float_input_and_output(photo_crop, torch):
    img = photo_crop(19, 26, index=2)
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    assert bpg.encode(t, 30) == bpg.encode(img, 30)
    # values are clamped to [0, 1] and rounded to the nearest 8-bit level
    noisy = t + (torch.rand(t.shape, generator=torch.Generator().manual_seed(0)) - 0.5) / 300
    assert bpg.encode(noisy, 30) == bpg.encode(img, 30)
    assert bpg.encode(t * 3 - 1, 30) == bpg.encode(
        ((t * 3 - 1).clamp(0, 1) * 255).round().to(torch.uint8), 30
    )
    decoded, _ = bpg.roundtrip(t, 30)
    assert decoded.dtype == torch.float32 and decoded.shape == (3, 19, 26)
    assert float(decoded.min()) >= 0 and float(decoded.max()) <= 1
    expected = bpg.roundtrip(img, 30)[0]
    np.testing.assert_array_equal(
        (decoded * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), expected
    )
    # gradients are not needed to encode
    assert bpg.encode(t.clone().requires_grad_(True), 30) == bpg.encode(img, 30)
    assert bpg.encode(t.double(), 30) == bpg.encode(img, 30)
    # float in, float out in the input's own dtype
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        back, _ = bpg.roundtrip(t.to(dtype), 30)
        assert back.dtype == dtype
        torch.testing.assert_close(back.float(), decoded, atol=2e-3, rtol=0)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "1"])
def test_pil_input_in_any_mode(photo_crop, mode):
    from PIL import Image

    pil = Image.fromarray(photo_crop(23, 31, index=3)).convert(mode)
    expected = np.asarray(pil.convert("RGB"))
    assert bpg.encode(pil, 30) == bpg.encode(expected, 30)
    decoded, bits = bpg.roundtrip(pil, 30)
    assert isinstance(decoded, Image.Image)
    assert decoded.mode == "RGB" and decoded.size == (31, 23)
    np.testing.assert_array_equal(np.asarray(decoded), bpg.roundtrip(expected, 30)[0])


@pytest.mark.parametrize("output", ["numpy", "torch", "torch_float", "pil"])
def test_decode_output_kinds(photo_crop, output, torch):
    from PIL import Image

    data = bpg.encode(photo_crop(15, 22), 30)
    ref = bpg.decode(data)
    out = bpg.decode(data, output=output)
    if output == "numpy":
        assert isinstance(out, np.ndarray) and out.shape == (15, 22, 3)
        got = out
    elif output == "pil":
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (22, 15)
        got = np.asarray(out)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (3, 15, 22)
        assert out.dtype == (torch.uint8 if output == "torch" else torch.float32)
        if output == "torch_float":
            out = (out * 255).round().to(torch.uint8)
        got = out.permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, ref)
    batch = bpg.decode_batch([data, data], output=output)
    assert len(batch) == 2 and type(batch[0]) is type(bpg.decode(data, output=output))


def test_decode_accepts_bytes_like(photo_crop):
    data = bpg.encode(photo_crop(12, 12), 30)
    ref = bpg.decode(data)
    for obj in (bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(bpg.decode(obj), ref)
    # a bigger buffer seen through a slice
    padded = b"xx" + data + b"yy"
    np.testing.assert_array_equal(bpg.decode(memoryview(padded)[2:-2]), ref)


# ---- batches -----------------------------------------------------------------------------


def test_encode_batch_equals_single_encodes(photo_crop):
    images = [photo_crop(17, 23, index=i) for i in range(4)] + [photo_crop(40, 9, index=9)]
    files = bpg.encode_batch(images, 33, threads=2)
    assert files == [bpg.encode(im, 33) for im in images]
    assert bpg.encode_batch([]) == []


def test_stacked_numpy_batch(photo_crop):
    stack = np.stack([photo_crop(20, 28, index=i) for i in range(5)])
    res = bpg.roundtrip_batch(stack, 30, threads=2)
    assert isinstance(res, bpg.RoundTrip)
    assert isinstance(res.images, np.ndarray) and res.images.shape == (5, 20, 28, 3)
    assert res.files == [bpg.encode(im, 30) for im in stack]
    for f, im in zip(res.files, res.images, strict=True):
        np.testing.assert_array_equal(bpg.decode(f), im)
    assert bpg.encode_batch(stack, 30) == res.files


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_stacked_torch_batch(photo_crop, torch, dtype):
    stack = np.stack([photo_crop(20, 28, index=i) for i in range(3)])
    t = torch.from_numpy(stack).permute(0, 3, 1, 2)
    if dtype == "float32":
        t = t.float() / 255
    res = bpg.roundtrip_batch(t, [25, 35, 45])
    assert isinstance(res.images, torch.Tensor)
    assert res.images.shape == (3, 3, 20, 28) and res.images.dtype == getattr(torch, dtype)
    assert res.files == [bpg.encode(im, q) for im, q in zip(stack, [25, 35, 45], strict=True)]
    back = res.images if dtype == "uint8" else (res.images * 255).round().to(torch.uint8)
    for f, im in zip(res.files, back, strict=True):
        np.testing.assert_array_equal(bpg.decode(f), im.permute(1, 2, 0).numpy())


def test_list_batch_outputs_mirror_the_element_type(photo_crop, torch):
    from PIL import Image

    images = [photo_crop(12, 14, index=i) for i in range(3)]
    res = bpg.roundtrip_batch(images, 30)
    assert isinstance(res.images, list) and all(isinstance(a, np.ndarray) for a in res.images)
    pil = bpg.roundtrip_batch([Image.fromarray(a) for a in images], 30)
    assert all(isinstance(a, Image.Image) for a in pil.images)
    tens = bpg.roundtrip_batch([torch.from_numpy(a).permute(2, 0, 1) for a in images], 30)
    assert all(isinstance(a, torch.Tensor) and a.shape == (3, 12, 14) for a in tens.images)
    assert res.files == pil.files == tens.files
    for a, b, c in zip(res.images, pil.images, tens.images, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
        np.testing.assert_array_equal(a, c.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("kind", ["list", "tuple", "numpy", "numpy_int8", "torch"])
def test_per_image_qps(photo_crop, kind, torch):
    images = [photo_crop(16, 24, index=i) for i in range(4)]
    qps = [12, 51, 0, 37]
    qp_arg = {
        "list": qps,
        "tuple": tuple(qps),
        "numpy": np.array(qps),
        "numpy_int8": np.array(qps, np.int8),
        "torch": torch.tensor(qps),
    }[kind]
    res = bpg.roundtrip_batch(images, qp_arg, threads=2)
    assert res.files == [bpg.encode(im, q) for im, q in zip(images, qps, strict=True)]
    assert bpg.encode_batch(images, qp_arg) == res.files
    assert list(res.bits) == [8 * len(f) for f in res.files]


def test_numpy_integer_scalars_are_valid_qps(photo_crop):
    img = photo_crop(16, 16)
    expected = bpg.encode(img, 30)
    for q in (np.int64(30), np.uint8(30), np.int32(30)):
        assert bpg.encode(img, q) == expected


def test_chroma_given_as_its_header_code(photo_crop):
    img = photo_crop(16, 16)
    for name, code in PIXEL_FORMAT.items():
        assert bpg.encode(img, 30, chroma=code) == bpg.encode(img, 30, chroma=name)
    for name in ("420", "444", "422"):  # as ints, the form BPGProxyFn takes
        assert bpg.encode(img, 30, chroma=int(name)) == bpg.encode(img, 30, chroma=name)


def test_threads_zero_is_accepted(photo_crop):
    # The pool size it selects is checked in test_bpg_threads (test_threads_reach_the_pool).
    imgs = [photo_crop(16, 24, index=i) for i in range(3)]
    assert bpg.encode_batch(imgs, 30, threads=0) == bpg.encode_batch(imgs, 30)


# ---- files -------------------------------------------------------------------------------


def test_write_and_read_files(tmp_path, photo_crop, torch):
    img = photo_crop(33, 20, index=6)
    path = tmp_path / "img.bpg"
    n = bpg.write(path, img, 35, chroma="444")
    data = path.read_bytes()
    assert n == len(data)
    assert data == bpg.encode(img, 35, chroma="444")
    np.testing.assert_array_equal(bpg.read(path), bpg.decode(data))
    np.testing.assert_array_equal(bpg.read(str(path)), bpg.decode(data))
    t = bpg.read(path, output="torch")
    assert isinstance(t, torch.Tensor) and t.shape == (3, 33, 20)
    pil = bpg.read(path, output="pil")
    assert pil.mode == "RGB" and np.array_equal(np.asarray(pil), bpg.decode(data))
    np.testing.assert_array_equal(bpg.read(path, verify=False), bpg.decode(data))
    with pytest.raises(TypeError, match="verify"):  # passed on to decode, which checks it
        bpg.read(path, verify=1)
    assert bpg.read_info(path).chroma == "444"


def test_written_file_opens_with_the_pillow_plugin(tmp_path, photo_crop):
    from PIL import Image

    import npp_ext

    npp_ext.register_bpg_opener()
    img = photo_crop(18, 27)
    path = tmp_path / "a.bpg"
    bpg.write(path, img, 30)
    with Image.open(path) as im:
        assert im.format == "BPG"
        np.testing.assert_array_equal(np.asarray(im), bpg.read(path))
    buf = io.BytesIO(path.read_bytes())
    with Image.open(buf) as im:
        np.testing.assert_array_equal(np.asarray(im), bpg.read(path))


def test_to_annexb_adds_vps_and_sps(photo_crop):
    data = bpg.encode(photo_crop(24, 40), 30)
    stream = bpg.to_annexb(data)
    assert stream.startswith(b"\x00\x00\x00\x01")
    nal_types = []
    i = 0
    while True:
        i = stream.find(b"\x00\x00\x01", i)
        if i < 0:
            break
        nal_types.append((stream[i + 3] >> 1) & 0x3F)
        i += 3
    # VPS (32), SPS (33), PPS (34), then the slice of an IDR / CRA picture (16..21)
    assert nal_types[:3] == [32, 33, 34], nal_types
    assert any(16 <= t <= 21 for t in nal_types[3:]), nal_types
    # the file's NAL units follow byte for byte (start codes may differ in length)
    off = parse_bpg_header(data)["hevc_data_offset"]
    file_nals = [n.strip(b"\x00") for n in data[off:].split(b"\x00\x00\x01")]
    stream_nals = [n.strip(b"\x00") for n in stream.split(b"\x00\x00\x01")][1:]
    assert stream_nals[2:] == file_nals


def test_module_constants():
    assert bpg.MAX_SIDE >= 16384
    assert bpg.MAX_PIXELS >= 4096 * 4096
    assert issubclass(bpg.BPGError, ValueError)
    for name in bpg.__all__:
        assert hasattr(bpg, name), name


def test_small_argument_forms(photo_crop):
    """0-d arrays and tensors as QPs, numpy ints as chroma, a real bool for verify."""
    torch = pytest.importorskip("torch")
    img = photo_crop(16, 24)
    want = bpg.encode(img, 30, chroma="444")
    assert bpg.encode(img, np.array(30), chroma=np.int64(3)) == want
    assert bpg.encode(img, torch.tensor(30), chroma="444") == want
    assert bpg.encode_batch([img, img], np.array(30), chroma="444") == [want, want]
    with pytest.raises(TypeError, match="verify must be True or False"):
        bpg.decode(want, verify="no")
    with pytest.raises(TypeError, match="verify must be True or False"):
        bpg.decode_batch([want], verify=0)


def test_encode_yuv_refuses_a_float_tensor_with_a_type_error():
    torch = pytest.importorskip("torch")
    yuv = torch.zeros(bpg.yuv_layout(8, 8, "420").total, requires_grad=True)
    with pytest.raises(TypeError, match="uint8"):
        bpg.encode_yuv(yuv, 8, 8)


def test_a_bad_image_in_a_list_batch_is_named(photo_crop):
    good = photo_crop(8, 8)
    with pytest.raises(ValueError, match="image 1: image must be at least 1x1"):
        bpg.encode_batch([good, good[:, :0]], 30)


# ---- every entry point passes its options on ---------------------------------------------


def _through_every_encoder(img, tmp_path, **opts) -> list[bytes]:
    """The file each encoding entry point makes of img at QP 30 with opts."""
    h, w = img.shape[:2]
    chroma = opts.get("chroma", "420")
    rec, bits = bpg.roundtrip(img, 30, **opts)
    (rt_file,) = bpg.roundtrip_batch([img], 30, **opts).files
    path = tmp_path / "opts.bpg"
    bpg.write(path, img, 30, **opts)
    files = [
        bpg.encode(img, 30, **opts),
        *bpg.encode_batch([img], 30, **opts),
        rt_file,
        bpg.encode_yuv(bpg.rgb_to_yuv(img, chroma), h, w, 30, **opts),
        path.read_bytes(),
    ]
    assert bits == 8 * len(files[0])
    np.testing.assert_array_equal(rec, bpg.decode(files[0]))
    return files


def test_level_and_x265_params_reach_the_encoder_everywhere(photo_crop, tmp_path):
    img = photo_crop(48, 64, index=4)
    fast = _through_every_encoder(img, tmp_path, level=1)
    slow = _through_every_encoder(img, tmp_path, level=9)
    assert len(set(fast)) == 1 and len(set(slow)) == 1  # every entry point agrees
    assert fast[0] != slow[0]  # and the level changes the file (ultrafast vs placebo)
    no_sao = _through_every_encoder(img, tmp_path, x265_params="no-sao=1")
    assert len(set(no_sao)) == 1
    assert bpg.read_info(no_sao[0]).hevc["sao"] is False  # the header says what x265 did
    assert bpg.read_info(bpg.encode(img, 30)).hevc["sao"] is True


def test_verify_reaches_the_decoder_everywhere(testvectors_dir):
    # A cut in the slice data that verification names (see test_bpg_robustness): without
    # it the cut decodes, or is caught later by the undecoded-block check.
    cut = (testvectors_dir / "chelsea_odd_101x77_q30_420.bpg").read_bytes()[:393]
    decoders = {
        "decode": bpg.decode,
        "decode_batch": lambda d, **kw: bpg.decode_batch([d], **kw),
        "decode_yuv": bpg.decode_yuv,
    }
    for name, decode in decoders.items():
        with pytest.raises(bpg.BPGError, match="its decoding runs past its end"):
            decode(cut)
        try:
            decode(cut, verify=False)
        except bpg.BPGError as e:
            assert "not completely decoded" in str(e), name
