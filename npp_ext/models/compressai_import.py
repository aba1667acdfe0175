"""Starting a :class:`Proxy` from CompressAI's mean-scale hyperprior weights.

CompressAI's ``MeanScaleHyperprior`` (Minnen et al. 2018 without the context model) has
the proxy's transforms layer for layer (``g_a``, ``g_s``, ``h_a``, ``h_s``) and the same
factorized prior for ``z``. Its state dict maps onto a Proxy by renaming the prior's
parameters (older CompressAI names them ``_matrix0``, ``_bias0``, ``_factor0``), dropping
the buffers that only its range coder and bound modules use, and swapping the two halves
of ``h_s``'s last layer (CompressAI reads scales then means, the proxy means then
scales). The QP gains are not in it: they start at 1, i.e. the model codes every QP as
CompressAI's model does its one rate, until training spreads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from .proxy import Proxy

__all__ = ["proxy_from_compressai", "proxy_state_from_compressai"]

_DROPPED = re.compile(
    r"(_offset|_quantized_cdf|_cdf_length|\.target|likelihood_lower_bound\.bound"
    r"|\.pedestal|\.lower_bound\.bound)$|^gaussian_conditional\."
)
_OLD_PRIOR = re.compile(r"^entropy_bottleneck\._(matrix|bias|factor)(\d+)$")
_PLURAL = {"matrix": "matrices", "bias": "biases", "factor": "factors"}


def proxy_state_from_compressai(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A Proxy state dict (without the QP gains) from a CompressAI MeanScaleHyperprior one."""
    if "g_a.0.weight" not in state_dict or "h_s.4.weight" not in state_dict:
        raise ValueError("not a CompressAI mean-scale hyperprior state dict (no g_a/h_s)")
    if any(k.startswith(("context_prediction.", "entropy_parameters.")) for k in state_dict):
        raise ValueError(
            "a model with the context model (JointAutoregressiveHierarchicalPriors): "
            "only the mean-scale hyperprior maps onto the proxy"
        )
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if _DROPPED.search(key):
            continue
        old = _OLD_PRIOR.match(key)
        if old:
            key = f"entropy_bottleneck.{_PLURAL[old.group(1)]}.{old.group(2)}"
        out[key] = value
    m = int(out["g_a.6.weight"].shape[0])
    for name in ("h_s.4.weight", "h_s.4.bias"):
        scales, means = out[name][:m], out[name][m:]
        out[name] = torch.cat([means, scales])
    return out


def proxy_from_compressai(state_dict: Mapping[str, Tensor], gain_hidden: int = 64) -> Proxy:
    """A Proxy of the sizes the CompressAI weights imply, loaded with them (gains at 1)."""
    mapped = proxy_state_from_compressai(state_dict)
    n_matrices = sum(k.startswith("entropy_bottleneck.matrices.") for k in mapped)
    filters = [
        int(mapped[f"entropy_bottleneck.matrices.{i}"].shape[1]) for i in range(n_matrices - 1)
    ]
    proxy = Proxy(
        N=int(mapped["g_a.0.weight"].shape[0]),
        M=int(mapped["g_a.6.weight"].shape[0]),
        gain_hidden=gain_hidden,
        entropy_filters=tuple(filters),
    )
    own = proxy.state_dict()
    missing = sorted(k for k in own if k not in mapped and not k.startswith("gain_"))
    unknown = sorted(k for k in mapped if k not in own)
    if missing or unknown:
        raise ValueError(f"CompressAI weights do not fit: missing {missing}, unknown {unknown}")
    own.update(mapped)
    proxy.load_state_dict(own)
    with torch.no_grad():  # gains exactly 1: the same model as CompressAI's at every QP
        for gain in (proxy.gain_y, proxy.gain_z):
            gain.fc2.weight.zero_()
            gain.fc2.bias.zero_()
    return proxy
