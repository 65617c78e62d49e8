"""Operations as data: one frozen class per call, executed by the reference and every adapter.

Paths are relative to the root of the mount under test (``"a/b"``); symlink targets may be
anything, absolute ones included, and always resolve inside the mount. Every ``repr`` is
valid Python, so a shrunk failure can be pasted into a test.

Each operation kind is declared once, here: its class and, in its :func:`operation` entry,
its rule name, whether it looks or writes, the features it belongs to and the domain each
of its fields is drawn from. Everything else derives from :data:`KINDS`: the reference's
handler (``Overlay._op_<rule>``), the system call (``adapters.syscalls.CALLS[rule]``), the
strategies and the feature rule sets (conformance), the layer-interchange changes and the
container machine's operations; ``tests/test_operation_table.py`` fails when a kind lacks
one of them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

#: open(2) flags a Write may add to O_WRONLY.
OPEN_FLAGS = ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND")
#: renameat2(2) flags.
RENAME_FLAGS = ("", "RENAME_NOREPLACE", "RENAME_EXCHANGE")


class Effect(enum.Enum):
    """What an operation does to the filesystem."""

    #: Only looks: the reference engine changes nothing it keeps (its handlers read;
    #: tests/test_reference.py checks the view and the upper after each), so what it
    #: predicted before one still holds after it.
    LOOKS = "looks"
    #: May change the filesystem (gives EROFS on a read-only mount).
    WRITES = "writes"
    #: Unmounts and mounts the same layers again: no system call on a path.
    REMOUNTS = "remounts"


class Operation:
    """The base of every operation kind (each an attrs class declared with
    :func:`operation`)."""

    __slots__ = ()


@attrs.frozen
class Kind:
    """One operation kind: its class and how the rest of the project treats it.

    ``rule``: its name everywhere (machine rules, features, ``Overlay._op_<rule>``,
    ``adapters.syscalls.CALLS[rule]``). ``draws``: the domain each field is drawn from, in
    field order (``conformance.generation.strategies.DOMAINS`` and the container machine's domains).
    ``features``: the focused machines that draw it (conformance.features). ``containers``:
    the container machine draws it too. ``result``: the class its value is built as from
    the system call's plain fields (a dict), None when the call returns the value itself.
    """

    cls: type
    rule: str
    effect: Effect
    draws: tuple[str, ...]
    features: frozenset[str]
    containers: bool = False
    result: type | None = None


#: Every operation kind, by class, in declaration order (the order strategies draw in:
#: shrinking moves towards the first).
KINDS: dict[type, Kind] = {}


def operation(
    rule: str,
    effect: Effect,
    *,
    draws: tuple[str, ...],
    features: tuple[str, ...],
    containers: bool = False,
    result: type | None = None,
) -> Callable[[type], type]:
    """Declare the decorated (attrs) class an operation kind: its entry in :data:`KINDS`."""

    def declare(cls: type) -> type:
        if not issubclass(cls, Operation):
            raise TypeError(f"{cls.__name__}: an operation derives from ops.Operation")
        fields = attrs.fields(cls)
        if len(draws) != len(fields):
            raise TypeError(f"{cls.__name__}: {len(fields)} fields, {len(draws)} draws")
        if rule in {kind.rule for kind in KINDS.values()}:
            raise TypeError(f"{cls.__name__}: rule {rule!r} declared twice")
        KINDS[cls] = Kind(cls, rule, effect, draws, frozenset(features), containers, result)
        return cls

    return declare


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


@operation(
    "stat",
    Effect.LOOKS,
    draws=("path", "follow"),
    result=StatResult,
    features=("read-precedence", "copy-up", "whiteouts", "file-rename", "hardlinks", "metadata"),
    containers=True,
)
@attrs.frozen
class Stat(Operation):
    """stat(2) (``follow=True``) or lstat(2); returns a :class:`StatResult`."""

    path: str
    follow: bool = False


@operation(
    "read",
    Effect.LOOKS,
    draws=("path",),
    features=("read-precedence", "copy-up", "whiteouts", "file-rename", "special-files"),
    containers=True,
)
@attrs.frozen
class Read(Operation):
    """open(O_RDONLY|O_NONBLOCK) and read to the end; returns the bytes."""

    path: str


@operation(
    "readdir",
    Effect.LOOKS,
    draws=("dir_path",),
    features=(
        "read-precedence",
        "whiteouts",
        "opaque-directories",
        "file-rename",
        "directory-rename",
        "readdir",
    ),
    containers=True,
)
@attrs.frozen
class Readdir(Operation):
    """The names of a directory, sorted, without "." and ".." (overlay readdir order is not
    part of the contract: notes E4.1)."""

    path: str


@operation(
    "readlink",
    Effect.LOOKS,
    draws=("path",),
    features=("read-precedence", "special-files"),
)
@attrs.frozen
class Readlink(Operation):
    path: str


@operation(
    "getxattr",
    Effect.LOOKS,
    draws=("path", "xattr_name"),
    features=("read-precedence", "copy-up", "xattrs"),
)
@attrs.frozen
class GetXattr(Operation):
    path: str
    name: str


@operation(
    "listxattr",
    Effect.LOOKS,
    draws=("path",),
    features=("read-precedence", "xattrs"),
)
@attrs.frozen
class ListXattr(Operation):
    """listxattr(2); returns the sorted names in the user.* namespace."""

    path: str


@operation(
    "write",
    Effect.WRITES,
    draws=("path", "data", "offset", "open_flags", "file_mode"),
    features=("copy-up", "hardlinks", "persistence"),
    containers=True,
)
@attrs.frozen
class Write(Operation):
    """open(O_WRONLY|O_NONBLOCK|flags, mode) then write ``data`` at ``offset``
    (at the end with O_APPEND); returns the number of bytes written."""

    path: str
    data: bytes = b""
    offset: int = 0
    flags: tuple[str, ...] = ()
    mode: int = attrs.field(default=0o644, repr=oct)


@operation(
    "truncate",
    Effect.WRITES,
    draws=("path", "size"),
    features=("copy-up",),
    containers=True,
)
@attrs.frozen
class Truncate(Operation):
    path: str
    size: int


@operation(
    "mkdir",
    Effect.WRITES,
    draws=("path", "dir_mode"),
    features=("opaque-directories", "directory-rename", "readdir", "persistence"),
    containers=True,
)
@attrs.frozen
class Mkdir(Operation):
    path: str
    mode: int = attrs.field(default=0o755, repr=oct)


@operation(
    "rmdir",
    Effect.WRITES,
    draws=("path",),
    features=("whiteouts", "opaque-directories", "directory-rename", "readdir"),
    containers=True,
)
@attrs.frozen
class Rmdir(Operation):
    path: str


@operation(
    "unlink",
    Effect.WRITES,
    draws=("path",),
    features=(
        "whiteouts",
        "opaque-directories",
        "file-rename",
        "hardlinks",
        "readdir",
        "persistence",
    ),
    containers=True,
)
@attrs.frozen
class Unlink(Operation):
    path: str


@operation(
    "rename",
    Effect.WRITES,
    draws=("path", "path", "rename_flags"),
    features=("file-rename", "directory-rename"),
    containers=True,
)
@attrs.frozen
class Rename(Operation):
    """renameat2(src, dst, flags) with flags "" or one of RENAME_FLAGS."""

    src: str
    dst: str
    flags: str = ""


@operation(
    "link",
    Effect.WRITES,
    draws=("path", "path"),
    features=("hardlinks",),
    containers=True,
)
@attrs.frozen
class Link(Operation):
    src: str
    dst: str


@operation(
    "symlink",
    Effect.WRITES,
    draws=("target", "path"),
    features=("special-files",),
)
@attrs.frozen
class Symlink(Operation):
    target: str
    path: str


@operation(
    "chmod",
    Effect.WRITES,
    draws=("path", "mode"),
    features=("copy-up", "metadata"),
    containers=True,
)
@attrs.frozen
class Chmod(Operation):
    """chmod(2), following a final symlink."""

    path: str
    mode: int = attrs.field(repr=oct)


@operation(
    "chown",
    Effect.WRITES,
    draws=("path", "uid", "gid"),
    features=("copy-up", "metadata"),
    containers=True,
)
@attrs.frozen
class Chown(Operation):
    """chown(2), following a final symlink."""

    path: str
    uid: int
    gid: int


@operation(
    "setxattr",
    Effect.WRITES,
    draws=("path", "xattr_name", "xattr_value"),
    features=("copy-up", "xattrs", "persistence"),
    containers=True,
)
@attrs.frozen
class SetXattr(Operation):
    """setxattr(2), following a final symlink; flags 0 (create or replace)."""

    path: str
    name: str
    value: bytes


@operation(
    "removexattr",
    Effect.WRITES,
    draws=("path", "xattr_name"),
    features=("xattrs",),
)
@attrs.frozen
class RemoveXattr(Operation):
    path: str
    name: str


@operation(
    "mkfifo",
    Effect.WRITES,
    draws=("path", "mode"),
    features=("special-files",),
)
@attrs.frozen
class Mkfifo(Operation):
    path: str
    mode: int = attrs.field(default=0o644, repr=oct)


@operation(
    "remount",
    Effect.REMOUNTS,
    draws=(),
    features=("read-precedence", "whiteouts", "persistence"),
)
@attrs.frozen
class Remount(Operation):
    """Unmount and mount the same layers again with the same options."""


#: Each kind by its rule name.
BY_RULE: dict[str, Kind] = {kind.rule: kind for kind in KINDS.values()}

#: Any operation (for type hints; the kinds are :data:`KINDS`).
Op = Operation

#: Operations that may change the filesystem (all give EROFS on a read-only mount).
WRITES: tuple[type, ...] = tuple(k.cls for k in KINDS.values() if k.effect is Effect.WRITES)

#: Operations that only look: the reference engine changes nothing it keeps for them
#: (its handlers read; tests/test_reference.py checks the view and the upper after each),
#: so what it predicted before one still holds after it. Remount is not among them.
LOOKS: frozenset[type] = frozenset(k.cls for k in KINDS.values() if k.effect is Effect.LOOKS)
