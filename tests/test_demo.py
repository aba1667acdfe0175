"""The main job end to end (proxy, NPP, evaluation) at a tiny size."""

from __future__ import annotations

import json

from npp_ext.demo import DemoSettings, run_demo
from npp_ext.models import NPP, Proxy


def test_the_demo_trains_evaluates_and_writes_its_outputs(tmp_path, capsys):
    tiny = DemoSettings(
        proxy_steps=4, proxy_stage1=2, proxy_size=(8, 12), npp_steps=2, npp_batch=2,
        npp_crop=32, eval_crop=32, eval_images=4, qps=(32, 42), level=1,
    )  # fmt: skip
    result = run_demo(str(tmp_path), settings=tiny, device="cpu", threads=1)
    out = capsys.readouterr().out
    assert "[3/3] evaluation" in out and "BD-rate of npp+bpg against bpg" in out
    methods = [p["method"] for p in result["points"]]
    assert methods == ["bpg"] * 2 + ["npp+bpg"] * 2 + ["untrained npp+bpg (control)"] * 2
    assert set(result["bd_rate"]) == {"npp+bpg", "untrained npp+bpg (control)"}
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert len(saved["points"]) == 6 and saved["seconds"] > 0
    assert (tmp_path / "eval.png").stat().st_size > 1000
    npp = NPP.from_checkpoint(tmp_path / "npp.pt")
    assert npp.checkpoint["config"]["steps"] == 2 and npp.checkpoint["task"] == "efficientnet_lite0"
    proxy = Proxy.from_checkpoint(tmp_path / "proxy.pt")
    assert (proxy.N, proxy.M) == (8, 12) and "lambdas" in proxy.checkpoint["extra"]
