"""Callers other than root (issue 18): the reference's permission rules, each outcome as
this kernel (6.18) gave it by hand (setpriv --reuid=1000 --regid=1000 --groups=1001 on an
overlay of the same layers), and the same program run on the kernel by the executor."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from adapters.drivers.kernel import KernelDriver
from conformance.records import reproducer
from reference import ops
from reference.layer import DirSpec, FifoSpec, FileSpec, LayerSpec, StackSpec
from reference.options import Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay

STACK = StackSpec(
    (
        LayerSpec(
            (
                ("f", FileSpec(b"x", 0o644, 0, 0)),
                ("s", FileSpec(b"s", 0o600, 0, 0)),
                ("d", DirSpec(0o700, 0, 0)),
                ("d/g", FileSpec(b"g")),
                ("o", FileSpec(b"o", 0o644, 1000, 1000)),
                ("p", DirSpec(0o777, 0, 0)),
                ("p/q", FileSpec(b"q", 0o604, 0, 1001)),
                ("p/fifo", FifoSpec(0o600)),
                ("g", DirSpec(0o705, 0, 1001)),
                ("g/h", FileSpec(b"h")),
            )
        ),
    )
)

U, OTHER = "user", "other"
#: (operation, its outcome on the kernel) in order: each step sees the earlier ones' effects.
PROGRAM: list[tuple[ops.Op, object]] = [
    (ops.Read("s", caller=U), Err("EACCES")),
    (ops.Read("f", caller=U), Ok(b"x")),
    (ops.Stat("d/g", caller=OTHER), Err("EACCES")),  # may_lookup on d (0700 root)
    (ops.Stat("g/h", caller=U), Err("EACCES")),  # the group class (---) decides for 1001
    (ops.Stat("g/h", caller=OTHER), Err("EACCES")),  # so for other's own gid 1001
    (ops.Read("p/q", caller=U), Err("EACCES")),  # group 1001: ---, though other has r
    (ops.Write("f", b"y", caller=U), Err("EACCES")),
    (ops.Write("p/fifo", b"", caller=U), Err("EACCES")),  # may_open before fifo_open's ENXIO
    (ops.Chmod("f", 0o600, caller=U), Err("EPERM")),
    (ops.Chmod("o", 0o600, caller=U), Ok(None)),
    (ops.Write("p/n", b"n", 0, ("O_CREAT",), 0o666, caller=U), Ok(1)),
    (ops.Stat("p/n"), Ok(ops.StatResult("file", 0o644, 1000, 1000, 1, 1))),  # umask 022
    (ops.Mkdir("p/m", 0o777, caller=OTHER), Ok(None)),
    (ops.Stat("p/m"), Ok(ops.StatResult("dir", 0o700, 1001, 1001, 0, 2))),  # umask 077
    (ops.Mkdir("p/m", 0o777, caller=U), Err("EEXIST")),  # before may_create
    (ops.Mkdir("x", 0o777, caller=U), Err("EACCES")),  # the root is 0755 root
    (ops.Link("f", "p/l", caller=U), Err("EPERM")),  # protected_hardlinks
    (ops.Link("o", "p/l2", caller=U), Ok(None)),  # its owner
    (ops.Unlink("f", caller=U), Err("EACCES")),
    (ops.Rmdir("f", caller=U), Err("EACCES")),  # may_delete before ENOTDIR
    (ops.Chown("o", 1000, 1001, caller=U), Ok(None)),  # a group it is in
    (ops.Chown("o", 1000, 0, caller=U), Err("EPERM")),
    (ops.Chown("o", 1001, 1001, caller=U), Err("EPERM")),
    (ops.Readdir("d", caller=U), Err("EACCES")),
    (ops.Readdir("f", caller=U), Err("ENOTDIR")),  # O_DIRECTORY before may_open
    (ops.Rename("p/m", "p/mm", caller=U), Ok(None)),  # p is 0777, no sticky bit
    (ops.Rename("p/mm", "o2", caller=OTHER), Err("EACCES")),  # may_create in the root
    (ops.SetXattr("f", "user.a", b"1", caller=U), Err("EACCES")),
    (ops.GetXattr("s", "user.a", caller=U), Err("EACCES")),
    (ops.Truncate("f", 0, caller=U), Err("EACCES")),
    (ops.Truncate("o", 0, caller=U), Ok(None)),
]


def test_the_reference_gives_the_kernels_outcomes() -> None:
    fs = Overlay(STACK, Options())
    for op, expected in PROGRAM:
        assert fs.step(op)[0] == expected, op


def test_erofs_comes_before_eacces() -> None:
    """may_open's sb_permission, and mnt_want_write before setattr_prepare."""
    fs = Overlay(StackSpec((STACK.lowers[0], LayerSpec())), Options(read_only=True))
    assert fs.step(ops.Write("f", b"y", caller=U))[0] == Err("EROFS")
    assert fs.step(ops.Chmod("f", 0o600, caller=U))[0] == Err("EROFS")


def test_a_non_root_caller_shows_in_the_repr_and_root_does_not() -> None:
    assert repr(ops.Stat("a")) == "Stat(path='a', follow=False)"
    assert repr(ops.Stat("a", caller=U)) == "Stat(path='a', follow=False, caller='user')"
    assert eval(repr(ops.Remount(caller=U)), vars(ops)) == ops.Remount(caller=U)


def test_a_reproducer_step_carries_the_callers_credentials() -> None:
    assert reproducer._args(ops.Unlink("f", caller=U)) == {
        "path": "f",
        "caller": (1000, 1000, (1001,), 0o022),
    }
    assert reproducer._args(ops.Unlink("f"))["caller"] is None


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel driver needs root")
def test_the_kernel_gives_the_same_outcomes() -> None:
    reason = KernelDriver.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    driver = KernelDriver(timeout=30.0)
    try:
        driver.mount(STACK, Options())
        for op, expected in PROGRAM:
            assert driver.run(op) == expected, op
    finally:
        driver.close()


def test_utimens_by_another_caller_needs_the_owner_unless_both_are_now() -> None:
    """utimensat by a caller who does not own the object: EPERM unless both times are
    UTIME_NOW (then write permission: EACCES on root's 0755 directory, success on a 0777
    one), as the kernel overlay gives (the pytest run of fuse-overlayfs found it)."""
    o = ops
    model = Overlay(StackSpec((LayerSpec(()),)), Options())
    model.apply(o.Mkdir("a", 0o755))
    model.apply(o.Mkdir("w", 0o777))
    for atime, mtime, where, wanted in (
        (5, 5, "a", Err("EPERM")),
        (o.UTIME_OMIT, o.UTIME_NOW, "a", Err("EPERM")),
        (o.UTIME_NOW, o.UTIME_NOW, "a", Err("EACCES")),
        (o.UTIME_NOW, o.UTIME_NOW, "w", Ok(None)),
        (5, 5, "w", Err("EPERM")),
    ):
        op = o.Utimens(where, atime, mtime, False, caller="user")
        assert model.apply(op) == {wanted}, (atime, mtime, where)


CALLER_THREAD_CHECK = """
import os
os.setgroups([])
os.umask(0o002)
from adapters import syscalls
creds = (1000, 1000, (1001,), 0o022)
def held():
    return os.getresuid(), os.getresgid(), os.getgroups(), syscalls._capabilities(), os.umask(0o022)
got = syscalls.run_as(creds, held, {})
again = syscalls.run_as(creds, lambda: os.getresuid(), {})
thread = syscalls.CALLER_THREADS[(1000, 1000, (1001,))]
print(repr((got, again, os.getresuid(), os.getgroups(), os.umask(0), type(thread).__name__)))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="taking a caller's credentials needs root")
def test_a_caller_runs_in_a_thread_that_holds_its_credentials_only() -> None:
    """adapters.syscalls.run_as: the call sees the caller's ids, groups and umask and no
    capability; the process's own thread keeps root, its groups and its umask; one thread
    serves every call of that caller (no fork per call)."""
    import platform

    if platform.machine() not in ("x86_64", "aarch64", "riscv64"):
        pytest.skip("a forked child per call on this machine")
    got, again, own_ids, own_groups, own_umask, kind = _printed_by(CALLER_THREAD_CHECK)
    assert got == ((1000,) * 3, (1000,) * 3, [1001], ((0, 0), (0, 0)), 0o022)
    assert again == (1000,) * 3
    assert (own_ids, own_groups, own_umask, kind) == ((0, 0, 0), [], 0o002, "CallerThread")


CALLER_AFTER_NEWPID = """
import ctypes, os, signal, time
from adapters import syscalls
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x20000000) == 0  # CLONE_NEWPID, as the FUSE executor's holder does
holder = os.fork()
if holder == 0:
    time.sleep(60)
    os._exit(0)
try:
    creds = (1000, 1000, (1001,), 0o022)
    got = syscalls.run_as(creds, lambda: (os.getresuid(), os.getgroups()), {})
    kind = syscalls.CALLER_THREADS[(1000, 1000, (1001,))]
    print(repr((got, kind)))
finally:
    os.kill(holder, signal.SIGKILL)
    os.waitpid(holder, 0)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="taking a caller's credentials needs root")
def test_a_caller_runs_in_a_forked_child_where_no_thread_can_start() -> None:
    """adapters.syscalls.run_as in a process that unshared its PID namespace (the FUSE
    executor): no thread can be started there, the call runs in a forked child with the
    caller's credentials (found: every caller step of a FUSE driver crashed with "can't
    start new thread")."""

    got, kind = _printed_by(CALLER_AFTER_NEWPID)
    assert got == ((1000,) * 3, [1001])
    assert kind is False


def _printed_by(script: str) -> tuple:
    """What ``script`` prints (a repr), run by this Python in a process of its own from
    the checkout's root."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return eval(done.stdout)
