"""Where the sandboxed executors mount, and umount2(2) through libc (mount(2), the libc
handle and the flags are adapters.sandbox.confine's): shared by the executor
(adapters.sandbox.executor)
and the FUSE mounter (adapters.sandbox.fusemount), which both run inside the private mount
namespace."""

from __future__ import annotations

import ctypes
import errno
import os

from adapters.sandbox.confine import MNT_DETACH, check, libc

BASE = "/tmp/unionspec"
MNT = f"{BASE}/mnt"
UPPER = f"{BASE}/upper"
WORK = f"{BASE}/work"


def umount(target: str) -> None:
    """umount2(2); lazily (MNT_DETACH) when the mount is busy."""
    if libc.umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        if err != errno.EBUSY:
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
        check(libc.umount2(target.encode(), MNT_DETACH), f"umount -l {target}")
