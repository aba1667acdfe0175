"""Datasets, transforms and loaders for training and evaluating the NPP.

Items are dicts: ``"image"`` a uint8 tensor (3, H, W) RGB, ``"path"`` a str (a file path,
or a name for in-memory images), and per task ``"label"`` (int) or ``"boxes"`` (K, 4)
xyxy float32 pixels + ``"labels"`` (K,) int64. ``collate`` makes batches of them and
``to_float`` turns a batch's images into floats in [0, 1].

Randomness is explicit: a transform is ``transform(item, generator) -> item`` and the
loader's sampler hands each item its own seed, derived from (seed, epoch, pass, index),
so batches are the same for the same seed whatever the number of workers or ranks.

Nothing here needs torchvision; ``TorchvisionDataset`` and ``coco`` adapt its datasets
when it is installed.

Modules: ``items`` (what an item is), ``files`` (``ImageFiles``, ``ImageList``),
``adapters`` (torchvision datasets, COCO), ``transforms``, ``loader`` (``collate``,
``SeededSampler``, ``make_loader``), ``steps`` (training batches indexed by step),
``split`` (``split_holdout``), ``specs`` (datasets named on the command line) and
``photos`` (the sample photos).
"""

from .adapters import TorchvisionDataset, coco
from .files import IMAGE_EXTENSIONS, ImageFiles, ImageList
from .loader import SeededSampler, collate, make_loader
from .photos import PHOTO_SPLITS, photo_crops, sample_photos
from .specs import open_dataset
from .split import split_holdout
from .steps import StepBatches, step_loader
from .transforms import CenterCrop, Compose, RandomCrop, RandomFlip, to_float

__all__ = [
    "IMAGE_EXTENSIONS",
    "CenterCrop",
    "Compose",
    "ImageFiles",
    "ImageList",
    "PHOTO_SPLITS",
    "RandomCrop",
    "RandomFlip",
    "SeededSampler",
    "StepBatches",
    "TorchvisionDataset",
    "coco",
    "collate",
    "make_loader",
    "open_dataset",
    "photo_crops",
    "sample_photos",
    "split_holdout",
    "step_loader",
    "to_float",
]
