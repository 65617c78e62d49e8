"""Seeded faults: drivers with one known, deliberate bug each.

The suite must find every one of them (tests/test_faults.py), and the benchmark measures how
fast it does and how short the shrunk counterexample is. Each is the reference engine with
one rule broken, so they need no root and no mount.
"""

from __future__ import annotations

import attrs

from adapters.drivers.reference import ReferenceDriver
from reference import ops
from reference.layer import Inode, Kind, StackSpec
from reference.lookup import Node
from reference.options import Options
from reference.overlay import Overlay


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

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        upper = super().copy_up(node, data=data)
        if upper.kind is Kind.FIFO:
            upper.kind = Kind.FILE
        return upper


FAULTS: dict[str, type[Overlay]] = {
    "no-whiteout-for-dirs": NoWhiteoutForDirs,
    "copy-up-drops-xattrs": CopyUpDropsXattrs,
    "truncate-to-zero": TruncateToZero,
    "chown-swaps-ids": ChownSwapsIds,
    "append-at-start": AppendAtStart,
    "renames-lower-dirs": RenamesLowerDirs,
    "symlink-target-truncated": SymlinkTargetTruncated,
    "copied-up-fifo-becomes-file": LowerFifoReadsAsFile,
}


class FaultyDriver(ReferenceDriver):
    """The reference engine with one seeded fault."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.name = f"fault:{fault}"
        self.engine = FAULTS[fault]
