"""A qemu VM booted on a given kernel, serving executor sessions (:mod:`adapters.vm.guest`).

One VM per kernel per run (:func:`shared`), reused by every driver made on that kernel:
each driver opens a session, i.e. an executor in the VM, and gets the host end of a local
socketpair that a relay thread joins to the VM's virtio-serial port
(:mod:`adapters.vm.channel`). The host's root is shared read-only over 9p; the VM writes
nothing on the host (its log goes to a private temporary directory, removed on close).

qemu is the only process started here: in a session of its own, with SIGKILL asked for
when this process dies (``PR_SET_PDEATHSIG``), killed by its PID on close and at exit.
KVM is used when ``/dev/kvm`` can run the kernel (a probe boot), else software emulation
(TCG), whose requests get :data:`TCG_SCALE` times the timeouts.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from adapters.base import AdapterError
from adapters.cache import cache_root
from adapters.sandbox.namespace import PROJECT_ROOT, die_with_parent
from adapters.vm import channel
from adapters.vm.image import KernelImage, initramfs

QEMU = "qemu-system-x86_64"
#: How long a boot may take until the agent says hello (seconds, TCG).
BOOT_TIMEOUT = 120.0
#: Timeouts under software emulation are this many times longer.
TCG_SCALE = 8.0
MEMORY_MB = 1024
#: The layers' disk in the VM (a sparse memory file: only what the guest writes is held).
SCRATCH_MB = 512
#: The host's root, read-only; its devices' inode numbers remapped (without it, /proc
#: and /sys, both inode 1, are one directory to the guest's 9p cache: seen).
FSDEV = "security_model=passthrough,readonly=on,multidevs=remap"
#: A send that blocks this long (seconds, times the VM's scale) is given up: on the
#: channel, the guest stopped reading it (every session's frames share it, so the VM is
#: ended); to a session's driver, the driver stopped reading (that session is ended).
SEND_TIMEOUT = 60.0


#: The VM's files, each an anonymous memory file (module doc).
FILES = ("initrd", "scratch.img", "console.log", "qemu.err")


class VMError(AdapterError, RuntimeError):
    """The VM could not be started or died (one line)."""


def limit_sends(sock: socket.socket, seconds: float) -> None:
    """A blocking send on ``sock`` gives up after ``seconds`` (``SO_SNDTIMEO``: the
    socket's receives stay blocking, as the relay and pump threads want them)."""
    whole = int(seconds)
    limit = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)


def logs_dir() -> Path:
    """Where the console of the last VM on each kernel is kept (``<release>.log``)."""
    return cache_root() / "vm-logs"


def kvm_usable() -> bool:
    """Whether /dev/kvm can be opened (whether it runs a kernel is seen at boot)."""
    if os.environ.get("UNIONSPEC_VM_ACCEL") == "tcg":
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


class Session:
    """One executor in the VM, as the driver sees its process (the Popen calls it uses)."""

    def __init__(self, vm: VM, number: int, local: socket.socket) -> None:
        self.vm, self.number, self.local = vm, number, local
        #: No process of ours: the VM's qemu is the process (for messages only).
        self.pid = vm.pid
        self.returncode: int | None = None
        self.ended = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"session {self.number}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def kill_group(self) -> None:
        """End the session: the agent kills the executor's process group."""
        self.vm.end_session(self, tell=True, status=-signal.SIGKILL)


class VM:
    def __init__(self, image: KernelImage, accel: str | None = None) -> None:
        if shutil.which(QEMU) is None:
            raise VMError(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
        self.image = image
        self.accel = accel or ("kvm" if kvm_usable() else "tcg")
        self.scale = 1.0 if self.accel == "kvm" else TCG_SCALE
        #: Each of :data:`FILES`: a memfd of this process's (closed on close).
        self.files: dict[str, int] = {}
        self.sessions: dict[int, Session] = {}
        self.next_session = 1
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.release = ""
        #: The kernel features the guest observed at boot (adapters.vm.probes).
        self.features: dict[str, bool] = {}
        started = time.monotonic()
        try:
            self._boot()
        except BaseException:
            self.close()
            raise
        #: Seconds from starting qemu to the agent's hello.
        self.boot_seconds = time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    def _make_files(self) -> None:
        """The VM's files (:data:`FILES`), in memory: the initramfs written, the disk sized
        (sparse), the console and qemu's errors empty."""
        for name in FILES:
            self.files[name] = os.memfd_create(f"unionspec-vm-{name}", os.MFD_CLOEXEC)
        with open(self.files["initrd"], "wb", closefd=False) as initrd:
            initrd.write(initramfs(self.image, sys.executable, PROJECT_ROOT))
        os.ftruncate(self.files["scratch.img"], SCRATCH_MB << 20)

    def path(self, name: str) -> str:
        """How qemu (given the descriptor, same number) opens one of :data:`FILES`."""
        return f"/proc/self/fd/{self.files[name]}"

    def read(self, name: str) -> bytes:
        """What one of :data:`FILES` holds now (b"" once closed)."""
        fd = self.files.get(name)
        if fd is None:
            return b""
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def _command(self, fd: int) -> list[str]:
        cpu = os.environ.get("UNIONSPEC_VM_CPU") or ("host" if self.accel == "kvm" else "max")
        return [
            QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-accel", self.accel, "-cpu", cpu, "-m", str(MEMORY_MB), "-smp", "1",
            "-kernel", str(self.image.vmlinuz), "-initrd", self.path("initrd"),
            "-append", "console=ttyS0 panic=-1 rdinit=/init loglevel=4",
            "-serial", f"file:{self.path('console.log')}",
            "-fsdev", f"local,id=hostroot,path=/,{FSDEV}",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-drive", f"file={self.path('scratch.img')},format=raw,if=virtio,cache=unsafe",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=unionspec,fd={fd}",
            "-device", f"virtserialport,chardev=unionspec,name={channel.PORT_NAME}",
        ]  # fmt: skip

    def _boot(self) -> None:
        ours, theirs = socket.socketpair()
        self.sock = ours
        self._make_files()
        try:
            self.proc = subprocess.Popen(
                self._command(theirs.fileno()),
                pass_fds=(theirs.fileno(), *(self.files[name] for name in FILES[:3])),
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.files["qemu.err"],
            )
        finally:
            theirs.close()
        _RUNNING[id(self)] = self
        self.reader = channel.Reader()
        deadline = time.monotonic() + BOOT_TIMEOUT
        ours.settimeout(1.0)
        while not self.release:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise VMError(
                    f"the VM on {self.image.release} did not come up: {self.last_words()}"
                )
            try:
                data = ours.recv(channel.CHUNK)
            except TimeoutError:
                continue
            if not data:
                raise VMError(
                    f"the VM on {self.image.release} closed its port: {self.last_words()}"
                )
            for session, kind, payload in self.reader.feed(data):
                if kind == channel.HELLO and session == 0:
                    self.release, _, observed = payload.decode().partition("\n")
                    self.features = json.loads(observed) if observed else {}
        ours.settimeout(None)
        self._limit_sends()
        self.relay = threading.Thread(target=self._relay, name="unionspec-vm-relay", daemon=True)
        self.relay.start()

    def last_words(self) -> str:
        """The VM's last console and qemu lines (why it did not come up)."""
        lines: list[str] = []
        for name in ("qemu.err", "console.log"):
            with contextlib.suppress(OSError):
                lines += self.read(name).decode(errors="replace").strip().splitlines()[-3:]
        return " | ".join(line.strip() for line in lines if line.strip()) or "(no output)"

    def _limit_sends(self) -> None:
        """The channel's sends give up after :data:`SEND_TIMEOUT` (see :meth:`_send`)."""
        limit_sends(self.sock, SEND_TIMEOUT * self.scale)

    def _send(self, data: bytes) -> None:
        """One frame to the guest, whole (the sessions' frames share the channel, so under
        the lock). A guest that stops reading is not waited for forever (the lock held, it
        would block every session, open_session and end_session): after
        :data:`SEND_TIMEOUT` the frame may be cut, the channel cannot be trusted again, so
        the VM is ended (its sessions end, the next driver boots another) and the OSError
        raised."""
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self._kill()
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)  # the relay ends every session
                raise

    def _kill(self) -> None:
        """SIGKILL qemu (by its PID, the only process started here) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def open_session(self) -> tuple[socket.socket, Session]:
        """A new executor in the VM: the driver's end of its connection, and its handle."""
        if self.proc is None or self.proc.poll() is not None:
            raise VMError(f"the VM on {self.release} is not running")
        ours, local = socket.socketpair()
        limit_sends(local, SEND_TIMEOUT * self.scale)  # a driver that stops reading: _relay
        with self.lock:
            number = self.next_session
            self.next_session += 1
            session = Session(self, number, local)
            self.sessions[number] = session
        self._send(channel.frame(number, channel.OPEN))
        threading.Thread(
            target=self._pump, args=(session,), name=f"unionspec-vm-{number}", daemon=True
        ).start()
        return ours, session

    def _pump(self, session: Session) -> None:
        """Driver to VM: the session's bytes, until the driver closes its end."""
        while True:
            try:
                data = session.local.recv(channel.CHUNK)
            except OSError:
                data = b""
            if not data:
                self.end_session(session, tell=True, status=0)
                return
            try:
                self._send(channel.frame(session.number, channel.DATA, data))
            except OSError:
                self.end_session(session, tell=False, status=-1)
                return

    def _relay(self) -> None:
        """VM to drivers: every frame, until the VM is gone."""
        while True:
            try:
                data = self.sock.recv(channel.CHUNK)
            except OSError:
                data = b""
            if not data:
                for session in list(self.sessions.values()):
                    self.end_session(session, tell=False, status=-1)
                return
            for number, kind, payload in self.reader.feed(data):
                session = self.sessions.get(number)
                if session is None:
                    continue
                if kind == channel.DATA:
                    try:
                        session.local.sendall(payload)
                    except OSError:
                        # its driver stopped reading (or is gone): that session ends (its
                        # bytes cannot be dropped), the others' frames go on
                        self.end_session(session, tell=True, status=-1)
                elif kind == channel.CLOSE:
                    self.end_session(session, tell=False, status=int(payload or b"-1"))

    def end_session(self, session: Session, tell: bool, status: int) -> None:
        with self.lock:
            if self.sessions.pop(session.number, None) is None:
                return
        if tell:
            with contextlib.suppress(OSError):
                self._send(channel.frame(session.number, channel.CLOSE))
        session.returncode = status
        with contextlib.suppress(OSError):
            session.local.shutdown(socket.SHUT_RDWR)
        session.local.close()
        session.ended.set()

    def close(self) -> None:
        """Kill qemu (by its PID, only it), reap it, keep its console, free its files."""
        _RUNNING.pop(id(self), None)
        self._kill()
        with contextlib.suppress(OSError):
            self.sock.close()
        if not self.files:  # closed already
            return
        with contextlib.suppress(OSError):  # the console of the last VM on this kernel
            logs = logs_dir()
            logs.mkdir(parents=True, exist_ok=True)
            (logs / f"{self.image.release}.log").write_bytes(self.read("console.log"))
        for name in list(self.files):
            os.close(self.files.pop(name))


_RUNNING: dict[int, VM] = {}
#: KVM failed to boot a kernel in this run: TCG from then on.
_KVM_FAILED = False
_SHARED: dict[Path, VM] = {}
_SHARED_LOCK = threading.Lock()


def shared(image: KernelImage) -> VM:
    """The run's VM on ``image`` (booted on first use, booted again if it died)."""
    with _SHARED_LOCK:
        vm = _SHARED.get(image.vmlinuz)
        if vm is None or vm.proc is None or vm.proc.poll() is not None:
            if vm is not None:
                vm.close()
            vm = _SHARED[image.vmlinuz] = _boot(image)
        return vm


def _boot(image: KernelImage) -> VM:
    """A VM on KVM if /dev/kvm opens and runs it, else on TCG. Here KVM cannot run stock
    kernels: qemu exits at once ("failed to set MSR 0x10a", -cpu host); then TCG, for the
    rest of the run."""
    global _KVM_FAILED
    if not _KVM_FAILED and kvm_usable():
        try:
            return VM(image, accel="kvm")
        except VMError:
            _KVM_FAILED = True
    return VM(image, accel="tcg")


def running(image: KernelImage) -> VM | None:
    """The run's VM on ``image`` if it has been booted."""
    return _SHARED.get(image.vmlinuz)


def close_all() -> None:
    """End every VM of this process (registered with atexit: a run's VMs live until it
    ends)."""
    for vm in list(_RUNNING.values()):
        vm.close()
    _SHARED.clear()


atexit.register(close_all)
