"""The proxy codec: a learned, differentiable stand-in for BPG.

A mean-scale hyperprior (Minnen et al. 2018), optionally with the
autoregressive context model, made variable-rate by QP-conditioned gains so
one model covers QP 0..51. In training the NPP gets its gradients through
this model in place of BPG's (non-differentiable) encode/decode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..checkpoint import FromCheckpoint
from .entropy import EntropyBottleneck, GaussianConditional, estimate_bits
from .layers import (
    GDN,
    IGDN,
    MaskedConv2d,
    QPGain,
    conv,
    deconv,
    normalize_qp,
    pad_to_multiple,
    validate_image,
    validate_state_dict,
)

__all__ = ["Proxy", "ProxyOutput"]

#: Total downsampling from the image to ``z`` (4 in g_a, 2 in h_a): inputs are padded to it.
PROXY_PAD = 64


class ProxyOutput(NamedTuple):
    """What :meth:`Proxy.forward` returns.

    ``x_hat``: (N, 3, H, W) reconstruction, cropped to the input size and not
    clamped (clamping would cut gradients). ``bits``: (N,) estimated bits per
    image, y plus z, counted over the padded latents. ``likelihoods``:
    ``{"y": ..., "z": ...}`` per-element likelihoods of the padded latents.
    """

    x_hat: Tensor
    bits: Tensor
    likelihoods: dict[str, Tensor]


class Proxy(FromCheckpoint, nn.Module):
    """Variable-rate mean-scale hyperprior codec (Minnen et al. 2018) conditioned on the QP.

    Transforms: ``g_a`` 4 x Conv5x5/2 with GDN, ``g_s`` 4 x ConvTranspose5x5/2
    with IGDN, ``h_a`` Conv3x3/1 then 2 x Conv5x5/2 with LeakyReLU, ``h_s``
    mirrored to ``2 M`` channels (means and scales of a Gaussian for each
    element of ``y``). ``z`` uses a factorized :class:`EntropyBottleneck`.

    QP conditioning: :class:`QPGain` MLPs of ``qp / 51`` give positive
    per-channel gains for ``y`` (M) and ``z`` (N). A latent is multiplied by
    its gain before quantization and divided by the same gain after, which
    is uniform quantization with step ``1 / gain`` per channel: the QP sets
    the quantization step. The hyperprior models the gained ``y``. The gains
    start near 1, i.e. as a plain fixed-rate model; training across QPs makes
    them diverge.

    ``context=True`` adds the autoregressive context model (masked 5x5 conv on
    the quantized ``y`` plus 1x1 entropy-parameter convs merging it with the
    hyper output). It is evaluated in parallel in both modes: training uses
    the noisy ``y``; eval uses ``round(y)`` (no mean offset, as the means
    themselves depend on the rounded neighbours). That estimates the rate of
    a serial context coder; it is not a decodable serial coder.

    Rounding: training mode adds U(-0.5, 0.5) noise; eval mode rounds with a
    straight-through gradient, so the model can be differentiated in eval
    mode (``BPGProxyFn`` runs the frozen proxy in eval mode for BPG's backward).

    Inputs of any size are replicate-padded on the bottom/right to a multiple
    of 64 and ``x_hat`` is cropped back; ``bits`` count every latent of the
    padded image (padding costs a few bits, as BPG's padding does). The rate
    gradient of the padding flows into the last rows and columns it copies:
    train on crops whose sides are multiples of 64 to avoid that.

    Sizes: the defaults (N=128, M=192, no context) are the small mean-scale
    model; the authors' proxy used N = M = 192 with the context model, one per
    lambda. One QP-conditioned model serves all QPs here (see above).
    """

    checkpoint_kind = "proxy"  # Proxy.from_checkpoint(path): a run of npp-ext train-proxy

    def __init__(
        self,
        N: int = 128,
        M: int = 192,
        context: bool = False,
        gain_hidden: int = 64,
        entropy_filters: tuple[int, ...] = (3, 3, 3),
    ):
        super().__init__()
        if min(N, M, gain_hidden) < 1:
            raise ValueError(f"N, M and gain_hidden must be >= 1, got {N}, {M}, {gain_hidden}")
        self.N = int(N)
        self.M = int(M)
        self.context = bool(context)
        self.gain_hidden = int(gain_hidden)
        self.entropy_filters = tuple(int(f) for f in entropy_filters)

        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
        )
        self.g_s = nn.Sequential(
            deconv(M, N), IGDN(N), deconv(N, N), IGDN(N), deconv(N, N), IGDN(N), deconv(N, 3)
        )
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
            nn.LeakyReLU(inplace=True),
            conv(N, N),
        )
        mid = max(1, M * 3 // 2)
        self.h_s = nn.Sequential(
            deconv(N, M),
            nn.LeakyReLU(inplace=True),
            deconv(M, mid),
            nn.LeakyReLU(inplace=True),
            conv(mid, 2 * M, 3, 1),
        )
        if self.context:
            self.context_prediction = MaskedConv2d(M, 2 * M, 5, padding=2, mask_type="A")
            c1, c2 = max(1, M * 10 // 3), max(1, M * 8 // 3)
            self.entropy_parameters = nn.Sequential(
                nn.Conv2d(4 * M, c1, 1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(c1, c2, 1),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(c2, 2 * M, 1),
            )
        self.gain_y = QPGain(gain_hidden, M)
        self.gain_z = QPGain(gain_hidden, N)
        self.entropy_bottleneck = EntropyBottleneck(N, filters=self.entropy_filters)
        self.gaussian_conditional = GaussianConditional()

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, qp: int | Tensor) -> ProxyOutput:
        """Code ``x`` (N, 3, H, W) in [0, 1] at ``qp`` (int or (N,) tensor, 0..51)."""
        x = validate_image(x)
        n = x.shape[0]
        q = normalize_qp(qp, n, x.device, self.gain_y.fc1.weight.dtype)
        xp, h, w = pad_to_multiple(x, PROXY_PAD)

        gain_y = self.gain_y(q)[:, :, None, None]
        gain_z = self.gain_z(q)[:, :, None, None]
        y = self.g_a(xp) * gain_y
        z = self.h_a(y) * gain_z
        z_hat, z_lik = self.entropy_bottleneck(z)
        hyper = self.h_s(z_hat / gain_z)

        if self.context:
            y_hat = self.gaussian_conditional.quantize(y, noise=self.training)
            ctx = self.context_prediction(y_hat)
            means, scales = self.entropy_parameters(torch.cat([hyper, ctx], dim=1)).chunk(2, 1)
            y_lik = self.gaussian_conditional.likelihood(y_hat, scales, means)
        else:
            means, scales = hyper.chunk(2, 1)
            y_hat, y_lik = self.gaussian_conditional(y, scales, means)

        x_hat = self.g_s(y_hat / gain_y)[:, :, :h, :w]
        bits = estimate_bits(y_lik) + estimate_bits(z_lik)
        return ProxyOutput(x_hat=x_hat, bits=bits, likelihoods={"y": y_lik, "z": z_lik})

    def aux_loss(self) -> Tensor:
        """The entropy bottleneck's quantile loss (trains only its ``quantiles``)."""
        return self.entropy_bottleneck.aux_loss()

    # ------------------------------------------------------------------ state dicts

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, e.g. to store next to a state dict."""
        return {
            "N": self.N,
            "M": self.M,
            "context": self.context,
            "gain_hidden": self.gain_hidden,
            "entropy_filters": list(self.entropy_filters),
        }

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load weights after checking every shape; a mismatch raises ValueError naming the key."""
        hint = f"Proxy(N={self.N}, M={self.M}, context={self.context}); "
        try:
            found = self.config_from_state_dict(state_dict)
            args = ", ".join(f"{k}={v}" for k, v in found.items())
            hint += f"the state dict looks like Proxy({args})"
        except (KeyError, ValueError, IndexError):
            hint += "the state dict is not recognisably a Proxy's"
        validate_state_dict(self, state_dict, strict=strict, hint=hint)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @staticmethod
    def config_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Infer ``N``, ``M``, ``context`` and ``gain_hidden`` from a Proxy state dict."""
        try:
            n = int(state_dict["g_a.0.weight"].shape[0])
            m = int(state_dict["g_a.6.weight"].shape[0])
            hidden = int(state_dict["gain_y.fc1.weight"].shape[0])
        except KeyError as e:
            raise KeyError(f"not a Proxy state dict: key {e} is missing") from None
        return {
            "N": n,
            "M": m,
            "context": "context_prediction.weight" in state_dict,
            "gain_hidden": hidden,
            "entropy_filters": [
                int(state_dict[f"entropy_bottleneck.matrices.{i}"].shape[1])
                for i in range(
                    sum(k.startswith("entropy_bottleneck.matrices.") for k in state_dict) - 1
                )
            ],
        }

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any]) -> Proxy:
        """Build a Proxy with the configuration the state dict implies and load it."""
        model = cls(**cls.config_from_state_dict(state_dict))
        model.load_state_dict(state_dict)
        return model
