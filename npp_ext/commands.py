"""The method's commands of ``npp-ext``: ``train-proxy``, ``train``, ``eval`` and ``demo``.

The training commands' options are the fields of their config dataclasses
(``--qp-range 25 44``, ``--stage1-steps``, ...), so a config saved with a run and the
command line say the same things.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from .options import CHROMA_DEFAULT, LEVEL_DEFAULT, EncodeOptions, check_qp

__all__ = ["add_parsers", "run"]

_HELP = {
    "data": "photos (scikit-image's), a folder, imagefolder:PATH or coco:ROOT:ANN_JSON",
    "out": "run folder (config.json, log.jsonl, the checkpoint)",
    "steps": "optimizer steps in all",
    "batch": "images per step (the global batch under torchrun)",
    "crop": "random square crops of this side",
    "qp_range": "QPs drawn per image from LOW..HIGH",
    "lr": "Adam's learning rate",
    "level": "BPG compression level 1..9",
    "chroma": "BPG chroma format (420 or 444 in training)",
    "x265_params": "extra x265 settings name=value:...",
    "threads": "codec threads per process (0: the cores shared among the processes)",
    "holdout": "fraction of a folder's images held out (by content) for evaluation",
    "seed": "seed of the data order, crops, QP draws and initialisation",
    "device": "auto, cpu or cuda[:N] (under torchrun: the rank's GPU)",
    "workers": "DataLoader workers",
    "ckpt_every": "save the checkpoint every N steps",
    "log_every": "write a log line every N steps",
    "proxy": "the proxy checkpoint (npp-ext train-proxy)",
    "task": "efficientnet_lite0, torchvision:NAME, torchvision-detection:NAME, module:M:F",
    "task_weights": "state dict of a torchvision:NAME task network (nothing is downloaded)",
    "labels": "teacher (the task network's own prediction) or data (the dataset's labels)",
    "lambdas": "the task loss weight per QP, QP:LAMBDA,... (the authors' pairs by default)",
    "beta": "weight of MSE(x_bar, x) on [0, 1]",
    "weight_decay": "Adam's weight decay",
    "warmup": "steps of linear learning-rate warm-up",
    "chunks": "code the batch in chunks, the task running on those already decoded",
    "amp": "mixed precision: off, bf16 or fp16",
    "resume": "continue from a checkpoint of this run (auto: OUT/npp.pt)",
    "N": "proxy channels N",
    "M": "proxy latent channels M",
    "context": "add the autoregressive context model to the proxy",
    "stage1_steps": "of the steps, how many are rate-distortion against the input",
    "init": "start from compressai:STATE_DICT.pt or proxy:CHECKPOINT",
    "calib_images": "crops BPG codes to calibrate lambda_p",
    "calib_every": "re-calibrate lambda_p every N steps",
    "report_images": "held-out crops of the report",
}


def _add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {
            "dest": f.name,
            "help": f"{_HELP.get(f.name, '')} (default: %(default)s)",
        }
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", **kw)
        elif isinstance(default, tuple):
            parser.add_argument(
                flag, type=int, nargs=2, default=default, metavar=("LOW", "HIGH"), **kw
            )
        else:
            parser.add_argument(flag, type=type(default), default=default, **kw)


def _config(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_parsers(sub: Any) -> None:
    """Add the method's subcommands to the ``npp-ext`` parser."""
    from .train import NPPConfig, ProxyConfig

    p = sub.add_parser("train-proxy", help="train the proxy codec that stands in for BPG")
    _add_config_options(p, ProxyConfig)
    p = sub.add_parser("train", help="train the NPP through real BPG for a task")
    _add_config_options(p, NPPConfig)
    p = sub.add_parser("eval", help="rate-accuracy of BPG and NPP+BPG on held-out images")
    p.add_argument("--npp", default="", help="NPP checkpoint (without: plain BPG only)")
    p.add_argument("--data", default="photos", help=_HELP["data"])
    p.add_argument("--holdout", type=float, default=None,
                   help="fraction held out of a folder (default: the NPP run's)")  # fmt: skip
    p.add_argument("--task", default=None, help="task spec (default: the NPP run's)")
    p.add_argument("--task-weights", default=None, help="(default: the NPP run's)")
    p.add_argument("--labels", default="teacher", help=_HELP["labels"])
    p.add_argument("--qp", type=int, nargs="+", default=[22, 27, 32, 37, 42, 47])
    p.add_argument("--crop", type=int, default=224, help="centre crops of this side (0: whole)")
    p.add_argument("--count", type=int, default=256, help="crops of the sample photos")
    p.add_argument("--level", type=int, default=LEVEL_DEFAULT)
    p.add_argument("--chroma", default=CHROMA_DEFAULT)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the run's)")
    p.add_argument("--out", default="eval", help="folder for eval.json and eval.png")
    p = sub.add_parser("demo", help="the method end to end on the sample photos (default)")
    p.add_argument("--out", default=None, help="keep npp.pt, proxy.pt, eval.json, eval.png")
    p.add_argument("--scale", type=float, default=1.0, help="more steps and images (GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)


def _eval_images(args: argparse.Namespace, run: dict[str, Any]) -> tuple[list, list]:
    """The held-out images of an eval, never the NPP run's training images."""
    from .data import CenterCrop, open_dataset, photo_crops

    if args.data == "photos":
        return list(photo_crops("holdout", args.crop or 224, args.count, seed=args.seed or 0)), []
    holdout = run.get("holdout", 0.0) if args.holdout is None else args.holdout
    seed = run.get("seed", 0) if args.seed is None else args.seed
    trained_on = run.get("data")
    if trained_on == args.data and run.get("holdout", 0.0) == 0.0:
        raise ValueError(
            f"the NPP was trained on all of {args.data!r}: evaluate on other images "
            "(held-out data must never overlap training data)"
        )
    side = "holdout" if holdout else "all"
    ds = open_dataset(args.data, side=side, holdout=holdout, seed=seed)
    crop = CenterCrop(args.crop) if args.crop else None
    images, extras = [], []
    for i in range(len(ds)):
        item = ds[i]
        if crop is not None:
            item = crop(item)
        images.append(item["image"])
        extras.append({k: v for k, v in item.items() if k in ("label", "boxes", "labels")})
    return images, extras


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, plot, sweep_table, write_json
    from .models import NPP
    from .tasks import build_task

    codec = EncodeOptions(chroma=args.chroma, level=args.level)
    qps = [check_qp(q) for q in args.qp]
    npp, run = None, {}
    if args.npp:
        npp = NPP.from_checkpoint(args.npp, codec=codec)
        run = npp.checkpoint.get("config", {})
    weights = args.task_weights if args.task_weights is not None else run.get("task_weights")
    kw = {"weights": weights} if weights else {}
    task = build_task(args.task or run.get("task", "efficientnet_lite0"), labels=args.labels, **kw)
    images, extras = _eval_images(args, run)
    device = "cuda" if args.device == "auto" and _cuda() else args.device
    result = evaluate(
        images, task, qps, npp=npp, codec=codec, batch=args.batch, threads=args.threads,
        device="cpu" if device == "auto" else device, extras=extras or None,
    )  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    write_json(result, os.path.join(args.out, "eval.json"))
    try:
        plot(result, os.path.join(args.out, "eval.png"))
    except ImportError as e:
        print(f"(no plot: {e})")
    print(sweep_table(result))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    """Run one of the method's subcommands."""
    if args.command == "train-proxy":
        from .train import ProxyConfig
        from .train.proxy import train_proxy

        print(train_proxy(_config(ProxyConfig, args)))
        return 0
    if args.command == "train":
        from .train import NPPConfig, train_npp

        print(train_npp(_config(NPPConfig, args)))
        return 0
    if args.command == "eval":
        return _run_eval(args)
    if args.command == "demo":
        from .demo import DemoSettings, run_demo

        run_demo(
            args.out, settings=DemoSettings().scaled(args.scale), device=args.device,
            threads=args.threads,
        )  # fmt: skip
        return 0
    raise ValueError(f"unknown command {args.command!r}")
