"""In the VM, at boot: which of the kernel features of :mod:`reference.kernel_features`
this kernel has, each tried for real (a mount, an xattr) in a directory of the VM's disk,
undone at once. The agent sends the answers with its hello; the host's report records
them beside what the reference expects of that release.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable

from adapters.sandbox.confine import mount
from adapters.sandbox.mounting import umount

#: The errors that mean "this kernel has no such feature" (any other is raised).
ABSENT = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODEV}


def _works(call: Callable[[], object]) -> bool:
    """True when ``call`` works, False when it fails for want of the feature."""
    try:
        call()
    except OSError as exc:
        if exc.errno in ABSENT:
            return False
        raise
    return True


def lowerdir_add(where: str) -> bool:
    """An overlay mount naming its two lower layers with ``lowerdir+=``."""
    for name in ("l1", "l2", "mnt"):
        os.mkdir(os.path.join(where, name))
    target = os.path.join(where, "mnt")
    data = f"lowerdir+={where}/l1,lowerdir+={where}/l2"
    works = _works(lambda: mount("overlay", target, "overlay", 0, data))
    if works:
        umount(target)
    return works


def tmpfs_user_xattrs(where: str) -> bool:
    """A ``user.`` xattr set on a file of a fresh tmpfs."""
    mount("tmpfs", where, "tmpfs", 0, "size=1m")
    try:
        path = os.path.join(where, "f")
        with open(path, "w"):
            pass
        return _works(lambda: os.setxattr(path, "user.probe", b"1"))
    finally:
        umount(where)


#: reference.kernel_features name -> its probe (given an empty directory of its own).
PROBES: dict[str, Callable[[str], bool]] = {
    "lowerdir+": lowerdir_add,
    "tmpfs-user-xattrs": tmpfs_user_xattrs,
}


def observe(base: str) -> dict[str, bool]:
    """Every probe's answer, each in a fresh directory under ``base`` (removed after); a
    probe that fails otherwise is left out (the report then lacks that feature)."""
    found: dict[str, bool] = {}
    for name, probe in PROBES.items():
        where = tempfile.mkdtemp(prefix="probe-", dir=base)
        try:
            with contextlib.suppress(OSError):
                found[name] = probe(where)
        finally:
            shutil.rmtree(where, ignore_errors=True)
    return found
