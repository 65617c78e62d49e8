"""Where the sandboxed executors mount, and mount(2)/umount2(2) through libc: shared by
the executor (adapters._executor) and the FUSE mounter (adapters._fusemount), which both
run inside the private mount namespace."""

from __future__ import annotations

import ctypes
import errno
import os

BASE = "/tmp/unionspec"
MNT = f"{BASE}/mnt"
UPPER = f"{BASE}/upper"
WORK = f"{BASE}/work"

MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 2, 4

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    result = _libc.mount(
        source.encode(), target.encode(), fstype.encode(), flags, data.encode() if data else None
    )
    _check(result, f"mount -t {fstype} {target} -o {data}")


def umount(target: str) -> None:
    if _libc.umount2(target.encode(), 0) != 0:
        err = ctypes.get_errno()
        if err != errno.EBUSY:
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
        _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount -l {target}")
