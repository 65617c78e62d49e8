"""Checks of a program read from a file (a corpus program, an expectation's reproducer).

Issue 17, items 3, 6 and 8. A program from a file is input, not something the strategies
drew: before it is replayed, every field must have the type its class declares, every
path the shape the suite's own programs have, and every size a bound, so a bad file gives
one line (:class:`ProgramError`) instead of a traceback, a MemoryError (the reference pads
a truncate with ``ljust``) or a path that leaves the mount:

* a path is relative, made of non-empty components, none ``.`` or ``..``, with no NUL
  (an operation's path may be ``""``, the mount's root; a layer entry's may not);
* a symlink target may be absolute or hold ``..`` (that is what symlink tests are made
  of; the executor resolves it inside a chroot, the daemon in a confined root), no NUL;
* data, offsets and sizes are at most :data:`MAX_BYTES`, and at most
  :data:`MAX_PROGRAM_BYTES` all together (the layers' data and xattr values, the steps'
  data, sizes and offsets: 10,000 truncates to 1 MiB each would make the reference hold
  10 GB); modes fit in 0o7777; ids in 32 bits; at most :data:`MAX_LOWERS` lowers,
  :data:`MAX_ENTRIES` entries a layer and :data:`MAX_STEPS` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from conformance.errors import ConformanceError
from reference import layer, ops

#: The largest file size, write offset or data length a program may ask for: far above
#: what the strategies draw (offsets and sizes up to 20, data up to 12 bytes).
MAX_BYTES = 1 << 20
#: The most bytes a whole program may ask for (module doc).
MAX_PROGRAM_BYTES = 16 * MAX_BYTES
MAX_LOWERS = 64
MAX_ENTRIES = 10_000
MAX_STEPS = 10_000
MAX_ID = (1 << 32) - 2
#: Fields holding a path inside the mount or a layer, by class (the rest are checked by
#: type only, except a symlink's ``target``).
PATH_FIELDS = {"path", "src", "dst", "to"}


#: Fields whose values come from a fixed set (the executor's tables).
CHOICES = {
    ("Write", "flags"): frozenset(ops.OPEN_FLAGS),
    ("Rename", "flags"): frozenset(ops.RENAME_FLAGS),
    ("Open", "access"): frozenset(ops.OPEN_ACCESS),
    ("Fallocate", "mode"): frozenset(ops.FALLOCATE_MODES),
}


#: The descriptor kinds (ops.Kind.descriptor): root only.
_DESCRIPTOR = frozenset(k.cls for k in ops.KINDS.values() if k.descriptor)


class ProgramError(ConformanceError, ValueError):
    """A program read from a file is not one the suite can run (one line)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pairs(second: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
        and second(pair[1])
        for pair in value
    )


#: The declared field types (as attrs records them) and how to check each.
TYPES: dict[str, Callable[[Any], bool]] = {
    "str": lambda value: isinstance(value, str),
    "bool": lambda value: isinstance(value, bool),
    "int": _is_int,
    "bytes": lambda value: isinstance(value, bytes),
    "tuple[str, ...]": lambda value: isinstance(value, tuple)
    and all(isinstance(v, str) for v in value),
    "tuple[tuple[str, bytes], ...]": _pairs(lambda v: isinstance(v, bytes)),
    "tuple[tuple[str, EntrySpec], ...]": _pairs(
        lambda v: isinstance(v, layer.EntrySpec)  # type: ignore[arg-type]
    ),
    "int | None": lambda value: value is None or _is_int(value),
    "int | str": lambda value: _is_int(value) or value in (ops.UTIME_NOW, ops.UTIME_OMIT),
    "tuple[LayerSpec, ...]": lambda value: isinstance(value, tuple)
    and all(isinstance(v, layer.LayerSpec) for v in value),
}


def _fields(obj: Any, where: str) -> None:
    """Every field of ``obj`` has its declared type, then its bounds."""
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        check = TYPES.get(str(field.type))
        if check is None or not check(value):
            raise ProgramError(
                f"{where}: {type(obj).__name__}.{field.name} must be {field.type}, "
                f"not {type(value).__name__} {value!r:.60}"
            )
        _bounds(type(obj).__name__, field.name, value, where)


def _bounds(cls: str, name: str, value: Any, where: str) -> None:
    what = f"{where}: {cls}.{name}"
    if isinstance(value, str) and "\0" in value:
        raise ProgramError(f"{what} holds a NUL byte")
    if name == "caller" and value not in ops.CALLERS:
        raise ProgramError(f"{what} must be among {sorted(ops.CALLERS)}, not {value!r}")
    if name == "caller" and value != "root" and getattr(ops, cls, None) in _DESCRIPTOR:
        raise ProgramError(f"{what}: a descriptor operation runs as root")
    if name == "handle" and not 0 <= value <= MAX_STEPS:
        raise ProgramError(f"{what} must be within 0 and {MAX_STEPS}, not {value!r}")
    if name == "mode" and _is_int(value) and not 0 <= value <= 0o7777:
        raise ProgramError(f"{what} must be within 0 and 0o7777, not {value!r}")
    if name in ("uid", "gid") and not 0 <= value <= MAX_ID:
        raise ProgramError(f"{what} must be within 0 and {MAX_ID}, not {value!r}")
    if name in ("size", "offset", "length") and not 0 <= value <= MAX_BYTES:
        raise ProgramError(f"{what} must be within 0 and {MAX_BYTES}, not {value!r}")
    if isinstance(value, bytes) and len(value) > MAX_BYTES:
        raise ProgramError(f"{what} is longer than {MAX_BYTES} bytes")
    if (cls, name) in CHOICES and not set(value if isinstance(value, tuple) else [value]) <= (
        CHOICES[cls, name]
    ):
        raise ProgramError(f"{what} must be among {sorted(CHOICES[cls, name])}, not {value!r}")
    if name in PATH_FIELDS:
        check_path(value, what, root_ok=cls in ops.__dict__)


def _weight(obj: Any) -> int:
    """The bytes a record (its types checked) can make the reference hold: its data and
    xattr values, its size or offset."""
    total = 0
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if isinstance(value, bytes):
            total += len(value)
        elif field.name in ("size", "offset", "length") and _is_int(value):
            total += value
        elif field.name == "xattrs":
            total += sum(len(v) for _, v in value)
    return total


def check_path(path: str, what: str, root_ok: bool) -> None:
    """A path inside the mount or a layer (module doc); ``root_ok``: ``""`` allowed."""
    if path == "" and root_ok:
        return
    if path.startswith("/"):
        raise ProgramError(f"{what} must be relative, not {path!r:.60}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ProgramError(f"{what} must not hold '', '.' or '..' components: {path!r:.60}")


def check_program(stack: Any, steps: tuple[Any, ...], where: str) -> None:
    """Raise :class:`ProgramError` unless ``stack`` and ``steps`` are a program the suite
    can run (module doc)."""
    if not isinstance(stack, layer.StackSpec):
        raise ProgramError(f"{where}: 'stack' must be a StackSpec(...)")
    total = 0

    def count(obj: Any) -> None:
        nonlocal total
        total += _weight(obj)
        if total > MAX_PROGRAM_BYTES:
            raise ProgramError(
                f"{where}: more than {MAX_PROGRAM_BYTES} bytes of data, xattr values, sizes "
                f"and offsets in all"
            )

    _fields(stack, f"{where} stack")
    if not 1 <= len(stack.lowers) <= MAX_LOWERS:
        raise ProgramError(f"{where} stack: 1 to {MAX_LOWERS} lowers, not {len(stack.lowers)}")
    for i, spec in enumerate(stack.lowers):
        here = f"{where} stack lowers[{i}]"
        _fields(spec, here)
        if len(spec.entries) > MAX_ENTRIES:
            raise ProgramError(f"{here}: more than {MAX_ENTRIES} entries")
        for path, entry in spec.entries:
            check_path(path, f"{here} entry path", root_ok=False)
            _fields(entry, f"{here} {path!r:.60}")
            count(entry)
    if len(steps) > MAX_STEPS:
        raise ProgramError(f"{where}: more than {MAX_STEPS} steps")
    for i, step in enumerate(steps):
        _fields(step, f"{where} steps[{i}]")
        count(step)
