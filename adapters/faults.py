"""Seeded faults: drivers with one known, deliberate bug each.

The suite must find every one of them (tests/test_faults.py), and the benchmark measures how
fast it does and how short the shrunk counterexample is. Each is the reference engine with
one rule broken, so they need no root and no mount.
"""

from __future__ import annotations

import stat

import attrs

from adapters.drivers.reference import ReferenceDriver
from reference import ops, privileges
from reference.layer import Inode, Kind, StackSpec, new_stamp
from reference.lookup import Node
from reference.options import Options
from reference.overlay import Overlay
from reference.paths import Resolved


class NoWhiteoutForDirs(Overlay):
    """rmdir of a lower directory leaves no whiteout: the directory comes back."""

    def _lower_positive(self, parent: Node, name: str) -> bool:
        found = super()._lower_positive(parent, name)
        entry = self._child(parent, name).node
        return found and not (entry is not None and entry.is_dir)


class CopyUpDropsXattrs(Overlay):
    """Copy-up forgets the user xattrs of the lower object."""

    def _copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super()._copy_up(node, data=data)
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
        super()._op_chown(ops.Chown(op.path, op.gid, op.uid))


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
        super()._op_symlink(ops.Symlink(op.target[:1], op.path))


class LowerFifoReadsAsFile(Overlay):
    """A FIFO copied up becomes a regular file."""

    def _copy_up(self, node: Node, *, data: bool = True) -> Inode:
        upper = super()._copy_up(node, data=data)
        if upper.kind is Kind.FIFO:
            upper.kind = Kind.FILE
        return upper


# --- times, privileges and sizes (issue 18, first half) -----------------------------------


class CopyUpResetsMtime(Overlay):
    """Copy-up gives the copy the time of the copy instead of the lower's mtime."""

    def _copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super()._copy_up(node, data=data)
        if not had_upper and node.parent is not None:
            upper.mtime = new_stamp()
        return upper


class CreateKeepsParentMtime(Overlay):
    """Creating a name changes its directory's ctime but not its mtime."""

    def _create(self, resolved: Resolved, inode: Inode) -> None:
        assert resolved.parent is not None
        parent = self._copy_up(resolved.parent)
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
            self._meta(node).mode &= ~stat.S_ISUID
        return written


class ChownKeepsSetuid(Overlay):
    """chown() keeps S_ISUID."""

    def _op_chown(self, op: ops.Chown) -> None:
        node = self._existing(op.path, follow=True)
        mode = self._meta(node).mode
        super()._op_chown(op)
        self._meta(node).mode |= mode & stat.S_ISUID


class WriteKeepsCapability(Overlay):
    """A write keeps the security.capability xattr."""

    def _op_write(self, op: ops.Write) -> int:
        node = self._resolve(op.path, follow=True).node
        kept = self._meta(node).xattrs.get(privileges.CAPABILITY) if node else None
        written = super()._op_write(op)
        if kept is not None:
            self._meta(self._existing(op.path, follow=True)).xattrs[privileges.CAPABILITY] = kept
        return written


class CopyUpDropsCapability(Overlay):
    """Copy-up copies user.* xattrs but not security.* ones."""

    def _copy_up(self, node: Node, *, data: bool = True) -> Inode:
        had_upper = node.upper is not None
        upper = super()._copy_up(node, data=data)
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
    **TIME_AND_PRIVILEGE_FAULTS,
}


class FaultyDriver(ReferenceDriver):
    """The reference engine with one seeded fault."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.name = f"fault:{fault}"
        self.engine = FAULTS[fault]
