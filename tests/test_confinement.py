"""Host safety (issue 17, items 1 and 7): a FUSE daemon runs in a root it cannot leave.

unionfs-fuse merges a directory with a lower branch's symlink of the same name and follows
it even out of its branches (conformance/records/expectations.toml): with a confined root, the host
tree the symlink names is not there to follow. The host files are written by the test
outside /tmp (the sandbox hides /tmp anyway, so a host file there would prove nothing)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.drivers.fuse import FuseOverlayfsDriver, UnionfsFuseDriver
from reference import ops
from reference.layer import DirSpec, LayerSpec, StackSpec, SymlinkSpec
from reference.options import Options
from reference.outcome import Ok
from tests.host import require

RW = Options()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory of the host outside /tmp, holding a file ``secret``."""
    base = "/var/tmp" if os.path.isdir("/var/tmp") else str(Path(__file__).parent)
    where = Path(tempfile.mkdtemp(prefix="unionspec-host-", dir=base))
    (where / "secret").write_bytes(b"host secret\n")
    try:
        yield where
    finally:
        shutil.rmtree(where)


def _merged_with_symlink_to(target: str) -> StackSpec:
    """``c`` a directory in the top lower, a symlink to ``target`` in the one under it."""
    return StackSpec(
        (
            LayerSpec((("c", DirSpec()),)),
            LayerSpec((("c", SymlinkSpec(target=target)),)),
        )
    )


def test_unionfs_fuse_cannot_read_or_write_the_host_through_a_lower_symlink(
    host_dir: Path,
) -> None:
    require(UnionfsFuseDriver, "unionfs-fuse")
    with UnionfsFuseDriver(timeout=30) as driver:
        driver.mount(_merged_with_symlink_to(str(host_dir)), RW)
        listed = driver.run(ops.Readdir(path="c"))
        read = driver.run(ops.Read(path="c/secret"))
        driver.run(ops.Write(path="c/planted", data=b"x", flags=("O_CREAT",), mode=0o644))
        view = driver.view()
    assert read != Ok(b"host secret\n")
    assert listed != Ok(("secret",))
    assert not any(v.data == b"host secret\n" for v in view.entries.values())
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]


def test_the_daemon_sees_only_its_confined_root() -> None:
    """What the daemon's root holds: system files read-only, /dev with fuse and null only,
    the sandbox's layers, a read-only proc of the daemons' PID namespace whose PID 1 (the
    holder) has an empty root; no /etc, /root, /home, /var, /sys, /run of the host."""
    require(FuseOverlayfsDriver, "fuse-overlayfs")
    with FuseOverlayfsDriver(timeout=30) as driver:
        driver.mount(StackSpec((LayerSpec((("f", DirSpec()),)),)), RW)
        pid = driver.daemon_pids()[0]
        root = f"/proc/{pid}/root"
        names = set(os.listdir(root))
        assert names.isdisjoint({"etc", "root", "home", "var", "sys", "run", "boot"})
        assert os.listdir(f"{root}/proc/1/root") == []
        # PID 1's descriptors are reachable through that proc: none is a host file (its
        # stdout and stderr were the executor's, e.g. pytest's capture file under /tmp)
        held = {os.readlink(f"{root}/proc/1/fd/{fd}") for fd in os.listdir(f"{root}/proc/1/fd")}
        assert {h for h in held if not h.startswith("pipe:")} <= {"/dev/null"}, held
        assert not os.path.exists(f"{root}/proc/{os.getpid()}")
        assert sorted(os.listdir(f"{root}/dev")) == ["fuse", "null"]
        assert os.listdir(f"{root}/tmp") == ["unionspec"]
        with open(f"/proc/{pid}/mountinfo") as f:
            mounts = [line.split() for line in f]
        by_point = {m[4]: m[5].split(",") for m in mounts}
        assert "ro" in by_point["/"] and "ro" in by_point["/usr"] and "ro" in by_point["/proc"]
        assert "nosuid" in by_point["/usr"] and "nodev" in by_point["/usr"]


def test_a_driver_under_the_hosts_tmp_starts_and_sees_its_files_read_only(
    tmp_path: Path,
) -> None:
    """The sandbox mounts its own /tmp; a driver a developer built under the host's /tmp
    is shown (its directory, read-only) at its own path in the confined root (item 7)."""
    require(FuseOverlayfsDriver, "fuse-overlayfs")
    from adapters.drivers.driver_profile import load_driver_profile
    from adapters.drivers.fuse import PROFILES, FuseDriver

    build = tmp_path / "build"
    build.mkdir()
    wrapper = build / "my-overlay"
    wrapper.write_text(
        '#!/bin/sh\necho "$0" > "$(dirname "$0")/written" 2>/dev/null\n'
        'exec fuse-overlayfs "$@"\n'
    )
    wrapper.chmod(0o755)
    template = (
        f"{wrapper} -o lowerdir={{lowerdir}},upperdir={{upperdir}},workdir={{workdir}}"
        "{options} {mountpoint}"
    )
    profile = load_driver_profile(PROFILES / "fuse-overlayfs.toml")
    with FuseDriver(template, profile, name="wrapped", timeout=30) as driver:
        driver.mount(StackSpec((LayerSpec((("f", DirSpec()),)),)), RW)
        assert driver.run(ops.Readdir(path="")) == Ok(("f",))
    assert sorted(p.name for p in build.iterdir()) == ["my-overlay"]


UNIONFS = "unionfs -o cow,hide_meta_files,use_ino {upperdir}=RW:{lowerdir} {mountpoint}"


def test_a_reproducer_cannot_read_or_write_the_host_through_a_lower_symlink(
    tmp_path: Path, host_dir: Path
) -> None:
    """The standalone reproducer runs itself (and so the daemon) in a confined root too."""
    require(UnionfsFuseDriver, "unionfs-fuse")
    from conformance.records import reproducer
    from tests.test_reproducer import _reference_failure, _run

    steps = [
        ops.Readdir(path="c"),
        ops.Read(path="c/secret"),
        ops.Write(path="c/planted", data=b"x", flags=("O_CREAT",), mode=0o644),
    ]
    failure = _reference_failure(_merged_with_symlink_to(str(host_dir)), steps, RW)
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script, "--fuse-cmd", UNIONFS)
    assert "step 3" in result.stdout, result.stdout + result.stderr
    assert "host secret" not in result.stdout
    assert "'secret'" not in result.stdout
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret"]


def test_a_reproducer_keeps_no_way_to_the_hosts_tmp(tmp_path: Path) -> None:
    """The reproducer reaches a driver under the host's /tmp through a descriptor of /tmp
    opened before its own tmpfs hides it; once its confined root is entered that
    descriptor is closed: the script is PID 1 of the PID namespace whose proc the daemon
    sees, so a lower symlink to ``/proc/1/fd/<n>/...`` must not lead to the host's /tmp."""
    require(UnionfsFuseDriver, "unionfs-fuse")
    from conformance.records import reproducer
    from tests.test_reproducer import _reference_failure, _run

    where = Path(tempfile.mkdtemp(prefix="unionspec-host-", dir="/tmp"))
    (where / "secret").write_bytes(b"host secret\n")
    relative = str(where)[len("/tmp/"):]
    fds = (3, 4)  # the first descriptors a script opens (3: the one it kept of /tmp)
    stack = StackSpec(
        (
            LayerSpec(tuple((f"c{fd}", DirSpec()) for fd in fds)),
            LayerSpec(
                tuple((f"c{fd}", SymlinkSpec(target=f"/proc/1/fd/{fd}/{relative}")) for fd in fds)
            ),
        )
    )
    steps: list[ops.Op] = [ops.Read(path=f"c{fd}/secret") for fd in fds]
    steps.append(ops.Write(path="c3/planted", data=b"x", flags=("O_CREAT",), mode=0o644))
    try:
        failure = _reference_failure(stack, steps, RW)
        script = reproducer.write(failure, tmp_path / "repro.py")
        result = _run(script, "--fuse-cmd", UNIONFS, "--timeout", "60")
        assert f"step {len(steps)}" in result.stdout, result.stdout + result.stderr
        assert "host secret" not in result.stdout, result.stdout
        assert sorted(p.name for p in where.iterdir()) == ["secret"]
    finally:
        shutil.rmtree(where)


def test_a_reproducer_runs_a_driver_under_the_hosts_tmp(tmp_path: Path) -> None:
    """The reproducer shows a driver built under the host's /tmp (hidden by its own tmpfs)
    at its own path, read-only, through the descriptor of /tmp it closes afterwards."""
    require(UnionfsFuseDriver, "unionfs-fuse")
    from conformance.records import reproducer
    from tests.test_reproducer import _reference_failure, _run

    build = tmp_path / "build"
    build.mkdir()
    wrapper = build / "my-unionfs"
    wrapper.write_text(
        '#!/bin/sh\necho x > "$(dirname "$0")/written" 2>/dev/null\nexec unionfs "$@"\n'
    )
    wrapper.chmod(0o755)
    stack = StackSpec((LayerSpec((("f", DirSpec()),)),))
    failure = _reference_failure(stack, [ops.Readdir(path="")], RW)
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script, "--fuse-cmd", UNIONFS.replace("unionfs ", f"{wrapper} ", 1))
    assert "mounted: " + str(wrapper) in result.stdout, result.stdout + result.stderr
    assert "step 1" in result.stdout, result.stdout + result.stderr
    assert sorted(p.name for p in build.iterdir()) == ["my-unionfs"]


def test_a_drivers_files_are_staged_once_per_executor(tmp_path: Path) -> None:
    """Every configure of the executor (each take_back, each hand_over) makes a mounter
    anew; the driver's own files are staged (bound under the roots' tmpfs) once, then
    reused: the executor's mounts do not grow with the number of examples."""
    require(FuseOverlayfsDriver, "fuse-overlayfs")
    from adapters.drivers.driver_profile import load_driver_profile
    from adapters.drivers.fuse import PROFILES, FuseDriver

    build = tmp_path / "build"
    build.mkdir()
    wrapper = build / "my-overlay"
    wrapper.write_text('#!/bin/sh\nexec fuse-overlayfs "$@"\n')
    wrapper.chmod(0o755)
    template = (
        f"{wrapper} -o lowerdir={{lowerdir}},upperdir={{upperdir}},workdir={{workdir}}"
        "{options} {mountpoint}"
    )
    profile = load_driver_profile(PROFILES / "fuse-overlayfs.toml")
    stack = StackSpec((LayerSpec((("f", DirSpec()),)),))

    def staged(driver: FuseDriver) -> list[str]:
        with open(f"/proc/{driver.executor_pid}/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [p for p in points if p.startswith("/tmp/unionspec-roots/driver")]

    with FuseDriver(template, profile, name="wrapped", timeout=30) as driver:
        driver.mount(stack, RW)
        first = staged(driver)
        for _ in range(3):
            driver.take_back()
            driver.mount(stack, RW)
            assert driver.run(ops.Readdir(path="")) == Ok(("f",))
        assert len(first) == 1 and staged(driver) == first
