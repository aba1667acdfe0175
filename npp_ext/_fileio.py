"""Writing files so that a failure never leaves a partial one behind."""

from __future__ import annotations

import os
import secrets

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A failed write (a full disk, say) removes the temporary file and leaves ``path`` as it
    was; readers never see a half-written file. The new file gets the permissions of a
    plain ``open(path, "wb")`` (the process umask applies).
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    f = open(tmp, "xb")  # closed by the with below, before the rename
    try:
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
