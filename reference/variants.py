"""Driver variants: recorded behaviours of real drivers stated as rules of the engine.

A variant is a named change of one rule of :class:`reference.overlay.Overlay` that a real
driver is known to follow instead of the kernel's (each recorded and reproduced by hand in
``conformance/records/expectations.toml``, which names the variant). A driver's profile selects
its variants (``variants = [...]`` in ``adapters/drivers/profiles/<driver>.toml``); the lockstep
machine then builds its model with them (:func:`engine`), so the comparison expects the
behaviour and every other rule is still checked as before.

Each variant counts, per model, how often its rule gave a different answer than the
kernel's rule would have (``Overlay.variant_hits``): the report says how often a
recorded behaviour was seen. A variant only changes the rule it names.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from reference import ops
from reference.errors import SpecError
from reference.layer import Inode, Kind, StackSpec, entry_at
from reference.lookup import Node
from reference.options import Options
from reference.overlay import Overlay
from reference.paths import FsError, Resolved
from reference.permissions import may_link


@attrs.frozen
class Variant:
    """One recorded rule: its name, the driver that shows it, what it says and where it is
    known from (upstream source or issue)."""

    name: str
    driver: str
    rule: str
    source: str
    mixin: type


def _hit(overlay: Overlay, name: str) -> None:
    hits: Counter[str] | None = getattr(overlay, "variant_hits", None)
    if hits is not None:
        hits[name] += 1


class MergedDirNlinkCountsSubdirs(Overlay):
    """fuse-overlayfs: a merged directory's st_nlink is 2 + its subdirectories in the merged
    view (the kernel reports 1, inode.c ovl_getattr)."""

    def nlink(self, node: Node, upper_links: dict[int, int] | None = None) -> int:
        base = super().nlink(node, upper_links)
        if not (node.is_dir and node.is_merged):
            return base
        counted = 2 + sum(1 for _, child in self.found_children(node) if child.is_dir)
        if counted != base:
            _hit(self, "merged-dir-nlink-counts-subdirs")
        return counted


class MkdirWritesOpaque(Overlay):
    """fuse-overlayfs: every mkdir writes an opaque directory (main.c ovl_mkdir:
    create_directory(..., set_opaque=true): trusted.overlay.opaque=y and the .wh..wh..opq
    sentinel). The kernel (offline changes allowed) writes a plain directory unless it
    replaces a whiteout. (The 0/0 ``.wh..opq`` whiteout fuse-overlayfs also leaves in some
    of them is a record of its own, ``opq-whiteout``: when it appears depends on what was
    looked up before, not on a rule this engine can state.)"""

    def _op_mkdir(self, op: ops.Mkdir) -> None:
        super()._op_mkdir(op)
        created = self.resolve(op.path, follow=False).node
        assert created is not None and created.upper is not None
        if not created.upper.opaque:
            _hit(self, "mkdir-writes-opaque")
        created.upper.opaque = True


class RmdirWhiteoutUnderLowerParent(Overlay):
    """fuse-overlayfs: rmdir in a directory that has lower layers always leaves a whiteout,
    whether or not a lower layer has the name (observed; unlink does not). The kernel
    leaves one only where a lower layer still shows the name (dir.c ovl_lower_positive)."""

    _removing_dir = False

    def _op_rmdir(self, op: ops.Rmdir) -> None:
        self._removing_dir = True
        try:
            super()._op_rmdir(op)
        finally:
            self._removing_dir = False

    def lower_positive(self, parent: Node, name: str) -> bool:
        found = super().lower_positive(parent, name)
        if self._removing_dir and not found and parent.lowers:
            _hit(self, "rmdir-whiteout-under-lower-parent")
            return True
        return found


#: fuse-overlayfs: the longest name it lets a new entry have, on an upper filesystem whose
#: f_namemax is NAME_MAX (255): room is kept for the ".wh." prefix of a whiteout file.
FUSE_OVERLAYFS_NAME_MAX = 255 - len(".wh.")


def _name_bytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogateescape"))


class NewNameMax251(Overlay):
    """fuse-overlayfs: a new entry (create, mkdir, mknod, symlink, link, rename's new
    name) whose name is longer than f_namemax - 4 bytes (251 on a 255-byte filesystem)
    gives ENAMETOOLONG, so that its ``.wh.`` whiteout file could always be made (main.c
    get_fs_namemax, checked first in ovl_create/ovl_mkdir/ovl_mknod/ovl_symlink/ovl_link/
    ovl_rename; PR #237, issue #351: by design). The VFS's own checks come first (EEXIST,
    EROFS, ENOENT of the parent, EPERM of a directory link, rename's checks). The kernel
    allows NAME_MAX (255)."""

    def _too_long(self, name: str) -> None:
        if _name_bytes(name) > FUSE_OVERLAYFS_NAME_MAX:
            _hit(self, "new-name-max-251")
            raise FsError("ENAMETOOLONG")

    def _create(self, resolved: Resolved, inode: Inode) -> None:
        self._too_long(resolved.name)
        super()._create(resolved, inode)

    def _op_link(self, op: ops.Link) -> None:
        # ovl_link checks the name before it copies the source up (the model's link
        # copies up first, then creates the name). The VFS's checks come first: do_linkat's
        # may_linkat (protected_hardlinks: EPERM for a caller who does not own the source),
        # vfs_link's may_create and its EPERM for a directory; checked by hand (a user's
        # link of root's symlink to a 255-byte name: EPERM on both fuse-overlayfs and the
        # kernel, docs/recorded-behaviours.md "fo").
        source = self._existing(op.src, follow=False)
        resolved = self._new_name(op.dst)
        may_link(self.caller, self.meta(source))
        assert resolved.parent is not None
        self._may_create(resolved.parent)
        if not source.is_dir:
            self._too_long(resolved.name)
        super()._op_link(op)

    def _op_rename(self, op: ops.Rename) -> None:
        from reference.rename import rename

        name = op.dst.rstrip("/").rpartition("/")[2]
        if _name_bytes(name) > FUSE_OVERLAYFS_NAME_MAX and rename(self, op, vfs_only=True):
            self._too_long(name)
        super()._op_rename(op)


class DirNlinkOne(Overlay):
    """unionfs-fuse (libfuse 2 high-level API): every directory reports st_nlink 1."""

    def nlink(self, node: Node, upper_links: dict[int, int] | None = None) -> int:
        base = super().nlink(node, upper_links)
        if not node.is_dir:
            return base
        if base != 1:
            _hit(self, "dir-nlink-one")
        return 1


class InodeOfTopBranch(Overlay):
    """unionfs-fuse ``-o use_ino``: st_ino is the inode of the object in the topmost branch
    that has the name, so a copy-up gives a new inode number (the kernel keeps the lower
    one, doc "Inode properties")."""

    def _st_ino(self, node: Node) -> int:
        base = super()._st_ino(node)
        top = node.top.ident
        if top != base:
            _hit(self, "inode-of-top-branch")
        return top


class DirRenameCopiesTree(Overlay):
    """unionfs-fuse: rename(2) of a directory with lower parts copies its tree to the upper
    branch and succeeds (its profile's ``directory_rename = "copy"``); the kernel with
    redirect_dir=off gives EXDEV. Modelled as: where the kernel's rule gives EXDEV for a
    directory, the merged tree is copied up, the copy made opaque (it no longer merges with
    anything), and the rename done again."""

    def _op_rename(self, op: ops.Rename) -> None:
        try:
            super()._op_rename(op)
            return
        except FsError as failure:
            if "EXDEV" not in failure.names:
                raise
        copied = False
        for path in (op.src, op.dst) if op.flags == "RENAME_EXCHANGE" else (op.src,):
            node = self.resolve(path, follow=False).node
            if node is not None and node.is_dir and node.lowers:
                self._copy_tree(node)
                assert node.upper is not None
                node.upper.opaque = True
                copied = True
        if not copied:
            raise FsError("EXDEV")
        _hit(self, "dir-rename-copies-tree")
        super()._op_rename(op)

    def _copy_tree(self, node: Node) -> None:
        """Copy the tree up. What is copied now but a regular file is made anew, with the
        time of the copy as its mtime (found by the suite: unionfs-fuse keeps the mtime of
        files only, to the second, which conformance/records/expectations.toml records)."""
        made = node.upper is None
        upper = self.copy_up(node)
        if made:
            upper.touch()
        for _, child in self.found_children(node):
            if child.is_dir:
                # (by name: metadata-copy-up-copies-tree calls it on a model without this
                # variant)
                DirRenameCopiesTree._copy_tree(self, child)
                continue
            fresh = child.upper is None
            copy = self.copy_up(child)
            if fresh and copy.kind is not Kind.FILE:
                copy.touch()
            if fresh:
                tree_copies(self).add(copy.ident)


def tree_copies(overlay: Overlay) -> set[int]:
    """The identities of the upper objects a tree copy made (unionfs-fuse: they show the
    lower object's inode number until the attribute cache expires, or a remount;
    conformance.records.behaviours copied-up-inode-lag)."""
    found: set[int] | None = overlay.__dict__.get("tree_copies")
    if found is None:
        found = overlay.__dict__["tree_copies"] = set()
    return found


class ParentsFromSourceBranch(Overlay):
    """unionfs-fuse: the directories a copy-up creates above the object take their mode and
    owner from the branch the object was found in (path_create copies each component from
    that branch), not from the topmost branch that has the directory, as the kernel does.
    A new name is made the same way from the topmost branch holding its directory
    (findbranch.c __find_rw_branch_cutlast: find_rorw_branch(dirname), then
    path_create_cow). Not for a removal (unlink, rmdir): its mark lives in unionfs-fuse's
    hidden tree, no directory is created, the directories of the view keep the topmost
    branch's attributes, as the kernel's do; the upper directories the model makes for it
    are made by unionfs-fuse only later, from the branch of what is then copied or made."""

    #: While a name is removed: its deletion mark goes to unionfs-fuse's own hidden tree
    #: (.unionfs-fuse/<path>_HIDDEN~), no directory of the view is created (observed:
    #: rmdir c/a/c of a lower tree leaves c with the topmost branch's owner).
    _removing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Upper directories of the model that unionfs-fuse has not made (a removal's).
        self._unmade: set[str] = set()

    def upper_replaced(self) -> None:
        """The driver's upper has only the directories unionfs-fuse made."""
        self._unmade.clear()

    def _op_unlink(self, op: ops.Unlink) -> None:
        self._removing = True
        try:
            super()._op_unlink(op)
        finally:
            self._removing = False

    def _op_rmdir(self, op: ops.Rmdir) -> None:
        self._removing = True
        try:
            super()._op_rmdir(op)
        finally:
            self._removing = False

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        if self._removing:
            made = [d for d in _self_and_parents(node) if d.is_dir and d.upper is None]
            upper = super().copy_up(node, data=data)
            self._unmade.update(d.path for d in made if d.upper is not None)
            return upper
        self._unmade.discard(node.path)
        missing: list[Node] = []
        parent = node.parent
        while parent is not None and parent.parent is not None and (
            parent.upper is None or parent.path in self._unmade
        ):
            missing.append(parent)
            parent = parent.parent
        upper = super().copy_up(node, data=data)
        if missing and node.lower_layers:
            source = self.lowers[node.lower_layers[0]]
            for directory in missing:
                self._unmade.discard(directory.path)
                found = entry_at(source, directory.path)
                copied = directory.upper
                if found is not None and found.is_dir and copied is not None:
                    if (copied.mode, copied.uid, copied.gid) != (found.mode, found.uid, found.gid):
                        _hit(self, "parents-from-source-branch")
                    copied.mode, copied.uid, copied.gid = found.mode, found.uid, found.gid
        return upper


def _self_and_parents(node: Node) -> list[Node]:
    """``node`` and its parents up to (not including) the root."""
    chain = []
    while node.parent is not None:
        chain.append(node)
        node = node.parent
    return chain


class RenameFlagsEinval(Overlay):
    """unionfs-fuse (libfuse 2, no rename2): renameat2 with RENAME_EXCHANGE or
    RENAME_NOREPLACE gives EINVAL once the VFS's own checks pass (fs/fuse/dir.c
    fuse_rename2: flags without FUSE rename2 support are EINVAL)."""

    #: While the VFS's checks run: each path is its own inode (libfuse 2's high-level API
    #: gives every path a node of its own), so two names of one file are two inodes to the
    #: VFS, whose same-inode no-op does not apply (checked by hand: renameat2 EXCHANGE of
    #: two hardlinks gives EINVAL on unionfs-fuse, succeeds on the kernel).
    _per_path = False

    def vfs_inode(self, node: Node) -> tuple[str, object]:
        if self._per_path:
            return ("path", node.path)
        return super().vfs_inode(node)

    def _op_rename(self, op: ops.Rename) -> None:
        if op.flags in ("RENAME_EXCHANGE", "RENAME_NOREPLACE"):
            from reference.rename import rename

            self._per_path = True
            try:
                reaches_fuse = rename(self, op, vfs_only=True)
            finally:
                self._per_path = False
            if reaches_fuse:
                _hit(self, "rename-flags-einval")
                raise FsError("EINVAL")
            return
        super()._op_rename(op)


class MetadataCopyUpCopiesTree(Overlay):
    """unionfs-fuse: chmod, chown or utimensat of a directory that is not in the upper branch copies
    its whole tree up (cow of a directory is a recursive copy; observed: the files, FIFOs,
    symlinks and subdirectories below it are all in the upper branch afterwards), so the
    names below show new inode numbers. The kernel copies up the directory alone."""

    def _copy_dir_tree_first(self, path: str) -> None:
        node = self._existing(path, follow=True)
        if node.is_dir and node.upper is None and self.upper is not None:
            _hit(self, "metadata-copy-up-copies-tree")
            DirRenameCopiesTree._copy_tree(self, node)  # type: ignore[arg-type]

    def _op_chmod(self, op: ops.Chmod) -> None:
        self._copy_dir_tree_first(op.path)
        super()._op_chmod(op)

    def _op_chown(self, op: ops.Chown) -> None:
        self._copy_dir_tree_first(op.path)
        super()._op_chown(op)

    def _op_utimens(self, op: ops.Utimens) -> None:
        """utimensat(2) copies the tree as well (found by the suite, checked by hand:
        touch -h -d @1000000000 M/c copies c/a and c/b to the upper branch). The tree is
        copied once the kernel's rule has succeeded (its checks come first), below the
        directory it copied up."""
        before = None
        if not (op.atime == ops.UTIME_OMIT and op.mtime == ops.UTIME_OMIT):
            with contextlib.suppress(FsError):
                before = self._existing(op.path, follow=op.follow)
        fresh = before is not None and before.is_dir and before.upper is None
        super()._op_utimens(op)
        if fresh and self.upper is not None:
            node = self._existing(op.path, follow=op.follow)
            _hit(self, "metadata-copy-up-copies-tree")
            DirRenameCopiesTree._copy_tree(self, node)  # type: ignore[arg-type]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "merged-dir-nlink-counts-subdirs",
            "fuse-overlayfs",
            "st_nlink of a merged directory = 2 + subdirectories of the merged view",
            "containers/fuse-overlayfs PR #194 (count subdirectories on each stat); "
            "PR #282 adds static_nlink",
            MergedDirNlinkCountsSubdirs,
        ),
        Variant(
            "mkdir-writes-opaque",
            "fuse-overlayfs",
            "mkdir writes an opaque directory",
            "containers/fuse-overlayfs main.c ovl_mkdir/create_directory (PR #68: the "
            ".wh..wh..opq sentinel); sylabs/singularity issues #3176, #3177",
            MkdirWritesOpaque,
        ),
        Variant(
            "rmdir-whiteout-under-lower-parent",
            "fuse-overlayfs",
            "rmdir in a directory with lower layers always leaves a whiteout",
            "observed by hand (conformance/records/expectations.toml); containers/fuse-overlayfs "
            "main.c ovl_rmdir -> do_rm -> hide_node",
            RmdirWhiteoutUnderLowerParent,
        ),
        Variant(
            "new-name-max-251",
            "fuse-overlayfs",
            "a new name longer than 251 bytes gives ENAMETOOLONG (room for a .wh. prefix)",
            "containers/fuse-overlayfs main.c get_fs_namemax (f_namemax - strlen(\".wh.\")); "
            "PR #237, issue #351 (closed: by design)",
            NewNameMax251,
        ),
        Variant(
            "dir-nlink-one",
            "unionfs-fuse",
            "st_nlink of every directory is 1",
            "unionfs-fuse 1.0 on libfuse 2: the high-level getattr reports 1",
            DirNlinkOne,
        ),
        Variant(
            "inode-of-top-branch",
            "unionfs-fuse",
            "st_ino is the topmost branch's inode (-o use_ino): copy-up changes it",
            "rpodgorny/unionfs-fuse src/fuse_ops.c unionfs_getattr (lstat of the branch path)",
            InodeOfTopBranch,
        ),
        Variant(
            "parents-from-source-branch",
            "unionfs-fuse",
            "directories created above a copy-up take the source branch's mode and owner",
            "rpodgorny/unionfs-fuse src/cow.c path_create (copies each component's stat from "
            "the branch the file was found in)",
            ParentsFromSourceBranch,
        ),
        Variant(
            "rename-flags-einval",
            "unionfs-fuse",
            "renameat2 with RENAME_EXCHANGE or RENAME_NOREPLACE gives EINVAL",
            "linux fs/fuse/dir.c fuse_rename2 (no rename2 in libfuse 2's high-level API)",
            RenameFlagsEinval,
        ),
        Variant(
            "metadata-copy-up-copies-tree",
            "unionfs-fuse",
            "chmod/chown/utimensat of a lower directory copies its whole tree to the upper branch",
            "rpodgorny/unionfs-fuse src/cow.c cow_cp -> copy_directory (recursive)",
            MetadataCopyUpCopiesTree,
        ),
        Variant(
            "dir-rename-copies-tree",
            "unionfs-fuse",
            "renaming a directory with lower parts copies its tree up instead of EXDEV",
            "rpodgorny/unionfs-fuse src/fuse_ops.c unionfs_rename (path_create + copy); "
            "issue #91",
            DirRenameCopiesTree,
        ),
    )
}


class VariantError(SpecError, ValueError):
    """An unknown variant name (the message is one line)."""


def check(names: tuple[str, ...] | list[str], where: str) -> None:
    for name in names:
        if name not in VARIANTS:
            raise VariantError(
                f"{where}: unknown variant {name!r} (known: {', '.join(VARIANTS)})"
            )


def engine(names: tuple[str, ...] | list[str] = ()) -> Callable[[StackSpec, Options], Overlay]:
    """The reference engine with the variants ``names`` on top; with no names, the
    reference itself. Each model counts its variants' hits in ``variant_hits``."""
    if not names:
        return Overlay
    check(names, "engine")
    mixins = tuple(VARIANTS[name].mixin for name in names)
    cls = type(f"OverlayWith{len(names)}Variants", (*mixins, Overlay), {})

    def make(stack: StackSpec, options: Options) -> Overlay:
        model = cls(stack, options)
        model.variant_hits = Counter()  # type: ignore[attr-defined]
        return model

    return make
