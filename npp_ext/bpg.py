"""In-process BPG encode/decode for numpy arrays, torch tensors, PIL images and files.

Images are 8-bit RGB. Accepted inputs:

* numpy ``uint8`` arrays shaped ``(H, W, 3)`` (or ``(H, W)`` gray, replicated to RGB),
* torch CPU tensors shaped ``(3, H, W)``: ``uint8``, or floating point in ``[0, 1]``
  (rounded to 8 bits as ``round(clamp(x, 0, 1) * 255)``),
* ``PIL.Image.Image`` in any mode (converted to RGB).

Decoded images come back in the type they went in (numpy in, numpy out; float tensor in,
float tensor out, ...). Batch functions take a list of images or a stacked array
(``(N, H, W, 3)`` numpy, ``(N, 3, H, W)`` torch), one QP per image or one for all, and run
on a C++ thread pool with the GIL released; ``threads`` caps the workers one call uses
(``None`` or 0: one per core).

``chroma`` is ``"420"``, ``"444"``, ``"422"`` or ``"gray"``; the ints 420, 444 and 422 (as
:class:`npp_ext.BPGProxyFn` takes them) and the header's codes 0..3 are accepted too.

Failures to decode raise :class:`BPGError` (a ``ValueError``); bad arguments raise
``ValueError``/``TypeError`` saying what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import _bpg

BPGError = _bpg.BPGError
"""Raised when a file cannot be decoded or the codec fails (subclass of ``ValueError``)."""

MAX_PIXELS: int = _bpg.MAX_PIXELS
MAX_SIDE: int = _bpg.MAX_SIDE

_CHROMA_CODES = {"gray": 0, "420": 1, "422": 2, "444": 3}
_CHROMA_NAMES = {v: k for k, v in _CHROMA_CODES.items()}
# decode(output=...) -> the internal kind used by _from_rgb_u8
_OUTPUT_KINDS = {"numpy": "numpy", "torch": "torch_u8", "torch_float": "torch_float", "pil": "pil"}

__all__ = [
    "BPGError",
    "BPGInfo",
    "RoundTrip",
    "encode",
    "decode",
    "roundtrip",
    "encode_batch",
    "decode_batch",
    "roundtrip_batch",
    "encode_yuv",
    "decode_yuv",
    "rgb_to_yuv",
    "yuv_to_rgb",
    "yuv_layout",
    "read_info",
    "read",
    "write",
    "to_annexb",
]


@dataclass(frozen=True)
class BPGInfo:
    """Header fields of a ``.bpg`` file."""

    width: int
    height: int
    chroma: str
    bit_depth: int
    color_space: int
    has_alpha: bool
    limited_range: bool
    animation: bool
    supported: bool
    #: Why the decoder refuses the file ("" when ``supported``).
    unsupported_reason: str
    hevc: dict[str, Any]


class RoundTrip(NamedTuple):
    """Result of a batch round trip: the files, the decoded images and their sizes in bits."""

    files: list[bytes]
    images: Any
    bits: np.ndarray


# ---- argument checks -------------------------------------------------------------------


def _chroma_code(chroma: str | int) -> int:
    if isinstance(chroma, str) and chroma in _CHROMA_CODES:
        return _CHROMA_CODES[chroma]
    if isinstance(chroma, (int, np.integer)) and not isinstance(chroma, bool):
        if int(chroma) in _CHROMA_NAMES:  # the header's code
            return int(chroma)
        if str(int(chroma)) in _CHROMA_CODES:  # 420, 444, 422
            return _CHROMA_CODES[str(int(chroma))]
    raise ValueError(f"chroma must be one of '420', '444', '422', 'gray', got {chroma!r}")


def _unwrap_0d(value: Any) -> Any:
    """The Python scalar in a 0-d numpy array or torch tensor; anything else as it is."""
    if getattr(value, "ndim", None) == 0 and not isinstance(value, np.generic):
        return value.item()
    return value


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    value = _unwrap_0d(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int in {lo}..{hi}, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {int(value)}")
    return int(value)


def _check_qp(qp: Any) -> int:
    return _check_int("qp", qp, 0, 51)


def _check_level(level: Any) -> int:
    return _check_int("level", level, 1, 9)


def _check_verify(verify: Any) -> bool:
    # bool("no") is True: only real booleans, so that a typo is not a silent "yes"
    if not isinstance(verify, (bool, np.bool_)):
        raise TypeError(f"verify must be True or False, got {type(verify).__name__}")
    return bool(verify)


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return 0  # the pool's default: one worker per core
    return _check_int("threads", threads, 0, 1024)


def _qps_for(qp: Any, n: int) -> list[int]:
    """One QP per image from an int or a length-n sequence/array/tensor."""
    qp = _unwrap_0d(qp)  # a 0-d array or tensor: one QP for all
    if isinstance(qp, (int, np.integer)) and not isinstance(qp, bool):
        return [_check_qp(qp)] * n
    if hasattr(qp, "tolist"):  # numpy array or torch tensor
        qp = qp.tolist()
    if not isinstance(qp, Sequence) or isinstance(qp, (str, bytes)):
        raise TypeError("qp must be an int or a sequence of ints (one per image)")
    if len(qp) != n:
        raise ValueError(f"expected one qp per image: {n} images, {len(qp)} qps")
    return [_check_qp(q) for q in qp]


def _x265(x265_params: str | None) -> str:
    if x265_params is None:
        return ""
    if not isinstance(x265_params, str):
        raise TypeError("x265_params must be a string like 'name=value:name=value'")
    return x265_params


# ---- image conversion ------------------------------------------------------------------


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "dtype")


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _check_size(h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise ValueError(f"image must be at least 1x1, got {w}x{h}")
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise ValueError(
            f"image {w}x{h} exceeds the size limit ({MAX_SIDE} per side, {MAX_PIXELS} pixels)"
        )


def _pil_rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PIL image.

    16-bit grey (modes ``I;16*``, e.g. a 16-bit PNG) is scaled to 8 bits: Pillow's own
    conversion to RGB clips it, which turns almost every pixel white.
    """
    mode = image.mode
    if mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        raise TypeError(
            f"PIL mode {mode!r} has no fixed value range: convert the image to 8 bits "
            "(for example to 'L' or 'RGB') first"
        )
    return np.asarray(image.convert("RGB"))


def _to_rgb_u8(image: Any) -> tuple[np.ndarray, str]:
    """(H, W, 3) C-contiguous uint8 view or copy of image, and its kind for the output."""
    if _is_pil(image):
        arr = _pil_rgb(image)
        kind = "pil"
    elif _is_torch(image):
        import torch

        if image.device.type != "cpu":
            raise ValueError(
                f"npp_ext.bpg works on CPU tensors, got a {image.device.type} tensor: "
                "move it with .cpu(), or use npp_ext.BPGProxyFn for GPU batches"
            )
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            kind = "torch_u8"
            t = image
        elif image.is_floating_point():
            kind = "torch_float" if image.dtype == torch.float32 else f"torch_float:{image.dtype}"
            t = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        else:
            raise TypeError(f"tensor dtype must be uint8 or floating point, got {image.dtype}")
        arr = t.permute(1, 2, 0).contiguous().numpy()
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"numpy images must be uint8, got {image.dtype} "
                "(convert floats in [0, 1] with (x * 255).round().astype(np.uint8))"
            )
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"numpy images must be (H, W, 3) or (H, W), got shape {image.shape}")
        arr = image
        kind = "numpy"
    else:
        raise TypeError(
            "image must be a uint8 numpy array, a torch CPU tensor or a PIL image, "
            f"got {type(image).__name__}"
        )
    _check_size(arr.shape[0], arr.shape[1])
    return np.ascontiguousarray(arr), kind


def _from_rgb_u8(arr: np.ndarray, kind: str) -> Any:
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(arr, "RGB")
    if kind.startswith("torch"):
        import torch

        t = torch.from_numpy(arr).permute(2, 0, 1)
        if kind == "torch_u8":
            return t
        # float output in the input's dtype ("torch_float:torch.float64" etc.)
        dtype = getattr(torch, kind.split(":torch.")[1]) if ":" in kind else torch.float32
        return t.to(dtype).div_(255)
    return arr


def _output_kind(output: str) -> str:
    if output not in _OUTPUT_KINDS:
        raise ValueError(f"output must be one of {sorted(_OUTPUT_KINDS)}, got {output!r}")
    return _OUTPUT_KINDS[output]


def _as_bytes(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, memoryview):
        return data.cast("B") if data.format != "B" else data
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        return np.ascontiguousarray(data)
    raise TypeError(f"BPG data must be bytes-like, got {type(data).__name__}")


# ---- single images ---------------------------------------------------------------------


def encode(
    image: Any,
    qp: int = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    x265_params: str | None = None,
) -> bytes:
    """Encode one RGB image to ``.bpg`` bytes.

    Args:
        image: numpy ``(H, W, 3)`` uint8, torch ``(3, H, W)`` uint8/float CPU tensor or PIL image.
        qp: quantizer, 0 (best) .. 51 (smallest); the reference tool's default is 29.
        chroma: ``"420"`` (default), ``"444"``, ``"422"`` or ``"gray"``.
        level: compression level 1 (fast) .. 9 (slow): x265 presets superfast .. placebo.
        x265_params: extra x265 options ``"name=value:name=value"`` applied after the preset
            (coding tools only); a value with two parts takes a comma (``"deblock=-2,-2"``).
    """
    arr, _ = _to_rgb_u8(image)
    return _bpg.encode_rgb(
        arr, _check_qp(qp), _chroma_code(chroma), _check_level(level), _x265(x265_params)
    )


def decode(data: Any, *, output: str = "numpy", verify: bool = True) -> Any:
    """Decode ``.bpg`` bytes to an RGB image.

    ``output`` is ``"numpy"`` (``(H, W, 3)`` uint8), ``"torch"`` (``(3, H, W)`` uint8),
    ``"torch_float"`` (``(3, H, W)`` float32 in [0, 1]) or ``"pil"``. ``verify`` (default)
    decodes a second time to refuse files whose slice data was cut short, which HEVC cannot
    otherwise tell; turn it off for trusted data to halve the decoding time.
    """
    kind = _output_kind(output)
    return _from_rgb_u8(_bpg.decode_rgb(_as_bytes(data), _check_verify(verify)), kind)


def roundtrip(
    image: Any,
    qp: int = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    x265_params: str | None = None,
) -> tuple[Any, int]:
    """Encode then decode one image; returns (decoded image of the input's type, file bits)."""
    arr, kind = _to_rgb_u8(image)
    files, decoded, bits = _bpg.roundtrip_batch(
        [arr],
        [_check_qp(qp)],
        _chroma_code(chroma),
        _check_level(level),
        1,
        True,
        None,
        _x265(x265_params),
    )
    return _from_rgb_u8(decoded[0], kind), int(bits[0])


# ---- batches ---------------------------------------------------------------------------


def _batch_to_list(images: Any) -> tuple[list[np.ndarray], str, bool]:
    """List of (H, W, 3) uint8 arrays, the element kind, and whether the input was stacked."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                f"a stacked numpy batch must be (N, H, W, 3), got shape {images.shape}"
            )
        return [_to_rgb_u8(im)[0] for im in images], "numpy", True
    if _is_torch(images):
        if images.dim() != 4:
            raise ValueError(
                f"a stacked tensor batch must be (N, 3, H, W), got {tuple(images.shape)}"
            )
        items = [_to_rgb_u8(im) for im in images]
        return [a for a, _ in items], (items[0][1] if items else "torch_u8"), True
    if isinstance(images, (list, tuple)):
        items = []
        for i, im in enumerate(images):
            try:
                items.append(_to_rgb_u8(im))
            except (TypeError, ValueError) as e:
                raise type(e)(f"image {i}: {e}") from e
        kinds = {k for _, k in items}
        if len(kinds) > 1:
            raise TypeError(f"all images of a batch must be of one type, got {sorted(kinds)}")
        return [a for a, _ in items], (kinds.pop() if kinds else "numpy"), False
    raise TypeError(
        "images must be a list of images, an (N, H, W, 3) uint8 array or an (N, 3, H, W) tensor"
    )


def _restack(decoded: list[np.ndarray], kind: str) -> Any:
    if kind == "numpy":
        return np.stack(decoded)
    import torch

    return torch.stack([_from_rgb_u8(a, kind) for a in decoded])


def encode_batch(
    images: Any,
    qp: int | Sequence[int] = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    threads: int | None = None,
    x265_params: str | None = None,
) -> list[bytes]:
    """Encode N images (mixed sizes allowed) on the thread pool; one QP for all or one per image."""
    arrays, _, _ = _batch_to_list(images)
    files, _, _ = _bpg.roundtrip_batch(
        arrays,
        _qps_for(qp, len(arrays)),
        _chroma_code(chroma),
        _check_level(level),
        _check_threads(threads),
        False,
        None,
        _x265(x265_params),
    )
    return list(files)


def decode_batch(
    datas: Sequence[Any],
    *,
    threads: int | None = None,
    output: str = "numpy",
    verify: bool = True,
) -> list[Any]:
    """Decode N ``.bpg`` files on the thread pool; returns a list of images (see :func:`decode`)."""
    if not isinstance(datas, (list, tuple)):
        raise TypeError("datas must be a list of bytes-like objects")
    kind = _output_kind(output)
    decoded = _bpg.decode_batch(
        [_as_bytes(d) for d in datas], _check_threads(threads), _check_verify(verify)
    )
    return [_from_rgb_u8(a, kind) for a in decoded]


def roundtrip_batch(
    images: Any,
    qp: int | Sequence[int] = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    threads: int | None = None,
    x265_params: str | None = None,
) -> RoundTrip:
    """Encode and decode N images on the thread pool.

    Returns ``RoundTrip(files, images, bits)``: the ``.bpg`` bytes, the decoded images (stacked
    like the input when the input was stacked, else a list) and an int64 array of file sizes
    in bits. A stacked numpy batch is decoded straight into one output array.
    """
    arrays, kind, stacked = _batch_to_list(images)
    qps = _qps_for(qp, len(arrays))
    code, level, threads = _chroma_code(chroma), _check_level(level), _check_threads(threads)
    if not arrays:
        return RoundTrip([], images[:0] if stacked else [], np.zeros(0, np.int64))
    out = None
    if stacked and kind == "numpy":
        out = np.empty((len(arrays),) + arrays[0].shape, np.uint8)
    files, decoded, bits = _bpg.roundtrip_batch(
        arrays, qps, code, level, threads, True, out, _x265(x265_params)
    )
    if out is not None:
        return RoundTrip(list(files), decoded, bits)
    if stacked:
        return RoundTrip(list(files), _restack(list(decoded), kind), bits)
    return RoundTrip(list(files), [_from_rgb_u8(a, kind) for a in decoded], bits)


# ---- planar YUV ------------------------------------------------------------------------


def yuv_layout(width: int, height: int, chroma: str = "420") -> dict[str, int]:
    """Sizes of the padded planar YUV layout the encoder takes and the decoder gives."""
    return dict(
        _bpg.layout(
            _check_int("width", width, 1, MAX_SIDE),
            _check_int("height", height, 1, MAX_SIDE),
            _chroma_code(chroma),
        )
    )


def _check_yuv(yuv: Any, width: int, height: int, chroma: str) -> np.ndarray:
    if _is_torch(yuv):
        import torch

        if yuv.device.type != "cpu":
            raise ValueError("yuv must be a CPU tensor")
        if yuv.dtype != torch.uint8:
            raise TypeError(f"yuv must be a uint8 numpy array or CPU tensor, got {yuv.dtype}")
        yuv = yuv.detach().contiguous().numpy()
    if not isinstance(yuv, np.ndarray) or yuv.dtype != np.uint8:
        raise TypeError("yuv must be a uint8 numpy array or CPU tensor")
    total = yuv_layout(width, height, chroma)["total"]
    if yuv.size != total:
        raise ValueError(
            f"yuv must hold {total} bytes for {width}x{height} {chroma}, got {yuv.size}"
        )
    return np.ascontiguousarray(yuv.reshape(-1))


def encode_yuv(
    yuv: Any,
    width: int,
    height: int,
    qp: int = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    x265_params: str | None = None,
) -> bytes:
    """Encode planar YUV already in the padded layout of :func:`yuv_layout`."""
    _check_size(height, width)
    arr = _check_yuv(yuv, width, height, chroma)
    return _bpg.encode_yuv(
        arr,
        width,
        height,
        _check_qp(qp),
        _chroma_code(chroma),
        _check_level(level),
        _x265(x265_params),
    )


def decode_yuv(data: Any, *, verify: bool = True) -> tuple[np.ndarray, BPGInfo]:
    """Decode to the padded planar YUV layout; returns (1-D uint8 array, header info).

    ``verify``: see :func:`decode`.
    """
    yuv, info = _bpg.decode_yuv(_as_bytes(data), _check_verify(verify))
    return yuv, _info_from_dict(dict(info, supported=True))


def rgb_to_yuv(image: Any, chroma: str = "420") -> np.ndarray:
    """The encoder's reference-exact RGB -> padded planar YUV conversion."""
    arr, _ = _to_rgb_u8(image)
    return _bpg.rgb_to_yuv(arr, _chroma_code(chroma))


def yuv_to_rgb(yuv: Any, width: int, height: int, chroma: str = "420") -> np.ndarray:
    """The reference decoder's YUV -> RGB conversion, as an (H, W, 3) uint8 array."""
    _check_size(height, width)
    return _bpg.yuv_to_rgb(
        _check_yuv(yuv, width, height, chroma), width, height, _chroma_code(chroma)
    )


# ---- files -----------------------------------------------------------------------------


def _info_from_dict(d: dict[str, Any]) -> BPGInfo:
    hevc_keys = (
        "log2_min_cb_size",
        "log2_max_cb_size",
        "log2_min_tb_size",
        "log2_max_tb_size",
        "max_transform_hierarchy_depth_intra",
        "sao",
        "pcm",
        "strong_intra_smoothing",
    )
    return BPGInfo(
        width=d["width"],
        height=d["height"],
        chroma=_CHROMA_NAMES[d["chroma"]],
        bit_depth=d["bit_depth"],
        color_space=d["color_space"],
        has_alpha=d["has_alpha"],
        limited_range=d["limited_range"],
        animation=d["animation"],
        supported=d["supported"],
        unsupported_reason=d.get("unsupported_reason", ""),
        hevc={k: d[k] for k in hevc_keys},
    )


def _read_path(path: str | os.PathLike[str]) -> bytes:
    with open(os.fspath(path), "rb") as f:
        return f.read()


def read_info(data_or_path: Any) -> BPGInfo:
    """Header fields of a ``.bpg`` file given as bytes or a path."""
    if isinstance(data_or_path, (str, os.PathLike)):
        data_or_path = _read_path(data_or_path)
    return _info_from_dict(_bpg.read_info(_as_bytes(data_or_path)))


def read(path: str | os.PathLike[str], *, output: str = "numpy", verify: bool = True) -> Any:
    """Read and decode a ``.bpg`` file (see :func:`decode` for ``output`` and ``verify``)."""
    return decode(_read_path(path), output=output, verify=verify)


def write(
    path: str | os.PathLike[str],
    image: Any,
    qp: int = 29,
    *,
    chroma: str = "420",
    level: int = 8,
    x265_params: str | None = None,
) -> int:
    """Encode ``image`` and write it to ``path``; returns the file size in bytes."""
    data = encode(image, qp, chroma=chroma, level=level, x265_params=x265_params)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


def to_annexb(data: Any) -> bytes:
    """The Annex-B HEVC stream (synthesized VPS/SPS + the file's NAL units) for stock decoders."""
    return _bpg.annexb(_as_bytes(data))
