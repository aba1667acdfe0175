"""``build_task``: a task from a CLI-friendly spec string (built-in, torchvision,
or a factory in any module)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .base import Task
from .classification import Classification, efficientnet_lite0
from .detection import Detection


def _import_torchvision() -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(
            f"this task needs torchvision (pip install torchvision, matching your torch): {e}"
        ) from e
    return torchvision


def _load_weights(model: nn.Module, weights: str | Path | Mapping[str, Tensor]) -> None:
    if isinstance(weights, (str, Path)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    elif isinstance(weights, Mapping):
        state = weights
    else:
        raise TypeError(
            f"weights must be a file path or a state dict, got {type(weights).__name__}"
        )
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    model.load_state_dict(state, strict=True)


def build_task(spec: str = "efficientnet_lite0", **kw: Any) -> Task:
    """A task from a CLI-friendly spec.

    - ``"efficientnet_lite0"`` (default): ``efficientnet_lite0(**kw)``.
    - ``"torchvision:NAME"``: a torchvision classifier (e.g. ``resnet50``) built without
      downloading weights; ``weights=PATH`` (or a state dict) loads yours. Other ``kw``
      go to ``Classification``; ``model_kw={...}`` to the model's constructor.
    - ``"torchvision-detection:NAME"`` (e.g. ``fasterrcnn_resnet50_fpn``,
      ``fcos_resnet50_fpn``): likewise, wrapped in ``Detection``.
    - ``"module:package.module:callable"``: ``callable(**kw)`` returning a ``Task`` or an
      ``nn.Module`` classifier (then wrapped in ``Classification`` with ImageNet
      normalization).
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"spec must be a non-empty string, got {spec!r}")
    kind, _, name = spec.partition(":")
    if spec == "efficientnet_lite0":
        return efficientnet_lite0(**kw)
    if kind in ("torchvision", "torchvision-detection") and name:
        tv = _import_torchvision()
        pkg = tv.models if kind == "torchvision" else tv.models.detection
        available = sorted(tv.models.list_models(module=pkg))
        if name not in available:
            raise ValueError(f"unknown {kind} model {name!r}; available: {', '.join(available)}")
        weights = kw.pop("weights", None)
        model_kw = dict(kw.pop("model_kw", {}) or {})
        model_kw.setdefault("weights", None)
        if kind == "torchvision-detection":
            model_kw.setdefault("weights_backbone", None)
        model = tv.models.get_model(name, **model_kw)
        if weights is not None:
            _load_weights(model, weights)
        if kind == "torchvision":
            return Classification(model, **kw)
        return Detection(model, **kw)
    if kind == "module" and name:
        mod_name, sep, attr = name.rpartition(":")
        if not sep or not mod_name or not attr:
            raise ValueError(f"module spec must be 'module:package.module:callable', got {spec!r}")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"cannot import module {mod_name!r} of task spec {spec!r}: {e}") from e
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ValueError(f"{mod_name!r} has no callable {attr!r} (task spec {spec!r})")
        made = factory(**kw)
        if isinstance(made, Task):
            return made
        if isinstance(made, nn.Module):
            return Classification(made)
        raise TypeError(
            f"{spec!r} returned {type(made).__name__}; "
            "a task factory must return a Task or an nn.Module"
        )
    raise ValueError(
        f"unknown task spec {spec!r}; use 'efficientnet_lite0', 'torchvision:NAME', "
        "'torchvision-detection:NAME' or 'module:package.module:callable'"
    )
