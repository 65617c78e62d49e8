"""An interrupted run leaves nothing behind: no mount on the host, no executor process.

A real pytest run of the conformance suite (kernel or fuse-overlayfs) is started in a
subprocess, interrupted with Ctrl-C (SIGINT), terminated (SIGTERM) or killed (SIGKILL) while
it works, and the host is checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from adapters.drivers.fuse import FuseOverlayfsDriver
from adapters.drivers.kernel import KernelDriver
from tests.host import cmdline, end_run, left_behind, mounts, processes_marked, require

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _needs_kernel_driver() -> None:
    require(KernelDriver, "kernel driver")


def _start(command: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``command`` in the project's directory, in a session of its own; its
    processes carry a unique marker in their environment, so they can be found (and only
    they) whatever runs beside them."""
    marker = uuid.uuid4().hex
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "UNIONSPEC_RUN_MARK": marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return f"UNIONSPEC_RUN_MARK={marker}", child


def _start_run(*options: str, driver: str = "kernel") -> tuple[str, subprocess.Popen[bytes]]:
    """Start a deep run on ``driver`` in a subprocess (marked, :func:`_start`)."""
    command = [sys.executable, "-m", "pytest", "-q", *options, f"--driver={driver}"]
    command += ["--budget=deep", "-k", "state_machine", "tests/test_conformance.py"]
    return _start(command)


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
#: The process that shows a run is at work: the executor (every driver has one), and for a
#: FUSE driver its daemon (started afresh for each example, under the executor).
RUNNING = {"kernel": "adapters.sandbox.executor", "fuse-overlayfs": "fuse-overlayfs"}


def _working(marker: str, program: str) -> bool:
    return any(program in cmdline(pid) for pid in processes_marked(marker))


@pytest.mark.parametrize("name", list(RUNNING))
@pytest.mark.parametrize("sig", SIGNALS, ids=["ctrl-c", "sigterm", "sigkill"])
def test_interrupted_run_leaves_no_mount_and_no_process(name: str, sig: signal.Signals) -> None:
    if name == "fuse-overlayfs":
        require(FuseOverlayfsDriver, name)
    before = mounts()
    marker, child = _start_run("-p", "no:xdist", driver=name)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _working(marker, RUNNING[name]):
            time.sleep(0.1)  # wait until the driver's processes are at work
        assert _working(marker, RUNNING[name]), f"the run never started {RUNNING[name]}"
        time.sleep(1.0)
        child.send_signal(sig)
        child.wait(timeout=60)
    finally:
        _end_and_check(child, marker, before)


def _end_and_check(
    child: subprocess.Popen[bytes], marker: str, before: list[str], seconds: float = 10.0
) -> None:
    """Kill the run if it is still there, then: none of its processes is left (waiting up
    to ``seconds`` for them to go) and the host's mount table is what it was before it
    started."""
    end_run(child)
    left = left_behind(marker, seconds)
    assert left == [], [cmdline(pid) for pid in left]
    assert mounts() == before


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def test_killed_xdist_worker_leaves_no_mount_and_no_process() -> None:
    before = mounts()
    marker, child = _start_run("-n", "2")
    try:
        deadline = time.monotonic() + 90
        executors: list[int] = []
        while time.monotonic() < deadline and not executors:
            executors = [
                pid for pid in processes_marked(marker)
                if "adapters.sandbox.executor" in cmdline(pid)
            ]
            time.sleep(0.2)
        assert executors, "the run never started an executor"
        worker = _parent(executors[0])
        assert worker != child.pid and worker in processes_marked(marker)
        os.kill(worker, signal.SIGKILL)  # an xdist worker dies under its executor
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and executors[0] in processes_marked(marker):
            time.sleep(0.1)
        assert executors[0] not in processes_marked(marker)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    finally:
        _end_and_check(child, marker, before)


def _certify(driver: str, workers: int, report: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``certify`` on every cell of ``driver`` with ``workers`` processes, marked."""
    return _start(
        [sys.executable, "-m", "conformance", "certify", "--driver", driver,
         "--budget", "standard", "--report-dir", str(report),
         "--corpus", str(report.parent / "c"), "-n", str(workers)]
    )


@pytest.mark.parametrize("name", list(RUNNING))
@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_sigkill_of_certify_leaves_no_worker_mount_or_daemon(
    tmp_path: Path, name: str, workers: int
) -> None:
    """SIGKILL (no handler runs) of certify while every worker has its executor (and, for
    fuse-overlayfs, a daemon) at work: the workers die with it (parent-death signal), and
    with them their executors, mounts and daemons."""
    if name == "fuse-overlayfs":
        require(FuseOverlayfsDriver, name)
    before = mounts()
    marker, child = _certify(name, workers, tmp_path / "report")
    try:
        deadline = time.monotonic() + 120
        busy: list[int] = []
        while time.monotonic() < deadline and len(busy) < workers:
            busy = [p for p in processes_marked(marker) if RUNNING[name] in cmdline(p)]
            time.sleep(0.2)
        assert len(busy) >= workers, f"{workers} workers never all ran {RUNNING[name]}"
        child.kill()
        child.wait(timeout=10)
    finally:
        _end_and_check(child, marker, before, seconds=20)
