"""Bad arguments, hostile and damaged files: Python exceptions with messages, never a crash.

Everything runs in-process: a crash or an abort in the native code takes the test run down
with it, and the fuzz test arms a watchdog that ends the process if a decode hangs.
"""

from __future__ import annotations

import faulthandler
import io
import random
import resource
import time
import tracemalloc

import numpy as np
import pytest
from conftest import ue7

from npp_ext import bpg

IMG = np.zeros((8, 8, 3), np.uint8)


def header_fields_end(data: bytes) -> tuple[int, int, int, int]:
    """Offsets of the width, height and picture_data_length ue7 fields and of hevc_header.

    Offsets past the end of a damaged file are clamped to its length.
    """
    pos = 6
    starts = []
    for _ in range(3):
        starts.append(min(pos, len(data)))
        while pos < len(data) and data[pos] & 0x80:
            pos += 1
        pos += 1
    return starts[0], starts[1], starts[2], min(pos, len(data))


def with_size(data: bytes, width_field: bytes, height_field: bytes) -> bytes:
    """The file with its width and height fields replaced by raw ue7 bytes."""
    w_at, h_at, len_at, _ = header_fields_end(data)
    return data[:w_at] + width_field + height_field + data[len_at:]


# ---- bad arguments -----------------------------------------------------------------------


def _meta_tensor():
    torch = pytest.importorskip("torch")
    return torch.zeros(3, 8, 8, device="meta")


def _pil(arr):
    from PIL import Image

    return Image.fromarray(arr)


def _torch(fn):
    def make():
        torch = pytest.importorskip("torch")
        return fn(torch)

    return make


# (id, call, exception type, fragment of the message)
BAD_ARGUMENTS = [
    ("float64_numpy", lambda: bpg.encode(np.zeros((8, 8, 3))), TypeError, "must be uint8"),
    ("float32_numpy", lambda: bpg.encode(np.zeros((8, 8, 3), np.float32)), TypeError, "uint8"),
    ("int16_numpy", lambda: bpg.encode(np.zeros((8, 8, 3), np.int16)), TypeError, "int16"),
    ("bool_numpy", lambda: bpg.encode(np.zeros((8, 8, 3), bool)), TypeError, "uint8"),
    ("hw4", lambda: bpg.encode(np.zeros((8, 8, 4), np.uint8)), ValueError, "(H, W, 3)"),
    ("hw1", lambda: bpg.encode(np.zeros((8, 8, 1), np.uint8)), ValueError, "(H, W, 3)"),
    ("1d", lambda: bpg.encode(np.zeros((3,), np.uint8)), ValueError, "(H, W, 3)"),
    ("4d_single", lambda: bpg.encode(np.zeros((1, 8, 8, 3), np.uint8)), ValueError, "shape"),
    ("empty_rows", lambda: bpg.encode(np.zeros((0, 8, 3), np.uint8)), ValueError, "at least 1x1"),
    ("empty_cols", lambda: bpg.encode(np.zeros((8, 0, 3), np.uint8)), ValueError, "at least 1x1"),
    ("empty_gray", lambda: bpg.encode(np.zeros((0, 5), np.uint8)), ValueError, "at least 1x1"),
    ("too_wide", lambda: bpg.encode(np.zeros((1, 16385, 3), np.uint8)), ValueError, "limit"),
    ("list_image", lambda: bpg.encode([[1, 2, 3]]), TypeError, "numpy array"),
    ("none_image", lambda: bpg.encode(None), TypeError, "NoneType"),
    ("qp_negative", lambda: bpg.encode(IMG, -1), ValueError, "qp must be in 0..51"),
    ("qp_52", lambda: bpg.encode(IMG, 52), ValueError, "qp must be in 0..51"),
    ("qp_bool", lambda: bpg.encode(IMG, True), TypeError, "got bool"),
    ("qp_str", lambda: bpg.encode(IMG, "29"), TypeError, "got str"),
    ("qp_float", lambda: bpg.encode(IMG, 1.5), TypeError, "got float"),
    ("qp_integral_float", lambda: bpg.encode(IMG, 29.0), TypeError, "qp must be an int"),
    ("qp_none", lambda: bpg.encode(IMG, None), TypeError, "qp"),
    ("level_0", lambda: bpg.encode(IMG, level=0), ValueError, "level must be in 1..9"),
    ("level_10", lambda: bpg.encode(IMG, level=10), ValueError, "level must be in 1..9"),
    ("chroma_411", lambda: bpg.encode(IMG, chroma="411"), ValueError, "'420', '444'"),
    ("chroma_code_4", lambda: bpg.encode(IMG, chroma=4), ValueError, "chroma must be one of"),
    ("chroma_none", lambda: bpg.encode(IMG, chroma=None), ValueError, "chroma"),
    ("x265_not_str", lambda: bpg.encode(IMG, x265_params=1), TypeError, "x265_params"),
    ("x265_fixed", lambda: bpg.encode(IMG, x265_params="ctu=32"), ValueError, "'ctu'"),
    ("x265_unknown", lambda: bpg.encode(IMG, x265_params="bogus=1"), ValueError, "bogus"),
    ("threads_1025", lambda: bpg.encode_batch([IMG], threads=1025), ValueError, "0..1024"),
    ("threads_neg", lambda: bpg.roundtrip_batch([IMG], threads=-2), ValueError, "threads"),
    ("threads_float", lambda: bpg.decode_batch([], threads=1.0), TypeError, "threads"),
    ("qps_too_few", lambda: bpg.encode_batch([IMG] * 3, [1, 2]), ValueError, "3 images, 2 qps"),
    ("qps_too_many", lambda: bpg.roundtrip_batch([IMG], [1, 2]), ValueError, "1 images, 2 qps"),
    ("qps_bad_item", lambda: bpg.encode_batch([IMG] * 2, [1, 99]), ValueError, "got 99"),
    ("qps_str", lambda: bpg.encode_batch([IMG], "2"), TypeError, "sequence of ints"),
    ("qps_2d", lambda: bpg.encode_batch([IMG] * 2, np.zeros((2, 1), int)), ValueError, "shape"),
    ("batch_not_list", lambda: bpg.encode_batch(IMG), ValueError, "(N, H, W, 3)"),
    ("batch_of_str", lambda: bpg.encode_batch("ab"), TypeError, "list of images"),
    ("batch_mixed_kinds", lambda: bpg.encode_batch([IMG, _pil(IMG)]), TypeError, "one type"),
    (
        "stack_3d",
        lambda: bpg.roundtrip_batch(np.zeros((2, 8, 8), np.uint8)),
        ValueError,
        "(N, H, W, 3)",
    ),
    ("meta_tensor", lambda: bpg.encode(_meta_tensor()), ValueError, "meta tensor"),
    ("meta_roundtrip", lambda: bpg.roundtrip(_meta_tensor()), ValueError, ".cpu()"),
    (
        "torch_hwc",
        _torch(lambda t: bpg.encode(t.zeros(8, 8, 3, dtype=t.uint8))),
        ValueError,
        "(3, H, W)",
    ),
    (
        "torch_int32",
        _torch(lambda t: bpg.encode(t.zeros(3, 8, 8, dtype=t.int32))),
        TypeError,
        "int32",
    ),
    ("torch_4d_single", _torch(lambda t: bpg.encode(t.zeros(1, 3, 8, 8))), ValueError, "(3, H, W)"),
    (
        "torch_stack_3d",
        _torch(lambda t: bpg.roundtrip_batch(t.zeros(3, 8, 8))),
        ValueError,
        "(N, 3, H, W)",
    ),
    (
        "torch_mixed_batch",
        _torch(lambda t: bpg.encode_batch([IMG, t.zeros(3, 8, 8)])),
        TypeError,
        "one type",
    ),
    ("decode_str", lambda: bpg.decode("BPG"), TypeError, "bytes-like"),
    ("decode_none", lambda: bpg.decode(None), TypeError, "bytes-like"),
    ("decode_int_array", lambda: bpg.decode(np.zeros(40, np.int32)), TypeError, "bytes-like"),
    ("decode_output", lambda: bpg.decode(b"BPG\xfb", output="png"), ValueError, "output must be"),
    (
        "decode_batch_output",
        lambda: bpg.decode_batch([bpg.encode(IMG)], output="png"),
        ValueError,
        "output must be",
    ),
    ("decode_batch_not_list", lambda: bpg.decode_batch(b"BPG\xfb"), TypeError, "list"),
    ("decode_batch_item", lambda: bpg.decode_batch([b"x", 5]), TypeError, "bytes-like"),
    ("read_info_int", lambda: bpg.read_info(7), TypeError, "bytes-like"),
    ("yuv_layout_w0", lambda: bpg.yuv_layout(5, 0), ValueError, "at least 1x1"),
    ("yuv_layout_huge", lambda: bpg.yuv_layout(10**6, 5), ValueError, "size limit"),
    ("yuv_layout_chroma", lambda: bpg.yuv_layout(5, 5, "400"), ValueError, "chroma"),
    (
        "yuv_to_rgb_size",
        lambda: bpg.yuv_to_rgb(np.zeros(10, np.uint8), 16, 16),
        ValueError,
        "384 bytes",
    ),
    (
        "yuv_to_rgb_dtype",
        lambda: bpg.yuv_to_rgb(np.zeros(384, np.int32), 16, 16),
        TypeError,
        "uint8",
    ),
    (
        "yuv_to_rgb_w0",
        lambda: bpg.yuv_to_rgb(np.zeros(384, np.uint8), 0, 16),
        ValueError,
        "at least 1x1",
    ),
    (
        "encode_yuv_size",
        lambda: bpg.encode_yuv(np.zeros(383, np.uint8), 16, 16),
        ValueError,
        "384 bytes",
    ),
    (
        "encode_yuv_qp",
        lambda: bpg.encode_yuv(np.zeros(384, np.uint8), 16, 16, 60),
        ValueError,
        "qp",
    ),
    ("encode_yuv_list", lambda: bpg.encode_yuv([0] * 384, 16, 16), TypeError, "uint8"),
    ("rgb_to_yuv_float", lambda: bpg.rgb_to_yuv(np.zeros((4, 4, 3))), TypeError, "uint8"),
    ("rgb_to_yuv_chroma", lambda: bpg.rgb_to_yuv(IMG, "410"), ValueError, "chroma"),
]


@pytest.mark.parametrize(
    ("call", "exc", "fragment"),
    [pytest.param(c, e, f, id=i) for i, c, e, f in BAD_ARGUMENTS],
)
def test_bad_arguments_raise_with_a_message(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


def test_empty_batches():
    assert bpg.encode_batch([]) == []
    assert bpg.decode_batch([]) == []
    res = bpg.roundtrip_batch([])
    assert res.files == [] and list(res.images) == [] and res.bits.shape == (0,)


def test_empty_stacked_numpy_batch_gives_an_empty_stack():
    res = bpg.roundtrip_batch(np.zeros((0, 8, 8, 3), np.uint8))
    assert res.files == []
    assert isinstance(res.images, np.ndarray) and res.images.shape == (0, 8, 8, 3)


def test_empty_stacked_torch_batch_gives_an_empty_stack(torch):
    res = bpg.roundtrip_batch(torch.zeros(0, 3, 8, 8))
    assert res.files == []
    assert isinstance(res.images, torch.Tensor) and res.images.shape == (0, 3, 8, 8)


def test_batch_error_names_the_image():
    with pytest.raises(ValueError, match="got 60"):
        bpg.roundtrip_batch([IMG, IMG], [3, 60])
    good = bpg.encode(IMG)
    with pytest.raises(bpg.BPGError, match="image 1: .*bad magic"):
        bpg.decode_batch([good, b"GIF89a" + bytes(40), good])


# ---- damaged and hostile files -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_files(photos) -> dict[str, bytes]:
    """Small encodings of real image crops (with enough slice data to damage)."""
    a, c = photos["astronaut"], photos["coffee"]
    return {
        "16x16_420": bpg.encode(np.ascontiguousarray(c[50:66, 60:76]), 12),
        "33x20_420": bpg.encode(np.ascontiguousarray(a[200:220, 180:213]), 20),
        "16x16_444": bpg.encode(np.ascontiguousarray(a[300:316, 250:266]), 16, chroma="444"),
        "12x10_422": bpg.encode(np.ascontiguousarray(c[100:110, 200:212]), 18, chroma="422"),
        "9x9_gray": bpg.encode(np.ascontiguousarray(a[100:109, 100:109]), 10, chroma="gray"),
        "5x3_420": bpg.encode(np.ascontiguousarray(c[300:303, 300:305]), 8),
    }


def decode_or_error(data: bytes) -> np.ndarray | None:
    """The decoded image, or None when the library raised BPGError/ValueError with a message.

    Any other exception propagates and fails the test.
    """
    try:
        out = bpg.decode(data)
    except ValueError as e:  # BPGError is a ValueError
        assert str(e), "exception without a message"
        return None
    info = bpg.read_info(data)  # a decodable file has a readable header
    assert out.dtype == np.uint8 and out.shape == (info.height, info.width, 3)
    assert info.supported
    return out


# (id, data, fragment of the message)
BAD_FILES = [
    ("empty", b"", "empty"),
    ("one_byte", b"B", "too short"),
    ("magic_only", b"BPG\xfb", "ends inside"),
    ("wrong_magic_png", b"\x89PNG\r\n\x1a\n" + bytes(40), "bad magic"),
    ("wrong_magic_case", b"bpg\xfb" + bytes(40), "bad magic"),
    ("zeros", bytes(64), "bad magic"),
    ("header_no_hevc", bytes.fromhex("425047fb2000101000"), "ends inside"),
    ("zero_width", bytes.fromhex("425047fb2000001000") + b"\x03\x92\x47\x40\x44\x01", "> 0"),
    ("bad_pixel_format", bytes.fromhex("425047fbe000101000039247404401"), "pixel_format"),
    ("bad_bit_depth", bytes.fromhex("425047fb2f00101000039247404401"), "bit depth"),
    ("bad_color_space", bytes.fromhex("425047fb20f0101000039247404401"), "color_space"),
    ("ue7_leading_0x80", bytes.fromhex("425047fb200080101000039247404401"), ""),
    ("ue7_six_bytes", bytes.fromhex("425047fb2000ffffffffff7f1000039247404401"), ""),
]


@pytest.mark.parametrize(("data", "fragment"), [pytest.param(d, f, id=i) for i, d, f in BAD_FILES])
def test_bad_files_raise_bpg_error(data, fragment):
    for call in (bpg.decode, bpg.read_info, bpg.decode_yuv, bpg.to_annexb):
        with pytest.raises(bpg.BPGError) as info:
            call(data)
        assert str(info.value)
        assert fragment in str(info.value), (call.__name__, str(info.value))
    with pytest.raises(bpg.BPGError):
        bpg.decode_batch([data])


def test_unsupported_header_features_are_refused(small_files):
    base = small_files["16x16_420"]
    cases = {
        "alpha": bytes([base[4] | 0x10]) + base[5:6],
        "10-bit": bytes([base[4] | 0x02]) + base[5:6],
        "rgb": base[4:5] + bytes([0x10]),
        "limited_range": base[4:5] + bytes([0x02]),
        "animation": base[4:5] + bytes([0x01]),
        "cmyk": base[4:5] + bytes([0x04]),
        "mpeg2_siting": bytes([(4 << 5) | (base[4] & 0x1F)]) + base[5:6],
    }
    for name, fields in cases.items():
        data = base[:4] + fields + base[6:]
        with pytest.raises(bpg.BPGError) as info:
            bpg.decode(data)
        assert str(info.value), name
        with pytest.raises(bpg.BPGError):
            bpg.decode_yuv(data)
        try:
            info2 = bpg.read_info(data)
        except bpg.BPGError:
            continue
        assert info2.supported is False, name
        assert info2.unsupported_reason == str(info.value), name


@pytest.mark.parametrize(
    "name", ["16x16_420", "33x20_420", "16x16_444", "12x10_422", "9x9_gray", "5x3_420"]
)
def test_every_truncation_of_a_small_file_raises(small_files, name):
    """A prefix of a file never decodes to a different picture: it raises BPGError.

    (Dropping only trailing bytes that carry no picture data may decode to the same pixels.)
    """
    data = small_files[name]
    full = bpg.decode(data)
    silent = []
    for n in range(len(data)):
        out = decode_or_error(data[:n])
        if out is not None and not np.array_equal(out, full):
            silent.append(n)
    assert not silent, f"{len(data)}-byte file: prefixes {silent} decode to wrong pixels"


@pytest.mark.parametrize(
    "file", ["chelsea_odd_101x77_q30_420.bpg", "chelsea_q47_420.bpg", "coffee_q37_444.bpg"]
)
def test_truncations_of_a_test_vector_raise(testvectors_dir, file):
    """Every cut raises, inside the CABAC slice data too (the decoder's verification)."""
    data = (testvectors_dir / file).read_bytes()
    full = bpg.decode(data)
    stride = max(1, len(data) // 300)
    lengths = sorted(set(range(0, 64)) | set(range(0, len(data), stride)))
    silent = []
    for n in lengths:
        out = decode_or_error(data[:n])
        if out is not None and not np.array_equal(out, full):
            silent.append(n)
    assert not silent, f"{file} ({len(data)} bytes): prefixes {silent} decode to wrong pixels"


def test_verification_refuses_a_cut_that_can_slip_through_without_it(testvectors_dir):
    """What verify=True is for: without it this cut in the slice data is not reliably caught.

    The slice ends early without an error and leaves blocks undecoded. With verify=False
    only the undecoded-block check stands between the cut and wrong pixels, and for a
    picture with SAO (the reference encoder's default) libde265 decodes into a buffer of
    its own allocator, which may hold anything. Either way the result must never be taken
    for the real picture.
    """
    data = (testvectors_dir / "chelsea_odd_101x77_q30_420.bpg").read_bytes()
    full = bpg.decode(data)
    for _ in range(3):
        with pytest.raises(bpg.BPGError, match="truncated"):
            bpg.decode(data[:393])
        try:
            out = bpg.decode(data[:393], verify=False)
        except bpg.BPGError as e:
            assert "not completely decoded" in str(e)
        else:
            assert not np.array_equal(out, full), "a cut file decoded to the real picture"


def test_without_verification_a_cut_is_judged_the_same_whatever_ran_before(photos):
    """verify=False: blocks a cut slice never reached are found, wherever the buffer came from.

    Without SAO libde265 decodes into buffers we hand it, filled with a pattern no real
    picture has, so the outcome of each cut is a function of the bytes alone: the same
    in a second pass where pictures of other sizes are decoded between the cuts.
    """
    img = np.ascontiguousarray(photos["astronaut"][:200, :232])
    data = bpg.encode(img, qp=40, x265_params="sao=0")
    assert bpg.read_info(data).hevc["sao"] is False
    others = [bpg.encode(np.full((h, w, 3), 128, np.uint8), 30) for h, w in ((24, 40), (72, 104))]

    def outcome(n: int) -> str:
        try:
            return bpg.decode(data[:n], verify=False).tobytes().hex()
        except bpg.BPGError as e:
            return str(e)

    cuts = range(40, len(data) - 1)
    first = {n: outcome(n) for n in cuts}
    undecoded = [n for n, o in first.items() if "not completely decoded" in o]
    # Two cuts of this file end the slice early without an error (x265 3.5).
    assert undecoded, "no cut was refused for undecoded blocks: the check, or the file, changed"
    changed = []
    for n, before in first.items():
        bpg.decode(others[n % 2], verify=False)
        if outcome(n) != before:
            changed.append(n)
    assert not changed, f"cuts {changed} (of {len(data)} bytes) were judged differently"


HOSTILE_SIZES = [
    ("100000x100000", ue7(100000), ue7(100000)),
    ("16384x16384", ue7(16384), ue7(16384)),
    ("16385x1", ue7(16385), ue7(1)),
    ("1x16385", ue7(1), ue7(16385)),
    ("2^32-1 x 1", bytes.fromhex("8fffffff7f"), ue7(1)),
    ("2^32-1 x 2^32-1", bytes.fromhex("8fffffff7f"), bytes.fromhex("8fffffff7f")),
    ("9000x9000", ue7(9000), ue7(9000)),
]


@pytest.mark.parametrize(
    ("width_field", "height_field"), [pytest.param(w, h, id=i) for i, w, h in HOSTILE_SIZES]
)
def test_hostile_sizes_raise_without_allocating(small_files, width_field, height_field):
    from PIL import Image

    data = with_size(small_files["16x16_420"], width_field, height_field)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()  # numpy's buffers are traced
    try:
        for call in (bpg.decode, bpg.decode_yuv, bpg.read_info, lambda d: bpg.decode_batch([d])):
            with pytest.raises(bpg.BPGError, match="size limit"):
                call(data)
        with pytest.raises((bpg.BPGError, OSError)):
            Image.open(io.BytesIO(data)).load()
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert traced_peak < 16 << 20, f"{traced_peak >> 20} MiB allocated"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB"


def test_claimed_size_larger_than_the_data_never_crashes(small_files):
    base = small_files["33x20_420"]
    for w, h in [(64, 64), (33, 21), (34, 20), (1000, 8), (4096, 4096)]:
        decode_or_error(with_size(base, ue7(w), ue7(h)))
    # and smaller than the data
    for w, h in [(1, 1), (32, 20), (16, 16), (8, 40)]:
        decode_or_error(with_size(base, ue7(w), ue7(h)))


def test_picture_data_length_is_honoured(small_files):
    data = small_files["33x20_420"]
    _, _, len_at, hevc_at = header_fields_end(data)
    hevc_header_len = data[hevc_at] + 1
    payload = len(data) - hevc_at - hevc_header_len
    full = bpg.decode(data)
    # the exact length, with trailing garbage after the picture data
    exact = data[:len_at] + ue7(payload) + data[len_at + 1 :]
    np.testing.assert_array_equal(bpg.decode(exact + b"\xde\xad\xbe\xef" * 8), full)
    # a length beyond the end of the file
    longer = data[:len_at] + ue7(payload + 1) + data[len_at + 1 :]
    with pytest.raises(bpg.BPGError, match="picture_data_length"):
        bpg.decode(longer)


# ---- fuzzing -----------------------------------------------------------------------------

FUZZ_SEED = 0x5EED_B96
FUZZ_COUNT = 20_000
FUZZ_WATCHDOG_S = 300  # ends the process (with tracebacks) if a decode hangs


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One random damage of a file: flips, insertions, deletions, cuts, header edits."""
    if len(data) < 8:
        return data + bytes([rnd.randrange(256)])
    b = bytearray(data)
    kind = rnd.randrange(10)
    if kind == 0:  # byte replacements
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif kind == 1:  # bit flips
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    elif kind == 2:  # insertion
        at = rnd.randrange(len(b) + 1)
        b[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
    elif kind == 3:  # deletion
        at = rnd.randrange(len(b))
        del b[at : at + rnd.randint(1, 8)]
    elif kind == 4:  # truncation
        del b[rnd.randrange(len(b)) :]
    elif kind == 5:  # header bytes 4 and 5 (format, flags)
        b[rnd.choice((4, 5))] = rnd.randrange(256)
    elif kind == 6:  # width / height / picture_data_length fields
        w_at, h_at, len_at, hevc_at = header_fields_end(bytes(b))
        field = rnd.choice(((w_at, h_at), (h_at, len_at), (len_at, hevc_at)))
        value = rnd.choice(
            [0, 1, rnd.randint(1, 40), rnd.randint(1, 5000), rnd.randint(0, 2**32 - 1)]
        )
        raw = rnd.choice([ue7(value), bytes([0x80]) + ue7(value), b"\xff" * rnd.randint(1, 6)])
        b[field[0] : field[1]] = raw
    elif kind == 7:  # hevc_header: its length or its bits
        _, _, _, hevc_at = header_fields_end(bytes(b))
        if hevc_at >= len(b):
            b[-1] ^= 0xFF
        elif rnd.random() < 0.5:
            b[hevc_at] = rnd.choice([0, 1, 2, 4, 5, 0x7F, 0x81, rnd.randrange(256)])
        else:
            i = hevc_at + 1 + rnd.randrange(max(1, b[hevc_at]))
            b[min(i, len(b) - 1)] = rnd.randrange(256)
    elif kind == 8:  # NAL-level damage: start codes, NAL headers, duplicated chunks
        choice = rnd.randrange(3)
        if choice == 0:
            at = rnd.randrange(len(b) + 1)
            b[at:at] = rnd.choice([b"\x00\x00\x01", b"\x00\x00\x00\x01", b"\x00\x00\x03"])
        elif choice == 1:
            at = rnd.randrange(len(b))
            nal = bytes([rnd.randrange(256), rnd.choice([1, 0x41, 0x09, rnd.randrange(256)])])
            b[at:at] = b"\x00\x00\x01" + nal
        else:
            a = rnd.randrange(len(b))
            chunk = b[a : a + rnd.randint(1, 32)]
            at = rnd.randrange(len(b) + 1)
            b[at:at] = chunk
    else:  # several of the above
        out = bytes(b)
        for _ in range(rnd.randint(2, 4)):
            out = mutate(out, rnd)
        return out
    return bytes(b)


@pytest.fixture(scope="module")
def damaged_files(small_files) -> list[bytes]:
    """FUZZ_COUNT seeded mutations of the small files (the same on every run)."""
    rnd = random.Random(FUZZ_SEED)
    bases = list(small_files.values())
    return [mutate(bases[i % len(bases)], rnd) for i in range(FUZZ_COUNT)]


@pytest.fixture(scope="module")
def resized_files(small_files) -> list[bytes]:
    """Each small file claiming sizes around its own and far from it (header-size damage)."""
    out = []
    for data in small_files.values():
        info = bpg.read_info(data)
        widths = sorted({1, info.width - 1, info.width, info.width + 1, 2 * info.width, 64, 300})
        heights = sorted({1, info.height - 1, info.height + 1, 2 * info.height, 40, 1000})
        out += [with_size(data, ue7(w), ue7(h)) for w in widths for h in heights if w > 0 and h > 0]
    return out


def test_fuzz_damaged_files_decode_or_raise(damaged_files, resized_files):
    """Each mutation decodes to (H, W, 3) or raises BPGError/ValueError: no crash, no hang.

    decode, decode_yuv, to_annexb and decode_batch (thread pool) all see every file, and
    a file that decodes gives the same pixels again after a noise picture was decoded in
    between: nothing of an earlier picture shows through.
    """
    rng = np.random.default_rng(3)
    others = [
        bpg.encode(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 20, level=1)
        for h, w in ((16, 24), (40, 32))
    ]
    files = damaged_files + resized_files
    faulthandler.dump_traceback_later(FUZZ_WATCHDOG_S, exit=True)
    try:
        t0 = time.perf_counter()
        outcomes: list[bool] = []
        carried_over = []
        for i, data in enumerate(files):
            out = decode_or_error(data)
            outcomes.append(out is not None)
            if out is not None:
                bpg.decode(others[i % 2], verify=False)
                try:
                    again = bpg.decode(data, verify=False)
                except bpg.BPGError:
                    again = None
                if again is None or not np.array_equal(again, out):
                    carried_over.append(i)
            # (decode and decode_yuv may disagree on a damaged file whose slice data
            # libde265 cannot validate; each must raise or give a well-formed result)
            try:
                yuv, info = bpg.decode_yuv(data)
            except ValueError as e:
                assert str(e)
            else:
                assert yuv.size == bpg.yuv_layout(info.height, info.width, info.chroma).total
            try:
                stream = bpg.to_annexb(data)
            except ValueError as e:
                assert str(e)
            else:
                assert stream.startswith(b"\x00\x00\x00\x01")
        for i in range(0, len(files), 50):  # the thread-pool path
            check_batch(files[i : i + 50], outcomes[i : i + 50])
        elapsed = time.perf_counter() - t0
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert not carried_over, f"files {carried_over[:10]} decoded differently after another picture"
    decoded = sum(outcomes)
    raised = len(outcomes) - decoded
    assert len(outcomes) >= 10_000
    assert any(outcomes[len(damaged_files) :]), "no resized file decoded: the check saw nothing"
    # the mutations reach the decoder both ways (not all rejected by the header parser)
    assert decoded > 100 and raised > len(outcomes) // 2, (decoded, raised)
    print(f"fuzz: {len(outcomes)} files, {decoded} decoded, {raised} raised, {elapsed:.1f} s")


def check_batch(datas: list[bytes], decodable: list[bool]) -> None:
    try:
        outs = bpg.decode_batch(datas, threads=2)
    except ValueError as e:
        assert str(e)
        assert not all(decodable), "decode_batch failed where every decode succeeded"
        return
    assert all(decodable), "decode_batch succeeded where a decode failed"
    for o, data in zip(outs, datas, strict=True):
        info = bpg.read_info(data)
        assert o.shape == (info.height, info.width, 3)


def decode_twice(data: bytes) -> None:
    """Decode a valid file so that the decoder holds its picture.

    The second call isolates these tests from test_a_failed_decode_does_not_break_the_next.
    """
    try:
        bpg.decode(data)
    except bpg.BPGError:
        pass
    bpg.decode(data)


@pytest.mark.parametrize("name", ["16x16_420", "9x9_gray"])
def test_a_failed_truncated_decode_does_not_break_the_next(small_files, name):
    """After any prefix of a file, the next decode of a valid file on the thread succeeds."""
    data = small_files[name]
    info = bpg.read_info(data)
    good = bpg.encode(np.full((info.height, info.width, 3), 200, np.uint8), 30, chroma=info.chroma)
    expected = bpg.decode(good)
    broken = []
    for n in range(len(data)):
        decode_or_error(data[:n])
        try:
            np.testing.assert_array_equal(bpg.decode(good), expected)
        except bpg.BPGError as e:
            broken.append((n, str(e)))
    assert not broken, f"a valid file failed to decode right after a damaged one: {broken}"


def test_a_failed_damaged_decode_does_not_break_the_next(damaged_files, small_files):
    bases = list(small_files.values())
    expected = [bpg.decode(b) for b in bases]
    broken = []
    for i, data in enumerate(damaged_files[:6000]):
        decode_or_error(data)
        try:
            np.testing.assert_array_equal(
                bpg.decode(bases[i % len(bases)]), expected[i % len(bases)]
            )
        except bpg.BPGError as e:
            broken.append((i, str(e)))
    assert not broken, (
        f"{len(broken)} valid decodes failed right after a damaged one, e.g. {broken[:3]}"
    )


@pytest.mark.parametrize("name", ["16x16_420", "33x20_420", "12x10_422"])
def test_truncated_files_do_not_show_the_previous_picture(small_files, name):
    """Every prefix decodes the same (or fails the same) after a white and a black picture."""
    data = small_files[name]
    info = bpg.read_info(data)
    size = (info.height, info.width, 3)
    white = bpg.encode(np.full(size, 255, np.uint8), 30, chroma=info.chroma)
    black = bpg.encode(np.zeros(size, np.uint8), 30, chroma=info.chroma)
    leaking = []
    for n in range(len(data)):
        outs = []
        for previous in (white, black):
            decode_twice(previous)
            try:
                outs.append(bpg.decode(data[:n]))
            except bpg.BPGError:
                outs.append(None)
        if (outs[0] is None) != (outs[1] is None) or (
            outs[0] is not None and not np.array_equal(outs[0], outs[1])
        ):
            leaking.append(n)
    assert not leaking, f"prefixes {leaking} of a {len(data)}-byte file show the previous picture"


@pytest.mark.parametrize("size", [(1, 16384), (16384, 1), (16, 8192), (4300, 16), (16, 16384)])
def test_long_thin_images_within_the_size_limit_encode(size):
    h, w = size
    assert max(h, w) <= bpg.MAX_SIDE and h * w <= bpg.MAX_PIXELS
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 1] = 100
    out, _ = bpg.roundtrip(img, 30, level=1)
    assert out.shape == (h, w, 3)
    assert np.abs(out.astype(int) - img).max() <= 2


def test_process_is_still_healthy_after_the_damage(photo_crop):
    img = photo_crop(40, 40, index=1)
    data = bpg.encode(img, 30)
    assert data == bpg.encode(img, 30)
    assert bpg.decode(data).shape == (40, 40, 3)
    res = bpg.roundtrip_batch([img] * 4, 30, threads=2)
    assert res.files == [data] * 4
