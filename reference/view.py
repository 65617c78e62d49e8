"""What can be observed, in canonical form shared by the reference and every adapter.

* :class:`View`: the merged view seen through the mount (names, types, bytes, metadata,
  xattrs, nlink, and which names share an inode);
* :class:`LayerImage`: a layer directory as it is on disk, decoded into abstract form
  (objects, whiteouts, opaque dirs, redirects, metacopy) so on-disk effects can be compared.
"""

from __future__ import annotations

import operator
from typing import Any, TypeVar

import attrs

C = TypeVar("C", bound=type)


def pickled_as_a_call(cls: C) -> C:
    """Pickle instances as ``cls(*fields)``: attrs' default state (a dict per object, set
    field by field on load) costs more time and bytes for a view crossing the executor's
    socket after every step (figures: docs/performance.md)."""
    names = [field.name for field in attrs.fields(cls)]
    fields = operator.attrgetter(*names)

    def reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
        values = fields(self)
        return cls, values if len(names) > 1 else (values,)

    cls.__reduce__ = reduce  # type: ignore[method-assign]
    return cls


@pickled_as_a_call
@attrs.frozen
class EntryView:
    """One name of the merged view. ``data`` is the file's bytes, ``target`` a symlink's.

    ``xattrs`` are the content namespaces (user.*, trusted.* and security.*, not the
    overlay's trusted.overlay.*: adapters.sandbox.layerdisk.is_content_xattr) of a file, directory
    or FIFO.

    ``kind`` is file, dir, symlink, fifo, or ``unreachable``: readdir lists the name but
    lookup gives ENOENT (a whiteout in a directory that is not merged, which readdir passes
    through unfiltered; observed on this kernel). An unreachable entry has no other fields.

    A real driver's view may also hold kinds the reference never produces, so that they
    compare as divergences (adapters/sandbox/executor.py ``merged_view``): ``"<call> gives
    <ERRNO>"`` where observing a name failed (fuse-overlayfs 1.10: ENOMEM listing ``/``),
    and ``"foreign <kind>"`` for a name neither the layers nor the operations made.
    """

    kind: str
    mode: int
    uid: int
    gid: int
    nlink: int
    data: bytes = b""
    target: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    #: st_mtime_ns and st_ctime_ns; in the reference, exact (>= 0) or an abstract stamp
    #: (< 0, reference.layer.new_stamp), compared as relations
    #: (conformance.lockstep.compare.TimeMap), never by ``==`` (left out of equality:
    #: reference.view.times_of).
    mtime: int = attrs.field(default=0, eq=False)
    ctime: int = attrs.field(default=0, eq=False)


def times_of(entries: dict[str, EntryView]) -> list[tuple[int, int]]:
    """Every entry's (mtime, ctime), in the dict's order: what ``==`` of entries leaves out."""
    return [(entry.mtime, entry.ctime) for entry in entries.values()]


#: The EntryView of a name readdir lists and lookup does not find.
UNREACHABLE = EntryView(kind="unreachable", mode=0, uid=0, gid=0, nlink=0)


@pickled_as_a_call
@attrs.frozen
class View:
    """The merged view: every path below the root, and each path's inode identity.

    ``inodes`` holds st_ino for a real driver and the abstract identity for the reference;
    they are compared as a consistent renaming, never as numbers.
    """

    entries: dict[str, EntryView]
    inodes: dict[str, int]


@pickled_as_a_call
@attrs.frozen
class DiskEntry:
    """One entry of a layer directory on disk.

    ``data`` is None for a metacopy file (its upper bytes are a sparse placeholder).
    """

    kind: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    data: bytes | None = b""
    target: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()
    opaque: bool = False
    redirect: str | None = None
    metacopy: bool = False
    #: A whiteout stored as an ``overlay.whiteout`` xattr on a zero-size regular file.
    xattr_whiteout: bool = False
    #: A directory marked ``overlay.opaque=x`` (it may hold xattr whiteouts; not opaque).
    xwhiteouts: bool = False


@pickled_as_a_call
@attrs.frozen
class LayerImage:
    """A decoded layer: entries by path, and groups of paths that are hardlinks of one inode
    (whiteouts excluded: the kernel shares one whiteout inode, notes W.1)."""

    entries: dict[str, DiskEntry]
    links: frozenset[frozenset[str]]
    #: Each non-whiteout path's inode identity (st_ino on disk), compared as a consistent
    #: renaming across steps: an upper file that is copied up once keeps its inode.
    inodes: dict[str, int] = attrs.field(factory=dict)
