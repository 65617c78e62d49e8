"""The driver process and its executor share one CPU (adapters/sandbox/affinity.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from adapters.sandbox import affinity as _affinity

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_setaffinity and at least 2 CPUs",
)


def test_xdist_workers_get_different_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = {0, 1}
    picked = set()
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        picked.add(_affinity.choose_cpu(allowed))
    assert picked == allowed


def test_pin_is_shared_and_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_affinity.ENV, "on")
    before = os.sched_getaffinity(0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _affinity.share_cpu(child.pid)
        mine = os.sched_getaffinity(0)
        assert len(mine) == 1
        assert os.sched_getaffinity(child.pid) == mine
        assert _affinity.share_cpu(child.pid)  # a second driver joins the same CPU
        _affinity.release()
        assert os.sched_getaffinity(0) == mine  # still held by the first
        _affinity.release()
        assert os.sched_getaffinity(0) == before
    finally:
        child.kill()
        child.wait()


def test_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_affinity.ENV, "off")
    assert not _affinity.share_cpu(os.getpid())
