"""Writing files on the host without following anyone's symlinks (issue 17, item 2).

The suite runs as root and writes into directories others may write too (a shared
``/tmp``, a CI workspace). Every file it writes is therefore created by :func:`mkstemp`
(``O_CREAT|O_EXCL``, an unpredictable name, mode 0600) in the target's own directory, so a
symlink planted at a temporary name is never opened; its mode is set with ``fchmod`` on
the open descriptor before ``rename(2)`` puts it in place, and ``rename(2)`` replaces a
symlink at the target instead of following it. Nothing is chmodded by path afterwards. A
failed write (a full disk) removes its temporary before the error goes on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` through a fresh temporary file in the
    same directory, with ``mode``, then rename it over ``path``."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def probe(directory: str | Path) -> None:
    """Check that ``directory`` can be written: create and remove a fresh temporary file
    (OSError when it cannot)."""
    fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=directory)
    os.close(fd)
    os.unlink(tmp)
