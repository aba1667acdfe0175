"""Tests of npp_ext.data: image folders, transforms, batching, loaders, held-out splits
and the embedded sample photos."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from npp_ext import data  # noqa: E402


def _write(path, seed: int, size=(12, 16), mode: str = "RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return np.asarray(Image.open(path).convert("RGB"))


# --------------------------------------------------------------------------- image folders


def test_image_files_lists_recursively_in_sorted_order(tmp_path) -> None:
    _write(tmp_path / "b.png", 1)
    _write(tmp_path / "a" / "z.jpg", 2)
    _write(tmp_path / "a" / "deep" / "x.PNG", 3)
    _write(tmp_path / "a" / "grey.png", 4, mode="L")
    _write(tmp_path / ".hidden" / "h.png", 5)
    _write(tmp_path / "._b.png", 6)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "data.json").write_text("{}")

    ds = data.ImageFiles(tmp_path)
    rel = [p.replace(str(tmp_path) + "/", "") for p in ds.paths]
    assert rel == ["a/deep/x.PNG", "a/grey.png", "a/z.jpg", "b.png"]
    item = ds[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 12, 16)
    assert "label" not in item and item["path"] == ds.paths[1]
    # grey files come back as three equal channels
    assert torch.equal(item["image"][0], item["image"][2])

    flat = data.ImageFiles(tmp_path, recursive=False)
    assert [p.rsplit("/", 1)[1] for p in flat.paths] == ["b.png"]
    only_jpg = data.ImageFiles(tmp_path, extensions=["jpg"])
    assert len(only_jpg) == 1
    with pytest.raises(ValueError, match="no images"):
        data.ImageFiles(tmp_path / "a" / "deep", extensions=[".webp"])
    with pytest.raises(FileNotFoundError):
        data.ImageFiles(tmp_path / "missing")


def test_image_files_labels_from_folders(tmp_path) -> None:
    _write(tmp_path / "dog" / "d1.png", 1)
    _write(tmp_path / "cat" / "c2.png", 2)
    _write(tmp_path / "cat" / "sub" / "c1.png", 3)
    _write(tmp_path / "loose.png", 4)  # no class: left out, as ImageFolder does
    ds = data.ImageFiles(tmp_path, labels="folders")
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [ds[i]["label"] for i in range(len(ds))] == [0, 0, 1]
    assert [p.rsplit("/", 1)[1] for p in ds.paths] == ["c2.png", "c1.png", "d1.png"]
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        data.ImageFiles(tmp_path, labels="folders")
    with pytest.raises(ValueError, match="labels"):
        data.ImageFiles(tmp_path, labels="names")


def test_image_files_bad_file_raises_or_is_skipped(tmp_path, caplog) -> None:
    good_a = _write(tmp_path / "a.png", 1)
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    good_c = _write(tmp_path / "c.png", 3)
    strict = data.ImageFiles(tmp_path)
    assert np.array_equal(strict[0]["image"].permute(1, 2, 0).numpy(), good_a)
    with pytest.raises(ValueError, match="b.png"):
        strict[1]

    lenient = data.ImageFiles(tmp_path, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="npp_ext.data"):
        item = lenient[1]
    assert item["path"].endswith("c.png")
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), good_c)
    assert any("b.png" in r.getMessage() for r in caplog.records)
    assert {p.rsplit("/", 1)[1] for p in lenient.bad} == {"b.png"}
    assert len(lenient) == 3


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path) -> None:
    arr = np.array([[0, 256, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    img = data.ImageFiles(tmp_path)[0]["image"]
    assert img[0, 0].tolist() == [0, 1, 156, 255]


def test_image_list_from_arrays() -> None:
    imgs = {"x": np.zeros((4, 5, 3), np.uint8), "grey": np.full((4, 5), 7, np.uint8)}
    ds = data.ImageList(imgs, labels=[1, 2])
    assert len(ds) == 2 and ds[1]["path"] == "grey" and ds[1]["label"] == 2
    assert ds[1]["image"].shape == (3, 4, 5) and int(ds[1]["image"].max()) == 7
    with pytest.raises(TypeError, match="uint8"):
        data.ImageList([np.zeros((4, 5, 3), np.float32)])


# --------------------------------------------------------------------------- transforms


def _item_with_box(h: int = 60, w: int = 80) -> dict:
    """An image that is white exactly inside its one box (so pixels show where it went)."""
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[:, 20:40, 30:50] = 255
    return {
        "image": img,
        "boxes": torch.tensor([[30.0, 20.0, 50.0, 40.0]]),
        "labels": torch.tensor([7]),
        "path": "p",
    }


def _white_box(img: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(img[0] > 127, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_crops_and_flips_are_deterministic_under_a_seed() -> None:
    t = data.Compose([data.RandomCrop(32), data.RandomFlip()])
    item = {"image": torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)}
    outs = {}
    for seed in range(6):
        a = t(item, torch.Generator().manual_seed(seed))["image"]
        b = t(item, torch.Generator().manual_seed(seed))["image"]
        assert torch.equal(a, b) and a.shape == (3, 32, 32)
        outs[seed] = a
    assert len({o.numpy().tobytes() for o in outs.values()}) > 1


def test_boxes_follow_random_crops_and_flips() -> None:
    t = data.Compose([data.RandomCrop((40, 50)), data.RandomFlip(0.5)])
    kept = 0
    for seed in range(12):
        out = t(_item_with_box(), torch.Generator().manual_seed(seed))
        if out["boxes"].shape[0] == 0:
            assert not bool((out["image"] > 127).any())
            continue
        assert out["labels"].tolist() == [7]
        assert out["boxes"][0].tolist() == _white_box(out["image"])
        kept += 1
    assert kept >= 6


def test_box_transforms_hand_computed() -> None:
    item = _item_with_box()
    item["boxes"] = torch.tensor([[30.0, 20.0, 50.0, 40.0], [0.0, 0.0, 12.0, 8.0]])
    item["labels"] = torch.tensor([7, 3])
    # CenterCrop 30x40 of 60x80: top 15, left 20. Box 2 falls outside and is dropped.
    out = data.CenterCrop((30, 40))(item)
    assert out["boxes"].tolist() == [[10.0, 5.0, 30.0, 25.0]] and out["labels"].tolist() == [7]
    flipped = data.RandomFlip(1.0)(out, torch.Generator())
    assert flipped["boxes"].tolist() == [[10.0, 5.0, 30.0, 25.0]]  # symmetric in a 40-wide crop
    moved = data.RandomFlip(1.0)(item, torch.Generator())
    assert moved["boxes"].tolist() == [[30.0, 20.0, 50.0, 40.0], [68.0, 0.0, 80.0, 8.0]]
    assert torch.equal(moved["image"], item["image"].flip(-1))


def test_small_images_are_scaled_up_to_the_crop() -> None:
    item = _item_with_box(h=30, w=40)  # box [30, 20, 50, 40] is cut by the 40-wide image
    item["image"] = torch.zeros(3, 30, 40, dtype=torch.uint8)
    item["boxes"] = torch.tensor([[10.0, 5.0, 20.0, 15.0]])
    out = data.CenterCrop(60)(item)  # scale 2: 60x80, centre crop left 10
    assert out["image"].shape == (3, 60, 60)
    assert out["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]
    with pytest.raises(ValueError, match="size"):
        data.RandomCrop(0)


def test_to_float_and_collate() -> None:
    items = [
        {"image": torch.full((3, 4, 5), 255, dtype=torch.uint8), "label": 2, "path": "a"},
        {"image": torch.zeros(3, 4, 5, dtype=torch.uint8), "label": 0, "path": "b"},
    ]
    batch = data.collate(items)
    assert batch["image"].shape == (2, 3, 4, 5) and batch["image"].dtype == torch.uint8
    assert batch["label"].tolist() == [2, 0] and batch["label"].dtype == torch.int64
    assert batch["path"] == ["a", "b"]
    x = data.to_float(batch)
    assert x.dtype == torch.float32 and float(x[0].min()) == 1.0 and float(x[1].max()) == 0.0

    det = [dict(_item_with_box()), dict(_item_with_box())]
    det[1]["boxes"] = torch.zeros(0, 4)
    det[1]["labels"] = torch.zeros(0, dtype=torch.int64)
    b = data.collate(det)
    assert isinstance(b["boxes"], list) and b["boxes"][1].shape == (0, 4)
    with pytest.raises(ValueError, match="different sizes"):
        data.collate([items[0], {**items[1], "image": torch.zeros(3, 4, 6, dtype=torch.uint8)}])
    with pytest.raises(ValueError, match="different keys"):
        data.collate([items[0], {"image": items[1]["image"]}])
    with pytest.raises(TypeError):
        data.to_float(x)


# --------------------------------------------------------------------------- loaders


def _numbered_images(n: int = 10) -> data.ImageList:
    """Image i is 24x24 with value i everywhere except a ramp (so crops differ)."""
    ramp = np.arange(24, dtype=np.uint8)[None, :, None] * 5
    return data.ImageList([np.full((24, 24, 3), i, np.uint8) + ramp for i in range(n)])


def _epoch(loader) -> list:
    return [(b["path"], b["image"].clone()) for b in loader]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        pa == pb and torch.equal(ia, ib) for (pa, ia), (pb, ib) in zip(a, b, strict=True)
    )


def test_loader_batches_reproducible_with_workers() -> None:
    ds = _numbered_images()
    kw = dict(seed=5, transform=[data.RandomCrop(16), data.RandomFlip()])
    l0 = data.make_loader(ds, 3, workers=0, **kw)
    l2 = data.make_loader(ds, 3, workers=2, **kw)
    l2b = data.make_loader(ds, 3, workers=2, **kw)
    first0, second0 = _epoch(l0), _epoch(l0)
    first2, second2 = _epoch(l2), _epoch(l2)
    assert len(first0) == 3  # 10 items, drop_last: 3 batches of 3
    assert _same(first2, _epoch(l2b))
    assert _same(first0, first2) and _same(second0, second2)
    assert not _same(first0, second0)  # each pass is new: other order and crops
    l0.sampler.set_epoch(0)
    assert _same(_epoch(l0), first0)  # set_epoch restarts the epoch's first pass
    other = data.make_loader(ds, 3, workers=0, seed=6, transform=kw["transform"])
    assert not _same(_epoch(other), first0)


def test_loader_without_shuffle_keeps_order_and_checks_arguments() -> None:
    ds = _numbered_images(5)
    loader = data.make_loader(ds, 2, shuffle=False, drop_last=False)
    assert [b["path"] for b in loader] == [["image0", "image1"], ["image2", "image3"], ["image4"]]
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loader(ds, 0)
    with pytest.raises(ValueError, match="no full batch"):
        data.make_loader(ds, 8)


def test_sampler_splits_an_epoch_between_ranks() -> None:
    parts = [list(data.SeededSampler(10, seed=1, rank=r, world=3)) for r in range(3)]
    assert all(len(p) == 4 for p in parts)  # padded to 12
    indices = [i for p in parts for i, _ in p]
    assert set(indices) == set(range(10)) and len(indices) == 12
    dropped = [
        list(data.SeededSampler(10, seed=1, rank=r, world=3, drop_last=True)) for r in range(3)
    ]
    flat = [i for p in dropped for i, _ in p]
    assert len(flat) == 9 and len(set(flat)) == 9
    # An item's random draws do not depend on the rank that reads it.
    single = dict(data.SeededSampler(10, seed=1))
    assert all(single[i] == s for p in parts for i, s in p)
    with pytest.raises(ValueError, match="rank"):
        data.SeededSampler(10, rank=3, world=3)


def test_loader_reads_its_rank_part_when_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _numbered_images(10)
    parts = []
    for rank in range(2):  # what each process of an initialized 2-rank group would see
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        loader = data.make_loader(ds, 5, seed=2)
        loader.sampler.set_epoch(4)
        parts.append([p for b in loader for p in b["path"]])
    assert len(parts[0]) == len(parts[1]) == 5
    assert sorted(parts[0] + parts[1]) == sorted(f"image{i}" for i in range(10))


# --------------------------------------------------------------------------- held-out split


def test_split_holdout_is_disjoint_by_content_with_duplicates(tmp_path) -> None:
    paths = []
    for i in range(40):
        p = tmp_path / "orig" / f"img{i:02d}.png"
        _write(p, i, size=(4, 4))
        paths.append(str(p))
        if i % 4 == 0:  # a copy of the same file under another name and folder
            q = tmp_path / "copies" / f"copy_of_{i}.png"
            q.parent.mkdir(exist_ok=True)
            shutil.copyfile(p, q)
            paths.append(str(q))

    def content(p: str) -> bytes:
        with open(p, "rb") as f:
            return f.read()

    for seed in range(5):
        train, hold = data.split_holdout(paths, 0.3, seed=seed)
        assert sorted(train + hold) == sorted(paths)
        assert not {content(p) for p in train} & {content(p) for p in hold}
        assert 0 < len(hold) < len(paths)
    again = data.split_holdout(paths, 0.3, seed=0)
    # an image's side depends on its content only, not on the order or the other files
    assert set(again[1]) == set(data.split_holdout(list(reversed(paths)), 0.3, seed=0)[1])
    assert set(data.split_holdout(paths[:20], 0.3, seed=0)[1]) == set(again[1]) & set(paths[:20])

    ds = data.ImageFiles(tmp_path)
    tr, ho = data.split_holdout(ds, 0.3, seed=0)
    assert {ds.paths[i] for i in ho.indices} == set(again[1])
    assert not set(tr.indices) & set(ho.indices)
    with pytest.raises(ValueError, match="fraction"):
        data.split_holdout(paths, 1.0)
    with pytest.raises(ValueError, match="empty"):
        data.split_holdout(paths[:1], 0.5, seed=0)


def test_split_holdout_of_in_memory_images_by_pixels() -> None:
    base = [np.full((4, 4, 3), i, np.uint8) for i in range(30)]
    ds = data.ImageList(base + [base[3].copy(), base[7].copy()])  # two duplicates
    tr, ho = data.split_holdout(ds, 0.4, seed=1)
    side = {i: "h" for i in ho.indices} | {i: "t" for i in tr.indices}
    assert side[3] == side[30] and side[7] == side[31]
    assert len(side) == 32


# --------------------------------------------------------------------------- torchvision adapters


def test_torchvision_image_folder_adapter(tmp_path) -> None:
    tv = pytest.importorskip("torchvision")
    _write(tmp_path / "b" / "1.png", 1)
    _write(tmp_path / "a" / "2.png", 2)
    _write(tmp_path / "a" / "1.png", 3)
    ours = data.ImageFiles(tmp_path, labels="folders")
    theirs = data.TorchvisionDataset(tv.datasets.ImageFolder(str(tmp_path)))
    assert theirs.paths == ours.paths
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        assert a["label"] == b["label"] and torch.equal(a["image"], b["image"])


def test_torchvision_coco_adapter(tmp_path) -> None:
    pytest.importorskip("torchvision")
    pytest.importorskip("pycocotools")
    _write(tmp_path / "img" / "a.png", 1, size=(40, 50))
    _write(tmp_path / "img" / "b.png", 2, size=(30, 30))
    ann = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 40, "width": 50},
            {"id": 2, "file_name": "b.png", "height": 30, "width": 30},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 18,
                "bbox": [5, 6, 10, 20],
                "iscrowd": 0,
                "area": 200,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "bbox": [1, 1, 30, 30],
                "iscrowd": 1,
                "area": 900,
            },
            {
                "id": 3,
                "image_id": 1,
                "category_id": 4,
                "bbox": [7, 7, 0, 5],
                "iscrowd": 0,
                "area": 0,
            },
            {
                "id": 4,
                "image_id": 1,
                "category_id": 5,
                "bbox": [45, 30, 20, 20],
                "iscrowd": 0,
                "area": 400,
            },
            {
                "id": 5,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 5, 5],
                "iscrowd": 1,
                "area": 25,
            },
        ],
        "categories": [{"id": c} for c in (1, 3, 4, 5, 18)],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = data.coco(tmp_path / "img", tmp_path / "ann.json")
    assert len(ds) == 2
    item = ds[0]
    assert item["image"].shape == (3, 40, 50) and item["image_id"] == 1
    assert item["path"].endswith("a.png")
    assert item["boxes"].dtype == torch.float32 and item["labels"].dtype == torch.int64
    # crowd and zero-width boxes dropped; the box over the border clipped to the image
    assert item["boxes"].tolist() == [[5.0, 6.0, 15.0, 26.0], [45.0, 30.0, 50.0, 40.0]]
    assert item["labels"].tolist() == [18, 5]
    assert ds[1]["boxes"].shape == (0, 4)
    assert len(data.coco(tmp_path / "img", tmp_path / "ann.json", drop_empty=True)) == 1
    with pytest.raises(FileNotFoundError):
        data.coco(tmp_path / "img", tmp_path / "missing.json")


# --------------------------------------------------------------------------- sample photos


def test_sample_photos_splits_are_disjoint() -> None:
    pytest.importorskip("skimage")
    train, hold = data.sample_photos("train"), data.sample_photos("holdout")
    assert train and hold and not set(train) & set(hold)
    for img in (*train.values(), *hold.values()):
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= 256
    train_bytes = {img.tobytes() for img in train.values()}
    assert not train_bytes & {img.tobytes() for img in hold.values()}
    # the two views of the stereo pair stay on one side
    assert {"motorcycle_left", "motorcycle_right"} <= set(hold)
    with pytest.raises(ValueError, match="split"):
        data.sample_photos("test")


def test_photo_crops_deterministic_and_prefix_stable() -> None:
    pytest.importorskip("skimage")
    a = data.photo_crops("holdout", 64, 6, seed=3)
    assert a.shape == (6, 3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, data.photo_crops("holdout", 64, 6, seed=3))
    assert torch.equal(a[:4], data.photo_crops("holdout", 64, 4, seed=3))
    assert not torch.equal(a, data.photo_crops("holdout", 64, 6, seed=4))
    train = data.photo_crops("train", 64, 5, seed=3)
    assert not any(torch.equal(t, h) for t in train for h in a)
    with pytest.raises(ValueError, match="scale"):
        data.photo_crops("train", 64, 2, scale=(0.5, 1.0))
