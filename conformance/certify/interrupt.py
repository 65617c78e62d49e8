"""SIGTERM ends a run the way Ctrl-C does.

Python's default for SIGTERM is to die at once: no ``finally`` runs, so drivers are not
closed, reports are not rewritten and pytest prints no summary. Turned into
KeyboardInterrupt, a SIGTERM (what ``timeout``, CI runners and ``kill`` send) unwinds like
Ctrl-C: every driver is closed (unmounted, its processes ended by PID) and what was
computed is kept. The sandboxes do not depend on it: an executor dies with its parent
(PR_SET_PDEATHSIG) even after SIGKILL.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def terminate_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (only there can Python
    handle signals; elsewhere this does nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
