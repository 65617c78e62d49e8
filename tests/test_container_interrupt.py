"""An interrupted container run leaves nothing behind: no mount on the host, no executor
(and so no container mount, tmpfs, volume or host directory: they live only in the
executor's private namespace and tmpfs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from adapters.engines.kernel_mounts import KernelMountsEngine
from adapters.engines.real import DockerEngine, PodmanEngine
from tests.host import cmdline, end_run, left_behind, mounts, processes_marked, require

ROOT = Path(__file__).resolve().parent.parent
EXECUTOR = "adapters.sandbox.container_executor"








ENGINES = {
    "kernel-mounts": (KernelMountsEngine, "adapters.sandbox.container_executor"),
    "docker": (DockerEngine, "dockerd"),
    # podman has no daemon: its mount-namespace holder (a marked busybox sleep)
    "podman": (PodmanEngine, "sleep 1000000"),
}


def _namespaces(pids: list[int]) -> set[str]:
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            found.add(os.readlink(f"/proc/{pid}/ns/pid"))
    return found


def _in_namespaces(namespaces: set[str]) -> list[int]:
    """Every process in one of ``namespaces`` (containers' processes carry no marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") in namespaces:
                    found.append(int(entry.name))
    return found


@pytest.mark.parametrize("engine_name", list(ENGINES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_container_run_leaves_nothing(engine_name: str, sig: signal.Signals) -> None:
    engine = engine_name
    engine_class, working = ENGINES[engine]
    require(engine_class, engine)
    before = mounts()
    marker = uuid.uuid4().hex
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", f"--engine={engine}"]
    command += ["--budget=deep", "-k", "machine", "tests/test_container_engines.py"]
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "UNIONSPEC_RUN_MARK": marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    namespaces: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            working in cmdline(pid) for pid in processes_marked(marker)
        ):
            time.sleep(0.1)
        assert any(working in cmdline(pid) for pid in processes_marked(marker)), "never started"
        time.sleep(3.0)  # containers at work
        engine_pids = [p for p in processes_marked(marker) if EXECUTOR not in cmdline(p)]
        namespaces = _namespaces(engine_pids) - {os.readlink("/proc/self/ns/pid")}
        child.send_signal(sig)
        child.wait(timeout=60)
    finally:
        end_run(child)
        left_behind(marker)  # waits for them to go
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _in_namespaces(namespaces):
            time.sleep(0.1)
    assert processes_marked(marker) == []
    assert _in_namespaces(namespaces) == []
    assert mounts() == before
