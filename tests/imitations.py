"""Imitations of real drivers' recorded behaviours: the reference engine changed the way
fuse-overlayfs 1.10 and unionfs-fuse 1.0 behave (conformance/records/expectations.toml), so the
record matching can be tested without root, and seeded faults (adapters/faults.py) laid on
top of them (tests/test_records.py).

The behaviours the engine models as variants (reference/variants.py) are imitated by the
variants themselves; the others each by one class here, written from the record's hand
reproduction.
"""

from __future__ import annotations

from collections import Counter

from adapters.drivers.driver_profile import DriverProfile
from adapters.drivers.reference import ReferenceDriver
from adapters.faults import FAULTS
from conformance.records import expectations
from reference import ops
from reference.layer import Kind
from reference.lookup import Node
from reference.overlay import Overlay
from reference.paths import FsError
from reference.variants import VARIANTS


class ChmodLowerFifoGivesEio(Overlay):
    """fifo-copy-up-eio: chmod or utimensat of a lower FIFO copies it up as a regular file
    (with the new mode or times) and gives EIO (the record's hand reproductions; its chown
    is left out, so a seeded fault on a chown shows alone)."""

    def _op_chmod(self, op: ops.Chmod) -> None:
        fifo = self._lower_fifo(op.path, follow=True)
        super()._op_chmod(op)
        self._copied_up_as_file(op.path, True, fifo)

    def _op_utimens(self, op: ops.Utimens) -> None:
        fifo = self._lower_fifo(op.path, follow=op.follow)
        super()._op_utimens(op)
        self._copied_up_as_file(op.path, op.follow, fifo)

    def _lower_fifo(self, path: str, *, follow: bool) -> bool:
        try:
            node = self.resolve(path, follow=follow).node
        except FsError:
            return False
        return (
            node is not None
            and node.kind is Kind.FIFO
            and node.upper is None
            and self.upper is not None
        )

    def _copied_up_as_file(self, path: str, follow: bool, fifo: bool) -> None:
        upper = self._existing(path, follow=follow).upper if fifo else None
        if upper is not None:  # (utimensat with both times omitted copies nothing up)
            upper.kind = Kind.FILE
            raise FsError("EIO")


class RemoveXattrCopiesUp(Overlay):
    """removexattr-copies-up: removing a missing xattr of a lower file copies it up first."""

    def _op_removexattr(self, op: ops.RemoveXattr) -> None:
        node = self._xattr_target(op.path, op.name, write=True)
        if op.name not in self.meta(node).xattrs:
            self.copy_up(node, data=False)
        super()._op_removexattr(op)


class ExchangeMovesLowerDirs(Overlay):
    """rename-exchange-lower-dir: RENAME_EXCHANGE of a lower directory with a file
    succeeds (the directory moves as with a redirect)."""

    def _op_rename(self, op: ops.Rename) -> None:
        try:
            super()._op_rename(op)
        except FsError as failure:
            if "EXDEV" not in failure.names or op.flags != "RENAME_EXCHANGE":
                raise
            old = self._existing(op.src, follow=False)
            new = self._existing(op.dst, follow=False)
            if old.is_dir == new.is_dir:
                raise
            self._move_exchanged(old, new)

    def _move_exchanged(self, old: Node, new: Node) -> None:
        assert old.parent is not None and new.parent is not None
        old_upper = self.copy_up(old, data=False)
        new_upper = self.copy_up(new, data=False)
        for node, upper in ((old, old_upper), (new, new_upper)):
            if node.is_dir:
                upper.redirect = "/" + node.path
        self.copy_up(old.parent).entries[old.name] = new_upper
        self.copy_up(new.parent).entries[new.name] = old_upper


class ReadsTheBottomLayer(Overlay):
    """A seeded read-precedence fault: a file that two lower layers hold reads as the
    bottom layer's bytes (the top one must win, overlayfs.rst "Upper and Lower")."""

    def _op_read(self, op: ops.Read) -> object:
        node = self._existing(op.path, follow=True)
        if node.upper is None and not node.is_dir:
            below = [o for o in _objects_at(self, node.path) if o is not None]
            if len(below) > 1 and all(o.kind is Kind.FILE for o in below):
                return below[-1].data
        return super()._op_read(op)


def _objects_at(model: Overlay, path: str) -> list:
    from reference.layer import entry_at

    return [entry_at(root, path) for root in model.lowers]


#: fuse-overlayfs 1.10's records and the classes that imitate each (None: a variant).
FUSE_OVERLAYFS = {
    "merged-dir-nlink-counts-subdirs": None,
    "mkdir-writes-opaque": None,
    "rmdir-whiteout-under-lower-parent": None,
    "new-name-max-251": None,
    "fifo-copy-up-eio": ChmodLowerFifoGivesEio,
    "removexattr-copies-up": RemoveXattrCopiesUp,
    "rename-exchange-lower-dir": ExchangeMovesLowerDirs,
}
FUSE_OVERLAYFS_VARIANTS = (
    "merged-dir-nlink-counts-subdirs",
    "mkdir-writes-opaque",
    "rmdir-whiteout-under-lower-parent",
    "new-name-max-251",
)
UNIONFS_FUSE_VARIANTS = ("dir-nlink-one", "dir-rename-copies-tree")
VARIANTS_OF = {"fuse-overlayfs": FUSE_OVERLAYFS_VARIANTS, "unionfs-fuse": UNIONFS_FUSE_VARIANTS}


def records_of(driver: str) -> tuple[expectations.Expectation, ...]:
    """The shipped records of ``driver`` under the plain option set."""
    return tuple(
        e
        for e in expectations.load()
        if e.driver == driver and "redirect_dir=off,index=off" in e.options
    )


class Imitation(ReferenceDriver):
    """The reference engine showing recorded behaviours (its variants and the imitating
    classes) with ``fault`` (adapters/faults.py) on top (first in the method order, so the
    fault breaks the rule it breaks whatever the behaviours below it do), under a profile
    that selects the variants: what the machine's model follows."""

    def __init__(
        self, variants: tuple[str, ...], mixins: tuple[type[Overlay], ...], fault: str | None
    ) -> None:
        super().__init__()
        layers = [*([FAULTS[fault]] if fault is not None else []), *mixins]
        cls = type("Imitated", (*layers, *_mixins(variants), Overlay), {})

        def make(stack, options):  # type: ignore[no-untyped-def]
            model = cls(stack, options)
            model.variant_hits = Counter()
            return model

        self.engine = make  # type: ignore[assignment]
        self.name = f"imitation{':' + fault if fault else ''}"
        self.profile = DriverProfile(name=self.name, variants=variants)


def _mixins(names: tuple[str, ...]) -> tuple[type[Overlay], ...]:
    return tuple(VARIANTS[name].mixin for name in names)


def fuse_overlayfs(fault: str | None = None) -> Imitation:
    mixins = tuple(cls for cls in FUSE_OVERLAYFS.values() if cls is not None)
    return Imitation(FUSE_OVERLAYFS_VARIANTS, mixins, fault)


def unionfs_fuse(fault: str | None = None) -> Imitation:
    return Imitation(UNIONFS_FUSE_VARIANTS, (), fault)


__all__ = ["fuse_overlayfs", "records_of", "unionfs_fuse"]
