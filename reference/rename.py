"""rename(2) and renameat2(2) on an overlay: checks in the order the kernel makes them.

Sources: vfs = fs/namei.c do_renameat2 and vfs_rename; ovl = fs/overlayfs/dir.c ovl_rename;
doc = overlayfs.rst "Renaming directories"; obs = ../shared/notes/overlayfs-semantics.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference import ops
from reference.layer import Inode, Kind
from reference.lookup import Node
from reference.paths import FsError
from reference.permissions import MAY_WRITE

if TYPE_CHECKING:
    from reference.overlay import Overlay

NOT_EMPTY = ("ENOTEMPTY", "EEXIST")  # POSIX rename(): "[EEXIST] or [ENOTEMPTY]"


def rename(fs: Overlay, op: ops.Rename, *, vfs_only: bool = False) -> bool:
    """Rename; with ``vfs_only``, only the VFS's checks (fs/namei.c do_renameat2 and
    vfs_rename up to the filesystem's rename), changing nothing. False: nothing to do
    (the same name, or two names of one inode)."""
    if op.flags not in ops.RENAME_FLAGS:
        raise FsError("EINVAL")
    exchange = op.flags == "RENAME_EXCHANGE"
    src = fs.resolve(op.src, follow=False)
    dst = fs.resolve(op.dst, follow=False)
    if src.parent is None or dst.parent is None:
        raise FsError("EBUSY", "EINVAL")  # "." / ".." / "/" as a last component (vfs)
    fs.writable()  # vfs: mnt_want_write before looking up the last components
    old = src.node
    if old is None:
        raise FsError("ENOENT")
    new = dst.node
    if op.flags == "RENAME_NOREPLACE" and new is not None:
        raise FsError("EEXIST")
    if exchange and new is None:
        raise FsError("ENOENT")
    # vfs lock_rename "trap": a directory may not move below itself.
    if _is_ancestor(old.path, dst.parent.path):
        raise FsError("EINVAL")
    if new is not None and _is_ancestor(new.path, src.parent.path):
        raise FsError("EINVAL" if exchange else "ENOTEMPTY")
    if old.path == _join(dst.parent.path, dst.name):
        return False
    if new is not None and fs.vfs_inode(old) == fs.vfs_inode(new):
        return False  # vfs_rename: source and target are the same inode, nothing to do
    # vfs_rename: may_delete at the old name, then may_create or may_delete at the new one
    # (EACCES, the sticky bit's EPERM, then may_delete's type checks)
    fs._may_delete(src.parent, old)
    if new is None:
        fs._may_create(dst.parent)
    else:
        fs._may_delete(dst.parent, new)
    if new is not None and not exchange:
        if old.is_dir and not new.is_dir:
            raise FsError("ENOTDIR")
        if not old.is_dir and new.is_dir:
            raise FsError("EISDIR")
    if src.parent.path != dst.parent.path:
        # vfs_rename: a directory changing parent needs write permission on itself (its
        # ".." changes), and so does the other one of an exchange
        if old.is_dir:
            fs._require(old, MAY_WRITE)
        if exchange and new is not None and new.is_dir:
            fs._require(new, MAY_WRITE)
    if vfs_only:
        return True
    # ovl_can_move: a lower or merged directory moves only with redirect_dir=on (doc
    # "Renaming directories"; obs R.default.1/2, R.rd_on.1).
    if not _can_move(fs, old) or (exchange and new is not None and not _can_move(fs, new)):
        raise FsError("EXDEV")
    if new is not None and new.is_dir and not exchange and fs.not_empty(new):
        if new.is_pure_upper:
            _fail_in_upper_rename(fs, old, dst.parent)
        raise FsError(*NOT_EMPTY)  # ovl_check_empty_dir, before any change
    if exchange:
        assert new is not None
        _exchange(fs, old, src.parent, new, dst.parent)
    else:
        _move(fs, old, dst.parent, dst.name, new)
    return True


def _fail_in_upper_rename(fs: Overlay, old: Node, new_parent: Node) -> None:
    """Over a non-empty pure-upper directory, ENOTEMPTY comes from the upper filesystem's
    rename, after ovl_rename has copied ``old`` up and marked it opaque or redirected: those
    changes stay (dir.c ovl_rename; found by the kernel run, a failed call that writes)."""
    assert old.parent is not None
    moved = fs.copy_up(old, data=False)
    fs.copy_up(new_parent)
    samedir = old.parent.path == new_parent.path
    _mark_moved(fs, old, moved, samedir=samedir, parent_merged=bool(new_parent.lowers))
    raise FsError(*NOT_EMPTY)


def _move(fs: Overlay, old: Node, new_parent: Node, new_name: str, new: Node | None) -> None:
    assert old.parent is not None
    samedir = old.parent.path == new_parent.path
    moved = fs.copy_up(old, data=False)
    # the check comes after the new parent is copied up, so "merged" means it has lowers;
    # ovl_rename copies the new parent up before it sets the redirect (which may fail)
    fs.copy_up(new_parent)
    _mark_moved(fs, old, moved, samedir=samedir, parent_merged=bool(new_parent.lowers))
    if new is not None:
        fs.drop_index_link(new)
    replaced = fs.meta(new) if new is not None and new.upper is not None else None
    target_upper = fs.copy_up(new_parent)
    source_upper = fs.copy_up(old.parent)
    del source_upper.entries[old.name]
    # ovl_rename: RENAME_WHITEOUT at the old name when a lower layer still shows it.
    if fs.lower_positive(old.parent, old.name):
        source_upper.entries[old.name] = Inode(Kind.WHITEOUT, mode=0)
    target_upper.entries[new_name] = moved
    _renamed((source_upper, target_upper), (moved, *([replaced] if replaced else [])))


def _exchange(fs: Overlay, old: Node, old_parent: Node, new: Node, new_parent: Node) -> None:
    samedir = old_parent.path == new_parent.path
    old_upper = fs.copy_up(old, data=False)
    new_upper = fs.copy_up(new, data=False)
    _mark_moved(fs, old, old_upper, samedir=samedir, parent_merged=bool(new_parent.lowers))
    _mark_moved(fs, new, new_upper, samedir=samedir, parent_merged=bool(old_parent.lowers))
    old_parent_upper, new_parent_upper = fs.copy_up(old_parent), fs.copy_up(new_parent)
    old_parent_upper.entries[old.name] = new_upper
    new_parent_upper.entries[new.name] = old_upper
    _renamed((old_parent_upper, new_parent_upper), (old_upper, new_upper))


def _renamed(parents: tuple[Inode, ...], moved: tuple[Inode, ...]) -> None:
    """The times a rename changes: mtime and ctime of each parent (POSIX rename(): "mark
    for update the last data modification and last file status change timestamps of the
    parent directory of each file"), the ctime of the inodes moved or replaced (the upper
    filesystem's rename, fs/libfs.c simple_rename_timestamp); their mtime is kept."""
    for parent in parents:
        parent.touch()
    for inode in moved:
        inode.touch(mtime=False)


def _mark_moved(
    fs: Overlay, node: Node, upper: Inode, *, samedir: bool, parent_merged: bool
) -> None:
    """ovl_rename: a moved lower or merged directory (or metacopy file) records where its
    lower part lives in trusted.overlay.redirect (obs R.rd_on.6, R.rd_on.11, MC.9); a moved
    pure-upper directory that lands in a merged directory becomes opaque, so no lower
    entry shows through it (dir.c ovl_set_opaque_xerr)."""
    if (node.is_dir and node.lowers) or upper.metacopy:
        absolute = _needsabsolute_redirect(fs, node, upper, samedir=samedir)
        if upper.redirect is not None and (not absolute or upper.redirect.startswith("/")):
            return
        upper.redirect = checked_redirect(node) if absolute else node.name
    elif node.is_dir and not upper.opaque and parent_merged:
        upper.opaque = True


def _needsabsolute_redirect(fs: Overlay, node: Node, upper: Inode, *, samedir: bool) -> bool:
    """dir.c ovl_need_absolute_redirect: across directories, and for a file whose lower is
    a hardlink (its other names may live in other directories; found by the kernel run)."""
    if not samedir:
        return True
    if node.is_dir or upper.origin is None:
        return False
    return fs.lower_nlink[upper.origin.ident] > 1


def absolute_redirect(node: Node) -> str:
    """dir.c ovl_get_redirect: the old path, each component replaced by its own redirect,
    up to the first absolute one."""
    parts: list[str] = []
    current: Node | None = node
    while current is not None and current.parent is not None:
        own = current.upper.redirect if current.upper is not None else None
        name = own or current.name
        parts.append(name.lstrip("/") if name.startswith("/") else name)
        if name.startswith("/"):
            break
        current = current.parent
    return "/" + "/".join(reversed(parts))


#: dir.c ``redirect_max`` (module parameter, default 256): the longest absolute redirect.
REDIRECT_MAX = 256


def checked_redirect(node: Node) -> str:
    """:func:`absolute_redirect`, or EXDEV when it is longer than REDIRECT_MAX (dir.c
    ovl_get_redirect; observed: 256 bytes are set, 257 give EXDEV, after the copy-up that
    came before; found by the state-aware generator with a 255-byte name, issue 16)."""
    redirect = absolute_redirect(node)
    if len(redirect) > REDIRECT_MAX:
        raise FsError("EXDEV")
    return redirect


def _can_move(fs: Overlay, node: Node) -> bool:
    return fs.options.redirect_dir or not node.is_dir or not node.lowers


def _is_ancestor(ancestor: str, path: str) -> bool:
    return path == ancestor or path.startswith(ancestor + "/")


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
