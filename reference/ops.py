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
#: utimensat(2)'s special times, by name (a time is otherwise nanoseconds since the epoch).
UTIME_NOW = "now"
UTIME_OMIT = "omit"
#: fallocate(2) modes: "" (allocate, the size grows), KEEP_SIZE, PUNCH_HOLE (with KEEP_SIZE).
FALLOCATE_MODES = ("", "KEEP_SIZE", "PUNCH_HOLE")


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


@attrs.frozen
class Operation:
    """The base of every operation kind (each an attrs class declared with
    :func:`operation`).

    ``caller``: who runs it, a name of :data:`CALLERS` (keyword only, last in ``__init__``,
    left out of pattern matching and, when it is "root", of the repr): the credentials the
    reference checks permissions with and the executors run the call with (issue 18)."""

    caller: str = attrs.field(default="root", kw_only=True, repr=False)


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
    #: Acts on an open descriptor, or opens one (issue 18): run as root only (the
    #: descriptor lives in the executor's process), not drawn by layer interchange.
    descriptor: bool = False


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
    descriptor: bool = False,
) -> Callable[[type], type]:
    """Declare the decorated (attrs) class an operation kind: its entry in :data:`KINDS`."""

    def declare(cls: type) -> type:
        if not issubclass(cls, Operation):
            raise TypeError(f"{cls.__name__}: an operation derives from ops.Operation")
        fields = own_fields(cls)
        if len(draws) != len(fields):
            raise TypeError(f"{cls.__name__}: {len(fields)} fields, {len(draws)} draws")
        if rule in {kind.rule for kind in KINDS.values()}:
            raise TypeError(f"{cls.__name__}: rule {rule!r} declared twice")
        KINDS[cls] = Kind(
            cls, rule, effect, draws, frozenset(features), containers, result, descriptor
        )
        cls.__repr__ = _with_caller(cls.__repr__)  # type: ignore[method-assign]
        return cls

    return declare


# --- callers (issue 18: operations run by someone other than root) -------------------------


@attrs.frozen
class Caller:
    """The credentials an operation runs with: fsuid, fsgid, supplementary groups, umask."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    umask: int = attrs.field(repr=oct)

    @property
    def root(self) -> bool:
        """uid 0 with every capability (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN): the
        executors' own credentials, and every operation's before callers existed."""
        return self.uid == 0

    @property
    def creds(self) -> tuple[int, int, tuple[int, ...], int] | None:
        """What ``adapters.syscalls.invoke`` takes as ``caller``: None for root (the
        executor's own credentials), else (uid, gid, groups, umask)."""
        return None if self.root else (self.uid, self.gid, self.groups, self.umask)

    def in_group(self, gid: int) -> bool:
        """in_group_p (kernel/groups.c): the fsgid or a supplementary group."""
        return gid == self.gid or gid in self.groups


#: The callers an operation may name. "root" is the executors' own credentials (umask 0,
#: so every mode is exact); the others own some of the generated lower objects (ids 1000
#: and 1001, conformance.generation.strategies.IDS), "user" is in group 1001 besides its own, and
#: each has a umask that changes the modes it creates.
CALLERS: dict[str, Caller] = {
    "root": Caller(0, 0, (), 0),
    "user": Caller(1000, 1000, (1001,), 0o022),
    "other": Caller(1001, 1001, (), 0o077),
}
ROOT = CALLERS["root"]


def own_fields(cls: type) -> tuple[attrs.Attribute, ...]:  # type: ignore[type-arg]
    """An operation class's fields without ``caller``: what its system call takes (in
    ``adapters.syscalls.CALLS``) and what its ``draws`` name, in order."""
    return tuple(f for f in attrs.fields(cls) if f.name != "caller")


def _with_caller(plain: Callable[[object], str]) -> Callable[[object], str]:
    """The attrs repr, with ``caller=...`` added when it is not "root" (still valid
    Python; programs written before callers existed read back unchanged)."""

    def __repr__(self: object) -> str:
        text = plain(self)
        caller = getattr(self, "caller", "root")
        if caller == "root":
            return text
        sep = "" if text.endswith("()") else ", "
        return f"{text[:-1]}{sep}caller={caller!r})"

    return __repr__


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
    features=(
        "read-precedence",
        "copy-up",
        "whiteouts",
        "file-rename",
        "hardlinks",
        "metadata",
        "set-id",
        "sizes",
    ),
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
    features=("read-precedence", "copy-up", "whiteouts", "file-rename", "special-files", "sizes"),
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
    containers=True,
)
@attrs.frozen
class Readlink(Operation):
    path: str


@operation(
    "getxattr",
    Effect.LOOKS,
    draws=("path", "xattr_name"),
    features=("read-precedence", "copy-up", "xattrs", "set-id"),
    containers=True,
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
    containers=True,
)
@attrs.frozen
class ListXattr(Operation):
    """listxattr(2); returns the sorted names in the user.* namespace."""

    path: str


@operation(
    "write",
    Effect.WRITES,
    draws=("path", "data", "offset", "open_flags", "file_mode"),
    features=("copy-up", "hardlinks", "persistence", "times", "set-id", "sizes"),
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
    features=("copy-up", "times", "set-id", "sizes"),
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
    features=(
        "opaque-directories",
        "directory-rename",
        "readdir",
        "persistence",
        "times",
        "set-id",
    ),
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
    features=("whiteouts", "opaque-directories", "directory-rename", "readdir", "times"),
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
        "times",
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
    features=("file-rename", "directory-rename", "times"),
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
    features=("hardlinks", "times"),
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
    features=("special-files", "times"),
    containers=True,
)
@attrs.frozen
class Symlink(Operation):
    target: str
    path: str


@operation(
    "chmod",
    Effect.WRITES,
    draws=("path", "mode"),
    features=("copy-up", "metadata", "times", "set-id"),
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
    features=("copy-up", "metadata", "times", "set-id"),
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
    features=("copy-up", "xattrs", "persistence", "times", "set-id"),
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
    features=("xattrs", "set-id"),
    containers=True,
)
@attrs.frozen
class RemoveXattr(Operation):
    path: str
    name: str


@operation(
    "mkfifo",
    Effect.WRITES,
    draws=("path", "mode"),
    features=("special-files", "times"),
    containers=True,
)
@attrs.frozen
class Mkfifo(Operation):
    path: str
    mode: int = attrs.field(default=0o644, repr=oct)


# --- times, privileges and sizes (issue 18, first half) -------------------------------------


@operation(
    "utimens",
    Effect.WRITES,
    draws=("path", "time", "time", "follow"),
    features=("times",),
)
@attrs.frozen
class Utimens(Operation):
    """utimensat(2) with AT_SYMLINK_NOFOLLOW unless ``follow``; each time is nanoseconds
    since the epoch, UTIME_NOW or UTIME_OMIT."""

    path: str
    atime: int | str
    mtime: int | str
    follow: bool = True


@operation(
    "fallocate",
    Effect.WRITES,
    draws=("path", "fallocate_mode", "offset", "length"),
    features=("sizes", "times", "set-id"),
)
@attrs.frozen
class Fallocate(Operation):
    """open(O_WRONLY|O_NONBLOCK) then fallocate(2) with ``mode`` (FALLOCATE_MODES)."""

    path: str
    mode: str
    offset: int
    length: int


# --- end of issue 18, first half ------------------------------------------------------------


@operation(
    "remount",
    Effect.REMOUNTS,
    draws=(),
    features=("read-precedence", "whiteouts", "persistence", "times"),
)
@attrs.frozen
class Remount(Operation):
    """Unmount and mount the same layers again with the same options."""


# --- open file descriptors (issue 18) -----------------------------------------------------
#
# A program refers to a descriptor by its handle: the value of the Open that made it, 0, 1,
# ... in the order of the opens since the mount (never reused; a remount closes them all).
# The descriptor ops read and write with pread/pwrite at explicit offsets, so no file
# position is part of the state.

#: open(2) access modes an Open draws (each with O_NONBLOCK).
OPEN_ACCESS = ("O_RDONLY", "O_RDWR")


@operation(
    "open",
    Effect.WRITES,
    draws=("path", "access"),
    features=("descriptors",),
    descriptor=True,
)
@attrs.frozen
class Open(Operation):
    """open(path, access|O_NONBLOCK), following a final symlink; returns the new handle.
    A FIFO is opened O_PATH: holding a pipe end open would change every later open and
    read of it (an open for writing no longer gives ENXIO once a reader exists: found by
    the kernel run), and pipe contents are not part of the model."""

    path: str
    access: str = "O_RDONLY"


@operation("read_fd", Effect.LOOKS, draws=("handle",), features=("descriptors",), descriptor=True)
@attrs.frozen
class ReadFd(Operation):
    """pread(2) from offset 0 to the end of the handle's descriptor; returns the bytes."""

    handle: int


@operation(
    "write_fd",
    Effect.WRITES,
    draws=("handle", "data", "offset"),
    features=("descriptors",),
    descriptor=True,
)
@attrs.frozen
class WriteFd(Operation):
    """pwrite(2) ``data`` at ``offset`` through the handle's descriptor; returns the count."""

    handle: int
    data: bytes = b""
    offset: int = 0


@operation("close", Effect.WRITES, draws=("handle",), features=("descriptors",), descriptor=True)
@attrs.frozen
class Close(Operation):
    """close(2) of the handle's descriptor."""

    handle: int


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
