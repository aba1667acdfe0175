"""Evaluation: plain-BPG points are what npp_ext.bpg gives, NPP points go through the
NPP, outputs are written, and held-out data never overlaps training data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny_task import tiny_classifier

from npp_ext import bpg, checkpoint
from npp_ext.cli import main
from npp_ext.data import photo_crops
from npp_ext.evaluate import evaluate, plot, sweep_table, write_json
from npp_ext.metrics import psnr
from npp_ext.models import NPP
from npp_ext.options import EncodeOptions

QPS = [30, 40]


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    return list(photo_crops("holdout", 32, 4, seed=1))


def test_plain_points_equal_the_codec_directly(images):
    task = tiny_classifier()
    result = evaluate(images, task, QPS, codec=EncodeOptions(level=2), batch=3)
    assert [(p["method"], p["qp"]) for p in result["points"]] == [("bpg", 30), ("bpg", 40)]
    x = torch.stack(images).float() / 255
    targets = task.targets(x, {})
    for point in result["points"]:
        decoded, bpps, psnrs = [], [], []
        for img in images:
            arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
            rec, bits = bpg.roundtrip(arr, point["qp"], level=2)
            decoded.append(torch.from_numpy(rec).permute(2, 0, 1))
            bpps.append(bits / (32 * 32))
            psnrs.append(psnr(arr, rec))
        assert point["bpp"] == pytest.approx(np.mean(bpps), rel=1e-12)
        assert point["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-12)
        metric = task.metric()
        metric.update(torch.stack(decoded).float() / 255, targets)
        for key, value in metric.compute().items():
            assert point[key] == pytest.approx(value, rel=1e-6), key


def test_npp_points_code_the_npps_output(images):
    task = tiny_classifier()
    torch.manual_seed(0)
    npp = NPP().eval()
    with torch.no_grad():  # an NPP that visibly changes the image
        npp.pixel_conv2.weight.mul_(0.5)
        npp.pixel_conv2.bias.fill_(0.25)
    result = evaluate(images, task, QPS, npp=npp, controls={"same": npp}, batch=4)
    plain = {p["qp"]: p for p in result["points"] if p["method"] == "bpg"}
    for p in result["points"]:
        if p["method"] == "npp+bpg":
            assert p["bpp"] < plain[p["qp"]]["bpp"]  # half the contrast costs fewer bits
            assert p["psnr"] < plain[p["qp"]]["psnr"]  # and is further from the original
            same = next(q for q in result["points"] if q["method"] == "same" and q["qp"] == p["qp"])
            assert same == {**p, "method": "same"}
    assert set(result["bd_rate"]) == {"npp+bpg", "same"}
    assert set(result["bd_rate"]["npp+bpg"]) >= {"top1_agreement", "teacher_class_prob", "psnr"}


def test_outputs_are_written(images, tmp_path):
    result = evaluate(images, tiny_classifier(), QPS, npp=NPP(), batch=4)
    result["bd_rate"]["npp+bpg"]["psnr"] = math.nan  # NaN becomes null in the JSON
    write_json(result, tmp_path / "eval.json")
    back = json.loads((tmp_path / "eval.json").read_text())
    assert back["bd_rate"]["npp+bpg"]["psnr"] is None and len(back["points"]) == 4
    plot(result, tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = sweep_table(result)
    assert table.count("\n| npp+bpg |") == 2 and "BD-rate of npp+bpg" in table


def test_bad_inputs_are_refused(images):
    task = tiny_classifier()
    with pytest.raises(ValueError, match="no images"):
        evaluate([], task, QPS)
    with pytest.raises(TypeError, match="uint8"):
        evaluate([images[0].float()], task, QPS)
    with pytest.raises(ValueError, match="qp must be in 0..51"):
        evaluate(images, task, [60])


def test_eval_refuses_the_training_images(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    for i, img in enumerate(photo_crops("train", 32, 3)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    path = tmp_path / "npp.pt"
    cfg = {"data": str(folder), "holdout": 0.0, "seed": 0, "task": "efficientnet_lite0"}
    checkpoint.save(path, "npp", NPP(), codec=EncodeOptions(), qp_range=(22, 47), config=cfg)
    assert main(["eval", "--npp", str(path), "--data", str(folder), "--out", str(tmp_path)]) == 1
    assert "never overlap training data" in capsys.readouterr().err
