"""A tiny frozen classifier task for the training tests (fast on a CPU).

Imported by the tests and, as the spec ``module:tiny_task:tiny_classifier``, by child
processes that get this folder on their PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from npp_ext.tasks import Classification


def tiny_classifier(**kw: Any) -> Classification:
    """A fixed random 10-class CNN wrapped as a Classification task."""
    g = torch.Generator().manual_seed(1234)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return Classification(net, **kw)
