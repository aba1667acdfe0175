"""In-process BPG encode/decode for numpy arrays, torch tensors, PIL images and files.

Images are 8-bit RGB. Accepted inputs:

* numpy ``uint8`` arrays shaped ``(H, W, 3)`` (or ``(H, W)`` gray, replicated to RGB),
* torch CPU tensors shaped ``(3, H, W)``: ``uint8``, or floating point in ``[0, 1]``
  (rounded to 8 bits as ``round(clamp(x, 0, 1) * 255)``; NaN/inf are refused),
* ``PIL.Image.Image`` in any mode (converted to RGB).

Decoded images come back in the type they went in (numpy in, numpy out; float tensor in,
float tensor out, ...). Batch functions take a list of images or a stacked array
(``(N, H, W, 3)`` numpy, ``(N, 3, H, W)`` torch), one QP for all or one per image, and run
on a C++ thread pool with the GIL released; ``threads`` caps the workers one call uses
(``None`` or 0: one per core).

The settings (chroma formats, QP and level ranges, defaults, size limits) are those of
:mod:`npp_ext.options`; sizes are passed as ``(height, width)``. Failures to decode raise
:class:`BPGError` (a ``ValueError``); bad arguments raise ``ValueError``/``TypeError``
saying what is allowed. This module is the only Python caller of the native ``_bpg``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

try:
    from . import _bpg
except ImportError as e:  # most often: an unbuilt source tree shadows the installed package
    raise ImportError(
        f"npp_ext's codec module _bpg is not built in {os.path.dirname(__file__)}: install the "
        "package (`pip install .`) and run from outside the repository root, where `python -m` "
        "and `python -c` import the source tree ahead of the installed copy; or build in place "
        "(README, 'Development build')"
    ) from e
from ._fileio import write_atomic
from ._images import Output, from_rgb_u8, is_torch, output_named, pil_rgb, to_rgb_u8
from ._info import BPGInfo, info_from_dict
from .options import (
    CHROMA_DEFAULT,
    LEVEL_DEFAULT,
    MAX_PIXELS,
    MAX_SIDE,
    QP_DEFAULT,
    EncodeOptions,
    YUVLayout,
    check_image_size,
    check_qp,
    check_threads,
    check_verify,
    chroma_code,
    chroma_name,
    qp_list,
    yuv_layout,
)

BPGError = _bpg.BPGError
"""Raised when a file cannot be decoded or the codec fails (subclass of ``ValueError``)."""

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "BPGError",
    "BPGInfo",
    "RoundTrip",
    "encode",
    "decode",
    "roundtrip",
    "encode_batch",
    "decode_batch",
    "roundtrip_batch",
    "roundtrip_yuv_batch",
    "start_roundtrip_yuv_batch",
    "YuvBatchJob",
    "encode_yuv",
    "decode_yuv",
    "rgb_to_yuv",
    "yuv_to_rgb",
    "yuv_layout",
    "read_image",
    "read_info",
    "read",
    "write",
    "to_annexb",
]


class RoundTrip(NamedTuple):
    """Result of a batch round trip: the files, the decoded images and their sizes in bits."""

    files: list[bytes]
    images: Any
    bits: np.ndarray


def _as_bytes(data: Any) -> bytes | bytearray | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    if isinstance(data, memoryview):
        return data.cast("B") if data.format != "B" else data
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        return np.ascontiguousarray(data)
    raise TypeError(f"BPG data must be bytes-like, got {type(data).__name__}")


def _encode_options(chroma: Any, level: Any, x265_params: Any) -> EncodeOptions:
    return EncodeOptions(chroma=chroma, level=level, x265_params=x265_params)


def _binding_options(opts: EncodeOptions) -> dict[str, Any]:
    """The binding's keywords for the settings."""
    return {"chroma": opts.chroma_code, "level": opts.level, "x265_params": opts.x265_params}


# ---- single images ---------------------------------------------------------------------


def encode(
    image: Any,
    qp: int = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
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
    arr, _ = to_rgb_u8(image)
    opts = _encode_options(chroma, level, x265_params)
    return _bpg.encode_rgb(image=arr, qp=check_qp(qp), **_binding_options(opts))


def decode(data: Any, *, output: str = "numpy", verify: bool = True) -> Any:
    """Decode ``.bpg`` bytes to an RGB image.

    ``output`` is ``"numpy"`` (``(H, W, 3)`` uint8), ``"torch"`` (``(3, H, W)`` uint8),
    ``"torch_float"`` (``(3, H, W)`` float32 in [0, 1]) or ``"pil"``. ``verify`` (default)
    decodes a second time to refuse files whose slice data was cut short, which HEVC cannot
    otherwise tell; turn it off for trusted data to halve the decoding time.
    """
    out = output_named(output)
    rgb = _bpg.decode_rgb(data=_as_bytes(data), verify=check_verify(verify))
    return from_rgb_u8(rgb, out)


def roundtrip(
    image: Any,
    qp: int = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    x265_params: str | None = None,
) -> tuple[Any, int]:
    """Encode then decode one image; returns (decoded image of the input's type, file bits)."""
    arr, out = to_rgb_u8(image)
    opts = _encode_options(chroma, level, x265_params)
    _, decoded, bits = _bpg.roundtrip_batch(
        images=[arr], qps=[check_qp(qp)], threads=1, decode=True, **_binding_options(opts)
    )
    return from_rgb_u8(decoded[0], out), int(bits[0])


# ---- batches ---------------------------------------------------------------------------


def _batch_to_list(images: Any) -> tuple[list[np.ndarray], Output, bool]:
    """List of (H, W, 3) uint8 arrays, how to hand them back, and whether they were stacked."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(
                f"a stacked numpy batch must be (N, H, W, 3), got shape {images.shape}"
            )
        return [to_rgb_u8(im)[0] for im in images], Output("numpy"), True
    if is_torch(images):
        if images.dim() != 4:
            raise ValueError(
                f"a stacked tensor batch must be (N, 3, H, W), got {tuple(images.shape)}"
            )
        items = [to_rgb_u8(im) for im in images]
        return [a for a, _ in items], (items[0][1] if items else Output("torch")), True
    if isinstance(images, (list, tuple)):
        items = []
        for i, im in enumerate(images):
            try:
                items.append(to_rgb_u8(im))
            except (TypeError, ValueError) as e:
                raise type(e)(f"image {i}: {e}") from e
        outs = {o for _, o in items}
        if len(outs) > 1:
            kinds = sorted(f"{o.kind}:{o.float_dtype}" if o.float_dtype else o.kind for o in outs)
            raise TypeError(f"all images of a batch must be of one type, got {kinds}")
        return [a for a, _ in items], (outs.pop() if outs else Output("numpy")), False
    raise TypeError(
        "images must be a list of images, an (N, H, W, 3) uint8 array or an (N, 3, H, W) tensor"
    )


def encode_batch(
    images: Any,
    qp: int | Sequence[int] = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    threads: int | None = None,
    x265_params: str | None = None,
) -> list[bytes]:
    """Encode N images (mixed sizes allowed) on the thread pool; one QP for all or one per image."""
    arrays, _, _ = _batch_to_list(images)
    opts = _encode_options(chroma, level, x265_params)
    files, _, _ = _bpg.roundtrip_batch(
        images=arrays,
        qps=qp_list(qp, len(arrays)),
        threads=check_threads(threads),
        decode=False,
        **_binding_options(opts),
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
    out = output_named(output)
    decoded = _bpg.decode_batch(
        datas=[_as_bytes(d) for d in datas],
        threads=check_threads(threads),
        verify=check_verify(verify),
    )
    return [from_rgb_u8(a, out) for a in decoded]


def roundtrip_batch(
    images: Any,
    qp: int | Sequence[int] = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    threads: int | None = None,
    x265_params: str | None = None,
) -> RoundTrip:
    """Encode and decode N images on the thread pool.

    Returns ``RoundTrip(files, images, bits)``: the ``.bpg`` bytes, the decoded images (stacked
    like the input when the input was stacked, else a list) and an int64 array of file sizes
    in bits. A stacked numpy batch is decoded straight into one output array.
    """
    arrays, out, stacked = _batch_to_list(images)
    qps = qp_list(qp, len(arrays))
    opts = _encode_options(chroma, level, x265_params)
    threads = check_threads(threads)
    if not arrays:
        return RoundTrip([], images[:0] if stacked else [], np.zeros(0, np.int64))
    into = None
    if stacked and out.kind == "numpy":
        into = np.empty((len(arrays),) + arrays[0].shape, np.uint8)
    files, decoded, bits = _bpg.roundtrip_batch(
        images=arrays, qps=qps, threads=threads, decode=True, out=into, **_binding_options(opts)
    )
    if into is not None:
        return RoundTrip(list(files), decoded, bits)
    images_out = [from_rgb_u8(a, out) for a in decoded]
    if stacked:
        import torch

        return RoundTrip(list(files), torch.stack(images_out), bits)
    return RoundTrip(list(files), images_out, bits)


class YuvBatchJob:
    """A planar YUV batch the codec's pool is coding (:func:`start_roundtrip_yuv_batch`)."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def wait(self) -> np.ndarray:
        """Wait until the batch is coded (``out`` then holds the decoded planes); returns the
        file sizes in bits (int64, one per image), or raises the first image's error."""
        return self._native.wait()[1]

    def done(self) -> bool:
        """Whether the pool has finished the batch (``wait`` will not block)."""
        return bool(self._native.done())


def start_roundtrip_yuv_batch(
    yuv: np.ndarray,
    height: int,
    width: int,
    qp: int | Sequence[int],
    out: np.ndarray,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    threads: int | None = None,
    x265_params: str | None = None,
) -> YuvBatchJob:
    """Start encoding and decoding N same-size images given in the padded planar YUV layout.

    The training step's path (``BPGProxyFn``): ``yuv`` and ``out`` are ``(N, total)``
    C-contiguous uint8 arrays of :func:`yuv_layout` (typically views of pinned host
    buffers); the decoded planes are written into ``out``. Returns at once; the job's
    ``wait()`` gives the bits. Batches started one after another are coded in that order,
    the pool's workers moving on to the next batch's images as the previous one's run out.
    The job keeps both arrays alive until the pool is done with them.
    """
    opts = _encode_options(chroma, level, x265_params)
    total = yuv_layout(height, width, opts.chroma).total
    for name, a in (("yuv", yuv), ("out", out)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
            raise TypeError(f"{name} must be an (N, {total}) uint8 numpy array")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out must be writable")
    if yuv.shape[1] != total or out.shape != yuv.shape:
        raise ValueError(
            f"yuv and out must both be (N, {total}) for {height}x{width} (HxW) {opts.chroma}, "
            f"got {yuv.shape} and {out.shape}"
        )
    native = _bpg.start_roundtrip_yuv_batch(
        yuv=yuv,
        width=width,
        height=height,
        qps=qp_list(qp, yuv.shape[0]),
        threads=check_threads(threads),
        out=out,
        **_binding_options(opts),
    )
    return YuvBatchJob(native)


def roundtrip_yuv_batch(
    yuv: np.ndarray,
    height: int,
    width: int,
    qp: int | Sequence[int],
    out: np.ndarray,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    threads: int | None = None,
    x265_params: str | None = None,
) -> np.ndarray:
    """:func:`start_roundtrip_yuv_batch` and wait: returns the file sizes in bits."""
    return start_roundtrip_yuv_batch(
        yuv, height, width, qp, out, chroma=chroma, level=level, threads=threads,
        x265_params=x265_params,
    ).wait()  # fmt: skip


# ---- planar YUV ------------------------------------------------------------------------


def _check_yuv(yuv: Any, layout: YUVLayout, chroma: str) -> np.ndarray:
    if is_torch(yuv):
        import torch

        if yuv.device.type != "cpu":
            raise ValueError("yuv must be a CPU tensor")
        if yuv.dtype != torch.uint8:
            raise TypeError(f"yuv must be a uint8 numpy array or CPU tensor, got {yuv.dtype}")
        yuv = yuv.detach().contiguous().numpy()
    if not isinstance(yuv, np.ndarray) or yuv.dtype != np.uint8:
        raise TypeError("yuv must be a uint8 numpy array or CPU tensor")
    if yuv.size != layout.total:
        raise ValueError(
            f"yuv must hold {layout.total} bytes for {layout.height}x{layout.width} (HxW) "
            f"{chroma}, got {yuv.size}"
        )
    return np.ascontiguousarray(yuv.reshape(-1))


def encode_yuv(
    yuv: Any,
    height: int,
    width: int,
    qp: int = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    x265_params: str | None = None,
) -> bytes:
    """Encode planar YUV already in the padded layout of :func:`yuv_layout` (sizes H, W)."""
    opts = _encode_options(chroma, level, x265_params)
    layout = yuv_layout(height, width, opts.chroma)
    return _bpg.encode_yuv(
        yuv=_check_yuv(yuv, layout, opts.chroma),
        width=layout.width,
        height=layout.height,
        qp=check_qp(qp),
        **_binding_options(opts),
    )


def decode_yuv(data: Any, *, verify: bool = True) -> tuple[np.ndarray, BPGInfo]:
    """Decode to the padded planar YUV layout; returns (1-D uint8 array, header info).

    ``verify``: see :func:`decode`.
    """
    yuv, info = _bpg.decode_yuv(data=_as_bytes(data), verify=check_verify(verify))
    return yuv, info_from_dict(dict(info, supported=True))


def rgb_to_yuv(image: Any, chroma: str | int = CHROMA_DEFAULT) -> np.ndarray:
    """The encoder's reference-exact RGB -> padded planar YUV conversion."""
    arr, _ = to_rgb_u8(image)
    return _bpg.rgb_to_yuv(image=arr, chroma=chroma_code(chroma))


def yuv_to_rgb(yuv: Any, height: int, width: int, chroma: str | int = CHROMA_DEFAULT) -> np.ndarray:
    """The reference decoder's YUV -> RGB conversion, as an (H, W, 3) uint8 array."""
    name = chroma_name(chroma)
    layout = yuv_layout(height, width, name)
    return _bpg.yuv_to_rgb(
        yuv=_check_yuv(yuv, layout, name),
        width=layout.width,
        height=layout.height,
        chroma=chroma_code(name),
    )


# ---- files -----------------------------------------------------------------------------


def _read_path(path: str | os.PathLike[str]) -> bytes:
    with open(os.fspath(path), "rb") as f:
        return f.read()


def read_info(data_or_path: Any) -> BPGInfo:
    """Header fields of a ``.bpg`` file given as bytes or a path."""
    if isinstance(data_or_path, (str, os.PathLike)):
        data_or_path = _read_path(data_or_path)
    return info_from_dict(_bpg.read_info(data=_as_bytes(data_or_path)))


def read(path: str | os.PathLike[str], *, output: str = "numpy", verify: bool = True) -> Any:
    """Read and decode a ``.bpg`` file (see :func:`decode` for ``output`` and ``verify``)."""
    return decode(_read_path(path), output=output, verify=verify)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file Pillow reads (PNG, JPEG, ...) as (H, W, 3) uint8 RGB.

    The size is checked against the codec's limits before Pillow decodes any pixel, so an
    oversized file is refused without the memory it would cost.
    """
    from PIL import Image

    with Image.open(os.fspath(path)) as im:
        check_image_size(im.height, im.width)
        return pil_rgb(im)


def write(
    path: str | os.PathLike[str],
    image: Any,
    qp: int = QP_DEFAULT,
    *,
    chroma: str | int = CHROMA_DEFAULT,
    level: int = LEVEL_DEFAULT,
    x265_params: str | None = None,
) -> int:
    """Encode ``image`` and write it to ``path`` atomically; returns the file size in bytes."""
    data = encode(image, qp, chroma=chroma, level=level, x265_params=x265_params)
    write_atomic(path, data)
    return len(data)


def to_annexb(data: Any) -> bytes:
    """The Annex-B HEVC stream (synthesized VPS/SPS + the file's NAL units) for stock decoders."""
    return _bpg.annexb(data=_as_bytes(data))
