"""The kernel overlayfs driver (adapters.drivers.kernel) against the real kernel.

Skipped only when the driver is unavailable here (not root, no overlay), with the reason;
with ``CI`` set in the environment that is a failure instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from adapters.base import Driver, DriverFailure, DriverHung
from adapters.drivers.kernel import CLOSE_GRACE, PROJECT_ROOT, KernelDriver
from reference import ops
from reference.layer import (
    DirSpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
)
from reference.options import MATRIX, Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay
from reference.view import UNREACHABLE


def _require_kernel() -> None:
    reason = KernelDriver.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the kernel driver is unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture
def driver():
    _require_kernel()
    drv = KernelDriver(timeout=30.0)
    try:
        yield drv
    finally:
        drv.close()


TWO = StackSpec(
    (
        LayerSpec((("a", FileSpec(b"top a")), ("d/x", FileSpec(b"x0")))),
        LayerSpec(
            (
                ("a", FileSpec(b"bottom a")),
                ("b", FileSpec(b"bee", mode=0o640, uid=3, gid=4)),
                ("d/y", FileSpec(b"y1")),
            )
        ),
    )
)

RICH = StackSpec(
    (
        LayerSpec(
            (
                ("f", FileSpec(b"top", xattrs=(("user.t", b"1"),))),
                ("d", DirSpec(mode=0o750, xattrs=(("user.dir", b"top"),))),
                ("d/only_top", FileSpec(b"t")),
                ("d/gone", WhiteoutSpec()),
                ("o", DirSpec(opaque=True)),
                ("o/new", FileSpec(b"n")),
                ("s", SymlinkSpec("f")),
                ("p", FifoSpec(mode=0o600)),
            )
        ),
        LayerSpec(
            (
                ("f", FileSpec(b"hidden")),
                ("d", DirSpec(mode=0o700)),
                ("d/gone", FileSpec(b"whited out")),
                ("d/only_bottom", FileSpec(b"b", mode=0o4755, uid=1, gid=2)),
                ("o/hidden", FileSpec(b"h")),
                ("h1", FileSpec(b"hl")),
                ("h2", HardlinkSpec("h1")),
            )
        ),
    )
)


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def process_gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists or is a zombie (dead, awaiting its reaper)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


# --- basics -------------------------------------------------------------------------------


def test_is_a_driver(driver):
    assert isinstance(driver, Driver)
    assert driver.name == "kernel"
    assert driver.executor_pid > 0


def test_write_read_unlink_lower_file(driver):
    driver.mount(TWO, Options())
    assert driver.run(ops.Read("a")) == Ok(b"top a")
    assert driver.run(ops.Read("d/y")) == Ok(b"y1")
    assert driver.run(ops.Write("d/y", b"Y", offset=1)) == Ok(1)
    assert driver.run(ops.Read("d/y")) == Ok(b"yY")
    assert driver.run(ops.Write("b", b"+", flags=("O_APPEND",))) == Ok(1)
    assert driver.run(ops.Read("b")) == Ok(b"bee+")
    assert driver.run(ops.Unlink("a")) == Ok(None)
    assert driver.run(ops.Read("a")) == Err("ENOENT")
    assert driver.run(ops.Readdir("")) == Ok(("b", "d"))

    upper, lowers = driver.images()
    assert upper is not None
    assert upper.entries["a"].kind == "whiteout"
    assert upper.entries["d/y"].data == b"yY"
    assert upper.entries["b"].data == b"bee+"
    assert (upper.entries["b"].mode, upper.entries["b"].uid, upper.entries["b"].gid) == (
        0o640,
        3,
        4,
    )
    # the lowers are untouched
    assert lowers[0].entries["a"].data == b"top a"
    assert lowers[1].entries["d/y"].data == b"y1"
    assert len(lowers) == 2


def test_remount_keeps_changes(driver):
    driver.mount(TWO, Options(index=True, redirect_dir=True))
    driver.run(ops.Unlink("a"))
    driver.run(ops.Write("new", b"fresh", flags=("O_CREAT",), mode=0o600))
    driver.run(ops.Mkdir("nd", 0o711))
    before = driver.view()
    assert driver.run(ops.Remount()) == Ok(None)
    after = driver.view()
    assert after.entries == before.entries
    assert after.inodes == before.inodes  # one filesystem: st_ino is stable (notes 10)
    assert driver.run(ops.Read("a")) == Err("ENOENT")
    assert driver.run(ops.Read("new")) == Ok(b"fresh")
    assert driver.run(ops.Stat("nd")) == Ok(ops.StatResult("dir", 0o711, 0, 0, 0, 2))


def test_stat_results(driver):
    driver.mount(RICH, Options())
    assert driver.run(ops.Stat("d/only_bottom")) == Ok(ops.StatResult("file", 0o4755, 1, 2, 1, 1))
    assert driver.run(ops.Stat("s")) == Ok(ops.StatResult("symlink", 0o777, 0, 0, 1, 1))
    assert driver.run(ops.Stat("s", follow=True)) == Ok(ops.StatResult("file", 0o644, 0, 0, 3, 1))
    assert driver.run(ops.Stat("p")) == Ok(ops.StatResult("fifo", 0o600, 0, 0, 0, 1))
    assert driver.run(ops.Stat("d")).value.size == 0  # a directory's size is not compared
    assert driver.run(ops.Stat("d/gone")) == Err("ENOENT")


def test_every_operation_once(driver):
    driver.mount(RICH, Options(redirect_dir=True))
    run = driver.run
    assert run(ops.Read("d")) == Err("EISDIR")
    assert run(ops.Read("p")) == Ok(b"")  # O_NONBLOCK: no writer, end of file
    assert run(ops.Write("p", b"x")) == Err("ENXIO")  # O_NONBLOCK: no reader
    assert run(ops.Write("f", b"X", flags=("O_CREAT", "O_EXCL"))) == Err("EEXIST")
    assert run(ops.Write("f", b"X", flags=("O_TRUNC",))) == Ok(1)
    assert run(ops.Truncate("f", 3)) == Ok(None)
    assert run(ops.Read("f")) == Ok(b"X\0\0")
    assert run(ops.Mkdir("m", 0o700)) == Ok(None)
    assert run(ops.Rmdir("m")) == Ok(None)
    assert run(ops.Rmdir("d")) == Err("ENOTEMPTY")
    assert run(ops.Unlink("d")) == Err("EISDIR")
    assert run(ops.Rename("h1", "h3")) == Ok(None)
    assert run(ops.Rename("h2", "f", "RENAME_NOREPLACE")) == Err("EEXIST")
    assert run(ops.Rename("h2", "f", "RENAME_EXCHANGE")) == Ok(None)
    assert run(ops.Read("h2")) == Ok(b"X\0\0")
    assert run(ops.Rename("d", "d2")) == Ok(None)  # redirect_dir=on: lower dir renames
    assert run(ops.Link("h3", "h4")) == Ok(None)
    assert run(ops.Link("d2", "d3")) == Err("EPERM")
    assert run(ops.Symlink("/d2/only_top", "abs")) == Ok(None)
    assert run(ops.Readlink("abs")) == Ok("/d2/only_top")
    assert run(ops.Read("abs")) == Ok(b"t")  # absolute targets resolve inside the mount
    assert run(ops.Chmod("s", 0o600)) == Ok(None)  # follows to "f"
    assert run(ops.Stat("f")).value.mode == 0o600
    assert run(ops.Chown("h3", 10, 20)) == Ok(None)
    assert run(ops.Stat("h4")).value.uid == 10
    assert run(ops.SetXattr("h3", "user.z", b"zz")) == Ok(None)
    assert run(ops.GetXattr("h3", "user.z")) == Ok(b"zz")
    assert run(ops.GetXattr("h3", "user.none")) == Err("ENODATA")
    assert run(ops.ListXattr("d2")) == Ok(("user.dir",))
    assert run(ops.RemoveXattr("h3", "user.z")) == Ok(None)
    assert run(ops.ListXattr("h3")) == Ok(())
    assert run(ops.Readdir("o")) == Ok(("new",))
    assert run(ops.Readdir("f")) == Err("ENOTDIR")
    assert run(ops.Mkfifo("q", 0o640)) == Ok(None)
    assert run(ops.Stat("q")) == Ok(ops.StatResult("fifo", 0o640, 0, 0, 0, 1))
    upper, _ = driver.images()
    assert upper is not None
    assert upper.entries["d2"].redirect == "d"
    assert upper.entries["d"].kind == "whiteout"


def test_view_matches_the_reference_before_any_change(driver):
    for options in MATRIX:
        driver.mount(RICH, options)
        expected = Overlay(RICH, options).view()
        actual = driver.view()
        assert actual.entries == expected.entries, options.label
        assert set(actual.inodes) == set(expected.inodes)
        if options.data_only:  # the bottom layer, with h1 and h2, is data-only: not shown
            assert "h1" not in actual.inodes and "h2" not in actual.inodes
            continue
        assert actual.inodes["h1"] == actual.inodes["h2"]
        assert len({actual.inodes[p] for p in actual.inodes}) == len(actual.inodes) - 1


def test_whiteout_in_an_unmerged_dir_is_listed_but_unreachable(driver):
    # obs E3.31/32 in the char-device form: c exists only in the top lower, so its readdir
    # passes through the real directory, whiteout included.
    stack = StackSpec((LayerSpec((("c", DirSpec()), ("c/c", WhiteoutSpec()))), LayerSpec(())))
    driver.mount(stack, Options(read_only=True))
    assert driver.run(ops.Readdir("c")) == Ok(("c",))
    assert driver.run(ops.Stat("c/c")) == Err("ENOENT")
    view = driver.view()
    assert view.entries["c/c"] == UNREACHABLE
    assert "c/c" not in view.inodes
    assert view.entries == Overlay(stack, Options(read_only=True)).view().entries


def test_images_of_fresh_mount_match_the_reference(driver):
    for options in MATRIX:
        driver.mount(RICH, options)
        upper, lowers = driver.images()
        model_upper, model_lowers = Overlay(RICH, options).images()
        if options.read_only:
            assert upper is None and model_upper is None
        else:
            assert upper is not None and model_upper is not None
            assert upper.entries == model_upper.entries == {}
        for mine, theirs in zip(lowers, model_lowers, strict=True):
            assert mine.entries == theirs.entries
            assert mine.links == theirs.links
            assert mine.inodes.keys() == theirs.inodes.keys()


def test_every_option_set_of_the_matrix_mounts(driver):
    for options in MATRIX:
        driver.mount(TWO, options)
        assert driver.run(ops.Read("a")) == Ok(b"top a"), options.label
        with open(f"/proc/{driver.executor_pid}/mountinfo") as f:
            line = next(x for x in f if " - overlay " in x)
        if options.read_only:
            assert " ro," in line
            assert "upperdir" not in line
        else:
            assert "upperdir=/tmp/unionspec/upper" in line
            assert ("index=on" in line) == options.index


def test_read_only_mount_gives_erofs(driver):
    driver.mount(TWO, Options(read_only=True))
    for op in [
        ops.Write("a", b"x"),
        ops.Unlink("a"),
        ops.Mkdir("n"),
        ops.Chmod("a", 0o600),
        ops.SetXattr("a", "user.x", b"1"),
        ops.Rename("a", "z"),
    ]:
        assert driver.run(op) == Err("EROFS"), op
    upper, lowers = driver.images()
    assert upper is None and len(lowers) == 2


def test_refused_mount_is_a_clean_failure(driver):
    # obs M.20: one lowerdir and no upper is EINVAL
    single = StackSpec((LayerSpec((("a", FileSpec(b"1")),)),))
    with pytest.raises(DriverFailure, match="EINVAL"):
        driver.mount(single, Options(read_only=True))
    with pytest.raises(DriverFailure, match="no overlay is mounted"):
        driver.run(ops.Stat("a"))
    # the executor survived and mounts again
    driver.mount(single, Options())
    assert driver.run(ops.Read("a")) == Ok(b"1")


def test_run_before_mount_fails(driver):
    with pytest.raises(DriverFailure, match="no overlay is mounted"):
        driver.run(ops.Stat(""))


# --- confinement --------------------------------------------------------------------------


def test_symlinks_cannot_escape_the_mount(driver):
    assert not os.path.exists("/etc/unionspec-escape")
    driver.mount(TWO, Options())
    assert driver.run(ops.Symlink("/etc", "esc")) == Ok(None)
    assert driver.run(ops.Symlink("../../../../tmp", "up")) == Ok(None)
    escape = driver.run(ops.Write("esc/unionspec-escape", b"no", flags=("O_CREAT",)))
    climb = driver.run(ops.Write("up/x", b"no", flags=("O_CREAT",)))
    assert not os.path.exists("/etc/unionspec-escape")
    view = driver.view().entries
    assert isinstance(escape, Err) or "etc/unionspec-escape" in view
    assert isinstance(climb, Err) or "tmp/x" in view

    # the targets exist inside the mount: writes land there, never on the host
    driver.run(ops.Mkdir("etc"))
    driver.run(ops.Mkdir("tmp"))
    assert driver.run(ops.Write("esc/unionspec-escape", b"in", flags=("O_CREAT",))) == Ok(2)
    assert driver.run(ops.Write("up/x", b"in", flags=("O_CREAT",))) == Ok(2)
    view = driver.view().entries
    assert view["etc/unionspec-escape"].data == b"in"
    assert view["tmp/x"].data == b"in"
    assert not os.path.exists("/etc/unionspec-escape")

    assert driver.run(ops.Symlink("/", "root")) == Ok(None)
    assert driver.run(ops.Readdir("root")) == driver.run(ops.Readdir(""))
    assert driver.run(ops.Readdir("root")) == Ok(("a", "b", "d", "esc", "etc", "root", "tmp", "up"))
    assert driver.run(ops.Readdir("root/../../..")) == driver.run(ops.Readdir(""))


def test_nothing_is_mounted_on_the_host(driver):
    driver.mount(TWO, Options())
    assert not [line for line in host_mounts() if "unionspec" in line]
    with open(f"/proc/{driver.executor_pid}/mountinfo") as f:
        theirs = f.read()
    assert " /tmp/unionspec/mnt " in theirs and " /tmp " in theirs
    assert os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{driver.executor_pid}/ns/mnt")


# --- life cycle ---------------------------------------------------------------------------


def test_close_leaves_no_mount_and_no_process():
    _require_kernel()
    before = [line for line in host_mounts() if " - overlay " in line or " - tmpfs " in line]
    drv = KernelDriver()
    pid = drv.executor_pid
    drv.mount(TWO, Options(index=True))
    drv.run(ops.Unlink("a"))
    drv.close()
    drv.close()  # idempotent
    after = [line for line in host_mounts() if " - overlay " in line or " - tmpfs " in line]
    assert after == before
    assert not [line for line in host_mounts() if "unionspec" in line]
    assert not os.path.exists(f"/proc/{pid}")
    with pytest.raises(DriverFailure, match="closed"):
        drv.run(ops.Stat("a"))


def test_context_manager_closes():
    _require_kernel()
    with KernelDriver() as drv:
        pid = drv.executor_pid
        drv.mount(TWO, Options())
    assert not os.path.exists(f"/proc/{pid}")


def test_hung_executor_raises_quickly_and_close_cleans_up():
    _require_kernel()
    drv = KernelDriver(timeout=0.3)
    pid = drv.executor_pid
    try:
        drv.mount(TWO, Options())
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(DriverHung, match=r"no answer to Stat\(.*\) within 0.3s"):
            drv.run(ops.Stat("a"))
        assert time.monotonic() - started < 5
        assert not os.path.exists(f"/proc/{pid}")  # killed and reaped
        with pytest.raises(DriverFailure):
            drv.run(ops.Stat("a"))
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGCONT)
        drv.close()
    assert not os.path.exists(f"/proc/{pid}")


def test_close_of_a_stopped_executor_kills_it():
    _require_kernel()
    drv = KernelDriver()
    pid = drv.executor_pid
    drv.mount(TWO, Options())
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    drv.close()
    assert time.monotonic() - started < 2 * CLOSE_GRACE + 1
    assert not os.path.exists(f"/proc/{pid}")


def test_dead_executor_is_a_driver_failure():
    _require_kernel()
    drv = KernelDriver()
    try:
        drv.mount(TWO, Options())
        os.kill(drv.executor_pid, signal.SIGKILL)
        with pytest.raises(DriverFailure, match="died") as info:
            drv.run(ops.Stat("a"))
        assert not isinstance(info.value, DriverHung)
    finally:
        drv.close()


def test_executor_dies_with_a_killed_driver_process():
    """PR_SET_PDEATHSIG: SIGKILL the process that holds the driver; the executor (and with
    it its mount namespace) goes too."""
    _require_kernel()
    script = textwrap.dedent(
        """
        import os, signal
        from adapters.drivers.kernel import KernelDriver
        from reference.layer import FileSpec, LayerSpec, StackSpec
        from reference.options import Options
        d = KernelDriver()
        d.mount(StackSpec((LayerSpec((("a", FileSpec(b"1")),)),)), Options())
        print(d.executor_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pid = int(done.stdout.split()[-1])
    assert process_gone(pid), f"executor {pid} outlived its driver"
    assert not [line for line in host_mounts() if "unionspec" in line]


def test_per_op_overhead_is_small(driver):
    driver.mount(TWO, Options())
    started = time.perf_counter()
    for _ in range(200):
        driver.run(ops.Stat("a"))
    per_op = (time.perf_counter() - started) / 200
    assert per_op < 0.01, f"{per_op * 1e6:.0f} µs per op"
