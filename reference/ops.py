"""Operations as data: one frozen class per call, executed by the reference and every adapter.

Paths are relative to the root of the mount under test (``"a/b"``); symlink targets may be
anything, absolute ones included, and always resolve inside the mount. Every ``repr`` is
valid Python, so a shrunk failure can be pasted into a test.
"""

from __future__ import annotations

import attrs

#: open(2) flags a Write may add to O_WRONLY.
OPEN_FLAGS = ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND")
#: renameat2(2) flags.
RENAME_FLAGS = ("", "RENAME_NOREPLACE", "RENAME_EXCHANGE")


@attrs.frozen
class Stat:
    """stat(2) (``follow=True``) or lstat(2); returns a :class:`StatResult`."""

    path: str
    follow: bool = False


@attrs.frozen
class StatResult:
    """``mode`` is the permission bits (st_mode & 0o7777); ``size`` is a file's byte count, a
    symlink's target length, and 0 for anything else (a directory's st_size is
    filesystem-specific, not part of the overlay contract)."""

    kind: str
    mode: int = attrs.field(repr=oct)
    uid: int
    gid: int
    size: int
    nlink: int


@attrs.frozen
class Read:
    """open(O_RDONLY|O_NONBLOCK) and read to the end; returns the bytes."""

    path: str


@attrs.frozen
class Write:
    """open(O_WRONLY|O_NONBLOCK|flags, mode) then write ``data`` at ``offset``
    (at the end with O_APPEND); returns the number of bytes written."""

    path: str
    data: bytes = b""
    offset: int = 0
    flags: tuple[str, ...] = ()
    mode: int = attrs.field(default=0o644, repr=oct)


@attrs.frozen
class Truncate:
    path: str
    size: int


@attrs.frozen
class Mkdir:
    path: str
    mode: int = attrs.field(default=0o755, repr=oct)


@attrs.frozen
class Rmdir:
    path: str


@attrs.frozen
class Unlink:
    path: str


@attrs.frozen
class Rename:
    """renameat2(src, dst, flags) with flags "" or one of RENAME_FLAGS."""

    src: str
    dst: str
    flags: str = ""


@attrs.frozen
class Link:
    src: str
    dst: str


@attrs.frozen
class Symlink:
    target: str
    path: str


@attrs.frozen
class Readlink:
    path: str


@attrs.frozen
class Chmod:
    """chmod(2), following a final symlink."""

    path: str
    mode: int = attrs.field(repr=oct)


@attrs.frozen
class Chown:
    """chown(2), following a final symlink."""

    path: str
    uid: int
    gid: int


@attrs.frozen
class SetXattr:
    """setxattr(2), following a final symlink; flags 0 (create or replace)."""

    path: str
    name: str
    value: bytes


@attrs.frozen
class GetXattr:
    path: str
    name: str


@attrs.frozen
class ListXattr:
    """listxattr(2); returns the sorted names in the user.* namespace."""

    path: str


@attrs.frozen
class RemoveXattr:
    path: str
    name: str


@attrs.frozen
class Readdir:
    """The names of a directory, sorted, without "." and ".." (overlay readdir order is not
    part of the contract: notes E4.1)."""

    path: str


@attrs.frozen
class Mkfifo:
    path: str
    mode: int = attrs.field(default=0o644, repr=oct)


@attrs.frozen
class Remount:
    """Unmount and mount the same layers again with the same options."""


Op = (
    Stat
    | Read
    | Write
    | Truncate
    | Mkdir
    | Rmdir
    | Unlink
    | Rename
    | Link
    | Symlink
    | Readlink
    | Chmod
    | Chown
    | SetXattr
    | GetXattr
    | ListXattr
    | RemoveXattr
    | Readdir
    | Mkfifo
    | Remount
)

#: Operations that may change the filesystem (all give EROFS on a read-only mount).
WRITES: tuple[type, ...] = (
    Write,
    Truncate,
    Mkdir,
    Rmdir,
    Unlink,
    Rename,
    Link,
    Symlink,
    Chmod,
    Chown,
    SetXattr,
    RemoveXattr,
    Mkfifo,
)

#: Operations that only look: the reference engine changes nothing it keeps for them
#: (its handlers read; tests/test_reference.py checks the view and the upper after each),
#: so what it predicted before one still holds after it. Remount is not among them.
LOOKS: frozenset[type] = frozenset({Stat, Read, Readlink, GetXattr, ListXattr, Readdir})
