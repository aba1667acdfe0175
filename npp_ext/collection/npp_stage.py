"""The NPP as a pipeline stage: images of any size in, preprocessed 8-bit images out.

Determinism is the design constraint. A resumed or sharded run must write exactly the
bytes of one uninterrupted run, so an image's NPP output must not depend on the other
images that share its forward pass. Convolution libraries pick their algorithms (and so
their float rounding) by the whole input shape, batch size included: on the CPU an image
run alone and the same image in a batch of four differ in the last bit, and on a GPU
cuDNN's choice also depends on the batch size. What does not change an image's result
is the content of its neighbours or its position among them (there is no reduction across
images; BatchNorm in eval mode is a per-channel affine map).

So every forward pass has the same batch size ``batch`` (1 by default on the CPU, 8 on
CUDA) and a single padded shape: images are grouped by the size the NPP pads them to
anyway (replicate padding bottom/right to a multiple of 16, at least 32 per side) and
padded here exactly as the NPP would pad them alone; a group that does not fill a batch
is completed with copies of its last image, whose results are dropped. Each result is
cropped back to its image's own size. cuDNN's autotuner is turned off (it may pick
different algorithms in different processes) and deterministic algorithms are asked for.
The same checkpoint, batch size, device type and library versions then give the same
bytes; another batch size or device may change a pixel by one level here and there, so
both are recorded in the manifest and a resume with other ones redoes the work.

The float output is quantized as the codec quantizes float input:
``round(clamp(x, 0, 1) * 255)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..options import EncodeOptions

__all__ = ["NPPRunner", "default_batch", "resolve_device"]

#: Images per forward pass unless told: one on the CPU (no padding waste), 8 on a GPU.
CPU_BATCH, CUDA_BATCH = 1, 8


def resolve_device(device: str, environ: dict[str, str] | None = None) -> str:
    """The torch device string to run on: ``cuda`` under torchrun means ``cuda:LOCAL_RANK``."""
    import torch

    env = os.environ if environ is None else environ
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch sees no CUDA device")
        if dev.index is None and env.get("LOCAL_RANK"):
            dev = torch.device("cuda", int(env["LOCAL_RANK"]))
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {dev}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return str(dev)


def default_batch(device: str) -> int:
    """The batch size used when none is given."""
    return CUDA_BATCH if device.startswith("cuda") else CPU_BATCH


class NPPRunner:
    """A checkpoint's NPP on one device, run in fixed-size batches of one padded shape."""

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        *,
        qp: int,
        codec: EncodeOptions,
        device: str = "cpu",
        batch: int | None = None,
    ) -> None:
        import torch

        from ..checkpoint import file_hash
        from ..models import NPP
        from ..models.npp import NPP_MIN_SIDE, NPP_PAD

        self.device = resolve_device(device)
        self.batch = default_batch(self.device) if batch is None else int(batch)
        if self.batch < 1:
            raise ValueError(f"--batch must be at least 1, got {batch}")
        self.qp = qp
        self._pad, self._min = NPP_PAD, NPP_MIN_SIDE
        if self.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.sha256 = file_hash(checkpoint)
        self.model = NPP.from_checkpoint(checkpoint, codec=codec, qp=qp, map_location=self.device)

    @property
    def device_type(self) -> str:
        """ "cpu" or "cuda" (what the manifest records)."""
        return self.device.split(":")[0]

    def group_key(self, height: int, width: int) -> tuple[int, int]:
        """The padded (height, width) the NPP runs an image of this size at."""
        p, m = self._pad, self._min
        return -(-max(height, m) // p) * p, -(-max(width, m) // p) * p

    def run_float(self, images: list[np.ndarray]) -> list[Any]:
        """The NPP's float outputs, (3, H, W) tensors on the device, for up to ``batch``
        (H, W, 3) uint8 images of one group key (see the module doc)."""
        import torch
        import torch.nn.functional as F

        if not 1 <= len(images) <= self.batch:
            raise ValueError(f"run takes 1..{self.batch} images, got {len(images)}")
        keys = {self.group_key(*a.shape[:2]) for a in images}
        if len(keys) != 1:
            raise ValueError(f"images of one batch must share a padded size, got {sorted(keys)}")
        hp, wp = keys.pop()
        with torch.inference_mode():
            parts: list[Any] = []
            for a in images:
                a = np.ascontiguousarray(a) if a.flags.writeable else np.array(a)
                t = torch.from_numpy(a).to(self.device)
                t = t.permute(2, 0, 1)[None].float().div_(255)
                h, w = a.shape[:2]
                if (h, w) != (hp, wp):
                    t = F.pad(t, (0, wp - w, 0, hp - h), mode="replicate")
                parts.append(t)
            parts += [parts[-1]] * (self.batch - len(parts))  # always the same batch size
            y = self.model(torch.cat(parts), self.qp)
        return [y[i, :, : a.shape[0], : a.shape[1]] for i, a in enumerate(images)]

    def run(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`run_float` quantized like the codec quantizes floats, as (H, W, 3) uint8."""
        import torch

        with torch.inference_mode():
            outs = [
                y.clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0)
                for y in self.run_float(images)
            ]
            return [np.ascontiguousarray(q.cpu().numpy()) for q in outs]
