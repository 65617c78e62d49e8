"""A Ctrl-C or SIGTERM that lands in a gc callback still stops a pytest run
(conformance.certify.interrupt): Python drops an exception raised in a callback, and
Hypothesis runs one at every collection, so the first Ctrl-C could go unnoticed
(tests/test_container_interrupt.py, on a loaded machine)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A process whose first gc callback waits while the signal arrives, then collects for up
#: to 10 s: "interrupted" (exit 130) when the KeyboardInterrupt reached it, else "ran on".
PROGRAM = """
import gc, os, signal, sys, threading, time
from conformance.certify.interrupt import terminate_as_interrupt
if sys.argv[2] == "handled":
    terminate_as_interrupt()
entered, first = threading.Event(), [True]
def callback(phase, info):
    if phase == "start" and first[0]:
        first[0] = False
        entered.set()
        time.sleep(1.0)  # the signal lands here
gc.callbacks.insert(0, callback)
def send():
    entered.wait()
    time.sleep(0.2)
    os.kill(os.getpid(), int(sys.argv[1]))
threading.Thread(target=send, daemon=True).start()
try:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
print("ran on")
"""


def _run(sig: signal.Signals, how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, str(int(sig)), how],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stop_signal_in_a_gc_callback_is_raised_out_of_it(sig: signal.Signals) -> None:
    result = _run(sig, "handled")
    assert (result.returncode, result.stdout) == (130, "interrupted\n"), result.stderr
    assert "Exception ignored" not in result.stderr


def test_without_it_python_drops_the_ctrl_c() -> None:
    """The premise: Python's own handler raises in the callback, and the run goes on."""
    result = _run(signal.SIGINT, "default")
    assert (result.returncode, result.stdout) == (0, "ran on\n"), result.stderr
    assert "Exception ignored" in result.stderr and "KeyboardInterrupt" in result.stderr
