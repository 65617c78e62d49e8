"""The VM's agent: ``python -m adapters.vm.guest`` (run by the VM's init, in the chroot of
the host's root shared read-only).

It serves the virtio-serial port (:mod:`adapters.vm.channel`): for each ``OPEN`` it starts
an executor (:mod:`adapters.sandbox.executor`, the same code as on the host) in a private mount
namespace, its /tmp a directory of its own on the VM's ext2 disk, on one end of a
socketpair, and relays the session's bytes both ways; a ``CLOSE`` from the host kills that
executor's process group (by its PID), an executor that exits is reported with ``CLOSE``.
When the port closes (the host is gone) the VM powers off.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from adapters.sandbox.executor import SCRATCH_DIR
from adapters.sandbox.namespace import _private_namespace
from adapters.vm import channel, probes

#: Set by the VM's init: the mounted disk that holds each session's layers.
SCRATCH = "UNIONSPEC_SCRATCH"
#: An executor that does not read what its session sends for this long (seconds) is
#: ended: blocked on it, the agent would stop reading the port, and with it every session
#: (shorter than the host's channel timeout, adapters.vm.machine.SEND_TIMEOUT, so the
#: host sees that one session end, not the VM).
SEND_TIMEOUT = 30.0


def find_port(name: str = channel.PORT_NAME) -> str:
    for entry in Path("/sys/class/virtio-ports").iterdir():
        if (entry / "name").read_text().strip() == name:
            return f"/dev/{entry.name}"
    raise RuntimeError(f"no virtio-serial port named {name}")


class Agent:
    def __init__(self, port: str) -> None:
        self.port = os.open(port, os.O_RDWR)
        self.reader = channel.Reader()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.port, selectors.EVENT_READ, None)
        self.sessions: dict[int, tuple[socket.socket, subprocess.Popen[bytes]]] = {}

    def send(self, session: int, kind: int, payload: bytes = b"") -> None:
        data = channel.frame(session, kind, payload)
        while data:
            data = data[os.write(self.port, data) :]

    def open(self, session: int) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        if SCRATCH in os.environ:
            scratch = os.path.join(os.environ[SCRATCH], str(session))
            os.mkdir(scratch, 0o755)
            env[SCRATCH_DIR] = scratch
        proc = subprocess.Popen(
            [sys.executable, "-m", "adapters.sandbox.executor", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            preexec_fn=_private_namespace(os.getpid()),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        ours.settimeout(SEND_TIMEOUT)  # (read only when the selector says it is readable)
        self.sessions[session] = (ours, proc)
        self.selector.register(ours, selectors.EVENT_READ, session)

    def close(self, session: int, tell: bool) -> None:
        ours, proc = self.sessions.pop(session)
        self.selector.unregister(ours)
        ours.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if SCRATCH in os.environ:
            shutil.rmtree(os.path.join(os.environ[SCRATCH], str(session)), ignore_errors=True)
        if tell:
            self.send(session, channel.CLOSE, str(proc.returncode).encode())

    def relay(self, session: int, payload: bytes) -> None:
        """The host's bytes to the session's executor; one that stopped reading them is
        ended (SEND_TIMEOUT) and the host told, the other sessions go on."""
        try:
            self.sessions[session][0].sendall(payload)
        except OSError:
            self.close(session, tell=True)

    def serve(self) -> None:
        """Hello (the release, then the kernel features observed, adapters.vm.probes, as
        JSON on the next line), then the sessions until the port closes."""
        observed = probes.observe(os.environ.get(SCRATCH, "/tmp"))
        hello = f"{os.uname().release}\n{json.dumps(observed, sort_keys=True)}"
        self.send(0, channel.HELLO, hello.encode())
        while True:
            for key, _events in self.selector.select():
                if key.data is None:
                    data = os.read(self.port, channel.CHUNK)
                    if not data:
                        return
                    for session, kind, payload in self.reader.feed(data):
                        if kind == channel.OPEN:
                            self.open(session)
                        elif kind == channel.DATA and session in self.sessions:
                            self.relay(session, payload)
                        elif kind == channel.CLOSE and session in self.sessions:
                            self.close(session, tell=False)
                    continue
                session = key.data
                try:
                    data = key.fileobj.recv(channel.CHUNK)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if data:
                    self.send(session, channel.DATA, data)
                else:
                    self.close(session, tell=True)


def main() -> int:
    agent = Agent(find_port())
    try:
        agent.serve()
    finally:
        for session in list(agent.sessions):
            agent.close(session, tell=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
