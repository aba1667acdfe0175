"""The embedded sample photos (from scikit-image) and seeded square crops of them."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

# The embedded default data: colour photos that ship inside scikit-image (no download).
# The held-out photos are those EfficientNet-Lite0 classifies confidently and
# consistently across crops (cats 281-285, espresso 967, moped 665), so top-1 agreement
# after compression measures something; the two views of the stereo motorcycle show the
# same scene and stay on one side. The training photos are the other colour photos.
PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"),
    "holdout": ("chelsea", "coffee", "motorcycle_left", "motorcycle_right"),
}


def _load_photo(name: str) -> np.ndarray:
    try:
        import skimage.data as skd
    except ImportError as e:
        raise ImportError(
            f"the sample photos ship with scikit-image (pip install scikit-image): {e}"
        ) from e
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skd.stereo_motorcycle()
        img = left if name == "motorcycle_left" else right
    else:
        img = getattr(skd, name)()
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[..., :3])


@functools.cache
def _cached_photo(name: str) -> np.ndarray:
    img = _load_photo(name)
    img.setflags(write=False)
    return img


def sample_photos(split: str) -> dict[str, np.ndarray]:
    """The sample photos of ``split`` ("train" or "holdout"), name -> RGB uint8 (H, W, 3)
    (copies). The two splits share no photo; see ``PHOTO_SPLITS``."""
    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    return {name: _cached_photo(name).copy() for name in PHOTO_SPLITS[split]}


def photo_crops(
    split: str,
    size: int,
    count: int,
    seed: int = 0,
    *,
    scale: tuple[float, float] = (1.0, 1.5),
) -> Tensor:
    """``count`` square crops (N, 3, size, size) uint8 of the sample photos of ``split``.

    Crop i comes from photo ``i % len(photos)`` (each photo equally often), scaled so its
    shorter side is ``size * s`` with s uniform in ``scale`` (Lanczos), at a uniform
    position; s and the position derive from (seed, i), so a longer list starts with
    the shorter one. Scaling keeps most of each photo in view, which keeps the
    classifier's prediction on the held-out photos confident.
    """
    from PIL import Image

    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    lo, hi = (float(v) for v in scale)
    if not 1.0 <= lo <= hi:
        raise ValueError(f"scale must be (lo, hi) with 1 <= lo <= hi, got {scale!r}")
    names = PHOTO_SPLITS.get(split)
    if names is None:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        photo = _cached_photo(names[i % len(names)])
        rng = np.random.default_rng([int(seed), i])
        s = rng.uniform(lo, hi)
        h, w = photo.shape[:2]
        r = size * s / min(h, w)
        nh, nw = max(size, round(h * r)), max(size, round(w * r))
        top = int(rng.integers(0, nh - size + 1))
        left = int(rng.integers(0, nw - size + 1))
        # Resample only the crop's region of the photo (as if the whole photo were scaled).
        box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
        crop = Image.fromarray(photo).resize((size, size), Image.Resampling.LANCZOS, box=box)
        out[i] = np.asarray(crop)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
