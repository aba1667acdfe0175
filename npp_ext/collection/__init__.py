"""Encoding and decoding whole image collections: folders in, mirrored folders out.

``encode_collection`` runs reading, the optional NPP and the codec as overlapping stages
(:mod:`.pipeline`), writes outputs atomically, keeps a manifest that lets a killed run
resume (:mod:`.manifest`), and splits work across processes deterministically
(:mod:`.discovery`). ``decode_collection`` turns ``.bpg`` folders back into PNG.
``python -m npp_ext.collection merge MANIFEST N`` merges shard files by hand.

Names load lazily, so that the command line's parser does not load the codec.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DecodeSummary": "decode",
    "decode_collection": "decode",
    "Shard": "discovery",
    "shard_from": "discovery",
    "FIELDS": "manifest",
    "merge": "manifest",
    "EncodeSummary": "encode",
    "encode_collection": "encode",
    "NPPRunner": "npp_stage",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
