"""Pillow plugin: ``Image.open("x.bpg")`` decodes, ``img.save("x.bpg", qp=...)`` encodes.

Registered explicitly, as ``pillow-heif`` does it: ``npp_ext.register_bpg_opener()`` (or
:func:`register`). Importing :mod:`npp_ext` has no side effect on Pillow, so a program
that does not ask for BPG keeps Pillow's format list as it was.

Save options are those of :func:`npp_ext.bpg.encode` with its defaults: ``qp``, ``chroma``,
``level``, ``x265_params`` (see :mod:`npp_ext.options`). BPG animation is not supported
(``save_all`` of several frames raises); an alpha channel is dropped with a warning.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile

from .options import CHROMA_DEFAULT, LEVEL_DEFAULT, QP_DEFAULT

_MAGIC = b"BPG\xfb"


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == _MAGIC


class BpgImageFile(ImageFile.ImageFile):
    """A ``.bpg`` file opened by Pillow; pixels are decoded on ``load()``."""

    format = "BPG"
    format_description = "Better Portable Graphics"

    def _open(self) -> None:
        from . import bpg

        start = self.fp.tell()
        data = self.fp.read()
        if not _accept(data):
            raise SyntaxError("not a BPG file")
        # SyntaxError is Pillow's "cannot identify": Image.open raises an OSError, which
        # is what image loaders catch.
        try:
            info = bpg.read_info(data)
        except bpg.BPGError as e:
            raise SyntaxError(f"broken BPG header: {e}") from e
        if not info.supported:
            # A BPG file, identified: say why it cannot be read (Image.open passes
            # an OSError through, a SyntaxError would only say "cannot identify").
            raise OSError(f"unsupported BPG file: {info.unsupported_reason}")
        self._start = start
        self._mode = "RGB"
        self._size = (info.width, info.height)
        tile = getattr(ImageFile, "_Tile", None)
        args = ("bpg", (0, 0) + self.size, start, None)
        self.tile = [tile(*args) if tile else args]

    def verify(self) -> None:
        """Decode the file with truncation checks; raise SyntaxError if it is damaged."""
        from . import bpg

        self.fp.seek(self._start)
        try:
            bpg.decode(self.fp.read(), verify=True)
        except bpg.BPGError as e:
            raise SyntaxError(f"broken BPG file: {e}") from e
        super().verify()


class _BpgDecoder(ImageFile.PyDecoder):
    """Decodes the whole file at once: from the file on ``load()``, or from the bytes an
    ``ImageFile.Parser`` has gathered."""

    _pulls_fd = True

    def init(self, args: tuple[Any, ...]) -> None:
        self._last_len = -1  # bytes offered by the previous Parser call
        self._tried_len = 0  # bytes of the last decoding attempt

    def decode(self, buffer: bytes | Any) -> tuple[int, int]:

        if self.fd is not None:
            return self._finish(self.fd.read())
        # ImageFile.Parser: BPG files do not say where they end (picture_data_length is 0
        # in practice), so decoding is tried as the bytes grow (each time they have
        # doubled, to keep the cost linear) and once more when Parser.close() offers the
        # same bytes again. Consuming nothing makes the Parser keep them all.
        n = len(buffer)
        final = n == self._last_len
        self._last_len = n
        if not final and n < 2 * self._tried_len:
            return 0, 0
        self._tried_len = n
        try:
            return self._finish(bytes(buffer))
        except OSError:
            if final:
                raise
            return 0, 0

    def _finish(self, data: bytes) -> tuple[int, int]:
        from . import bpg

        try:
            rgb = bpg.decode(data, verify=True)  # a prefix never passes as whole
        except bpg.BPGError as e:
            # Pillow's loaders raise OSError for damaged data; callers catch that.
            raise OSError(f"broken BPG data: {e}") from e
        self.set_as_raw(rgb.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import bpg

    opts = im.encoderinfo
    data = bpg.encode(
        im,  # bpg converts it (16-bit grey scaled, not clipped; alpha dropped with a warning)
        opts.get("qp", QP_DEFAULT),
        chroma=opts.get("chroma", CHROMA_DEFAULT),
        level=opts.get("level", LEVEL_DEFAULT),
        x265_params=opts.get("x265_params"),
    )
    fp.write(data)


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    frames = getattr(im, "n_frames", 1) + len(im.encoderinfo.get("append_images", ()))
    if frames > 1:
        raise OSError(
            f"BPG animation is not supported ({frames} frames given): save one frame at a time"
        )
    _save(im, fp, filename)


def register() -> None:
    """Register the BPG format with Pillow (idempotent)."""
    Image.register_open(BpgImageFile.format, BpgImageFile, _accept)
    Image.register_save(BpgImageFile.format, _save)
    Image.register_save_all(BpgImageFile.format, _save_all)
    Image.register_extension(BpgImageFile.format, ".bpg")
    Image.register_mime(BpgImageFile.format, "image/bpg")
    Image.register_decoder("bpg", _BpgDecoder)
