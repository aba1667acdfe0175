"""The Pillow plugin registered by ``npp_ext.register_bpg_opener()``: open, load, save."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError

import npp_ext
from npp_ext import bpg
from npp_ext.cli import main

npp_ext.register_bpg_opener()


def test_plugin_is_registered():
    assert "BPG" in Image.OPEN
    assert "BPG" in Image.SAVE
    assert Image.registered_extensions()[".bpg"] == "BPG"
    assert Image.MIME["BPG"] == "image/bpg"


def test_open_reads_the_header_lazily_then_decodes(tmp_path, photo_crop):
    img = photo_crop(37, 53, index=1)
    path = tmp_path / "a.bpg"
    bpg.write(path, img, 28)
    with Image.open(path) as im:
        assert im.format == "BPG"
        assert im.format_description
        assert im.mode == "RGB"
        assert im.size == (53, 37)
        assert im.get_format_mimetype() == "image/bpg"
        im.load()
        np.testing.assert_array_equal(np.asarray(im), bpg.read(path))
        im.load()  # a second load is a no-op
        np.testing.assert_array_equal(np.asarray(im), bpg.read(path))


def test_open_from_a_file_object_and_bytes_io(tmp_path, photo_crop):
    data = bpg.encode(photo_crop(20, 30, index=2), 33)
    expected = bpg.decode(data)
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im), expected)
    path = tmp_path / "b.bpg"
    path.write_bytes(data)
    with open(path, "rb") as f, Image.open(f) as im:
        np.testing.assert_array_equal(np.asarray(im), expected)


def test_open_detects_bpg_by_content_not_extension(tmp_path, photo_crop):
    data = bpg.encode(photo_crop(12, 12), 30)
    path = tmp_path / "picture.dat"
    path.write_bytes(data)
    with Image.open(path) as im:
        assert im.format == "BPG"
        np.testing.assert_array_equal(np.asarray(im), bpg.decode(data))


def test_image_operations_after_open(tmp_path, photo_crop):
    data = bpg.encode(photo_crop(60, 80, index=3), 30)
    expected = bpg.decode(data)
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im.crop((5, 6, 25, 36))), expected[6:36, 5:25])
    with Image.open(io.BytesIO(data)) as im:
        gray = im.convert("L")
        assert gray.size == (80, 60)
    with Image.open(io.BytesIO(data)) as im:
        im.thumbnail((40, 40))
        assert max(im.size) == 40
    with Image.open(io.BytesIO(data)) as im:
        copy = im.copy()
    np.testing.assert_array_equal(np.asarray(copy), expected)


@pytest.mark.parametrize("chroma", ["420", "444", "422", "gray"])
def test_save_with_options_equals_encode(tmp_path, photo_crop, chroma):
    arr = photo_crop(33, 41, index=4)
    img = Image.fromarray(arr)
    path = tmp_path / "c.bpg"
    img.save(path, qp=24, chroma=chroma, level=5)
    data = path.read_bytes()
    assert data == bpg.encode(arr, 24, chroma=chroma, level=5)
    assert bpg.read_info(data).chroma == chroma
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), bpg.decode(data))


def test_save_defaults_and_x265_params(tmp_path, photo_crop):
    arr = photo_crop(64, 64, index=5)
    img = Image.fromarray(arr)
    path = tmp_path / "d.bpg"
    img.save(path)
    assert path.read_bytes() == bpg.encode(arr)  # qp 29, 4:2:0, level 8
    img.save(path, qp=30, x265_params="no-sao=1")
    assert path.read_bytes() == bpg.encode(arr, 30, x265_params="no-sao=1")
    assert bpg.read_info(path).hevc["sao"] is False


def test_save_to_bytes_io_with_format(photo_crop):
    arr = photo_crop(21, 34, index=6)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="BPG", qp=31)
    assert buf.getvalue() == bpg.encode(arr, 31)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.size == (34, 21)
        np.testing.assert_array_equal(np.asarray(im), bpg.decode(buf.getvalue()))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK"])
def test_save_any_mode_as_rgb(photo_crop, mode):
    img = Image.fromarray(photo_crop(16, 24, index=7)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="BPG", qp=30)
    assert buf.getvalue() == bpg.encode(img.convert("RGB"), 30)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.mode == "RGB" and im.size == (24, 16)


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    """A 16-bit grey PNG opens as I;16 with values up to 65535; Pillow's RGB clips them."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    want = np.round(ramp / 257).astype(np.uint8)
    with Image.open(tmp_path / "grey16.png") as im:
        assert im.mode.startswith("I;16")
        im.save(tmp_path / "grey16.bpg", qp=10)
        direct = bpg.decode(bpg.encode(im, 10))
        # Exactly the rounded 8-bit levels go to the encoder: the same file as from them.
        assert bpg.encode(im, 10) == bpg.encode(np.repeat(want[:, :, None], 3, axis=2), 10)
    for out in (direct, bpg.read(tmp_path / "grey16.bpg")):
        assert np.abs(out.astype(int) - want[:, :, None]).max() <= 4
    assert main(["encode", str(tmp_path / "grey16.png"), str(tmp_path / "cli.bpg")]) == 0
    assert np.abs(bpg.read(tmp_path / "cli.bpg").astype(int) - want[:, :, None]).max() <= 8


@pytest.mark.parametrize("mode", ["I", "F"])
def test_modes_without_a_fixed_range_are_refused(mode):
    img = Image.fromarray(np.zeros((8, 8), np.uint8)).convert(mode)
    with pytest.raises(TypeError, match="no fixed value range"):
        bpg.encode(img, 30)
    with pytest.raises(TypeError, match="no fixed value range"):
        img.save(io.BytesIO(), format="BPG")


def test_save_round_trips_through_pillow(tmp_path, photos, psnr):
    img = Image.fromarray(photos["chelsea"])
    path = tmp_path / "cat.bpg"
    img.save(path, qp=20)
    with Image.open(path) as im:
        assert psnr(np.asarray(im), photos["chelsea"]) > 35


def test_save_rejects_bad_options(photo_crop):
    img = Image.fromarray(photo_crop(8, 8))
    with pytest.raises(ValueError, match="qp must be in 0..51"):
        img.save(io.BytesIO(), format="BPG", qp=99)
    with pytest.raises(ValueError, match="chroma"):
        img.save(io.BytesIO(), format="BPG", chroma="411")
    with pytest.raises(ValueError, match="level"):
        img.save(io.BytesIO(), format="BPG", level=0)
    with pytest.raises(TypeError, match="qp"):
        img.save(io.BytesIO(), format="BPG", qp="high")


def test_other_formats_still_open(photo_crop):
    buf = io.BytesIO()
    Image.fromarray(photo_crop(10, 10)).save(buf, format="PNG")
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.format == "PNG"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"BPG\xfb", id="magic_only"),
        pytest.param(b"BPG\xfb" + b"\xff" * 30, id="bad_header"),
        pytest.param(bytes.fromhex("425047fb2000860084000003924740"), id="header_only"),
    ],
)
def test_damaged_header_raises_on_open(data):
    with pytest.raises(OSError):
        with Image.open(io.BytesIO(data)) as im:
            im.load()


def test_damaged_picture_data_raises_on_load(photo_crop):
    data = bytearray(bpg.encode(photo_crop(32, 32, index=8), 20))
    damaged = bytes(data[:30]) + bytes(len(data) - 30)  # zero the slice data
    with Image.open(io.BytesIO(damaged)) as im:
        assert im.size == (32, 32)  # the header is intact
        with pytest.raises(OSError, match="broken BPG data"):  # what loaders catch
            im.load()


def test_unsupported_file_says_why(photo_crop):
    data = bpg.encode(photo_crop(16, 16), 30)
    ten_bit = data[:4] + bytes([data[4] | 0x02]) + data[5:]  # bit_depth_minus_8 = 2
    with pytest.raises(OSError, match="unsupported BPG file: .*10-bit"):
        Image.open(io.BytesIO(ten_bit))


def test_incremental_parser(photo_crop):
    data = bpg.encode(photo_crop(20, 28, index=3), 30)
    for step in (7, 64, len(data)):  # small chunks, larger ones, all at once
        parser = ImageFile.Parser()
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
        im = parser.close()
        np.testing.assert_array_equal(np.asarray(im), bpg.decode(data))
    for bad in (data[:-5], data[:30] + bytes(len(data) - 30)):  # cut short, zeroed
        for step in (7, len(data)):
            parser = ImageFile.Parser()
            for i in range(0, len(bad), step):
                parser.feed(bad[i : i + step])
            with pytest.raises(OSError):  # "broken BPG data" or Pillow's "incomplete"
                parser.close()


def test_non_bpg_bytes_are_not_claimed():
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image at all" * 4))


def test_vector_opens_with_pillow(testvectors_dir, load_png):
    path = testvectors_dir / "chelsea_odd_101x77_q30_420.bpg"
    with Image.open(path) as im:
        assert im.size == (101, 77)
        np.testing.assert_array_equal(
            np.asarray(im), load_png(testvectors_dir / "chelsea_odd_101x77_q30_420.dec.png")
        )


def test_a_broken_header_is_pillows_cannot_identify(photo_crop):
    """Loaders catch OSError: Image.open must not leak a ValueError for a damaged header."""
    data = bpg.encode(photo_crop(16, 24), 30)
    broken = data[:6] + b"\xff" * 8  # the magic, then sizes that never end
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(broken))


def test_verify_refuses_a_cut_file(testvectors_dir):
    data = (testvectors_dir / "chelsea_odd_101x77_q30_420.bpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # intact: no error
    with Image.open(io.BytesIO(data[:393])) as im:  # cut inside the slice data
        with pytest.raises(SyntaxError, match="truncated"):
            im.verify()


def test_load_verifies_the_slice_data(testvectors_dir):
    # Cut inside the slice data: only verification names it (test_bpg_robustness).
    cut = (testvectors_dir / "chelsea_odd_101x77_q30_420.bpg").read_bytes()[:393]
    with Image.open(io.BytesIO(cut)) as im:
        with pytest.raises(OSError, match="runs past its end"):
            im.load()
