"""The system call(s) of each operation kind, by rule name (``reference.ops.KINDS``).

Standard library only and no import from the project: the sandboxed executors call these
(adapters/sandbox/executor.py) and the standalone reproducer embeds this file verbatim
(conformance/records/reproducer.py), so the suite and a reproducer make the same calls. Each call
takes the operation's fields by name (``attrs.asdict(op)``, or the reproducer's dict) and
runs inside a chroot of the mount: paths are made absolute within it. A call returns a
plain value (a stat gives the fields of ``ops.StatResult`` as a dict) or raises OSError.
"""

import ctypes
import errno
import os
import stat as _stat

#: renameat2(2) flags by name (ops.RENAME_FLAGS).
RENAME_FLAGS = {"": 0, "RENAME_NOREPLACE": 1, "RENAME_EXCHANGE": 2}
#: open(2) flags a Write may add (ops.OPEN_FLAGS).
OPEN_FLAGS = {"O_CREAT": os.O_CREAT, "O_EXCL": os.O_EXCL, "O_TRUNC": os.O_TRUNC,
              "O_APPEND": os.O_APPEND}
#: renameat2's number where libc has no wrapper (glibc < 2.28).
SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "ppc64le": 357, "s390x": 347}
AT_FDCWD = -100
#: The most bytes read from one file: twice what a program can make (a write of up to
#: 1 MiB at an offset of up to 1 MiB, conformance.records.program_check), rounded up.
MAX_READ = 4 << 20
_KINDS = ((_stat.S_ISREG, "file"), (_stat.S_ISDIR, "dir"), (_stat.S_ISLNK, "symlink"),
          (_stat.S_ISFIFO, "fifo"), (_stat.S_ISCHR, "chardev"))
_libc = ctypes.CDLL(None, use_errno=True)


def _renameat2_function():
    """libc's renameat2, typed, or the raw system call where libc lacks it (resolved once:
    the lookup, argtypes and os.uname() are not redone for every rename)."""
    func = getattr(_libc, "renameat2", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
        return func
    number = SYS_RENAMEAT2.get(os.uname().machine)

    def raw(olddirfd, oldpath, newdirfd, newpath, flags):
        if number is None:
            raise OSError(errno.ENOSYS, "renameat2: no system call number for this machine")
        return _libc.syscall(ctypes.c_long(number), ctypes.c_int(olddirfd),
                             ctypes.c_char_p(oldpath),
                             ctypes.c_int(newdirfd), ctypes.c_char_p(newpath),
                             ctypes.c_uint(flags))

    return raw


_renameat2 = _renameat2_function()


def kind_of(mode):
    """The kind name of a real file type (as in StatResult and EntryView)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "other"


def read_to_end(fd, limit=None):
    """Everything ``fd`` still gives, then close it; EFBIG past ``limit`` bytes (default
    :data:`MAX_READ`): a driver serving endless data is a divergence (the reference's file
    is smaller), not an executor that grows until the OOM killer (issue 17)."""
    limit = MAX_READ if limit is None else limit
    try:
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"more than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def renameat2(src, dst, flags):
    """renameat2(2) through libc, or the raw system call where libc lacks it."""
    result = _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _p(path):
    return "/" + path


def stat_call(path, follow):
    """A directory's st_size is filesystem-specific: only files and symlinks report one
    (ops.StatResult)."""
    st = os.stat(_p(path), follow_symlinks=follow)
    kind = kind_of(st.st_mode)
    return {"kind": kind, "mode": _stat.S_IMODE(st.st_mode), "uid": st.st_uid,
            "gid": st.st_gid, "size": st.st_size if kind in ("file", "symlink") else 0,
            "nlink": st.st_nlink}


def write_call(path, data, offset, flags, mode):
    open_flags = os.O_WRONLY | os.O_NONBLOCK
    for name in flags:
        open_flags |= OPEN_FLAGS[name]
    fd = os.open(_p(path), open_flags, mode)
    try:
        if "O_APPEND" in flags:
            return os.write(fd, data)
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


#: Each operation kind's call, by rule name; Remount has none (it is the mounter's).
CALLS = {
    "stat": stat_call,
    "read": lambda path: read_to_end(os.open(_p(path), os.O_RDONLY | os.O_NONBLOCK)),
    "readdir": lambda path: tuple(sorted(os.listdir(_p(path)))),
    "readlink": lambda path: os.readlink(_p(path)),
    "getxattr": lambda path, name: os.getxattr(_p(path), name),
    "listxattr": lambda path: tuple(
        sorted(n for n in os.listxattr(_p(path)) if n.startswith("user."))
    ),
    "write": write_call,
    "truncate": lambda path, size: os.truncate(_p(path), size),
    "mkdir": lambda path, mode: os.mkdir(_p(path), mode),
    "rmdir": lambda path: os.rmdir(_p(path)),
    "unlink": lambda path: os.unlink(_p(path)),
    "rename": lambda src, dst, flags: renameat2(_p(src), _p(dst), RENAME_FLAGS[flags]),
    "link": lambda src, dst: os.link(_p(src), _p(dst), follow_symlinks=False),
    "symlink": lambda target, path: os.symlink(target, _p(path)),
    "chmod": lambda path, mode: os.chmod(_p(path), mode),
    "chown": lambda path, uid, gid: os.chown(_p(path), uid, gid),
    "setxattr": lambda path, name, value: os.setxattr(_p(path), name, value, 0),
    "removexattr": lambda path, name: os.removexattr(_p(path), name),
    "mkfifo": lambda path, mode: os.mkfifo(_p(path), mode),
}
