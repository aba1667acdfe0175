"""The codec's vocabulary: every word about BPG settings that npp_ext uses, in one place.

Chroma formats, QP/level/thread ranges and defaults, the size limits, the padded planar
YUV layout, and :class:`EncodeOptions`, one validated value of the encoder settings. The
other modules (``bpg``, ``autograd``, ``ops``, ``cli``, ``pil_plugin``, training and
encoding) take their checks, defaults and messages from here, so a bad value is refused
with the same message wherever it enters.

Sizes are passed as ``(height, width)`` everywhere in npp_ext, in the order of array and
tensor shapes. This module needs neither torch nor the native modules; the numbers that the
C library also defines (``MAX_SIDE``, ``MAX_PIXELS``, the layout rule) are checked against
it by the tests.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "CHROMA_DEFAULT",
    "CHROMA_FORMATS",
    "KERNEL_CHROMA_FORMATS",
    "LEVEL_DEFAULT",
    "LEVEL_MAX",
    "LEVEL_MIN",
    "MAX_PIXELS",
    "MAX_SIDE",
    "QP_DEFAULT",
    "QP_MAX",
    "QP_MIN",
    "THREADS_MAX",
    "EncodeOptions",
    "YUVLayout",
    "check_image_size",
    "check_int",
    "check_level",
    "check_qp",
    "check_threads",
    "check_verify",
    "check_x265_params",
    "chroma_code",
    "chroma_name",
    "kernel_chroma",
    "qp_list",
    "yuv_layout",
]

# ---- ranges and defaults ----------------------------------------------------------------

#: HEVC's quantizer range; 29 is the reference bpgenc's default.
QP_MIN, QP_MAX, QP_DEFAULT = 0, 51, 29
#: Compression levels (x265 presets superfast .. placebo); 8 (veryslow) is bpgenc's default.
LEVEL_MIN, LEVEL_MAX, LEVEL_DEFAULT = 1, 9, 8
#: Codec worker threads per call; 0 means one per core.
THREADS_MAX = 1024

#: Chroma formats by name, mapped to the header's pixel_format codes (JPEG chroma siting).
CHROMA_FORMATS: dict[str, int] = {"420": 1, "444": 3, "422": 2, "gray": 0}
CHROMA_DEFAULT = "420"
#: The formats the YUV packing kernels (``npp_ext.ops``, ``BPGProxyFn``) handle.
KERNEL_CHROMA_FORMATS = ("420", "444")

#: The codec's size limits (``BPG_MAX_SIDE`` and ``BPG_MAX_PIXELS`` in ``bpg/bpg.h``).
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26

_CODE_NAMES = {code: name for name, code in CHROMA_FORMATS.items()}
_CHROMA_CHOICES = "'420', '444', '422', 'gray' (or 420, 444, 422, or a header code 0..3)"


# ---- single values ----------------------------------------------------------------------


def _scalar(value: Any) -> Any:
    """The Python scalar in a 0-d numpy array or torch tensor; anything else as it is."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def _is_int(value: Any) -> bool:
    """True for ints and numpy/torch integer scalars, not for bools or floats."""
    if isinstance(value, bool):
        return False
    if getattr(value, "dtype", None) is not None and getattr(value, "ndim", 0) != 0:
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``; TypeError for non-ints, ValueError out of range."""
    value = _scalar(value)
    if not _is_int(value):
        raise TypeError(f"{name} must be an int in {lo}..{hi}, got {type(value).__name__}")
    value = operator.index(value)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def check_qp(qp: Any) -> int:
    """One QP as an int in 0..51 (ints, numpy ints, 0-d arrays and tensors)."""
    return check_int("qp", qp, QP_MIN, QP_MAX)


def check_level(level: Any) -> int:
    """A compression level as an int in 1..9."""
    return check_int("level", level, LEVEL_MIN, LEVEL_MAX)


def check_threads(threads: Any) -> int:
    """Codec workers for one call: ``None`` or 0 mean one per core, else 1..1024."""
    if threads is None:
        return 0
    return check_int("threads", threads, 0, THREADS_MAX)


def check_verify(verify: Any) -> bool:
    """A real bool: ``bool("no")`` is True, so a typo must not become a silent yes."""
    if isinstance(verify, (bool, np.bool_)):
        return bool(verify)
    raise TypeError(f"verify must be True or False, got {type(verify).__name__}")


def check_x265_params(x265_params: Any) -> str:
    """Extra x265 options ``"name=value:name=value"`` (``None`` for none)."""
    if x265_params is None:
        return ""
    if not isinstance(x265_params, str):
        raise TypeError("x265_params must be a string like 'name=value:name=value'")
    if "\0" in x265_params:
        raise ValueError("x265_params must not contain a NUL character")
    return x265_params


def chroma_name(chroma: Any) -> str:
    """The canonical name ("420", "444", "422", "gray") of a chroma format.

    Accepts the names, the ints 420/444/422 and the header's pixel_format codes 0..3.
    """
    chroma = _scalar(chroma)
    if isinstance(chroma, str) and chroma in CHROMA_FORMATS:
        return chroma
    if _is_int(chroma):
        value = operator.index(chroma)
        if value in _CODE_NAMES:
            return _CODE_NAMES[value]
        if str(value) in CHROMA_FORMATS:
            return str(value)
    raise ValueError(f"chroma must be one of {_CHROMA_CHOICES}, got {chroma!r}")


def chroma_code(chroma: Any) -> int:
    """The header's pixel_format code of a chroma format (what the C library takes)."""
    return CHROMA_FORMATS[chroma_name(chroma)]


def kernel_chroma(chroma: Any, where: str = "the YUV kernels") -> str:
    """A chroma name the packing kernels handle ("420" or "444")."""
    name = chroma_name(chroma)
    if name not in KERNEL_CHROMA_FORMATS:
        raise ValueError(f"chroma {name!r} is not supported by {where}: use '420' or '444'")
    return name


def check_image_size(height: Any, width: Any) -> tuple[int, int]:
    """(height, width) of a picture the codec takes: at least 1x1, within the limits."""
    height, width = _scalar(height), _scalar(width)
    for name, value in (("height", height), ("width", width)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    height, width = operator.index(height), operator.index(width)
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height} (WxH)")
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ValueError(
            f"image {width}x{height} (WxH) exceeds the size limit "
            f"({MAX_SIDE} per side, {MAX_PIXELS} pixels)"
        )
    return height, width


# ---- QPs of a batch ---------------------------------------------------------------------


def qp_list(qp: Any, n: int) -> list[int]:
    """One QP per image from an int, a sequence, or a 0-d/1-d numpy array or torch tensor.

    Python floats are refused (``29.0`` is most likely a bug); float arrays and tensors are
    accepted when every value is a whole number (a QP tensor is often float for the models).
    """
    if _is_int(_scalar(qp)):
        return [check_qp(qp)] * n
    if hasattr(qp, "tolist") and hasattr(qp, "shape"):  # numpy array or torch tensor
        shape = tuple(qp.shape)
        if len(shape) > 1:
            raise ValueError(f"qp must be an int or have shape ({n},), got shape {shape}")
        if getattr(qp, "is_floating_point", lambda: qp.dtype.kind == "f")():
            values = qp.tolist()
            values = [values] if not shape else values
            if any(v != v or v != int(v) for v in values):  # NaN or a fraction
                raise ValueError(f"qp values must be whole numbers, got {values}")
            qp = [int(v) for v in values]
        else:
            qp = qp.tolist()
        if not shape:
            return [check_qp(qp[0] if isinstance(qp, list) else qp)] * n
    if not isinstance(qp, Sequence) or isinstance(qp, (str, bytes)):
        raise TypeError(
            f"qp must be an int or a sequence of ints (one per image), got {type(qp).__name__}"
        )
    if len(qp) != n:
        raise ValueError(
            f"expected one qp per image: {n} images, {len(qp)} qps (an int, or shape ({n},))"
        )
    return [check_qp(q) for q in qp]


# ---- encoder settings -------------------------------------------------------------------


@dataclass(frozen=True)
class EncodeOptions:
    """The encoder settings of a call or a run, validated when made.

    ``chroma`` is stored by name; ``x265_params`` as a string (empty for none). The QP is
    not part of it: it is given per image. ``EncodeOptions(**vars(opts))`` round-trips, and
    :meth:`kwargs` gives the keywords of the ``npp_ext.bpg`` functions.
    """

    chroma: str = CHROMA_DEFAULT
    level: int = LEVEL_DEFAULT
    x265_params: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "chroma", chroma_name(self.chroma))
        object.__setattr__(self, "level", check_level(self.level))
        object.__setattr__(self, "x265_params", check_x265_params(self.x265_params))

    @property
    def chroma_code(self) -> int:
        """The header's pixel_format code of :attr:`chroma`."""
        return CHROMA_FORMATS[self.chroma]

    def kwargs(self) -> dict[str, Any]:
        """The settings as keywords (``chroma``, ``level``, ``x265_params``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---- planar YUV layout ------------------------------------------------------------------


@dataclass(frozen=True)
class YUVLayout:
    """Plane layout of one image in the padded planar YUV the codec takes and gives.

    Y (``coded_h x coded_w``), then Cb, then Cr (``coded_ch x coded_cw`` each), contiguous.
    The real areas (``height x width`` and ``chroma_h x chroma_w``) are padded to the coded
    sizes by repeating the last column, then the last row. ``total`` is the number of bytes
    per image. Gray has no chroma planes.
    """

    height: int
    width: int
    coded_h: int
    coded_w: int
    chroma_h: int
    chroma_w: int
    coded_ch: int
    coded_cw: int
    y_size: int
    c_size: int
    total: int


def yuv_layout(height: Any, width: Any, chroma: Any = CHROMA_DEFAULT) -> YUVLayout:
    """Layout of the planar YUV of a ``height x width`` image (see :class:`YUVLayout`).

    The coded size is the image size rounded up to 8 (the minimum coding block), or to 16
    when a side is <= 8 (x265 needs one 16x16 CTU). Plain integer arithmetic, so it also
    works with symbolic sizes under ``torch.compile``.
    """
    name = chroma_name(chroma)
    if type(height).__name__ != "SymInt" and type(width).__name__ != "SymInt":
        height, width = check_image_size(height, width)
    unit = 16 if (width <= 8 or height <= 8) else 8
    coded_w = (width + unit - 1) // unit * unit
    coded_h = (height + unit - 1) // unit * unit
    sx = 1 if name in ("420", "422") else 0
    sy = 1 if name == "420" else 0
    if name == "gray":
        chroma_h = chroma_w = coded_ch = coded_cw = 0
    else:
        chroma_h, chroma_w = (height + sy) // (1 + sy), (width + sx) // (1 + sx)
        coded_ch, coded_cw = coded_h // (1 + sy), coded_w // (1 + sx)
    y_size, c_size = coded_w * coded_h, coded_cw * coded_ch
    return YUVLayout(
        height, width, coded_h, coded_w, chroma_h, chroma_w, coded_ch, coded_cw,
        y_size, c_size, y_size + 2 * c_size,
    )  # fmt: skip
