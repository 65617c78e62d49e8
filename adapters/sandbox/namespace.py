"""The driver side shared by every sandboxed driver (kernel overlayfs, FUSE drivers).

The driver process never mounts anything. It starts one executor subprocess
(:mod:`adapters.sandbox.executor`) in a private mount namespace: the child unshares CLONE_NEWNS,
makes every mount private and asks for SIGKILL when its parent dies, all before it runs a
line of Python. Every mount the executor makes (a tmpfs over its own ``/tmp``, the layers,
the overlay or FUSE mount) is therefore invisible to the host and disappears with the
executor, even if the test process is SIGKILLed.

Requests travel as pickles over a socketpair; each waits at most ``timeout`` seconds, after
which the executor is killed (by its PID, only it) and :class:`DriverHung` is raised.

How the executor mounts is pluggable: a subclass overrides :meth:`SandboxedDriver._configure`
to send a ``("configure", kind, settings)`` request right after start-up (the kernel driver
sends none and gets ``mount(2)`` of overlayfs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from adapters.base import Capabilities, DriverFailure, DriverHung, DriverUnavailable
from adapters.sandbox import affinity as _affinity
from adapters.sandbox.confine import CLONE_NEWNS, MS_PRIVATE, MS_REC, PR_SET_PDEATHSIG, libc
from adapters.settings import Configurable
from reference.layer import Inode, StackSpec
from reference.ops import Op
from reference.options import Options
from reference.outcome import Outcome
from reference.view import LayerImage, View

#: How long the executor may take to start (a Python interpreter under load), whatever the
#: per-request timeout is.
START_TIMEOUT = 60.0
#: How long close() waits for the executor to unmount and exit before killing it.
CLOSE_GRACE = 5.0
#: How long to wait for a killed executor to be reaped before giving up on it.
REAP_WAIT = 10.0
#: The directory that holds the ``adapters`` package (the executor's working directory).
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])

_ROOT = b"/"


def _private_namespace(parent: int) -> Any:
    """The executor's preexec_fn (runs in the child between fork and exec: async-signal
    safe calls only, all ctypes functions resolved beforehand)."""

    def preexec() -> None:
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(None, _ROOT, None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        die_with_parent(parent)

    return preexec


def die_with_parent(parent: int) -> None:
    """Ask for SIGKILL when the parent dies (``PR_SET_PDEATHSIG``, prctl(2)); exit at once
    when ``parent`` is already gone (the signal would never come). For a process started
    without a preexec_fn, e.g. a multiprocessing worker: its first call; or a preexec_fn
    itself (``functools.partial(die_with_parent, os.getpid())``)."""
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        os._exit(1)


def _shutdown(
    proc: subprocess.Popen[bytes], conn: Connection, grace: float, pinned: bool = False
) -> None:
    """Ask the executor to unmount and exit; kill its process group if it does not; give
    back the CPU pin (:mod:`adapters.sandbox.affinity`). Idempotent."""
    try:
        if proc.poll() is None:
            answered = False
            with contextlib.suppress(OSError, EOFError, ValueError):
                conn.send(("close",))
                if conn.poll(grace):
                    conn.recv()
                    answered = True
            if answered:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
        kill_executor(proc)
    finally:
        conn.close()
        if pinned:
            _affinity.release()


def kill_executor(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the executor's process group, then reap the executor (bounded wait).

    The group is the session the executor leads (``start_new_session``): the executor and
    the processes it forked without a session of their own, i.e. the FUSE *holder*, PID 1
    of the daemons' PID namespace. Only processes this driver started, addressed by the
    executor's PID while it is unreaped, so the group cannot be anyone else's. Killing the
    executor alone is not enough: blocked in a FUSE request that a stopped daemon has
    already read, it sleeps uninterruptibly with SIGKILL pending (observed: D state in
    ``request_wait_answer``) until the daemon dies, and the daemon dies only when the
    holder does (the kernel then kills its whole PID namespace, closing /dev/fuse).
    """
    kill_group = getattr(proc, "kill_group", None)
    if kill_group is not None:  # an executor in a VM (adapters.vm.machine.Session)
        kill_group()
    elif proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    # Still alive after the whole group got SIGKILL means stuck in the kernel: leave it to
    # its pending SIGKILL rather than hang the run.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(REAP_WAIT)


class SandboxedDriver(Configurable):
    """A driver whose executor runs in a private mount namespace (see the module doc)."""

    name = "sandboxed"
    capabilities = Capabilities(mounts=True, one_round_trip=True)
    #: The module run as the executor (``python -m <module> <fd>``).
    executor_module = "adapters.sandbox.executor"

    def __init__(self, timeout: float = 30.0) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise DriverUnavailable(reason)
        self.timeout = timeout
        #: The options of the current mount (None before the first mount).
        self.options: Options | None = None
        ours, theirs = socket.socketpair()
        try:
            self._proc, ours = self._spawn(ours, theirs)
        except (OSError, subprocess.SubprocessError) as exc:
            ours.close()
            raise DriverUnavailable(
                f"cannot start the executor in a private mount namespace: {exc}"
            ) from exc
        finally:
            theirs.close()
        # A SIGSTOPped executor must not block a large send forever either: on the socket
        # _spawn returned (a VM's session gives one of its own, adapters.vm.driver).
        seconds = int(timeout)
        ours.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("ll", seconds, int((timeout - seconds) * 1e6)),
        )
        self._conn = Connection(ours.detach())
        #: PID of the executor process (the only process this driver starts).
        self.executor_pid: int = self._proc.pid
        #: This process and the executor share one CPU (adapters.sandbox.affinity).
        self.pinned = isinstance(self._proc, subprocess.Popen) and _affinity.share_cpu(
            self._proc.pid
        )
        self._finalize = weakref.finalize(
            self, _shutdown, self._proc, self._conn, CLOSE_GRACE, self.pinned
        )
        self._broken: str | None = None
        #: The view and images observed by the last request, until the next one (view()).
        self._observed_view: View | None = None
        self._observed_images: tuple[LayerImage | None, tuple[LayerImage, ...]] | None = None
        #: The lowers the executor's observations of this mount refer to (see _keep).
        self._kept_lowers: tuple[LayerImage, ...] | None = None
        #: The last view and upper the executor sent (its UNCHANGED refers to them).
        self._last_view: View | None = None
        self._last_upper: LayerImage | None = None
        try:
            self._call("start", wait_for_reply_only=True, timeout=max(timeout, START_TIMEOUT))
        except DriverFailure as exc:
            self.close()
            raise DriverUnavailable(f"the {self.name} executor did not start: {exc}") from None
        try:
            self._configure()
        except DriverFailure as exc:
            self.close()
            raise DriverUnavailable(
                f"the {self.name} executor refused its settings: {exc}"
            ) from None

    def _spawn(
        self, ours: socket.socket, theirs: socket.socket
    ) -> tuple[subprocess.Popen[bytes], socket.socket]:
        """Start the executor on ``theirs``; the process and the socket to talk to it
        (``ours``). A driver whose executor runs elsewhere (adapters.vm.driver) gives a
        handle with the same poll/wait/pid and a ``kill_group()``."""
        proc = subprocess.Popen(
            [sys.executable, "-m", self.executor_module, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            preexec_fn=_private_namespace(os.getpid()),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
        )
        return proc, ours

    # --- availability ---------------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why the driver cannot run here, or None when it can (subclasses add checks)."""
        if not sys.platform.startswith("linux"):
            return f"a sandboxed driver needs Linux (this is {sys.platform})"
        return None

    def _configure(self) -> None:
        """Tell the executor how to mount (called once after start-up; default: kernel)."""
        kind, settings = self.mounter_settings()
        if kind != "kernel":
            self._call("configure", kind, settings)

    def mounter_settings(self) -> tuple[str, dict[str, Any]]:
        """How the executor mounts for this driver: ``("kernel", {})`` or a FUSE mounter's
        settings (also sent to another driver's executor by :meth:`hand_over`)."""
        return "kernel", {}

    # --- layer interchange ------------------------------------------------------------------

    def mount_with_upper(self, stack: StackSpec, options: Options, upper: Inode) -> None:
        """Mount ``stack`` over the upper layer ``upper`` (a reference tree, written in the
        kernel's form); read-only, the upper is the top lower."""
        self.options = None
        self._call("mount", stack, options, upper, timeout=self._mount_timeout())
        self.options = options

    def hand_over(self, reader: SandboxedDriver, options: Options) -> None:
        """Unmount, then mount the same layers (a fresh work directory) the way ``reader``
        does, with ``options`` (read-only: the upper becomes the top lower). Until
        :meth:`take_back`, :meth:`view` shows the reader's mount."""
        kind, settings = reader.mounter_settings()
        self._call("switch", kind, settings, options, timeout=reader._mount_timeout())
        self.options = options

    def take_back(self) -> None:
        """Unmount whatever is mounted and mount again this driver's way from now on."""
        self._call("unmount", timeout=self._mount_timeout())
        self._call("configure", *self.mounter_settings())
        self.options = None

    def _mount_timeout(self) -> float:
        """How long a mount request may take (default: the per-request timeout)."""
        return self.timeout

    # --- the Driver protocol --------------------------------------------------------------

    def mount(self, stack: StackSpec, options: Options) -> None:
        self.options = None
        self._call("mount", stack, options, timeout=self._mount_timeout())
        self.options = options

    def run(self, op: Op) -> Outcome:
        return self._call("run", op)

    def run_and_observe(self, op: Op) -> Outcome:
        """:meth:`run`, and the view and the layer images read in the same round trip right
        after it, kept for a view() and images() that follow with no request in between
        (the state machine asks for both after every step: one round trip, not three)."""
        outcome, observed = self._call("step", op)
        self._keep(observed)
        return outcome

    def view(self) -> View:
        """The merged view; the layer images are read in the same round trip, right after
        it, and kept for an images() that follows with no request in between."""
        if self._observed_view is not None:
            view, self._observed_view = self._observed_view, None
            return view
        observed = self._call("observe")
        self._keep(observed)
        view, self._observed_view = self._observed_view, None
        assert view is not None
        return view

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        observed, self._observed_images = self._observed_images, None
        self._observed_view = None
        if observed is not None:
            return observed
        return self._call("images")

    def _keep(self, observed: tuple[View, LayerImage | None, Any, bool]) -> None:
        """Keep an observation. Its lowers are None when the executor found them byte for
        byte (digest) the ones it sent to be kept in this mount: those, then; its view and
        upper are the executor's UNCHANGED when equal to the last ones it sent: those."""
        view, upper, lowers, kept = observed
        if isinstance(view, str):  # UNCHANGED
            if self._last_view is None:
                raise DriverFailure(f"{self.name} executor: no view kept to reuse")
            view = self._last_view
        self._last_view = view
        if isinstance(upper, str):  # UNCHANGED
            upper = self._last_upper
        self._last_upper = upper
        if kept:
            self._kept_lowers = lowers
        elif lowers is None:
            if self._kept_lowers is None:
                raise DriverFailure(f"{self.name} executor: no lowers kept to compare with")
            lowers = self._kept_lowers
        self._observed_view, self._observed_images = view, (upper, lowers)

    def close(self) -> None:
        """Unmount everything and end the executor (by its PID). Safe to call again."""
        self._broken = self._broken or "the driver is closed"
        self._finalize()

    def __enter__(self) -> SandboxedDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the channel ----------------------------------------------------------------------

    def _describe(self, request: tuple[Any, ...]) -> str:
        if request[0] in ("run", "step"):
            return repr(request[1])
        return request[0]

    def _call(
        self, *request: Any, wait_for_reply_only: bool = False, timeout: float | None = None
    ) -> Any:
        self._observed_view = self._observed_images = None
        if request[0] in ("mount", "switch", "unmount"):
            # the executor starts over too
            self._kept_lowers = self._last_view = self._last_upper = None
        timeout = self.timeout if timeout is None else timeout
        if self._broken is not None:
            what = self._describe(request)
            raise DriverFailure(f"{self.name} driver: cannot {what}: {self._broken}")
        try:
            if not wait_for_reply_only:
                self._conn.send(request)
            if not self._conn.poll(timeout):
                # (described only when reported: no repr of every step's request)
                what = self._describe(request)
                self._die(f"no answer to {what} within {timeout}s")
                raise DriverHung(f"no answer to {what} within {timeout}s")
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            what = self._describe(request)
            if isinstance(exc, BlockingIOError | TimeoutError):
                self._die(f"could not send {what} within {timeout}s")
                raise DriverHung(f"could not send {what} within {timeout}s") from None
            code = self._die(f"the executor died during {what}")
            raise DriverFailure(
                f"{self.name} executor (pid {self.executor_pid}) died during {what} "
                f"(exit status {code})"
            ) from None
        if status != "ok":
            raise DriverFailure(f"{self.name} executor: {self._describe(request)}: {value}")
        return value

    def _die(self, why: str) -> int | None:
        """Kill the executor's process group (:func:`kill_executor`), reap it and mark the
        driver broken."""
        self._broken = why
        kill_executor(self._proc)
        self._finalize()
        return self._proc.returncode
