"""Reading a file the user names (a profile, the expectations, a corpus program, a report).

Issue 17, item 6: such a file is input. It is opened without blocking (a FIFO given as
FILE would wait for a writer forever), must be a regular file, is read up to a bound
(:data:`MAX_INPUT`) and must be UTF-8; anything else is :class:`InputError` with one line
naming the file. Callers turn that into their own one-line error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from adapters.base import AdapterError

#: The largest input file read (reports of every cell with their failures stay far below).
MAX_INPUT = 64 << 20


class InputError(AdapterError, ValueError):
    """A file that cannot be read as input (one line naming it)."""


def read_text(path: str | Path) -> str:
    """The UTF-8 text of the regular file at ``path`` (module doc)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_INPUT:
                raise InputError(f"{path}: larger than {MAX_INPUT} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
