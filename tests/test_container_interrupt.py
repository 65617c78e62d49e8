"""An interrupted container run leaves nothing behind: no mount on the host, no executor
(and so no container mount, tmpfs, volume or host directory: they live only in the
executor's private namespace and tmpfs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from adapters.kernel_mounts import KernelMountsEngine

ROOT = Path(__file__).resolve().parent.parent
EXECUTOR = "adapters._container_executor"


def _mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def _marked(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_container_run_leaves_nothing(sig: signal.Signals) -> None:
    reason = KernelMountsEngine.unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"kernel-mounts unavailable in CI: {reason}")
        pytest.skip(reason)
    before = _mounts()
    marker = uuid.uuid4().hex
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "--engine=kernel-mounts"]
    command += ["--budget=deep", "-k", "machine", "tests/test_container_engines.py"]
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "UNIONSPEC_RUN_MARK": marker},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            EXECUTOR in _cmdline(pid) for pid in _marked(marker)
        ):
            time.sleep(0.1)
        assert any(EXECUTOR in _cmdline(pid) for pid in _marked(marker)), "never started"
        time.sleep(1.5)
        child.send_signal(sig)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _marked(marker):
            time.sleep(0.1)
    assert _marked(marker) == []
    assert _mounts() == before
