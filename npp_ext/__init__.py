"""npp_ext: in-process BPG, fused NPP kernels and the BPG proxy autograd op.

Submodules load lazily so that ``import npp_ext`` needs neither torch nor a GPU:
``npp_ext.bpg`` is numpy/Pillow only; ``npp_ext.ops``, ``npp_ext.models`` and
``npp_ext.BPGProxyFn`` import torch when first touched. Importing the package has no side
effects: the Pillow plugin for ``.bpg`` files is registered by :func:`register_bpg_opener`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY_MODULES = {"bpg", "ops", "models", "autograd", "options", "collection"}
_LAZY_ATTRS = {"BPGProxyFn": "autograd", "BPGProxy": "autograd", "bpg_proxy": "autograd"}

__all__ = sorted(_LAZY_MODULES | set(_LAZY_ATTRS) | {"register_bpg_opener"})


def register_bpg_opener() -> None:
    """Teach Pillow to open and save ``.bpg`` files (``Image.open``, ``img.save``).

    Idempotent. Explicit, like ``pillow_heif.register_heif_opener()``, so that importing
    npp_ext changes nothing in Pillow unless asked.
    """
    from . import pil_plugin

    pil_plugin.register()


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_ATTRS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
