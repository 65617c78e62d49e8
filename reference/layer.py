"""A layer in abstract form: the tree a driver keeps on disk, and specs that describe one.

An :class:`Inode` is one object of a layer. Hardlinks are several directory entries that
hold the same ``Inode``. Besides ordinary objects a layer can carry the overlay markers of
overlayfs.rst: whiteouts ("whiteouts and opaque directories"), opaque directories,
redirects ("Redirect dir") and metacopy files ("Metadata only copy up").

The frozen ``*Spec`` classes describe a layer as data (what strategies generate and what a
failing example prints); :func:`build` turns a :class:`LayerSpec` into inodes.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator

import attrs


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    FIFO = "fifo"
    #: A whiteout: a character device 0/0 on disk (doc "whiteouts and opaque directories"),
    #: or a zero-size regular file with the ``overlay.whiteout`` xattr
    #: (:attr:`Inode.xattr_whiteout`).
    WHITEOUT = "whiteout"


_identities = itertools.count(1)


def new_identity() -> int:
    """A fresh abstract inode identity (what st_ino is compared against)."""
    return next(_identities)


#: Stamps count up from far below zero, so later stamps compare as later times.
_stamps = itertools.count(-(10**18))


def new_stamp() -> int:
    """A fresh abstract time: "set by the filesystem now", a value the reference cannot
    know. Exact times (nanoseconds since the epoch, from a layer spec or a Utimens) are
    >= 0; stamps are < 0, increasing, and compared as relations
    (conformance.lockstep.compare.TimeMap)."""
    return next(_stamps)


@attrs.define(eq=False)
class Inode:
    """One object of a layer; directory entries that share it are hardlinks."""

    kind: Kind
    mode: int = attrs.field(default=0o644, repr=oct)
    uid: int = 0
    gid: int = 0
    xattrs: dict[str, bytes] = attrs.field(factory=dict)
    data: bytes = b""
    target: str = ""
    entries: dict[str, Inode] = attrs.field(factory=dict)
    #: trusted.overlay.opaque=y on a directory.
    opaque: bool = False
    #: trusted.overlay.redirect on a directory (or on a renamed metacopy file).
    redirect: str | None = None
    #: trusted.overlay.metacopy: metadata copied up, data still read from ``origin``.
    metacopy: bool = False
    #: trusted.overlay.origin: the lower object this one was copied up from.
    origin: Inode | None = None
    #: A whiteout stored as a zero-size regular file with ``overlay.whiteout`` (doc
    #: "whiteouts and opaque directories", v6.7+) instead of a character device 0/0. The
    #: kernel never writes one; lookup honours it in any layer (obs XW.1).
    xattr_whiteout: bool = False
    #: A directory marked ``overlay.opaque=x``: "may hold xattr whiteouts", not opaque;
    #: readdir of a merged directory hides the xattr whiteouts of a lower directory so
    #: marked, and lists those of an unmarked one (readdir.c ``in_xwhiteouts_dir``, obs XW.2).
    xwhiteouts: bool = False
    ident: int = attrs.field(factory=new_identity)
    #: st_mtime: exact nanoseconds (>= 0) or an abstract stamp (< 0, :func:`new_stamp`).
    mtime: int = attrs.field(factory=new_stamp)
    #: st_ctime: always a stamp (no call sets it to a given value).
    ctime: int = attrs.field(factory=new_stamp)
    #: The pages of an upper file the filesystem has allocated (reference.upperfs).
    pages: frozenset[int] = frozenset()

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    def copy_meta(self, kind: Kind | None = None) -> Inode:
        """A new inode with this one's type, metadata, content and mtime (copy_up.c
        ovl_set_timestamps) but no entries or markers; its ctime is new (a new inode)."""
        return Inode(
            kind=kind or self.kind,
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            xattrs=dict(self.xattrs),
            data=self.data,
            target=self.target,
            mtime=self.mtime,
        )

    def touch(self, *, mtime: bool = True) -> None:
        """The filesystem changed this inode now: a new ctime, and a new mtime when its
        content (a file's bytes, a directory's entries) changed (POSIX "File Times
        Update")."""
        self.ctime = new_stamp()
        if mtime:
            self.mtime = new_stamp()


def new_dir(mode: int = 0o755) -> Inode:
    return Inode(Kind.DIR, mode=mode)


def walk(root: Inode, prefix: str = "") -> Iterator[tuple[str, Inode]]:
    """Every (path, inode) below ``root``, parents before children, names sorted."""
    for name in sorted(root.entries):
        child = root.entries[name]
        path = f"{prefix}{name}"
        yield path, child
        if child.is_dir:
            yield from walk(child, path + "/")


def entry_at(root: Inode, path: str) -> Inode | None:
    """The object at ``path`` ("" is ``root``) in this one layer, walked alone (no overlay
    rules, no symlinks followed): None where the layer has nothing there or a component on
    the way is not a directory."""
    node: Inode | None = root
    for part in path.split("/") if path else ():
        node = node.entries.get(part) if node is not None and node.is_dir else None
    return node


def link_counts(root: Inode) -> dict[int, int]:
    """How many directory entries of this layer hold each inode (st_nlink of non-dirs)."""
    counts: dict[int, int] = {}
    for _, inode in walk(root):
        counts[inode.ident] = counts.get(inode.ident, 0) + 1
    return counts


def dir_nlink(directory: Inode) -> int:
    """st_nlink of a directory on a POSIX filesystem: 2 plus one per subdirectory."""
    return 2 + sum(1 for child in directory.entries.values() if child.is_dir)


# --- specs: layers described as data ------------------------------------------------------


@attrs.frozen
class FileSpec:
    """``mtime``: exact nanoseconds since the epoch, or None (whenever it is written)."""

    data: bytes = b""
    mode: int = attrs.field(default=0o644, repr=oct)
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    mtime: int | None = None


@attrs.frozen
class DirSpec:
    """``mtime``: as :class:`FileSpec`'s (set after the directory's entries are written)."""

    mode: int = attrs.field(default=0o755, repr=oct)
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    opaque: bool = False
    mtime: int | None = None


@attrs.frozen
class SymlinkSpec:
    target: str


@attrs.frozen
class FifoSpec:
    mode: int = attrs.field(default=0o644, repr=oct)


@attrs.frozen(repr=False)
class WhiteoutSpec:
    """A whiteout: a character device 0/0, or with ``xattr`` a zero-size regular file with
    ``overlay.whiteout``, whose parent directory is marked ``overlay.opaque=x`` when
    ``marked`` (doc "whiteouts and opaque directories")."""

    xattr: bool = False
    marked: bool = True

    def __repr__(self) -> str:
        # the defaults are left out, so a plain whiteout reads as before: WhiteoutSpec()
        fields = [f"xattr={self.xattr!r}"] if self.xattr else []
        if not self.marked:
            fields.append("marked=False")
        return f"WhiteoutSpec({', '.join(fields)})"


@attrs.frozen
class MetacopySpec:
    """A metacopy stub (``overlay.metacopy`` and an absolute ``overlay.redirect``): a
    sparse file of ``size`` bytes whose data is the file at ``redirect`` in a data-only
    lower layer (doc "Data-only lower layers", what composefs writes). Its metadata is the
    stub's own."""

    redirect: str
    size: int = 0
    mode: int = attrs.field(default=0o644, repr=oct)
    uid: int = 0
    gid: int = 0


@attrs.frozen
class HardlinkSpec:
    """Another name for the regular file at ``to`` (an earlier entry of the same layer)."""

    to: str


EntrySpec = FileSpec | DirSpec | SymlinkSpec | FifoSpec | WhiteoutSpec | HardlinkSpec | MetacopySpec


@attrs.frozen
class LayerSpec:
    """A layer as (path, spec) pairs; parents come before children, missing parents are
    made as plain 0755 directories."""

    entries: tuple[tuple[str, EntrySpec], ...] = ()


@attrs.frozen
class StackSpec:
    """The layers of one overlay: lowers top first (``lowerdir=l0:l1:l2``); upper starts empty.
    With the ``data_only`` option set the bottom one is a data-only layer (``l0:l1::l2``)."""

    lowers: tuple[LayerSpec, ...]


def build(spec: LayerSpec) -> Inode:
    """The root inode of the layer that ``spec`` describes."""
    root = new_dir()
    for path, entry in spec.entries:
        *parents, name = path.split("/")
        parent = root
        for part in parents:
            child = parent.entries.get(part)
            if child is None or not child.is_dir:
                child = parent.entries[part] = new_dir()
            parent = child
        parent.entries[name] = _inode_for(root, entry)
        if isinstance(entry, WhiteoutSpec) and entry.xattr and entry.marked and not parent.opaque:
            parent.xwhiteouts = True  # overlay.opaque=x (an opaque "y" dir keeps its "y")
    return root


def _inode_for(root: Inode, entry: EntrySpec) -> Inode:
    match entry:
        case FileSpec(data, mode, uid, gid, xattrs, mtime):
            inode = Inode(Kind.FILE, mode=mode, uid=uid, gid=gid, xattrs=dict(xattrs), data=data)
            if mtime is not None:
                inode.mtime = mtime
            return inode
        case DirSpec(mode, uid, gid, xattrs, opaque, mtime):
            inode = Inode(
                Kind.DIR, mode=mode, uid=uid, gid=gid, xattrs=dict(xattrs), opaque=opaque
            )
            if mtime is not None:
                inode.mtime = mtime
            return inode
        case SymlinkSpec(target):
            return Inode(Kind.SYMLINK, mode=0o777, target=target)
        case FifoSpec(mode):
            return Inode(Kind.FIFO, mode=mode)
        case MetacopySpec(redirect, size, mode, uid, gid):
            # the data is the data-only layer's (reference.overlay resolves it); the stub
            # on disk is sparse, of the data's size
            return Inode(
                Kind.FILE,
                mode=mode,
                uid=uid,
                gid=gid,
                data=bytes(size),
                metacopy=True,
                redirect=redirect,
            )
        case WhiteoutSpec(xattr):
            return Inode(Kind.WHITEOUT, mode=0, xattr_whiteout=xattr)
        case HardlinkSpec(to):
            found = dict(walk(root)).get(to)
            if found is None or found.kind is not Kind.FILE:
                raise ValueError(f"hardlink target {to!r} is not a regular file of this layer")
            return found
    raise TypeError(f"not an entry spec: {entry!r}")
