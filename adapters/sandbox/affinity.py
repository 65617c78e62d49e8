"""One CPU for a driver process and its executor: a request costs a switch, not an IPI.

Every step of a sandboxed driver is a request to the executor and a reply. When the two
processes sit on different CPUs, each message wakes a CPU that went idle, and a socketpair
round trip across CPUs costs several times one with both ends on one CPU (figures:
docs/performance.md).
The work strictly alternates (the driver process waits for every reply), so pinning
serializes nothing that ran in parallel.

:func:`share_cpu` pins this process and the executor (and so the FUSE daemon it forks) to
one CPU of this process's allowed set: under pytest-xdist the worker's number picks it
(``gw0`` the first CPU, ``gw1`` the second, ...) so parallel workers do not share one;
otherwise the CPU this process runs on now. :func:`release` gives this process its
original CPU set back once no driver needs it. ``UNIONSPEC_PIN_CPU=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import os

ENV = "UNIONSPEC_PIN_CPU"

#: This process's CPU set before the first pin, and how many drivers hold the pin.
_original: set[int] | None = None
_holders = 0


def enabled() -> bool:
    return os.environ.get(ENV, "on").lower() not in ("off", "0", "no", "false")


def _current_cpu() -> int | None:
    """The CPU this process last ran on (field 39 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat") as f:
            text = f.read()
        return int(text.rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def choose_cpu(allowed: set[int]) -> int:
    """The CPU to share: by xdist worker number, else the current one, else the first."""
    cpus = sorted(allowed)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return cpus[int(worker[2:]) % len(cpus)]
    current = _current_cpu()
    return current if current in allowed else cpus[0]


def share_cpu(executor_pid: int) -> bool:
    """Pin this process and ``executor_pid`` to one CPU; False when not done (turned off,
    one CPU only, or not permitted). Each True must be matched by :func:`release`."""
    global _original, _holders
    if not enabled() or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        mine = os.sched_getaffinity(0)
        if _holders == 0 and len(mine) < 2:
            return False
        cpu = choose_cpu(mine) if _holders == 0 else next(iter(mine))
        os.sched_setaffinity(executor_pid, {cpu})
        if _holders == 0:
            os.sched_setaffinity(0, {cpu})
            _original = set(mine)
    except OSError:
        return False
    _holders += 1
    return True


def release() -> None:
    """One driver no longer needs the pin; the last one gives the CPU set back."""
    global _original, _holders
    _holders = max(0, _holders - 1)
    if _holders == 0 and _original is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, _original)
        _original = None
