"""The neural preprocessor (NPP) of Lu et al., "Preprocessing Enhanced Image
Compression for Machine Vision" (TCSVT 2024), conditioned on the BPG QP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..checkpoint import FromCheckpoint
from ..ops import eager
from .layers import QALayer, normalize_qp, pad_to_multiple, validate_image, validate_state_dict

__all__ = ["NPP"]

#: The U-Net downsamples 4 times; inputs are padded to a multiple of this.
NPP_PAD = 16
#: Smallest padded side: keeps at least 2x2 values per channel at the U-Net's
#: bottom, which BatchNorm needs in training mode with a batch of one image.
NPP_MIN_SIDE = 32


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # No conv bias: the BatchNorm right after would cancel it.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv_bn(cin, cout), nn.ReLU(inplace=True))


class _Down(nn.Module):
    """2 x [Conv3x3 + BN + ReLU] (returned as the skip), then Conv3x3/2 + BN.

    The stride-2 output is returned before its ReLU so that the caller can
    fuse that ReLU with the next level's QA scaling.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(cin, cout), _conv_bn_relu(cout, cout))
        self.down = _conv_bn(cout, cout, stride=2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.body(x)
        return skip, self.down(skip)


class _Up(nn.Module):
    """2 x [Conv3x3 + BN + ReLU], then ConvTranspose3x3/2 + BN (ReLU left to the caller)."""

    def __init__(self, cin: int, cmid: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(cin, cmid), _conv_bn_relu(cmid, cmid))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(cmid, cout, 3, 2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.body(x))


class NPP(FromCheckpoint, nn.Module):
    """QP-adaptive neural preprocessor: ``clamp(pixel(x) + unet(x), 0, 1)``.

    * Pixel branch: Conv1x1(3->3), QA, ReLU, Conv1x1(3->3), QA, ReLU.
    * U-Net: 4 down levels (32/64/128/256 channels; two Conv3x3+BN+ReLU then a
      stride-2 Conv3x3+BN+ReLU), 4 up levels (two Conv3x3+BN+ReLU then a
      ConvTranspose3x3/2+BN+ReLU, concatenated with the skip of the same
      resolution), and a head Conv3x3(64->32), Conv3x3(32->32) (+BN+ReLU),
      Conv1x1(32->3) + ReLU.
    * QA layers (:class:`QALayer`, conditioned on ``qp / 51``) scale the two
      pixel convs, the inputs of down levels 2-4 and the outputs of up levels
      2-4 (after the skip concatenation).

    Because QA scales are non-negative, ``relu(a) * s == relu(a * s)``: each
    QA is fused with the ReLU in front of it into one ``ops.qp_scale`` call
    (for up levels over the concatenation, whose skip half is already
    non-negative). ``use_fused_ops=False`` (or :meth:`reference_forward`)
    runs the literal PyTorch formulation instead; both agree to float
    rounding.

    Initialisation: the pixel branch starts as the identity and the U-Net's
    last conv with very small weights, so an untrained NPP is close to the
    identity on [0, 1] and training starts from plain BPG.

    Any H, W: the input is replicate-padded (bottom/right) to a multiple of 16
    and at least 32 per side, then the output is cropped back.
    """

    checkpoint_kind = "npp"  # NPP.from_checkpoint(path): a run of npp-ext train

    def __init__(self, use_fused_ops: bool = True) -> None:
        super().__init__()
        self.use_fused_ops = bool(use_fused_ops)

        self.pixel_conv1 = nn.Conv2d(3, 3, 1)
        self.pixel_conv2 = nn.Conv2d(3, 3, 1)
        self.qa_pixel1 = QALayer(16, 3)
        self.qa_pixel2 = QALayer(16, 3)

        self.down1 = _Down(3, 32)
        self.down2 = _Down(32, 64)
        self.down3 = _Down(64, 128)
        self.down4 = _Down(128, 256)
        self.qa_down2 = QALayer(32, 32)
        self.qa_down3 = QALayer(32, 64)
        self.qa_down4 = QALayer(64, 128)

        self.up1 = _Up(256, 256, 256)  # + skip4 (256) -> 512
        self.up2 = _Up(512, 256, 128)  # + skip3 (128) -> 256
        self.up3 = _Up(256, 128, 64)  # + skip2 (64) -> 128
        self.up4 = _Up(128, 64, 32)  # + skip1 (32) -> 64
        self.qa_up2 = QALayer(64, 256)
        self.qa_up3 = QALayer(64, 128)
        self.qa_up4 = QALayer(32, 64)

        self.head = nn.Sequential(_conv_bn_relu(64, 32), _conv_bn_relu(32, 32), nn.Conv2d(32, 3, 1))
        self._init_near_identity()

    def _init_near_identity(self) -> None:
        with torch.no_grad():
            for c in (self.pixel_conv1, self.pixel_conv2):
                c.weight.copy_(torch.eye(3)[:, :, None, None])
                c.bias.zero_()
            last = self.head[-1]
            last.weight.mul_(0.01)  # small, not zero: later layers still get gradients
            last.bias.zero_()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _relu_scale(pre: Tensor, s: Tensor, fused: bool, skip: Tensor | None = None) -> Tensor:
        """``cat(relu(pre), skip) * s``; the fused form is ``relu(cat(pre, skip) * s)``."""
        if fused:
            t = pre if skip is None else torch.cat([pre, skip], dim=1)
            return ops.qp_scale(t, s, "relu")
        t = F.relu(pre)
        if skip is not None:
            t = torch.cat([t, skip], dim=1)
        return t * s[:, :, None, None]

    def _pixel_branch(self, x: Tensor, q: Tensor, fused: bool) -> Tensor:
        c1, c2 = self.pixel_conv1, self.pixel_conv2
        s1, s2 = self.qa_pixel1(q), self.qa_pixel2(q)
        if fused:
            return ops.npp_pixel_branch(x, c1.weight, c1.bias, s1, c2.weight, c2.bias, s2)
        t = F.relu(c1(x) * s1[:, :, None, None])
        return F.relu(c2(t) * s2[:, :, None, None])

    def _forward(self, x: Tensor, qp: int | Tensor, fused: bool) -> Tensor:
        x = validate_image(x)
        q = normalize_qp(qp, x.shape[0], x.device, self.qa_pixel1.fc1.weight.dtype)
        xp, h, w = pad_to_multiple(x, NPP_PAD, minimum=NPP_MIN_SIDE)

        pixel = self._pixel_branch(xp, q, fused)

        skip1, d = self.down1(xp)
        skip2, d = self.down2(self._relu_scale(d, self.qa_down2(q), fused))
        skip3, d = self.down3(self._relu_scale(d, self.qa_down3(q), fused))
        skip4, d = self.down4(self._relu_scale(d, self.qa_down4(q), fused))
        u = torch.cat([F.relu(self.up1(F.relu(d))), skip4], dim=1)
        u = self._relu_scale(self.up2(u), self.qa_up2(q), fused, skip3)
        u = self._relu_scale(self.up3(u), self.qa_up3(q), fused, skip2)
        u = self._relu_scale(self.up4(u), self.qa_up4(q), fused, skip1)
        unet = F.relu(self.head(u))

        if fused:
            out = ops.branch_sum_clamp(pixel, unet)
        else:
            out = eager.branch_sum_clamp(pixel, unet)
        return out[:, :, :h, :w]

    # ------------------------------------------------------------------ public

    def forward(self, x: Tensor, qp: int | Tensor) -> Tensor:
        """Preprocess ``x`` (N, 3, H, W) in [0, 1] for BPG at ``qp`` (int or (N,) tensor, 0..51).

        Returns an (N, 3, H, W) tensor in [0, 1]. Uses the fused ops unless
        ``use_fused_ops`` is False.
        """
        return self._forward(x, qp, self.use_fused_ops)

    def reference_forward(self, x: Tensor, qp: int | Tensor) -> Tensor:
        """:meth:`forward` computed with plain PyTorch ops only (for testing the fused ops)."""
        return self._forward(x, qp, fused=False)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load weights after checking every shape; a mismatch raises ValueError naming the key."""
        validate_state_dict(self, state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments that shape the weights (none: one architecture)."""
        return {}
