"""The system call(s) of each operation kind, by rule name (``reference.ops.KINDS``).

Standard library only and no import from the project: the sandboxed executors call these
(adapters/sandbox/executor.py) and the standalone reproducer embeds this file verbatim
(conformance/records/reproducer.py), so the suite and a reproducer make the same calls. Each call
takes the operation's fields by name (``attrs.asdict(op)``, or the reproducer's dict) and
runs inside a chroot of the mount: paths are made absolute within it. A call returns a
plain value (a stat gives the fields of ``ops.StatResult`` as a dict) or raises OSError.
"""

import contextlib
import ctypes
import errno
import marshal
import os
import queue
import stat as _stat
import threading

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
#: The kind name of each file type (S_IFMT) the views and layers name.
_KINDS = {_stat.S_IFREG: "file", _stat.S_IFDIR: "dir", _stat.S_IFLNK: "symlink",
          _stat.S_IFIFO: "fifo", _stat.S_IFCHR: "chardev"}
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
    return _KINDS.get(_stat.S_IFMT(mode), "other")


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


# --- times, privileges and sizes (issue 18, first half) -----------------------------------

#: utimensat(2)'s special tv_nsec values (linux/stat.h) and AT_SYMLINK_NOFOLLOW.
UTIME = {"now": (1 << 30) - 1, "omit": (1 << 30) - 2}
AT_SYMLINK_NOFOLLOW = 0x100
#: fallocate(2) modes by name (ops.FALLOCATE_MODES; linux/falloc.h).
FALLOCATE_MODES = {"": 0, "KEEP_SIZE": 1, "PUNCH_HOLE": 1 | 2}


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespec(value):
    if isinstance(value, str):
        return _Timespec(0, UTIME[value])
    return _Timespec(*divmod(value, 1_000_000_000))


def _checked(result):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def utimens_call(path, atime, mtime, follow):
    """utimensat(2) (os.utime cannot pass UTIME_NOW or UTIME_OMIT for one time only)."""
    times = (_Timespec * 2)(_timespec(atime), _timespec(mtime))
    flags = 0 if follow else AT_SYMLINK_NOFOLLOW
    _checked(_libc.utimensat(AT_FDCWD, os.fsencode(_p(path)), times, flags))


def fallocate_call(path, mode, offset, length):
    fd = os.open(_p(path), os.O_WRONLY | os.O_NONBLOCK)
    try:
        _checked(_libc.fallocate(fd, FALLOCATE_MODES[mode], ctypes.c_long(offset),
                                 ctypes.c_long(length)))
    finally:
        os.close(fd)


# --- end of issue 18, first half ----------------------------------------------------------


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
    # issue 18, first half
    "utimens": utimens_call,
    "fallocate": fallocate_call,
}


# --- callers (issue 18): a call made with another caller's credentials ----------------------


def invoke(rule, args):
    """``CALLS[rule]`` with ``args``; an entry ``caller`` holds the credentials to run it
    with, ``[uid, gid, groups, umask]`` (ops.CALLERS), or None for the executor's own."""
    args = dict(args)
    creds = args.pop("caller", None)
    if creds is None:
        return CALLS[rule](**args)
    return run_as(creds, CALLS[rule], args)


def run_as(creds, call, args):
    """``call(**args)`` with the caller's groups, gid, uid (real, effective, saved and so
    filesystem ids: no capability is left) and umask; the executor keeps its own
    credentials. Made by a thread of this process that holds the caller's credentials
    (:class:`CallerThread`: Linux keeps credentials per thread), or where that cannot be
    set up, by a forked child (:func:`run_forked`). A fork per call cost more than the
    rest of the step (about 4 ms of CPU on a 2-core machine)."""
    uid, gid, groups, umask = creds
    key = (uid, gid, tuple(groups))
    thread = CALLER_THREADS.get(key)
    if thread is None:
        thread = CALLER_THREADS[key] = CallerThread.start_for(uid, gid, tuple(groups))
    if thread is False:
        return run_forked(creds, call, args)
    # the umask belongs to the process (threads share it): set for this call only, while
    # this thread waits for the caller's
    previous = os.umask(umask)
    try:
        kind, value = thread.call(call, args)
    finally:
        os.umask(previous)
    if kind == "err":
        raise OSError(value, os.strerror(value))
    if kind == "failed":
        raise RuntimeError(f"the call as {creds} failed: {value!r}")
    return value


#: setgroups, setresgid and setresuid by machine, called raw: glibc's wrappers change
#: every thread of the process (POSIX credentials), the system calls only the calling one.
SYS_CREDENTIALS = {"x86_64": (116, 119, 117), "aarch64": (159, 149, 147),
                   "riscv64": (159, 149, 147)}
#: The thread of each caller (uid, gid, groups), or False where none could be set up.
CALLER_THREADS = {}
#: capget(2)'s header version (linux/capability.h _LINUX_CAPABILITY_VERSION_3).
_CAPABILITY_V3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capabilities():
    """The calling thread's effective and permitted capability sets, or None."""
    header, data = _CapHeader(_CAPABILITY_V3, 0), (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        return None
    return tuple((d.effective, d.permitted) for d in data)


def _drop_thread_credentials(uid, gid, groups):
    """Give the calling thread (only) the caller's groups, gid and uid, then check it
    holds exactly those and no capability; OSError when it cannot or does not."""
    numbers = SYS_CREDENTIALS.get(os.uname().machine)
    if numbers is None:
        raise OSError(errno.ENOSYS, "no credential system call numbers for this machine")
    setgroups, setresgid, setresuid = numbers
    ids = (ctypes.c_uint * max(1, len(groups)))(*groups)
    _checked(_libc.syscall(ctypes.c_long(setgroups), ctypes.c_size_t(len(groups)), ids))
    gid_t = ctypes.c_uint(gid)
    _checked(_libc.syscall(ctypes.c_long(setresgid), gid_t, gid_t, gid_t))
    uid_t = ctypes.c_uint(uid)
    _checked(_libc.syscall(ctypes.c_long(setresuid), uid_t, uid_t, uid_t))
    held = (os.getresuid(), os.getresgid(), sorted(os.getgroups()), _capabilities())
    if held != ((uid,) * 3, (gid,) * 3, sorted(groups), ((0, 0), (0, 0))):
        raise OSError(errno.EPERM, f"the caller's thread holds {held}")


class CallerThread:
    """A thread holding one caller's credentials that makes the calls it is given, one at
    a time, while the thread that gives them waits (so the chroot and umask the process
    has then are the call's)."""

    def __init__(self, uid, gid, groups):
        self.requests = queue.SimpleQueue()
        self.replies = queue.SimpleQueue()
        self.ids = (uid, gid, groups)
        threading.Thread(target=self._serve, daemon=True, name=f"caller {uid}").start()
        self.ready = self.replies.get()

    @classmethod
    def start_for(cls, uid, gid, groups):
        """The thread for these credentials, or False where it could not take them, or
        where no thread can be started: a process that has unshared its PID namespace
        (the FUSE executor, adapters/sandbox/fusemount.py ``holder``) cannot make threads
        (linux kernel/fork.c copy_process: CLONE_THREAD with another
        pid_ns_for_children is EINVAL), its forked children still run."""
        before = (os.getresuid(), os.getresgid(), os.getgroups())
        try:
            thread = cls(uid, gid, groups)
        except RuntimeError:  # threading: "can't start new thread"
            return False
        if (os.getresuid(), os.getresgid(), os.getgroups()) != before:
            raise RuntimeError("the caller's credentials reached the executor's own thread")
        return thread if thread.ready else False

    def _serve(self):
        try:
            _drop_thread_credentials(*self.ids)
        except OSError:
            self.replies.put(False)
            return
        self.replies.put(True)
        while True:
            call, args = self.requests.get()
            try:
                reply = ("ok", call(**args))
            except OSError as exc:
                reply = ("err", exc.errno)
            except BaseException as exc:  # handed to the waiting thread
                reply = ("failed", exc)
            self.replies.put(reply)

    def call(self, call, args):
        self.requests.put((call, args))
        return self.replies.get()


def run_forked(creds, call, args):
    """``call(**args)`` in a forked child that takes the caller's groups, gid, uid and
    umask; its value or errno comes back through a pipe (marshal: plain values only)."""
    uid, gid, groups, umask = creds
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.umask(umask)
            try:
                reply = ("ok", call(**args))
            except OSError as exc:
                reply = ("err", exc.errno)
            data = marshal.dumps(reply)
            while data:
                data = data[os.write(write_end, data):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    try:
        while chunk := os.read(read_end, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if status != 0 or not chunks:
        raise RuntimeError(f"the caller's process for {creds} failed (status {status})")
    kind, value = marshal.loads(b"".join(chunks))
    if kind == "err":
        raise OSError(value, os.strerror(value))
    return value


# --- open descriptors (issue 18): handles a program refers to --------------------------------

#: The descriptor of each handle (an Open's value: 0, 1, ... since the mount), None once
#: closed. A handle is only ever looked up here: a program cannot name one of the
#: executor's own descriptors.
HANDLES = []
#: open(2) access modes of an Open (ops.OPEN_ACCESS).
OPEN_ACCESS = {"O_RDONLY": os.O_RDONLY, "O_RDWR": os.O_RDWR}


def _fd(handle):
    if not 0 <= handle < len(HANDLES) or HANDLES[handle] is None:
        raise OSError(errno.EBADF, "no such handle")
    return HANDLES[handle]


def open_call(path, access):
    """open(2); a FIFO is opened O_PATH (no pipe end: a reader or writer held open would
    change what every later open and read of the FIFO does, ops.Open)."""
    fd = os.open(_p(path), os.O_PATH | os.O_CLOEXEC)
    try:
        if not _stat.S_ISFIFO(os.fstat(fd).st_mode):
            flags = OPEN_ACCESS[access] | os.O_NONBLOCK | os.O_CLOEXEC
            fd, path_fd = os.open(_p(path), flags), fd
            os.close(path_fd)
    except BaseException:
        os.close(fd)
        raise
    HANDLES.append(fd)
    return len(HANDLES) - 1


def read_fd_call(handle):
    """pread from offset 0 to the end (EFBIG past MAX_READ, as read_to_end)."""
    fd = _fd(handle)
    chunks, size = [], 0
    while chunk := os.pread(fd, min(1 << 20, MAX_READ + 1 - size), size):
        size += len(chunk)
        if size > MAX_READ:
            raise OSError(errno.EFBIG, f"more than {MAX_READ} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def close_call(handle):
    fd = _fd(handle)
    HANDLES[handle] = None
    os.close(fd)


def close_handles(forget=False):
    """Close every open handle (before an unmount: a mount with open files is busy); with
    ``forget``, number them from 0 again (a new mount)."""
    for number, fd in enumerate(HANDLES):
        if fd is not None:
            HANDLES[number] = None
            with contextlib.suppress(OSError):
                os.close(fd)
    if forget:
        HANDLES.clear()


CALLS.update({
    "open": open_call,
    "read_fd": read_fd_call,
    "write_fd": lambda handle, data, offset: os.pwrite(_fd(handle), data, offset),
    "close": close_call,
})
