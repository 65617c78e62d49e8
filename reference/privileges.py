"""What removes privileges from a file, for the caller an operation names.

A file's privileges are its set-user-ID and set-group-ID bits and its file capabilities
(the ``security.capability`` xattr). Sources: fs/attr.c (``setattr_should_drop_sgid``,
``notify_change``), fs/inode.c (``file_remove_privs``, ``should_remove_suid``),
security/commoncap.c (``cap_inode_need_killpriv``, ``cap_convert_nscap``), fs/open.c
(``chown_common``, ``do_truncate``); each checked by hand on this kernel (docs/design.md).
"""

from __future__ import annotations

import stat
import struct

from reference.layer import Inode
from reference.ops import ROOT, Caller
from reference.paths import FsError

#: The file-capability xattr (capabilities(7) "File capabilities").
CAPABILITY = "security.capability"
#: linux/capability.h: VFS_CAP_REVISION_MASK, the v2 and v3 revisions and their sizes.
_REVISION_MASK = 0xFF000000
_V2, _V3 = 0x02000000, 0x03000000
_SIZES = {_V2: 20, _V3: 24}


def _remove_capability(inode: Inode) -> None:
    inode.xattrs.pop(CAPABILITY, None)


def written(inode: Inode, caller: Caller = ROOT) -> None:
    """Bytes written (or space allocated) by ``caller``: new mtime and ctime, and the
    capability xattr removed (``file_remove_privs``: ``cap_inode_need_killpriv`` holds
    whoever writes). The set-id bits go as :func:`_drop_setid` says."""
    inode.touch()
    _remove_capability(inode)
    _drop_setid(inode, caller)


def _drop_setid(inode: Inode, caller: Caller) -> bool:
    """Clear the set-id bits a write by ``caller`` clears; whether any went.

    Root (CAP_FSETID) keeps both (observed: a write as root keeps 04755). Anyone else loses
    S_ISUID, and S_ISGID when the group may execute or when the caller is not in the
    file's group (fs/attr.c ``setattr_should_drop_suidgid`` and ``setattr_should_drop_sgid``:
    ``in_group_or_capable``, since "attr: use consistent sgid stripping checks", v6.2).
    Found by the kernel run: a user's fallocate on its 02755 file left 0755, and the owner
    (1001:1001, not in group 0) fallocating its 02745 file of group 0 left 0745."""
    if caller.root:
        return False
    sgid_goes = inode.mode & stat.S_IXGRP or not caller.in_group(inode.gid)
    drop = stat.S_ISUID | (stat.S_ISGID if sgid_goes else 0)
    if not inode.mode & drop:
        return False
    inode.mode &= ~drop
    return True


def truncated(inode: Inode, *, times: bool, caller: Caller = ROOT) -> None:
    """truncate(2): the capability xattr removed and (without CAP_FSETID) the set-id bits,
    as for :func:`written` (``do_truncate`` asks ``dentry_needs_remove_privs``, whatever
    the size); new mtime and ctime when ``times`` (reference.upperfs.truncate_changes_times),
    else a new ctime only if something went."""
    if times:
        written(inode, caller)
        return
    removed = CAPABILITY in inode.xattrs
    _remove_capability(inode)
    if _drop_setid(inode, caller) or removed:
        inode.touch(mtime=False)


def chowned(inode: Inode) -> None:
    """chown(2) of anything but a directory clears S_ISUID, S_ISGID when the group may
    execute (``setattr_should_drop_sgid``: without S_IXGRP the bit is mandatory locking
    and root is ``in_group_or_capable``), and the capability (``chown_common`` adds
    ATTR_KILL_SUID | ATTR_KILL_PRIV), even for root and even to the same owner (observed:
    06744 -> 02744, 02755 -> 0755). A directory keeps its bits. The ctime is new."""
    inode.touch(mtime=False)
    if inode.is_dir:
        return
    inode.mode &= ~stat.S_ISUID
    if inode.mode & stat.S_IXGRP:
        inode.mode &= ~stat.S_ISGID
    _remove_capability(inode)


def stored_xattr(name: str, value: bytes) -> bytes:
    """The value an xattr reads back as. ``security.capability`` must be a v2 or v3 header
    of the right size, else EINVAL (``cap_convert_nscap``: ``validheader``); a v3 one whose
    root id is 0 reads back as v2 (``cap_inode_getsecurity``; observed). Any object may
    carry one, directories included (observed)."""
    if name != CAPABILITY:
        return value
    if len(value) < 4:
        raise FsError("EINVAL")
    (magic,) = struct.unpack_from("<I", value)
    revision = magic & _REVISION_MASK
    if _SIZES.get(revision) != len(value):
        raise FsError("EINVAL")
    if revision == _V3 and struct.unpack_from("<I", value, 20)[0] == 0:
        flags = magic & ~_REVISION_MASK
        return struct.pack("<I", _V2 | flags) + value[4:20]
    return value
