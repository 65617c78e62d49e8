"""SIGTERM ends a run the way Ctrl-C does, and neither is lost in a gc callback.

Python's default for SIGTERM is to die at once: no ``finally`` runs, so drivers are not
closed, reports are not rewritten and pytest prints no summary. Turned into
KeyboardInterrupt, a SIGTERM (what ``timeout``, CI runners and ``kill`` send) unwinds like
Ctrl-C: every driver is closed (unmounted, its processes ended by PID) and what was
computed is kept. The sandboxes do not depend on it: an executor dies with its parent
(PR_SET_PDEATHSIG) even after SIGKILL.

A KeyboardInterrupt raised inside a gc callback is lost: Python reports it as "Exception
ignored in" and goes on (an exception cannot leave a callback; cpython issue 95959), and
Hypothesis installs one that runs at every collection (junkdrawer.gc_cumulative_time). A
Ctrl-C that landed there left a pytest run going as if nothing had been pressed
(tests/test_container_interrupt.py, on a loaded machine, where collections take longer).
So a stop signal that lands in a gc callback is raised :data:`RERAISE_AFTER` seconds
later, out of it (SIGALRM), as certify does for its own signals
(conformance.certify.command).
"""

from __future__ import annotations

import gc
import signal
import threading
from types import FrameType

#: How soon a stop signal that landed in a gc callback is raised again, out of it.
RERAISE_AFTER = 0.05

#: The stop that landed in a gc callback, to be raised out of it (None: none).
_pending: KeyboardInterrupt | None = None


def in_gc_callback(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs (inside) one of ``gc.callbacks``."""
    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT or SIGTERM: a KeyboardInterrupt, raised now or, in a gc callback, out of it
    soon after (SIGALRM: the one put off, if any)."""
    global _pending
    if signum != signal.SIGALRM:
        name = signal.Signals(signum).name
        _pending = KeyboardInterrupt() if signum == signal.SIGINT else KeyboardInterrupt(
            f"signal {name}"
        )
    if _pending is None:
        return
    if in_gc_callback(frame):
        signal.setitimer(signal.ITIMER_REAL, RERAISE_AFTER)
        return
    stop, _pending = _pending, None
    raise stop


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (only there can Python
    handle signals; elsewhere this does nothing), and SIGINT and SIGTERM raise it out of
    gc callbacks (SIGINT and SIGALRM only while they have Python's default handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    if signal.getsignal(signal.SIGALRM) == signal.SIG_DFL:
        signal.signal(signal.SIGALRM, _interrupt)
