"""The FUSE mounter of the executor: run a FUSE driver's command inside the sandbox.

Runs only inside the executor (:mod:`adapters.sandbox.executor`), which is already in a private
mount namespace with a private tmpfs over ``/tmp``.

Processes. Before the first command the executor unshares a PID namespace for its children
and forks a *holder*, PID 1 of that namespace, that only reaps orphans and waits for the
executor: it exits when the executor's end of a pipe closes (or by ``PR_SET_PDEATHSIG``),
and when PID 1 of a PID namespace exits the kernel kills every process in it. So a FUSE
daemon, daemonized or not, cannot outlive the executor, even when pytest is SIGKILLed.
The daemon's PIDs (every process of that namespace but the holder) and its stderr are kept
in ``/tmp/unionspec-fuse/`` (the executor's private tmpfs).

Mounting. The command starts in its own session (process group), stdin from /dev/null,
stdout and stderr to the stderr file. It may stay in the foreground or daemonize; either
way the mounter polls ``/proc/self/mountinfo`` until a ``fuse*`` mount sits on the
mountpoint, for at most ``mount_wait`` seconds, and fails with stderr's last line if the
command exits first or never mounts. Stderr noise is never a failure.

Unmounting: ``fusermount3 -u`` (or ``fusermount -u``) unless the daemon is stopped; then,
if it is still mounted, abort the connection (``/sys/fs/fuse/connections/N/abort``, N is
the minor number of this mount only) and ``umount -l``; then SIGKILL, by PID, whatever
process of the namespace is still alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import time

import attrs

from adapters.sandbox import confine as _confine
from adapters.sandbox.confine import CLONE_NEWPID, MNT_DETACH, PR_SET_PDEATHSIG, libc
from adapters.sandbox.layerdisk import USER, DiskFormat
from adapters.sandbox.mounting import BASE, MNT, UPPER, WORK
from reference.options import Options

STATE = "/tmp/unionspec-fuse"
STDERR_FILE = f"{STATE}/stderr"
PID_FILE = f"{STATE}/pids"
#: An O_PATH descriptor of the host's /tmp (set by the executor's setup before its tmpfs
#: hides it), to show a driver's own files under it (driver_files).
HOST_TMP: int | None = None
#: Where confined roots are built (:mod:`adapters.sandbox.confine`), a private tmpfs.
ROOTS = "/tmp/unionspec-roots"
#: How long fusermount may take, and how long a daemon may take to exit after unmount.
UNMOUNT_WAIT = 5.0
EXIT_WAIT = 3.0
#: How long the holder may take to confine itself.
HOLDER_WAIT = 10.0

#: (holder pid, write end of its pipe, pid namespace link) once started; one per executor
#: (a process can unshare its children's PID namespace only once).
_holder: tuple[int, int, str] | None = None
#: A driver's file shown in confined roots -> where it is staged under ROOTS (once).
_staged: dict[str, str] = {}
#: Why the holder could not start (then no FUSE driver can run in this executor).
_holder_error: str | None = None
#: Whether this executor has made its /tmp shared and mounted ROOTS (once).
_confining = False


def _prepare_confinement() -> None:
    """Once per executor: the tmpfs confined roots are built on, and /tmp (the executor's
    private tmpfs) shared, so a daemon's FUSE mount in its confined namespace propagates
    to the executor (:mod:`adapters.sandbox.confine`)."""
    global _confining
    if not _confining:
        _confine.roots_mount(ROOTS)
        _confine.share("/tmp")
        _confining = True


def _close_all_but(keep: tuple[int, ...]) -> None:
    """Close every descriptor from 3 on but ``keep``."""
    start = 3
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)


def _hold(read_end: int, report: int) -> None:
    """The holder's life: PID 1 of the namespace; confine itself, say so on ``report``
    ("ok" or the error), then reap orphans until the executor is gone."""
    try:
        _close_all_but((read_end, report))
        # PID 1's descriptors are the daemons' /proc/1/fd: none may be a host file (the
        # executor's stdout and stderr are the caller's, a terminal or a file under /tmp)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0)
        # PID 1's /proc/1/root is what the daemons' proc shows: an empty root, not the host's
        _confine.enter(ROOTS, system=False)
        os.write(report, b"ok")
        os.close(report)
        while True:
            ready, _, _ = select.select([read_end], [], [], 0.2)
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            if ready and not os.read(read_end, 1):
                break
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(report, f"{type(exc).__name__}: {exc}".encode(errors="replace")[:500])
    finally:
        os._exit(0)


def holder() -> tuple[int, str]:
    """Start the holder (once); return its PID and its PID namespace link. Raise when it
    could not confine itself (and again at every later call: this process's next child
    would be a second PID 1 of a namespace whose first is gone, fork fails ENOMEM)."""
    global _holder, _holder_error
    if _holder_error is not None:
        raise RuntimeError(_holder_error)
    if _holder is None:
        _prepare_confinement()
        read_end, write_end = os.pipe()
        if libc.unshare(CLONE_NEWPID) != 0:
            err = ctypes.get_errno()
            os.close(read_end)
            os.close(write_end)
            raise OSError(err, f"unshare(CLONE_NEWPID): {os.strerror(err)}")
        report_read, report = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_end)
            os.close(report_read)
            _hold(read_end, report)
        os.close(read_end)
        os.close(report)
        said = _read_report(report_read)
        if said != "ok":
            os.close(write_end)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _holder_error = f"the FUSE holder could not confine itself: {said}"
            raise RuntimeError(_holder_error)
        _holder = (pid, write_end, os.readlink(f"/proc/{pid}/ns/pid"))
    return _holder[0], _holder[2]


def _read_report(fd: int) -> str:
    """What the holder says on its report pipe (until it closes it), at most HOLDER_WAIT."""
    said = b""
    deadline = time.monotonic() + HOLDER_WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 512) if ready else b""
            if not chunk:
                break
            said += chunk
    finally:
        os.close(fd)
    text = said.decode(errors="replace")
    return text or f"no answer within {HOLDER_WAIT} s"


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def fuse_mount_line() -> list[str] | None:
    """The mountinfo fields of the topmost fuse mount on the mountpoint (None: none)."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == MNT:
                sep = fields.index("-")
                found = fields if fields[sep + 1].startswith("fuse") else None
    return found


def _mounted_anything() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4:5] == [MNT] for line in f)


def last_stderr_line() -> str:
    try:
        with open(STDERR_FILE, "rb") as f:
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return "(no stderr)"
    lines = [ln for ln in lines if ln]
    return repr(lines[-1][:300]) if lines else "(stderr is empty)"


def driver_files(programs: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """(source, path) of a driver's own files, shown read-only at their host paths in its
    confined root (:func:`adapters.sandbox.confine.driver_paths`, ``programs`` resolved on the
    host). Each is staged (bound) under ROOTS in the executor's namespace, once per
    executor (a mounter is made at every configure); a path under the host's /tmp, hidden
    by the executor's tmpfs, is reached through :data:`HOST_TMP`."""
    shown: list[tuple[str, str]] = []
    for path in _confine.driver_paths(programs):
        if path not in _staged:
            where = f"{ROOTS}/driver{len(_staged)}"
            _confine.stage(_confine.host_source(path, HOST_TMP), where)
            _staged[path] = where
        shown.append((_staged[path], path))
    return shown


def render_options(options: Options) -> str:
    """``{options}``: each overlay option under test with a leading comma."""
    onoff = {True: "on", False: "off"}
    text = f",redirect_dir={onoff[options.redirect_dir]},index={onoff[options.index]}"
    if options.metacopy:
        text += ",metacopy=on"
    return text


class FuseMount:
    """The executor's mounter for a FUSE driver (see the module docstring)."""

    kind = "fuse"

    def __init__(
        self,
        name: str,
        argv: list[str],
        ro_argv: list[str] | None,
        env: dict[str, str],
        mount_wait: float,
        disk_format: DiskFormat,
        programs: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.name = name
        self.argv = argv
        self.ro_argv = ro_argv
        self.env = {**os.environ, **env}
        self.mount_wait = mount_wait
        self.disk_format = self.base_format = disk_format
        self.command: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        if not os.path.exists("/dev/fuse"):
            raise RuntimeError("/dev/fuse does not exist in the executor's namespace")
        self.holder_pid, self.pid_ns = holder()
        #: The driver's own files, shown read-only in its confined root (driver_files).
        self.visible = driver_files(programs)
        os.makedirs(STATE, exist_ok=True)

    # --- processes ------------------------------------------------------------------------

    def daemon_pids(self) -> list[int]:
        """Every live process of our PID namespace but the holder (the driver's processes)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.holder_pid:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != self.pid_ns:
                    continue
            except OSError:
                continue
            if _state(int(entry)) not in (None, "Z", "X"):
                pids.append(int(entry))
        return sorted(pids)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None

    def _kill_all(self) -> None:
        """SIGKILL (by PID) every process of our namespace still alive; wait until gone."""
        deadline = time.monotonic() + EXIT_WAIT
        while True:
            self._reap()
            pids = self.daemon_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes {pids} of {self.name} survive SIGKILL")
            time.sleep(0.02)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None

    # --- the mounter interface ------------------------------------------------------------

    def start(self, lowers: list[str], options: Options) -> None:
        # the userxattr axis: layers in the form the kernel writes with userxattr (markers
        # in user.overlay.*, what rootless podman hands over between the two)
        prefix = USER if options.userxattr else self.base_format.prefix
        self.disk_format = attrs.evolve(self.base_format, prefix=prefix)
        tokens = self.ro_argv if options.read_only else self.argv
        if tokens is None:
            raise RuntimeError(
                f"{self.name}: the template has no read-only form (give ro_template)"
            )
        values = {
            "lowerdir": ":".join(lowers),
            "upperdir": UPPER,
            "workdir": WORK,
            "mountpoint": MNT,
            "options": render_options(options),
        }
        self.command = [token.format_map(values) for token in tokens]
        self._launch()

    def restart(self) -> None:
        self._launch()

    def _confined(self) -> None:
        """The daemon's preexec_fn: its own mount namespace, pivoted into a root holding
        only the system directories (read-only), /dev/fuse, /dev/null, a read-only proc of
        the daemons' PID namespace and the layers (:mod:`adapters.sandbox.confine`)."""
        try:
            _confine.enter(ROOTS, writable=(BASE,), visible=self.visible, proc=True)
        except OSError as exc:  # stderr is the driver's: the mount failure will show it
            os.write(2, f"unionspec: cannot confine the driver: {exc}\n".encode())
            raise

    def _launch(self) -> None:
        if self.daemon_pids():
            self._kill_all()
        with open(STDERR_FILE, "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    env=self.env,
                    start_new_session=True,
                    close_fds=True,
                    preexec_fn=self._confined,
                )
            except OSError as exc:
                raise RuntimeError(f"cannot start {self.command[0]}: {exc}") from None
            except subprocess.SubprocessError:  # the confinement failed (said on stderr)
                raise RuntimeError(
                    f"cannot start {self.command[0]}: {last_stderr_line()}"
                ) from None
        with open(PID_FILE, "w") as f:
            f.write(f"{self.proc.pid}\n")
        deadline = time.monotonic() + self.mount_wait
        while True:
            if fuse_mount_line() is not None:
                # A daemonizing command's first process exits right after the mount; a
                # second live process was seen for a moment even after it had been reaped
                # (fuse-overlayfs 1.10, the test of a crashed daemon: 1 run in 3), so wait
                # for one to remain. A driver that keeps several processes costs this
                # second per mount.
                settle = time.monotonic() + 1.0
                while len(self.daemon_pids()) > 1 and time.monotonic() < settle:
                    time.sleep(0.005)
                self._reap()
                with open(PID_FILE, "w") as f:
                    f.write("".join(f"{pid}\n" for pid in self.daemon_pids()))
                return
            status = self.proc.poll() if self.proc is not None else 0
            if status is not None and (status != 0 or not self.daemon_pids()):
                self._cleanup()
                raise RuntimeError(
                    f"{self.name} exited with status {status} without mounting "
                    f"({' '.join(self.command)}); last stderr line: {last_stderr_line()}"
                )
            if time.monotonic() > deadline:
                self._cleanup()
                raise RuntimeError(
                    f"{self.name} did not mount within {self.mount_wait}s "
                    f"({' '.join(self.command)}); last stderr line: {last_stderr_line()}"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        """Unmount (politely, then by force) and end every process of the driver."""
        line = fuse_mount_line()
        pids = self.daemon_pids()
        stopped = any(_state(pid) in ("T", "t") for pid in pids)
        if line is not None and pids and not stopped:
            tool = shutil.which("fusermount3") or shutil.which("fusermount")
            if tool is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(
                        [tool, "-u", MNT],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=UNMOUNT_WAIT,
                        check=False,
                    )
        line = fuse_mount_line()
        if line is not None:
            minor = line[2].split(":")[1]
            with (
                contextlib.suppress(OSError),
                open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f,
            ):
                f.write("1")
        while _mounted_anything():
            if libc.umount2(MNT.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"umount -l {MNT}: {os.strerror(err)}")
        deadline = time.monotonic() + EXIT_WAIT
        while self.daemon_pids() and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        self._kill_all()

    def crashed(self, what: str, errname: str = "ENOTCONN") -> str | None:
        """ENOTCONN or ECONNABORTED from the mount: its connection is gone. Say how."""
        status = self.proc.poll() if self.proc is not None else None
        alive = self.daemon_pids()
        if alive:
            state = f"process {alive} is alive but its connection is gone"
        elif status is not None:
            state = f"its process is gone (exit status {status})"
        else:
            state = "its process is gone"
        return (
            f"{self.name} crashed during {what}: the mount answers {errname}, {state}; "
            f"last stderr line: {last_stderr_line()}"
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._cleanup()
        self._kill_all()
