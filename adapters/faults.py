"""Seeded faults: drivers with one known, deliberate bug each.

The suite must find every one of them (tests/test_faults.py), and the benchmark measures how
fast it does and how short the shrunk counterexample is. Each is the reference engine with
one rule broken, so they need no root and no mount.
"""

from __future__ import annotations

import stat

import attrs

from adapters.drivers.reference import ReferenceDriver
from adapters.sandbox.layerdisk import USER, escaped
from reference import ops, privileges
from reference.layer import Inode, Kind, StackSpec, link_counts, new_stamp, walk
from reference.lookup import Node
from reference.options import Options
from reference.overlay import Handle, Overlay, image
from reference.paths import Resolved
from reference.view import LayerImage


class NoWhiteoutForDirs(Overlay):
    """rmdir of a lower directory leaves no whiteout: the directory comes back."""

    def lower_positive(self, parent: Node, name: str) -> bool:
        found = super().lower_positive(parent, name)
        entry = self._child(parent, name).node
        return found and not (entry is not None and entry.is_dir)


class CopyUpDropsXattrs(Overlay):
    """Copy-up forgets the user xattrs of the lower object."""

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super().copy_up(node, data=data)
        if not had_upper and node.parent is not None:
            upper.xattrs.clear()
        return upper


class TruncateToZero(Overlay):
    """truncate() ignores the size and empties the file."""

    def _op_truncate(self, op: ops.Truncate) -> None:
        super()._op_truncate(attrs.evolve(op, size=0))


class ChownSwapsIds(Overlay):
    """chown() stores the gid as the owner and the uid as the group."""

    def _op_chown(self, op: ops.Chown) -> None:
        super()._op_chown(attrs.evolve(op, uid=op.gid, gid=op.uid))


class AppendAtStart(Overlay):
    """O_APPEND writes at offset 0 instead of at the end."""

    def _op_write(self, op: ops.Write) -> int:
        if "O_APPEND" in op.flags:
            flags = tuple(flag for flag in op.flags if flag != "O_APPEND")
            return super()._op_write(attrs.evolve(op, flags=flags, offset=0))
        return super()._op_write(op)


class RenamesLowerDirs(Overlay):
    """Lower directories rename as with redirect_dir=on even when it is off."""

    def __init__(self, stack: StackSpec, options: Options) -> None:
        super().__init__(stack, attrs.evolve(options, redirect_dir=True))


class SymlinkTargetTruncated(Overlay):
    """symlink() stores only the first character of the target."""

    def _op_symlink(self, op: ops.Symlink) -> None:
        super()._op_symlink(attrs.evolve(op, target=op.target[:1]))


class LowerFifoReadsAsFile(Overlay):
    """A FIFO copied up becomes a regular file."""

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        upper = super().copy_up(node, data=data)
        if upper.kind is Kind.FIFO:
            upper.kind = Kind.FILE
        return upper


# --- callers (issue 18) -------------------------------------------------------------------


class AnyoneChmods(Overlay):
    """chmod() by a caller who does not own the file succeeds (no EPERM)."""

    def _op_chmod(self, op: ops.Chmod) -> None:
        caller, self.caller = self.caller, ops.ROOT
        try:
            super()._op_chmod(op)
        finally:
            self.caller = caller


class NoSearchCheck(Overlay):
    """Path walks skip the search (x) permission of the directories they pass."""

    def _search(self, directory: Node) -> None:
        pass


class CreatedByMounter(Overlay):
    """What a caller creates belongs to the mounter (root), as when a daemon running as
    root creates it and forgets to hand it over."""

    def _owned(self, parent: Node, inode: Inode) -> Inode:
        inode = super()._owned(parent, inode)
        inode.uid = inode.gid = 0
        return inode


class UmaskIgnored(Overlay):
    """The caller's umask is not applied to the modes of what it creates."""

    def _owned(self, parent: Node, inode: Inode) -> Inode:
        mode = inode.mode
        inode = super()._owned(parent, inode)
        inode.mode = mode
        return inode


# --- open descriptors (issue 18) ------------------------------------------------------------


class StaleDescriptor(Overlay):
    """A descriptor opened before a copy-up keeps reading the lower file (what unionfs-fuse
    1.0 does until the name is read again, docs/generation.md)."""

    def _fd_inode(self, handle: Handle) -> Inode:
        return handle.inode

class XattrWhiteoutIgnored(Overlay):
    """A whiteout stored as an ``overlay.whiteout`` xattr reads as the empty regular file
    it is stored as (what adapters/sandbox/layerdisk.py did before issue 19): the name it should
    hide shows, empty. The lowers on disk are unchanged (images() gives them as written)."""

    def __init__(self, stack: StackSpec, options: Options) -> None:
        super().__init__(stack, options)
        self._written = tuple(image(root) for root in self.lowers)
        for root in self.lowers:
            for _, inode in walk(root):
                if inode.kind is Kind.WHITEOUT and inode.xattr_whiteout:
                    inode.kind, inode.mode, inode.xattr_whiteout = Kind.FILE, 0o644, False

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        return self.upper_image(), self._written


class EscapedXattrLeaked(Overlay):
    """With userxattr, an xattr in the overlay's own namespace (``user.overlay.e``) set
    through the mount shows under its stored, escaped name (``user.overlay.overlay.e``)."""

    def _op_setxattr(self, op: ops.SetXattr) -> None:
        if self.options.userxattr and op.name.startswith(USER):
            op = attrs.evolve(op, name=escaped(op.name, USER))
        super()._op_setxattr(op)


class DataOnlyLayerShown(Overlay):
    """A data-only lower layer (``lowerdir=l0::data``) is merged like any lower layer: its
    names show in the merged view (the stubs still read their data from it)."""

    def __init__(self, stack: StackSpec, options: Options) -> None:
        super().__init__(stack, options)
        for layer in self.data_layers:
            self.lower_nlink.update(link_counts(layer))
        self.lowers += self.data_layers
        self.data_layers = []


# --- times, privileges and sizes (issue 18, first half) -----------------------------------


class CopyUpResetsMtime(Overlay):
    """Copy-up gives the copy the time of the copy instead of the lower's mtime."""

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super().copy_up(node, data=data)
        if not had_upper and node.parent is not None:
            upper.mtime = new_stamp()
        return upper


class CreateKeepsParentMtime(Overlay):
    """Creating a name changes its directory's ctime but not its mtime."""

    def _create(self, resolved: Resolved, inode: Inode) -> None:
        assert resolved.parent is not None
        parent = self.copy_up(resolved.parent)
        mtime = parent.mtime
        super()._create(resolved, inode)
        parent.mtime = mtime


class UtimensIgnoresMtime(Overlay):
    """utimensat() sets the ctime but leaves the mtime as it was."""

    def _op_utimens(self, op: ops.Utimens) -> None:
        super()._op_utimens(attrs.evolve(op, mtime=ops.UTIME_OMIT))


class RootWriteClearsSetuid(Overlay):
    """A write by root clears S_ISUID (as for a caller without CAP_FSETID)."""

    def _op_write(self, op: ops.Write) -> int:
        written = super()._op_write(op)
        if op.data:
            node = self._existing(op.path, follow=True)
            self.meta(node).mode &= ~stat.S_ISUID
        return written


class ChownKeepsSetuid(Overlay):
    """chown() keeps S_ISUID."""

    def _op_chown(self, op: ops.Chown) -> None:
        node = self._existing(op.path, follow=True)
        mode = self.meta(node).mode
        super()._op_chown(op)
        self.meta(node).mode |= mode & stat.S_ISUID


class WriteKeepsCapability(Overlay):
    """A write keeps the security.capability xattr."""

    def _op_write(self, op: ops.Write) -> int:
        node = self.resolve(op.path, follow=True).node
        kept = self.meta(node).xattrs.get(privileges.CAPABILITY) if node else None
        written = super()._op_write(op)
        if kept is not None:
            self.meta(self._existing(op.path, follow=True)).xattrs[privileges.CAPABILITY] = kept
        return written


class CopyUpDropsCapability(Overlay):
    """Copy-up copies user.* xattrs but not security.* ones."""

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super().copy_up(node, data=data)
        if not had_upper and node.parent is not None:
            for name in [n for n in upper.xattrs if n.startswith("security.")]:
                del upper.xattrs[name]
        return upper


class KeepSizeGrows(Overlay):
    """fallocate(FALLOC_FL_KEEP_SIZE) grows the file as a plain fallocate does."""

    def _op_fallocate(self, op: ops.Fallocate) -> None:
        mode = "" if op.mode == "KEEP_SIZE" else op.mode
        super()._op_fallocate(attrs.evolve(op, mode=mode))


#: The faults of issue 18 (first half), by name.
TIME_AND_PRIVILEGE_FAULTS: dict[str, type[Overlay]] = {
    "copy-up-resets-mtime": CopyUpResetsMtime,
    "create-keeps-parent-mtime": CreateKeepsParentMtime,
    "utimens-ignores-mtime": UtimensIgnoresMtime,
    "root-write-clears-setuid": RootWriteClearsSetuid,
    "chown-keeps-setuid": ChownKeepsSetuid,
    "write-keeps-capability": WriteKeepsCapability,
    "copy-up-drops-capability": CopyUpDropsCapability,
    "keep-size-grows": KeepSizeGrows,
}

# --- end of issue 18, first half ----------------------------------------------------------


FAULTS: dict[str, type[Overlay]] = {
    "no-whiteout-for-dirs": NoWhiteoutForDirs,
    "copy-up-drops-xattrs": CopyUpDropsXattrs,
    "truncate-to-zero": TruncateToZero,
    "chown-swaps-ids": ChownSwapsIds,
    "append-at-start": AppendAtStart,
    "renames-lower-dirs": RenamesLowerDirs,
    "symlink-target-truncated": SymlinkTargetTruncated,
    "copied-up-fifo-becomes-file": LowerFifoReadsAsFile,
    "anyone-chmods": AnyoneChmods,
    "no-search-check": NoSearchCheck,
    "created-by-mounter": CreatedByMounter,
    "umask-ignored": UmaskIgnored,
    "stale-descriptor": StaleDescriptor,
    "xattr-whiteout-ignored": XattrWhiteoutIgnored,
    "escaped-xattr-leaked": EscapedXattrLeaked,
    "data-only-layer-shown": DataOnlyLayerShown,
    **TIME_AND_PRIVILEGE_FAULTS,
}

#: The option set a fault shows under (the others: ``Options()``): the marker forms
#: exist only on their axes.
FAULT_OPTIONS: dict[str, Options] = {
    "xattr-whiteout-ignored": Options(xwhiteouts=True),
    "escaped-xattr-leaked": Options(userxattr=True),
    "data-only-layer-shown": Options(data_only=True),
}


def options_for(fault: str) -> Options:
    """The option set the fault ``fault`` is looked for under."""
    return FAULT_OPTIONS.get(fault, Options())


class FaultyDriver(ReferenceDriver):
    """The reference engine with one seeded fault."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.name = f"fault:{fault}"
        self.engine = FAULTS[fault]
