"""Neural networks of npp_ext: the preprocessor, the proxy codec and their parts.

* :class:`NPP`: the QP-adaptive neural preprocessor run before BPG.
* :class:`Proxy`: a variable-rate learned codec that stands in for BPG in
  the backward pass; returns a :class:`ProxyOutput`.
* Layers (:class:`QALayer`, :class:`QPGain`, :class:`GDN`, :class:`IGDN`,
  :class:`MaskedConv2d`) and entropy models (:class:`EntropyBottleneck`,
  :class:`GaussianConditional`).
"""

from .entropy import EntropyBottleneck, GaussianConditional, estimate_bits
from .layers import (
    GDN,
    IGDN,
    QP_MAX,
    MaskedConv2d,
    NonNegativeParametrizer,
    QALayer,
    QPGain,
    lower_bound,
    normalize_qp,
    ste_round,
)
from .npp import NPP
from .proxy import Proxy, ProxyOutput

__all__ = [
    "GDN",
    "IGDN",
    "NPP",
    "QP_MAX",
    "EntropyBottleneck",
    "GaussianConditional",
    "MaskedConv2d",
    "NonNegativeParametrizer",
    "Proxy",
    "ProxyOutput",
    "QALayer",
    "QPGain",
    "estimate_bits",
    "lower_bound",
    "normalize_qp",
    "ste_round",
]
