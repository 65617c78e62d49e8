"""A root a process cannot leave: what a FUSE daemon (and a reproducer) runs in.

Issue 17, item 1. A FUSE daemon resolves paths in its own root, and unionfs-fuse follows a
lower branch's symlink out of its branches (``conformance/records/expectations.toml``): with the
host's ``/`` as its root, a generated symlink to ``/`` or ``/etc`` shows the host's files,
and a write through it could change one. So the daemon's process, between fork and exec,
takes a mount namespace of its own and ``pivot_root(2)``s into a fresh tmpfs holding only:

* the system directories (``/usr``, and ``/bin``, ``/sbin``, ``/lib*`` as the host has
  them: directories or usrmerge symlinks), bind-mounted read-only, nosuid, nodev: the
  daemon's binary and its shared libraries;
* ``/dev/fuse`` and ``/dev/null``, each bind-mounted alone;
* the sandbox's layer directory, bind-mounted read-write, nosuid, nodev (*shared*: see
  below);
* optionally a read-only ``proc`` of the caller's PID namespace (fuse-overlayfs checks
  ``/proc`` and reaches files through ``/proc/self/fd``);
* optionally the driver's own files (item 7), read-only, at their host paths.

The root itself is remounted read-only. The old root is made a slave (so detaching it
cannot unmount anything in the parent namespace, ``mount_namespaces(7)``) and detached:
nothing of the host's tree stays reachable. ``..`` at the new root stays at it.

The daemon mounts FUSE on the mountpoint *inside its namespace*; the executor sees it
because the layer directory's bind is a peer of the executor's ``/tmp`` (made shared by
:func:`share`, inside the executor's private namespace only): a mount or unmount on either
side propagates to the other (``Documentation/filesystems/sharedsubtree.rst``).

Self-contained (standard library, ctypes) so the reproducer template can embed it; the
project's other modules take their libc handle, prototypes, constants and mount(2) from
here (not the reverse).
"""

import ctypes
import os

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 0x4000
MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 18, 1 << 19, 1 << 20
MNT_DETACH = 2
#: prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: pivot_root(2) has no glibc wrapper: its number per machine (arch/*/syscall tables).
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
#: The host directories a confined root shows (read-only): binaries and libraries.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: The device nodes it shows.
DEVICES = ("fuse", "null")
#: The size of a confined root's own tmpfs (it holds only directories and mount points).
ROOT_SIZE = "1m"

#: libc with the prototypes of the calls made through it (declared here once).
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def check(result, what):
    """Raise OSError (errno, ``what``: its message) when a libc call returned non-zero."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, what + ": " + os.strerror(err))


def mount(source, target, fstype, flags, data=None):
    """mount(2); ``source``, ``fstype`` and ``data`` may be None."""
    what = "mount " + ("-t " + fstype + " " if fstype else "") + target
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        what + (" -o " + data if data else ""),
    )


def _bind(source, target, flags):
    """Bind ``source`` (a file or a directory) on ``target`` (made), then remount the bind
    with ``flags`` (MS_RDONLY, MS_NOSUID, MS_NODEV...)."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags)


def roots_mount(where):
    """Executor side, once: a private tmpfs at ``where`` to build confined roots on (each
    confined process mounts its own fresh tmpfs over it, in its own namespace)."""
    os.makedirs(where, exist_ok=True)
    mount("unionspec-roots", where, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0700")
    mount(None, where, None, MS_PRIVATE)


def stage(source, where):
    """Bind ``source`` (a file or directory, maybe reached through ``/proc/self/fd``) on
    ``where``, read-only: a host path made visible to the confined roots built later."""
    _bind(source, where, MS_RDONLY | MS_NOSUID | MS_NODEV)


def driver_paths(programs, directories=()):
    """The host paths of a driver's own files that its confined root shows read-only at
    the same path (issue 17, item 7): each of ``directories`` and the directory of each of
    ``programs`` (absolute paths) unless in a system directory the root shows anyway; the
    program alone when its directory is ``/`` or ``/tmp``. Each once, in order."""
    paths = [d for d in directories if d.split("/")[1] not in SYSTEM_DIRS]
    for program in programs:
        parent = os.path.dirname(program)
        if parent.split("/")[1] not in SYSTEM_DIRS:
            paths.append(program if parent in ("/", "/tmp") else parent)
    return list(dict.fromkeys(paths))


def host_source(path, host_tmp):
    """Where this process reaches the host's ``path``: under /tmp (which a private tmpfs
    hides) through ``host_tmp``, a descriptor of the host's /tmp opened before."""
    if host_tmp is not None and path.startswith("/tmp/"):
        return f"/proc/self/fd/{host_tmp}/{path[len('/tmp/'):]}"
    return path


def share(path):
    """Make the mount at ``path`` shared (its binds in confined namespaces become peers)."""
    mount(None, path, None, MS_SHARED)


def build(root, writable=(), visible=(), proc=False, system=True):
    """Mount a fresh tmpfs on ``root`` and fill it (see the module doc). ``writable``: host
    directories shown read-write at the same path; ``visible``: (host source, path) shown
    read-only; ``proc``: a read-only proc of this PID namespace; ``system``: the system
    directories and devices (an empty root without)."""
    flags = MS_NOSUID | MS_NODEV
    # the sources may lie under ``root`` (a staging bind): open them before it is covered
    held = [(os.open(source, os.O_PATH | os.O_CLOEXEC), path) for source, path in visible]
    mount("unionspec-confined", root, "tmpfs", flags, "size=" + ROOT_SIZE + ",mode=0755")
    for name in SYSTEM_DIRS if system else ():
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), root + host)
        elif os.path.isdir(host):
            _bind(host, root + host, MS_RDONLY | MS_NOSUID | MS_NODEV)
    for name in DEVICES if system else ():
        if os.path.exists("/dev/" + name):
            _bind("/dev/" + name, root + "/dev/" + name, MS_NOSUID | MS_NOEXEC)
    for path in writable:
        _bind(path, root + path, MS_NOSUID | MS_NODEV)
    for fd, path in held:
        _bind(f"/proc/self/fd/{fd}", root + path, MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    if proc:
        os.makedirs(root + "/proc", exist_ok=True)
        mount("proc", root + "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def pivot(root):
    """Make ``root`` this namespace's root, detach the old one (made a slave first so its
    detaching propagates nowhere), and make the new root's own tmpfs read-only."""
    old = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(root)
        number = SYS_PIVOT_ROOT[os.uname().machine]
        dot = ctypes.c_char_p(b".")
        check(libc.syscall(ctypes.c_long(number), dot, dot), "pivot_root")
        # The old root is now stacked on the new one (the runc way): enter it, make its
        # whole tree a slave, detach it.
        os.fchdir(old)
    finally:
        os.close(old)
    mount(None, ".", None, MS_REC | MS_SLAVE)
    check(libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter(root, writable=(), visible=(), proc=False, system=True):
    """Take a mount namespace of this process's own and pivot into a confined root built
    at ``root`` (:func:`build`, :func:`pivot`). The caller's namespace is unchanged."""
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    build(root, writable, visible, proc, system)
    pivot(root)
