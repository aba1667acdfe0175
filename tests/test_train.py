"""Training: each stage learns on a fixed batch, a resumed run repeats the uninterrupted
one, chunks give the unsplit gradient, and bad settings are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_task import tiny_classifier

from npp_ext import bpg, checkpoint
from npp_ext.data import open_dataset
from npp_ext.metrics import psnr
from npp_ext.models import NPP, Proxy
from npp_ext.options import EncodeOptions
from npp_ext.tasks import LossHook
from npp_ext.train import LambdaTable, NPPConfig, NPPTrainer, ProxyConfig, draw_qps, train_npp
from npp_ext.train.proxy import _initial_table, _step_loss, calibration_grid
from npp_ext.train.runtime import setup


@pytest.fixture(scope="module")
def proxy_path(tmp_path_factory) -> str:
    """A small proxy fitted briefly (stage 1) to the test crops: its rate has a gradient
    worth following, which an untrained one's has not."""
    torch.manual_seed(0)
    proxy = Proxy(N=8, M=12)
    x = _crops(8, 32, seed=5).float() / 255
    qps = torch.tensor([22, 26, 30, 34, 38, 42, 46, 31])
    _fit(proxy, x, x, qps, LambdaTable([(22, 0.05), (47, 0.002)]), 80)
    path = str(tmp_path_factory.mktemp("proxy") / "proxy.pt")
    checkpoint.save(path, "proxy", proxy.eval(), codec=EncodeOptions(), qp_range=(22, 47))
    return path


def _crops(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    photo = bpg.decode(
        bpg.encode(np.asarray(open_dataset("photos")[0]["image"].permute(1, 2, 0)), 0)
    )
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        out.append(torch.from_numpy(photo[y : y + size, x : x + size]).permute(2, 0, 1))
    return torch.stack(out).contiguous()


# ---- lambda tables and QP draws -----------------------------------------------------------


def test_lambda_tables():
    t = LambdaTable.parse("44:0.25,40:0.5,40:0.8,25:16")
    assert t(44) == pytest.approx(0.25) and t(25) == pytest.approx(16)
    assert t(40) == pytest.approx(np.sqrt(0.5 * 0.8))  # a QP twice: geometric mean
    assert t(42) == pytest.approx(np.sqrt(0.25 * np.sqrt(0.4)))  # log-linear between
    assert t(47) < t(44) < t(30) < t(22)  # extrapolated along the end segments
    assert torch.allclose(t(torch.tensor([44, 25])), torch.tensor([0.25, 16.0]))
    back = LambdaTable.parse(str(t)).pairs()
    assert [q for q, _ in back] == [q for q, _ in t.pairs()]
    assert [v for _, v in back] == pytest.approx([v for _, v in t.pairs()], rel=1e-5)
    for bad, match in (("44=0.25", "QP:LAMBDA"), ("44:-1", "positive"), ("60:1", "qp"), ("", "QP")):
        with pytest.raises(ValueError, match=match):
            LambdaTable.parse(bad)


def test_qp_draws_are_a_function_of_seed_and_step():
    a = draw_qps(3, 10, 8, (25, 44), per_image=True)
    assert torch.equal(a, draw_qps(3, 10, 8, (25, 44), per_image=True))
    assert not torch.equal(a, draw_qps(3, 11, 8, (25, 44), per_image=True))
    assert int(a.min()) >= 25 and int(a.max()) <= 44
    one = draw_qps(3, 10, 8, (25, 44), per_image=False)
    assert len(set(one.tolist())) == 1


# ---- the proxy --------------------------------------------------------------------------


def _fit(proxy: Proxy, x: torch.Tensor, target: torch.Tensor, qps, table, steps: int) -> list:
    opt = torch.optim.Adam(proxy.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, terms = _step_loss(proxy, x, target, qps, table)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(terms["rd"])
    return losses


def test_stage_1_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    x = _crops().float() / 255
    losses = _fit(
        Proxy(N=8, M=12),
        x,
        x,
        torch.tensor([22, 30, 38, 46]),
        LambdaTable([(22, 0.05), (47, 0.002)]),
        25,
    )
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_stage_2_brings_the_proxy_closer_to_bpg():
    torch.manual_seed(0)
    crops = _crops(4, 32)
    qps = [30, 30, 34, 34]
    rec = bpg.roundtrip_batch(crops, qps, level=1).images
    x, target = crops.float() / 255, rec.float() / 255
    proxy = Proxy(N=8, M=12)

    def closeness() -> float:
        with torch.no_grad():
            out = proxy.eval()(x, torch.tensor(qps))
        proxy.train()
        got = (out.x_hat.clamp(0, 1) * 255).round()
        return float(
            np.mean([psnr(a.numpy(), b.numpy()) for a, b in zip(got, rec.float(), strict=True)])
        )

    before = closeness()
    _fit(proxy, x, target, torch.tensor(qps), LambdaTable([(22, 0.05), (47, 0.01)]), 40)
    assert closeness() > before + 3


def test_lambda_calibration_from_bpg_points():
    assert calibration_grid((22, 47)) == [22, 27, 32, 37, 42, 47]
    # BPG-like points: rate halves and distortion doubles every 5 QPs
    points = {
        q: {"bpp": 2.0 * 0.5 ** ((q - 22) / 5), "mse": 4.0 * 2 ** ((q - 22) / 5)}
        for q in range(22, 48, 5)
    }
    table = _initial_table(points)
    # -dR/dD between neighbours: (R_a - R_b) / (D_b - D_a), falling with the QP
    want = (points[22]["bpp"] - points[27]["bpp"]) / (points[27]["mse"] - points[22]["mse"])
    assert table(24.5) == pytest.approx(want, rel=1e-6)
    assert table(45) < table(30)


# ---- the NPP ----------------------------------------------------------------------------


def _trainer(proxy_path: str, tmp_path, task=None, **kw) -> NPPTrainer:
    cfg = NPPConfig(
        proxy=proxy_path, out=str(tmp_path / "run"), device="cpu", level=1, threads=1, **kw
    )
    torch.manual_seed(0)
    return NPPTrainer(cfg, setup("cpu"), task or tiny_classifier(labels=cfg.labels))


def test_npp_loss_goes_down_on_a_fixed_batch(proxy_path, tmp_path):
    # A task whose loss has room to fall (grey images), weighted to dominate the noisy
    # byte counts of tiny files: the whole path (NPP, real BPG, the proxy's backward, the
    # optimizer) must carry its gradient for the loss to fall.
    def grey(x_hat, x, batch):
        return ((x_hat - 0.5) ** 2).flatten(1).mean(1)

    task = LossHook(grey, per_sample=True)
    trainer = _trainer(proxy_path, tmp_path, task, lr=3e-4, warmup=0, lambdas="22:20,47:20")
    batch = {"image": _crops(4, 32)}
    terms = []
    for _ in range(8):
        trainer.step = 0  # the same QPs every time: a fixed batch
        terms.append(trainer.train_step(batch))
    losses = [t["loss"] for t in terms]
    assert np.mean(losses[-3:]) < 0.97 * np.mean(losses[:3]), losses
    assert terms[-1]["d_task"] < terms[0]["d_task"]


def test_chunked_and_unchunked_steps_give_the_same_gradient(proxy_path, tmp_path):
    grads = {}
    for chunks in (1, 3):
        trainer = _trainer(proxy_path, tmp_path, chunks=chunks, batch=5, crop=32)

        def keep(opt, _chunks=chunks, _t=trainer) -> None:
            grads[_chunks] = [p.grad.clone() for p in _t.npp.parameters()]

        trainer.scaler.step = keep
        trainer.train_step({"image": _crops(5, 32, seed=2)})
    for a, b in zip(grads[1], grads[3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_a_resumed_run_repeats_the_uninterrupted_one(proxy_path, tmp_path):
    def run(out, steps, resume=""):
        cfg = NPPConfig(
            proxy=proxy_path, out=str(out), steps=steps, batch=2, crop=32, level=1, threads=1,
            device="cpu", warmup=2, lr=1e-3, ckpt_every=2, log_every=1, resume=resume,
        )  # fmt: skip
        return train_npp(cfg, task=tiny_classifier(), quiet=True)

    whole = checkpoint.load(run(tmp_path / "a", 4), "npp")
    run(tmp_path / "b", 2)
    resumed = checkpoint.load(run(tmp_path / "b", 4, resume="auto"), "npp")
    assert resumed["train_state"]["step"] == whole["train_state"]["step"] == 4
    for key, value in whole["model"]["state_dict"].items():
        assert torch.equal(resumed["model"]["state_dict"][key], value), key
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["loss"] for r in log] == [r["loss"] for r in ref]
    saved = NPP.from_checkpoint(tmp_path / "a" / "npp.pt")
    assert saved.checkpoint["qp_range"] == [25, 44] and not saved.training
    assert json.loads((tmp_path / "a" / "config.json").read_text())["steps"] == 4


# ---- bad settings -------------------------------------------------------------------------


def test_bad_settings_are_clear_errors(proxy_path, tmp_path):
    with pytest.raises(ValueError, match="--proxy"):
        NPPConfig()
    cases = [
        ({"qp_range": (40, 30)}, "low <= high"),
        ({"lambdas": "44:x"}, "QP:LAMBDA"),
        ({"labels": "gold"}, "labels"),
        ({"chroma": "411"}, "chroma must be one of"),
        ({"level": 0}, "level must be in 1..9"),
        ({"amp": "fp8"}, "amp"),
        ({"holdout": 1.5}, "holdout"),
        ({"steps": 0}, "steps must be in"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            NPPConfig(proxy=proxy_path, **kw)
    with pytest.raises(ValueError, match="stage1_steps"):
        ProxyConfig(steps=5, stage1_steps=6)
    with pytest.raises(FileNotFoundError):
        train_npp(
            NPPConfig(proxy=str(tmp_path / "missing.pt"), out=str(tmp_path / "o")), quiet=True
        )
    with pytest.raises(ValueError, match="unknown data"):
        open_dataset("no/such/folder")
    with pytest.raises(ValueError, match="no held-out part"):
        open_dataset(str(tmp_path), side="holdout")


def test_a_batch_level_task_loss_trains_with_one_qp_and_one_chunk(proxy_path, tmp_path):
    # Detection losses are one number per batch: the step draws one QP for the batch and
    # codes it in one chunk whatever --chunks says.
    def batch_loss(x_hat, x, batch):
        return ((x_hat - x) ** 2).mean()

    task = LossHook(batch_loss, per_sample=False)
    trainer = _trainer(proxy_path, tmp_path, task, chunks=3, batch=3, crop=32)
    seen = []
    real = trainer.task.loss
    trainer.task.loss = lambda x_hat, t: seen.append(x_hat.shape[0]) or real(x_hat, t)
    terms = trainer.train_step({"image": _crops(3, 32)})
    assert seen == [3] and np.isfinite(terms["loss"])
    assert terms["qp"] == float(draw_qps(0, 0, 3, (25, 44), per_image=False)[0])


def test_rate_matching_moves_lambda_in_bounded_steps():
    from npp_ext.train.proxy import _MAX_DRIFT, _MAX_STEP, _recalibrate

    torch.manual_seed(0)
    proxy = Proxy(N=8, M=12).eval()
    x = _crops(2, 32).float() / 255
    # BPG makes far more bits than this untrained proxy at every QP: lambda goes up, a
    # bounded step at a time, and never past a factor of 10 from the start.
    points = {q: {"bpp": 50.0, "mse": 1.0} for q in (27, 37, 47)}
    start = LambdaTable([(27, 0.1), (37, 0.01), (47, 0.001)])
    table = start
    for i in range(1, 16):
        table, rates = _recalibrate(table, start, proxy, x, points)
        for q in points:
            moved = table.log_lambda(q) - start.log_lambda(q)
            assert 0 < moved <= min(i * _MAX_STEP, _MAX_DRIFT) + 1e-9, (i, q, moved)
    assert set(rates) == set(points)


def test_mixed_precision_steps_run(proxy_path, tmp_path):
    trainer = _trainer(proxy_path, tmp_path, amp="bf16", batch=2, crop=32)
    terms = trainer.train_step({"image": _crops(2, 32)})
    assert all(np.isfinite(v) for v in terms.values())
    assert all(p.dtype == torch.float32 for p in trainer.npp.parameters())
