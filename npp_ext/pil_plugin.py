"""Pillow plugin: ``Image.open("x.bpg")`` decodes, ``img.save("x.bpg", qp=...)`` encodes.

Registered when :mod:`npp_ext` is imported. Save options: ``qp`` (0..51, default 29),
``chroma`` ("420", "444", "422", "gray"), ``level`` (1..9, default 8), ``x265_params``.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile

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
        im,  # bpg converts it (16-bit grey scaled, not clipped)
        opts.get("qp", 29),
        chroma=opts.get("chroma", "420"),
        level=opts.get("level", 8),
        x265_params=opts.get("x265_params"),
    )
    fp.write(data)


def register() -> None:
    """Register the BPG format with Pillow (idempotent)."""
    Image.register_open(BpgImageFile.format, BpgImageFile, _accept)
    Image.register_save(BpgImageFile.format, _save)
    Image.register_extension(BpgImageFile.format, ".bpg")
    Image.register_mime(BpgImageFile.format, "image/bpg")
    Image.register_decoder("bpg", _BpgDecoder)
