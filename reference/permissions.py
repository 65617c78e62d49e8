"""Permission checks for a caller other than root (issue 18): the VFS's, in its order.

overlayfs.rst "Permission model": an access is checked twice, against the overlay inode
with the caller's credentials and against the real (upper or lower) inode with the
mounter's; copy-up runs with the mounter's. The overlay inode carries the metadata of the
top object (inode.c ovl_permission: generic_permission on the overlay inode first), so the
first step is POSIX's permission check on what the merged view shows. The suite mounts as
root: the second step (the mounter's, MAY_WRITE turned into MAY_READ on a lower object
that copy-up will read) never refuses, and copy-up is always allowed.

Sources: fs/namei.c generic_permission/acl_permission_check, may_lookup, may_delete,
may_create, may_linkat and safe_hardlink_source (fs.protected_hardlinks=1, the default;
protected_symlinks, protected_regular and protected_fifos matter only in sticky
world-writable directories); fs/attr.c setattr_prepare, chown_ok, chgrp_ok; fs/xattr.c
xattr_permission. Root has CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER and CAP_CHOWN:
no check below refuses it.
"""

from __future__ import annotations

from reference.layer import Inode, Kind
from reference.ops import Caller
from reference.paths import FsError

MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4
S_ISUID, S_ISGID, S_ISVTX = 0o4000, 0o2000, 0o1000


def permitted(caller: Caller, inode: Inode, mask: int) -> bool:
    """generic_permission: the owner class when the fsuid owns it, else the group class
    when the caller is in its group, else the other class; root passes every read and
    write and searches every directory, and executes a file only with an x bit."""
    if caller.root:
        return not (mask & MAY_EXEC) or inode.is_dir or bool(inode.mode & 0o111)
    mode = inode.mode
    if inode.uid == caller.uid:
        mode >>= 6
    elif caller.in_group(inode.gid):
        mode >>= 3
    return not (mask & ~mode & 0o7)


def require(caller: Caller, inode: Inode, mask: int) -> None:
    """EACCES unless :func:`permitted`."""
    if not permitted(caller, inode, mask):
        raise FsError("EACCES")


def owner_or_capable(caller: Caller, inode: Inode) -> bool:
    """inode_owner_or_capable: the fsuid owns it, or CAP_FOWNER."""
    return caller.root or inode.uid == caller.uid


def may_set_times(caller: Caller, inode: Inode, *, explicit: bool) -> None:
    """utimensat(2) (fs/attr.c setattr_prepare): unless both times are UTIME_NOW
    (ATTR_TIMES_SET, even one UTIME_OMIT beside one UTIME_NOW: observed EPERM) it needs
    the owner or CAP_FOWNER (EPERM); both UTIME_NOW, write permission otherwise (EACCES).
    Found by the pytest run of fuse-overlayfs (a caller "user" on root's directory); the
    kernel overlay gives the same (checked with the kernel driver)."""
    if owner_or_capable(caller, inode):
        return
    if explicit:
        raise FsError("EPERM")
    require(caller, inode, 2)


def check_sticky(caller: Caller, directory: Inode, victim: Inode) -> None:
    """may_delete's check_sticky: in a sticky directory only the object's owner, the
    directory's owner or CAP_FOWNER removes or replaces a name (EPERM)."""
    if directory.mode & S_ISVTX and not (
        owner_or_capable(caller, victim) or directory.uid == caller.uid
    ):
        raise FsError("EPERM")


def may_delete(caller: Caller, directory: Inode, victim: Inode) -> None:
    """may_delete up to the type checks: write and search on the directory (EACCES), then
    the sticky bit (EPERM); the caller then checks ENOTDIR / EISDIR."""
    require(caller, directory, MAY_WRITE | MAY_EXEC)
    check_sticky(caller, directory, victim)


def may_create(caller: Caller, directory: Inode) -> None:
    """may_create / may_o_create: write and search on the parent directory (EACCES)."""
    require(caller, directory, MAY_WRITE | MAY_EXEC)


def may_link(caller: Caller, source: Inode) -> None:
    """may_linkat with fs.protected_hardlinks=1: the owner (or CAP_FOWNER) links anything;
    anyone else only a regular file that is neither set-uid nor set-gid-and-group-
    executable and that they may read and write (EPERM)."""
    if owner_or_capable(caller, source):
        return
    safe = (
        source.kind is Kind.FILE
        and not source.mode & S_ISUID
        and (source.mode & (S_ISGID | 0o010)) != (S_ISGID | 0o010)
        and permitted(caller, source, MAY_READ | MAY_WRITE)
    )
    if not safe:
        raise FsError("EPERM")


def chmod_mode(caller: Caller, inode: Inode, mode: int) -> int:
    """setattr_prepare for ATTR_MODE: only the owner (or CAP_FOWNER) changes the mode
    (EPERM); a caller outside the file's group (without CAP_FSETID) loses S_ISGID."""
    if not owner_or_capable(caller, inode):
        raise FsError("EPERM")
    if not caller.root and not caller.in_group(inode.gid):
        mode &= ~S_ISGID
    return mode


def may_chown(caller: Caller, inode: Inode, uid: int, gid: int) -> None:
    """setattr_prepare's chown_ok and chgrp_ok (chown(2) with both ids given): without
    CAP_CHOWN, only the owner, keeping the uid, and giving a group it is in (EPERM)."""
    if caller.root:
        return
    if inode.uid != caller.uid or uid != inode.uid:
        raise FsError("EPERM")
    if gid != inode.gid and not caller.in_group(gid):
        raise FsError("EPERM")


def may_write_user_xattr(caller: Caller, inode: Inode) -> None:
    """xattr_permission for a user.* write, after its file-or-directory check: a sticky
    directory only by its owner (EPERM), then write permission (EACCES)."""
    if inode.is_dir and inode.mode & S_ISVTX and not owner_or_capable(caller, inode):
        raise FsError("EPERM")
    require(caller, inode, MAY_WRITE)


def new_owner(caller: Caller, parent: Inode, kind: Kind, mode: int) -> tuple[int, int, int]:
    """inode_init_owner: (uid, gid, mode) of an object the caller creates with ``mode``
    (umask already applied): the caller's fsuid and fsgid, or the parent's group under a
    set-gid directory, where a new directory inherits S_ISGID too. (Overlay creates with
    the caller's ids: dir.c ovl_create_or_link overrides the mounter's fsuid/fsgid.)"""
    if parent.mode & S_ISGID:
        if kind is Kind.DIR:
            mode |= S_ISGID
        return caller.uid, parent.gid, mode
    return caller.uid, caller.gid, mode
