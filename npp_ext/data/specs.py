"""Datasets named by a command-line spec, and the side of a train/held-out split to use.

Specs:

- ``photos``: scikit-image's sample photos (``PHOTO_SPLITS``: the training photos, or the
  held-out ones for ``side="holdout"``);
- a folder path (or ``folder:PATH``): every image below it, unlabelled;
- ``imagefolder:PATH``: ImageFolder layout, labels from the first-level folders;
- ``coco:ROOT:ANNOTATIONS``: COCO detection through torchvision (boxes and labels).

For a folder, ``holdout`` > 0 splits its files by content (:func:`split_holdout`) and
``side`` picks one part, so training and evaluation with the same spec, fraction and
seed never share an image. Without a split, evaluation of a training spec is refused.
"""

from __future__ import annotations

import os
from typing import Any

from .adapters import coco
from .files import ImageFiles, ImageList
from .photos import sample_photos
from .split import split_holdout

__all__ = ["open_dataset"]

_SIDES = ("train", "holdout", "all")


def _base(spec: str, side: str) -> tuple[Any, bool]:
    """(dataset, whether it is already the requested side)."""
    if spec == "photos":
        return ImageList(sample_photos("train" if side != "holdout" else "holdout")), True
    kind, sep, rest = spec.partition(":")
    if sep and kind == "imagefolder":
        return ImageFiles(rest, labels="folders"), False
    if sep and kind == "folder":
        return ImageFiles(rest), False
    if sep and kind == "coco":
        root, sep2, ann = rest.partition(":")
        if not sep2 or not root or not ann:
            raise ValueError(f"a COCO spec is coco:ROOT:ANNOTATIONS_JSON, got {spec!r}")
        return coco(root, ann), False
    if os.path.isdir(spec):
        return ImageFiles(spec), False
    raise ValueError(
        f"unknown data {spec!r}: give a folder, 'photos', 'folder:PATH', "
        "'imagefolder:PATH' or 'coco:ROOT:ANNOTATIONS_JSON'"
    )


def open_dataset(spec: str, *, side: str = "all", holdout: float = 0.0, seed: int = 0) -> Any:
    """The dataset a spec names, or one side of its content-hash split (module docstring)."""
    if side not in _SIDES:
        raise ValueError(f"side must be one of {_SIDES}, got {side!r}")
    if not isinstance(holdout, (int, float)) or not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    if side == "holdout" and holdout == 0 and spec != "photos":
        raise ValueError(
            f"no held-out part of {spec!r} without a split: give the fraction held out "
            "of training (--holdout) or another folder"
        )
    ds, split_already = _base(spec, side)
    if split_already or side == "all" or holdout == 0:
        return ds
    train, held = split_holdout(ds, holdout, seed)
    return held if side == "holdout" else train
