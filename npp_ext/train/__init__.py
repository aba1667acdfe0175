"""Training: the proxy that stands in for BPG (``npp-ext train-proxy``) and the NPP
trained through real BPG for a machine-vision task (``npp-ext train``).

See ``docs/method.md#training-and-evaluation-in-this-package``.
"""

from .config import NPPConfig, ProxyConfig
from .lambdas import AUTHORS_PAIRS, LambdaTable
from .npp import NPPTrainer, draw_qps, train_npp

__all__ = [
    "AUTHORS_PAIRS",
    "LambdaTable",
    "NPPConfig",
    "NPPTrainer",
    "ProxyConfig",
    "draw_qps",
    "train_npp",
]
