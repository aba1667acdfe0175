"""``BPGInfo``: the header fields of a ``.bpg`` file, as ``npp_ext.bpg.read_info`` gives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import chroma_name


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


_HEVC_KEYS = (
    "log2_min_cb_size",
    "log2_max_cb_size",
    "log2_min_tb_size",
    "log2_max_tb_size",
    "max_transform_hierarchy_depth_intra",
    "sao",
    "pcm",
    "strong_intra_smoothing",
)


def info_from_dict(d: dict[str, Any]) -> BPGInfo:
    """BPGInfo from the fields the native reader returns."""
    return BPGInfo(
        width=d["width"],
        height=d["height"],
        chroma=chroma_name(d["chroma"]),
        bit_depth=d["bit_depth"],
        color_space=d["color_space"],
        has_alpha=d["has_alpha"],
        limited_range=d["limited_range"],
        animation=d["animation"],
        supported=d["supported"],
        unsupported_reason=d.get("unsupported_reason", ""),
        hevc={k: d[k] for k in _HEVC_KEYS},
    )
