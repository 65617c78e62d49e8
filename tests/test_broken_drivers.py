"""A driver that hangs or crashes mid-run gets a verdict naming the step, in bounded time,
and leaves no process behind (real drivers: the kernel executor and fuse-overlayfs)."""

from __future__ import annotations

import os
import signal
import time

import attrs
import pytest
from hypothesis import settings

from adapters.base import DriverUnavailable
from adapters.registry import make
from conformance.lockstep.machine import DriverBroke, run_machine
from reference import ops
from reference.options import Options

RUN = settings(
    max_examples=50, stateful_step_count=20, deadline=None, database=None, derandomize=True
)


def _driver(name: str):
    try:
        return make(name)
    except DriverUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"{name} unavailable in CI: {reason}")
        pytest.skip(str(reason))


class BreaksAfter:
    """Passes operations to ``driver``; before the first operation from number ``after`` on
    (counted over the whole run) that is not a remount, it runs ``sabotage``: a real signal
    to a real process (a remount would start a fresh daemon and hide a killed one). The
    settings are derandomized, so every run draws the same operations and a known
    divergence of the driver cannot come first by chance."""

    def __init__(self, driver, after: int, sabotage) -> None:
        self.driver, self.after, self.sabotage = driver, after, sabotage
        self.name, self.calls, self.done = driver.name, 0, False

    def run(self, op):
        self.calls += 1
        if self.calls >= self.after and not self.done and not isinstance(op, ops.Remount):
            self.done = True
            self.sabotage(self.driver)
        return self.driver.run(op)

    @property
    def capabilities(self):
        """The driver's, but not one round trip: that would bypass this run()."""
        return attrs.evolve(self.driver.capabilities, one_round_trip=False)

    def __getattr__(self, name):
        return getattr(self.driver, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _stop_executor(driver) -> None:
    os.kill(driver.executor_pid, signal.SIGSTOP)


def _kill_executor(driver) -> None:
    os.kill(driver.executor_pid, signal.SIGKILL)


def _stop_fuse_daemon(driver) -> None:
    for pid in driver.daemon_pids():
        os.kill(pid, signal.SIGSTOP)


def _kill_fuse_daemon(driver) -> None:
    for pid in driver.daemon_pids():
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("name", "sabotage", "verdict"),
    [
        ("kernel", _stop_executor, "hung"),
        ("kernel", _kill_executor, "crashed"),
        ("fuse-overlayfs", _stop_fuse_daemon, "hung"),
        ("fuse-overlayfs", _kill_fuse_daemon, "crashed"),
    ],
    ids=[
        "kernel-stopped",
        "kernel-killed",
        "fuse-overlayfs-daemon-stopped",
        "fuse-overlayfs-daemon-killed",
    ],
)
def test_a_broken_driver_gets_a_verdict_naming_the_step(name, sabotage, verdict) -> None:
    real = _driver(name)
    real.timeout = 2.0
    executor = real.executor_pid
    driver = BreaksAfter(real, after=7, sabotage=sabotage)
    started = time.monotonic()
    try:
        with pytest.raises(DriverBroke) as broke:
            run_machine(driver, Options(), RUN)
    finally:
        real.close()
    assert broke.value.verdict == verdict
    assert f"{verdict} at step " in str(broke.value)
    assert broke.value.step >= 1
    assert time.monotonic() - started < 60
    deadline = time.monotonic() + 10
    while _alive(executor) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(executor)
