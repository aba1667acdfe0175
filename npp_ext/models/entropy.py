"""Entropy models that turn latents into likelihoods (and hence estimated bits).

* :class:`EntropyBottleneck`: a learned, fully factorized density per channel
  (Ballé et al. 2018, appendix 6.1): a small monotone MLP models each
  channel's cumulative distribution, and a symbol's probability is the mass
  the density puts on its quantization bin.
* :class:`GaussianConditional`: a Gaussian per latent element whose mean and
  scale come from the hyperprior (Minnen et al. 2018), convolved with the
  unit-width quantization bin.

Both follow the same convention: in training mode quantization is replaced by
additive uniform noise in [-0.5, 0.5); in eval mode latents are rounded
(relative to the median or to the predicted mean) with a straight-through
gradient, so an eval-mode model can still be differentiated (``BPGProxyFn``
runs the proxy in eval mode in its backward). Neither class writes a
bitstream: they estimate rate, they do not code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import at_least_32, full_precision, lower_bound, ste_round

__all__ = ["EntropyBottleneck", "GaussianConditional", "estimate_bits"]


def estimate_bits(likelihoods: Tensor) -> Tensor:
    """Estimated code length per image: ``-sum log2(likelihood)`` over (C, H, W), shape (N,)."""
    if likelihoods.dim() < 2:
        raise ValueError(f"likelihoods must be batched (N, ...), got {tuple(likelihoods.shape)}")
    # float16 would overflow (65504 bits) on any real image
    return -torch.log2(at_least_32(likelihoods)).flatten(1).sum(dim=1)


def _bin_mass(log_hi: Tensor, log_lo: Tensor, bound: float) -> Tensor:
    """``exp(log_hi) - exp(log_lo)`` (two log CDFs, ``log_lo < log_hi``), floored at ``bound``.

    Worked out in log space: in linear space the difference and its gradient underflow
    to 0 in the tails, so far-off elements cost a flat ``-log2(bound)`` bits and gave the
    rate no gradient at all. The floor is applied to the log with lower_bound's gradient,
    so exp() never underflows either.
    """
    # (the clamp only keeps log() finite where the two are equal in floating point)
    log_p = log_hi + torch.log(-torch.expm1(torch.clamp(log_lo - log_hi, max=-1e-30)))
    return torch.exp(lower_bound(log_p, math.log(bound)))


def _check_latent(t: Tensor, channels: int, name: str) -> None:
    if t.dim() != 4 or t.shape[1] != channels:
        raise ValueError(f"{name} must have shape (N, {channels}, H, W), got {tuple(t.shape)}")


class EntropyBottleneck(nn.Module):
    """Learned factorized prior for the hyper-latent ``z``.

    Each channel has its own cumulative density ``c(x)``: a chain of
    ``len(filters) + 1`` tiny dense layers with softplus-positive matrices and
    ``tanh``-gated nonlinearities (gates bounded above -1), which makes ``c``
    monotone in ``x``. The likelihood of a quantized value ``v`` is
    ``c(v + 0.5) - c(v - 0.5)``, bounded below by ``likelihood_bound``.

    ``quantiles`` track each channel's median and tails; they are trained
    only by :meth:`aux_loss` and give the rounding offset in eval mode.
    """

    def __init__(
        self,
        channels: int,
        filters: Sequence[int] = (3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
        likelihood_bound: float = 1e-9,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if any(int(f) < 1 for f in filters):
            raise ValueError(f"filters must be positive, got {tuple(filters)}")
        if init_scale <= 0 or not 0 < tail_mass < 1:
            raise ValueError("init_scale must be > 0 and tail_mass in (0, 1)")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.likelihood_bound = float(likelihood_bound)
        self.tail_mass = float(tail_mass)

        dims = (1, *self.filters, 1)
        # Spread init_scale over the layers so the initial density is roughly
        # uniform on [-init_scale, init_scale]: each layer scales by scale**(1/K).
        scale = init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(
                nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5))
            )
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

        quantiles = torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        self.quantiles = nn.Parameter(quantiles)
        # Logit of the cumulative at the lower/upper tail quantile.
        self._tail_logit = math.log(2.0 / tail_mass - 1.0)

    def _logits_cumulative(self, x: Tensor, stop_gradient: bool) -> Tensor:
        # x: (C, 1, B) -> logits of the cumulative, (C, 1, B).
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            m = F.softplus(matrix)
            b = bias
            if stop_gradient:
                m, b = m.detach(), b.detach()
            logits = torch.matmul(m, logits) + b
            if i < len(self.factors):
                f = torch.tanh(self.factors[i])
                if stop_gradient:
                    f = f.detach()
                logits = logits + f * torch.tanh(logits)
        return logits

    @property
    def medians(self) -> Tensor:
        """Per-channel medians (C,), detached: the eval-mode rounding offset."""
        return self.quantiles[:, 0, 1].detach()

    def quantize(self, z: Tensor, noise: bool) -> Tensor:
        """Add uniform noise (``noise=True``) or round around the medians with STE."""
        if noise:
            return z + torch.empty_like(z).uniform_(-0.5, 0.5)
        med = self.medians.to(z.dtype).view(1, -1, 1, 1)
        return ste_round(z - med) + med

    def likelihood(self, z_hat: Tensor) -> Tensor:
        """Probability mass of the unit bin around each element of ``z_hat`` (same shape)."""
        _check_latent(z_hat, self.channels, "z_hat")
        n, c, h, w = z_hat.shape
        dtype = self.quantiles.dtype
        with full_precision(z_hat.device):  # autocast would run the matmuls in float16
            v = z_hat.to(dtype).transpose(0, 1).reshape(c, 1, -1)
            lower = self._logits_cumulative(v - 0.5, stop_gradient=False)
            upper = self._logits_cumulative(v + 0.5, stop_gradient=False)
            # Evaluate in whichever tail keeps the sigmoids away from 1, where
            # float32 would cancel the difference to 0.
            sign = torch.where(lower + upper > 0, -1.0, 1.0).to(dtype).detach()
            hi, lo = sign * upper, sign * lower
            a, b = torch.maximum(hi, lo), torch.minimum(hi, lo)
            lik = _bin_mass(F.logsigmoid(a), F.logsigmoid(b), self.likelihood_bound)
        # Not back to float16: the likelihood bound would flush to 0 there.
        return lik.reshape(c, n, h, w).transpose(0, 1).to(at_least_32(z_hat).dtype)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Quantize ``z`` (N, C, H, W) and return ``(z_hat, likelihoods)``."""
        _check_latent(z, self.channels, "z")
        z_hat = self.quantize(z, noise=self.training)
        return z_hat, self.likelihood(z_hat)

    def aux_loss(self) -> Tensor:
        """Loss that moves ``quantiles`` to the tails and median of each density.

        It only trains ``quantiles`` (the density's parameters are detached),
        so adding it to the main loss does not bias the rate estimate.
        """
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        t = self._tail_logit
        target = logits.new_tensor([-t, 0.0, t])
        return torch.abs(logits - target).sum()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filters={self.filters}"


class GaussianConditional(nn.Module):
    """Conditional Gaussian entropy model for ``y`` given predicted means and scales.

    ``P(y_hat) = Phi((y_hat - mu + 0.5) / s) - Phi((y_hat - mu - 0.5) / s)``
    with ``s = max(scales, scale_bound)`` and the result bounded below by
    ``likelihood_bound``. Training: ``y + U(-0.5, 0.5)``; eval:
    ``round(y - mu) + mu`` with a straight-through gradient.
    """

    def __init__(self, scale_bound: float = 0.11, likelihood_bound: float = 1e-9) -> None:
        super().__init__()
        if scale_bound <= 0:
            raise ValueError(f"scale_bound must be > 0, got {scale_bound}")
        self.scale_bound = float(scale_bound)
        self.likelihood_bound = float(likelihood_bound)

    @staticmethod
    def quantize(y: Tensor, noise: bool, means: Tensor | None = None) -> Tensor:
        """Add uniform noise, or round ``y - means`` to integers (STE) and add the means back."""
        if noise:
            return y + torch.empty_like(y).uniform_(-0.5, 0.5)
        if means is None:
            return ste_round(y)
        return ste_round(y - means) + means

    def likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """Mass of the unit bin around ``y_hat`` under N(means, scales**2), same shape."""
        if scales.shape != y_hat.shape or (means is not None and means.shape != y_hat.shape):
            raise ValueError(
                f"scales/means must match y_hat's shape {tuple(y_hat.shape)}, got "
                f"{tuple(scales.shape)} / {None if means is None else tuple(means.shape)}"
            )
        # At least float32 (autocast off): in float16 the tails underflow to a likelihood
        # of 0, and the bound 1e-9 is 0 there too, so the rate would be infinite.
        with full_precision(y_hat.device):
            y_hat, scales = at_least_32(y_hat), at_least_32(scales)
            s = lower_bound(scales, self.scale_bound)
            v = y_hat if means is None else y_hat - at_least_32(means)
            # Symmetric around 0: use the left tail, where Phi is small and precise.
            v = torch.abs(v)
            # Phi((0.5 - v) / s) - Phi((-0.5 - v) / s)
            upper = torch.special.log_ndtr((0.5 - v) / s)
            lower = torch.special.log_ndtr((-0.5 - v) / s)
            return _bin_mass(upper, lower, self.likelihood_bound)

    def forward(
        self, y: Tensor, scales: Tensor, means: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Quantize ``y`` (noise when training, else rounding); return ``(y_hat, likelihoods)``."""
        y_hat = self.quantize(y, noise=self.training, means=means)
        return y_hat, self.likelihood(y_hat, scales, means)

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound}, likelihood_bound={self.likelihood_bound}"
