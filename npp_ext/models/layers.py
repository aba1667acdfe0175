"""Building blocks shared by the NPP and the proxy codec.

QP handling (validation and normalisation), the quantization-adaptation (QA)
layer and the QP gain, GDN/IGDN with non-negative reparametrized parameters,
the masked convolution of the autoregressive context model, a lower-bound op
with a gradient that can leave the bound, straight-through rounding, padding
helpers and a state-dict shape check.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import QP_MAX, QP_MIN, check_qp

__all__ = [
    "QP_MAX",
    "GDN",
    "IGDN",
    "MaskedConv2d",
    "NonNegativeParametrizer",
    "QALayer",
    "QPGain",
    "conv",
    "deconv",
    "at_least_32",
    "full_precision",
    "lower_bound",
    "normalize_qp",
    "pad_to_multiple",
    "ste_round",
    "validate_image",
    "validate_state_dict",
]


# --------------------------------------------------------------------------- QP / inputs


def validate_image(x: object, name: str = "x") -> Tensor:
    """Check that ``x`` is a floating (N, 3, H, W) tensor with N, H, W >= 1.

    Values are not range-checked (that would force a device sync); callers
    promise images in [0, 1]. Raises TypeError / ValueError otherwise.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 3, H, W), got {type(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor with values in [0, 1], got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(x.shape)}")
    if min(x.shape[0], x.shape[2], x.shape[3]) < 1:
        raise ValueError(f"{name} must have N, H, W >= 1, got {tuple(x.shape)}")
    return x


def normalize_qp(
    qp: int | Tensor,
    batch: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Validate a QP and return ``qp / 51`` as an (batch, 1) float tensor.

    ``qp`` is a Python int (one QP for the whole batch), a 0-d tensor, or an
    (batch,) integer or floating tensor (one QP per image; floating values
    need not be integers, which lets a caller interpolate). Every value must
    lie in [0, 51]. Raises TypeError for a wrong type/dtype and ValueError for
    a wrong shape, a non-finite value or a value out of range.
    """
    if isinstance(qp, bool) or not isinstance(qp, (numbers.Integral, Tensor)):
        raise TypeError(
            f"qp must be an int in {QP_MIN}..{QP_MAX} or a (N,) integer/float tensor, "
            f"got {type(qp).__name__}"
        )
    if isinstance(qp, numbers.Integral):
        return torch.full((batch, 1), check_qp(qp) / QP_MAX, device=device, dtype=dtype)
    if qp.dtype == torch.bool or qp.is_complex():
        raise TypeError(f"qp tensor must have an integer or floating dtype, got {qp.dtype}")
    if qp.dim() == 0:
        qp = qp.reshape(1).expand(batch)
    if qp.dim() != 1 or qp.shape[0] != batch:
        raise ValueError(
            f"qp tensor must have shape ({batch},) (one QP per image) or be a scalar, "
            f"got shape {tuple(qp.shape)}"
        )
    if torch.compiler.is_compiling():
        # The value checks below read the tensor on the host, which would split a
        # compiled graph in two; compiled code gets the shape checks only.
        return (qp.to(device=device, dtype=dtype) / QP_MAX).reshape(batch, 1)
    q = qp.detach().to(torch.float64)
    # One host sync per call: cheap next to the network, and a wrong QP is a bug
    # worth catching early.
    if not bool(torch.isfinite(q).all()):
        raise ValueError(f"qp must be finite, got {qp.tolist()}")
    lo, hi = float(q.min()), float(q.max())
    if lo < QP_MIN or hi > QP_MAX:
        raise ValueError(f"qp values must be in {QP_MIN}..{QP_MAX}, got min {lo:g} and max {hi:g}")
    return (qp.to(device=device, dtype=dtype) / QP_MAX).reshape(batch, 1)


def pad_to_multiple(x: Tensor, multiple: int, minimum: int = 1) -> tuple[Tensor, int, int]:
    """Replicate-pad H and W (bottom/right) up to a multiple of ``multiple``.

    Sides are also raised to at least ``minimum``. Returns the padded tensor
    and the original (H, W) for cropping back. Replicate padding works for any
    size (reflect needs the pad to be smaller than the side).
    """
    h, w = x.shape[-2:]
    hp = -(-max(h, minimum) // multiple) * multiple
    wp = -(-max(w, minimum) // multiple) * multiple
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    return x, h, w


# --------------------------------------------------------------------------- small ops


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x upward."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, bound = ctx.saved_tensors
        # Below the bound, only let through gradients that would raise x
        # (gradient descent moves against grad, so grad < 0 raises x);
        # otherwise a parameter stuck below the bound could never recover.
        keep = (x >= bound) | (grad < 0)
        return grad * keep.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float | Tensor) -> Tensor:
    """``max(x, bound)`` with a gradient that lets ``x`` climb back above the bound."""
    if not isinstance(bound, Tensor):
        bound = x.new_tensor(bound)
    return _LowerBound.apply(x, bound.to(dtype=x.dtype, device=x.device))


def ste_round(x: Tensor) -> Tensor:
    """Round to the nearest integer in the forward pass, identity gradient backward."""
    return x + (torch.round(x) - x).detach()


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off on ``device`` for code that needs float32 at least (see :func:`at_least_32`).

    Likelihood tails underflow in float16 (one zero likelihood makes the rate infinite) and
    GDN's ``x * x`` overflows; these parts run in float32 whatever autocast the caller set.
    """
    if device.type in ("cpu", "cuda"):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def at_least_32(t: Tensor) -> Tensor:
    """``t`` as float32 when it is a narrower float; float32/float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


# --------------------------------------------------------------------------- QP conditioning


def _init_hidden(linear: nn.Linear) -> None:
    # Weights in [-0.5, 0.5] and biases in [0.5, 1] keep every hidden ReLU
    # active for all inputs in [0, 1] at the start, so no unit is born dead
    # and every parameter gets a gradient from the first step.
    with torch.no_grad():
        linear.weight.uniform_(-0.5, 0.5)
        linear.bias.uniform_(0.5, 1.0)


class QALayer(nn.Module):
    """Quantization-adaptation layer: per-image, per-channel scales from the QP.

    ``Linear(1 -> m) -> ReLU -> Linear(m -> C) -> ReLU`` applied to the
    normalized QP (``qp / 51``, shape (N, 1)); the output (N, C) multiplies a
    feature map channel-wise. The last layer starts with small weights and a
    bias of 1, so an untrained layer gives scales close to 1 and leaves the
    features (nearly) untouched.
    """

    def __init__(self, m: int, channels: int) -> None:
        super().__init__()
        if m < 1 or channels < 1:
            raise ValueError(f"QALayer needs m >= 1 and channels >= 1, got {m}, {channels}")
        self.m = m
        self.channels = channels
        self.fc1 = nn.Linear(1, m)
        self.fc2 = nn.Linear(m, channels)
        _init_hidden(self.fc1)
        with torch.no_grad():
            # Tiny weights: the m hidden terms add up, and NPP stacks two QA
            # scales on its pixel branch; 1e-3 keeps the product within ~1%.
            self.fc2.weight.normal_(0.0, 1e-3)
            self.fc2.bias.fill_(1.0)

    def forward(self, q: Tensor) -> Tensor:
        """Map normalized QPs (N, 1) to non-negative scales (N, C)."""
        if q.dim() != 2 or q.shape[1] != 1:
            raise ValueError(f"QALayer expects normalized QPs (N, 1), got {tuple(q.shape)}")
        return F.relu(self.fc2(F.relu(self.fc1(q))))

    def extra_repr(self) -> str:
        return f"m={self.m}, channels={self.channels}"


class QPGain(nn.Module):
    """Strictly positive per-channel gains from the QP, for variable-rate coding.

    ``Linear(1 -> m) -> ReLU -> Linear(m -> C)`` gives a log-gain, softly
    bounded to ``[-max_log_gain, max_log_gain]`` with tanh and exponentiated.
    Multiplying a latent by the gain before rounding and dividing after is
    quantization with step ``1 / gain``, so the QP sets the step per channel.
    The exp keeps the gain invertible (a ReLU could output 0). Starts near 1.
    """

    def __init__(self, m: int, channels: int, max_log_gain: float = 8.0) -> None:
        super().__init__()
        if m < 1 or channels < 1:
            raise ValueError(f"QPGain needs m >= 1 and channels >= 1, got {m}, {channels}")
        if max_log_gain <= 0:
            raise ValueError(f"max_log_gain must be > 0, got {max_log_gain}")
        self.m = m
        self.channels = channels
        self.max_log_gain = float(max_log_gain)
        self.fc1 = nn.Linear(1, m)
        self.fc2 = nn.Linear(m, channels)
        _init_hidden(self.fc1)
        with torch.no_grad():
            self.fc2.weight.normal_(0.0, 0.01)
            self.fc2.bias.zero_()

    def forward(self, q: Tensor) -> Tensor:
        """Map normalized QPs (N, 1) to positive gains (N, C)."""
        if q.dim() != 2 or q.shape[1] != 1:
            raise ValueError(f"QPGain expects normalized QPs (N, 1), got {tuple(q.shape)}")
        log_gain = self.fc2(F.relu(self.fc1(q)))
        bound = self.max_log_gain
        return torch.exp(bound * torch.tanh(log_gain / bound))

    def extra_repr(self) -> str:
        return f"m={self.m}, channels={self.channels}, max_log_gain={self.max_log_gain}"


# --------------------------------------------------------------------------- GDN


class NonNegativeParametrizer(nn.Module):
    """Store a non-negative parameter ``v`` as ``p`` with ``v = max(p, b)**2 - pedestal``.

    Optimising the square root keeps small values trainable (the gradient
    does not vanish near zero as it would for a clamp), the pedestal keeps
    the root away from 0, and the lower bound enforces ``v >= minimum``.
    """

    def __init__(self, minimum: float = 0.0, offset: float = 2**-18) -> None:
        super().__init__()
        self.pedestal = float(offset) ** 2
        self.bound = (float(minimum) + self.pedestal) ** 0.5

    def init(self, value: Tensor) -> Tensor:
        """Return the stored representation ``p`` of a non-negative ``value``."""
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, p: Tensor) -> Tensor:
        """Map the stored representation back to the constrained value."""
        return lower_bound(p, self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016).

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; with ``inverse=True``
    the square root multiplies instead (IGDN, the approximate inverse used in
    synthesis transforms). ``beta >= beta_min > 0`` and ``gamma >= 0`` are
    kept by :class:`NonNegativeParametrizer`.
    """

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"GDN needs channels >= 1, got {channels}")
        self.channels = channels
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParametrizer(minimum=beta_min)
        self.gamma_reparam = NonNegativeParametrizer()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: Tensor) -> Tensor:
        """Normalize (or, for IGDN, denormalize) an (N, C, H, W) feature map."""
        with full_precision(x.device):
            # float16's x * x overflows at 256, and the zero off-diagonal gamma entries turn
            # that inf into NaN on every channel of the pixel.
            xf = at_least_32(x)
            beta = self.beta_reparam(self.beta).to(xf.dtype)
            gamma = self.gamma_reparam(self.gamma).to(xf.dtype)
            norm = F.conv2d(xf * xf, gamma[:, :, None, None], beta)
            out = xf * torch.sqrt(norm) if self.inverse else xf * torch.rsqrt(norm)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inverse={self.inverse}"


class IGDN(GDN):
    """Inverse GDN: :class:`GDN` with ``inverse=True``."""

    def __init__(self, channels: int, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__(channels, inverse=True, beta_min=beta_min, gamma_init=gamma_init)


# --------------------------------------------------------------------------- convolutions


class MaskedConv2d(nn.Conv2d):
    """Causal convolution for the autoregressive context model (PixelCNN masks).

    Mask ``"A"`` hides the centre and everything after it in raster order (a
    latent never sees itself); ``"B"`` keeps the centre.
    """

    def __init__(self, *args, mask_type: str = "A", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        kh, kw = self.kernel_size
        mask = torch.ones(kh, kw)
        mask[kh // 2, kw // 2 + (mask_type == "B") :] = 0
        mask[kh // 2 + 1 :] = 0
        self.mask_type = mask_type
        # Derived from the constructor arguments, so not part of the state dict.
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with the masked kernel."""
        return self._conv_forward(x, self.weight * self.mask, self.bias)


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Convolution with 'same' padding, downsampling by ``stride``."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution upsampling exactly by ``stride``."""
    return nn.ConvTranspose2d(
        in_ch,
        out_ch,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        output_padding=stride - 1,
    )


# --------------------------------------------------------------------------- state dicts


def validate_state_dict(
    module: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True, hint: str = ""
) -> None:
    """Raise ValueError naming the first key whose shape (or presence) does not fit ``module``.

    ``hint`` is appended to the message (e.g. the module's configuration).
    PyTorch's own error lists every mismatch in one long RuntimeError; this
    one says which key and what the two shapes are.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    own = module.state_dict()
    suffix = f" ({hint})" if hint else ""
    for key, value in state_dict.items():
        if key in own and isinstance(value, Tensor) and value.shape != own[key].shape:
            raise ValueError(
                f"state_dict key {key!r} has shape {tuple(value.shape)}, but this "
                f"{type(module).__name__} expects {tuple(own[key].shape)}{suffix}"
            )
    if strict:
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match {type(module).__name__}{suffix}: "
                f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
            )
