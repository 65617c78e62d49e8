"""What the host looks like, for the tests that interrupt runs: its mount table, the
processes a run marked in their environment, and whether a driver can run here."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def mounts() -> list[str]:
    """The host's mount table, line by line (/proc/self/mountinfo)."""
    return Path("/proc/self/mountinfo").read_text().splitlines()


def processes_marked(marker: str) -> list[int]:
    """The PIDs whose environment holds ``marker`` (a run started with it, and every
    process it started), whatever else runs beside them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def end_run(child: subprocess.Popen[Any]) -> None:
    """Kill a run that is still there, and reap it (the ``finally`` of every interrupt test)."""
    if child.poll() is None:
        child.kill()
        child.wait()


def left_behind(marker: str, seconds: float = 10.0) -> list[int]:
    """The processes marked with ``marker`` still there after waiting up to ``seconds`` for
    them to go (a run's processes exit a moment after it does)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and processes_marked(marker):
        time.sleep(0.1)
    return processes_marked(marker)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def require(driver_class: Any, name: str) -> None:
    """Skip unless ``driver_class`` can run here; in CI (``$CI`` set) fail instead."""
    reason = driver_class.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} unavailable in CI: {reason}")
        pytest.skip(reason)
