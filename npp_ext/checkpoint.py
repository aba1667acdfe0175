"""Checkpoints of trained NPPs and proxies: one file with the weights and what they are for.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"format": "npp_ext", "version": 1, "kind": "npp" | "proxy",
     "model": {"config": {...constructor arguments...}, "state_dict": {...}},
     "codec": {"chroma": "420", "level": 8, "x265_params": ""},   # EncodeOptions
     "qp_range": [22, 47], "task": "efficientnet_lite0" | None,
     "config": {...the run's whole configuration...},
     "extra": {...what the kind adds, e.g. the proxy's lambda table...},
     "train_state": {...optimizer, step, ...} or absent}

``NPP.from_checkpoint(path)`` and ``Proxy.from_checkpoint(path)`` build the model in eval
mode; given codec settings or a QP that the checkpoint was not trained for, they warn.
Writes are atomic (a temporary file and a rename).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from ._fileio import write_atomic
from .options import EncodeOptions, check_qp

__all__ = ["FORMAT", "VERSION", "FromCheckpoint", "file_hash", "load", "load_model", "save"]

FORMAT, VERSION = "npp_ext", 1
_KINDS = ("npp", "proxy")


def save(
    path: str | os.PathLike[str],
    kind: str,
    model: nn.Module,
    *,
    codec: EncodeOptions,
    qp_range: tuple[int, int],
    task: str | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> None:
    """Write a checkpoint of ``model`` (an NPP or a Proxy) and what it was trained for."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    lo, hi = check_qp(qp_range[0]), check_qp(qp_range[1])
    if lo > hi:
        raise ValueError(f"qp_range must be (low, high) with low <= high, got {qp_range}")
    model = getattr(model, "module", model)  # DistributedDataParallel: the inner model
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "model": {"config": dict(getattr(model, "config", {})), "state_dict": state},
        "codec": codec.kwargs(),
        "qp_range": [lo, hi],
        "task": task,
        "config": dict(config or {}),
        "extra": dict(extra or {}),
    }
    if train_state is not None:
        ckpt["train_state"] = dict(train_state)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_atomic(path, buf.getvalue())


def load(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint (tensors on the CPU) and check that it is one of ``kind``."""
    try:
        ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{os.fspath(path)!r} is not a readable npp_ext checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not an npp_ext checkpoint")
    if ckpt.get("version") != VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has checkpoint version {ckpt.get('version')}; "
            f"this npp_ext reads version {VERSION}"
        )
    if kind is not None and ckpt.get("kind") != kind:
        raise ValueError(
            f"{os.fspath(path)!r} is a checkpoint of kind {ckpt.get('kind')!r}, not {kind!r}"
        )
    return ckpt


def _warn_if_other_settings(
    ckpt: Mapping[str, Any], path: Any, codec: EncodeOptions | None, qp: int | None
) -> None:
    where = os.fspath(path)
    if codec is not None:
        trained = EncodeOptions(**ckpt["codec"])
        diff = {
            k: (v, getattr(codec, k)) for k, v in trained.kwargs().items() if getattr(codec, k) != v
        }
        if diff:
            said = ", ".join(f"{k} {a!r} (used now: {b!r})" for k, (a, b) in diff.items())
            warnings.warn(f"{where} was trained for {said}", UserWarning, stacklevel=4)
    if qp is not None:
        lo, hi = ckpt["qp_range"]
        if not lo <= check_qp(qp) <= hi:
            warnings.warn(
                f"{where} was trained for QP {lo}..{hi}, used now at QP {qp}",
                UserWarning,
                stacklevel=4,
            )


def load_model(
    cls: type[nn.Module],
    kind: str,
    path: str | os.PathLike[str],
    *,
    codec: EncodeOptions | None = None,
    qp: int | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """``cls(**config)`` with the checkpoint's weights, in eval mode (see the module doc)."""
    ckpt = load(path, kind)
    model = cls(**ckpt["model"]["config"])
    model.load_state_dict(ckpt["model"]["state_dict"])
    _warn_if_other_settings(ckpt, path, codec, qp)
    model.checkpoint = {k: v for k, v in ckpt.items() if k not in ("model", "train_state")}
    return model.to(map_location).eval()


_M = TypeVar("_M", bound=nn.Module)


class FromCheckpoint:
    """Gives a model class ``from_checkpoint``; the class names its ``checkpoint_kind``."""

    checkpoint_kind: str

    @classmethod
    def from_checkpoint(
        cls: type[_M],
        path: str | os.PathLike[str],
        *,
        codec: EncodeOptions | None = None,
        qp: int | None = None,
        map_location: str | torch.device = "cpu",
    ) -> _M:
        """The model a checkpoint holds (``npp-ext train`` / ``train-proxy``), in eval mode.

        ``codec`` and ``qp``: the settings it is about to be used with; a checkpoint made
        for other ones warns. What the file records (codec, QP range, task, config) is
        kept in the model's ``checkpoint`` attribute.
        """
        kind = cls.checkpoint_kind  # type: ignore[attr-defined]
        return load_model(cls, kind, path, codec=codec, qp=qp, map_location=map_location)  # type: ignore[return-value]


def file_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, hex (how manifests name the checkpoint an output came from)."""
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
