"""The framing of the one channel between the host and a VM (a virtio-serial port).

Several executor sessions share the port, one after another or at once: every frame is
``(session, kind, length)`` (network order, ``!IBI``) and ``length`` bytes. Kinds:

* ``HELLO`` (guest to host, session 0): the guest is up; the payload is its ``uname -r``;
* ``OPEN`` (host to guest): start an executor for this session;
* ``DATA``: bytes of the session's executor connection, either way, relayed unchanged
  (the executor's own pickled request/reply protocol, :mod:`adapters.sandbox.executor`);
* ``CLOSE``: either way: the session is over (from the host: kill the executor's process
  group; from the guest: the executor exited, the payload is its exit status).
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!IBI")
HELLO, OPEN, DATA, CLOSE = 0, 1, 2, 3
#: The virtio-serial port's name (guest: /sys/class/virtio-ports/*/name).
PORT_NAME = "org.unionspec.0"
#: Largest DATA payload sent at once.
CHUNK = 1 << 16


def frame(session: int, kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(session, kind, len(payload)) + payload


class Reader:
    """Cuts a byte stream into frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            session, kind, length = HEADER.unpack_from(self.buffer)
            end = HEADER.size + length
            if len(self.buffer) < end:
                break
            frames.append((session, kind, bytes(self.buffer[HEADER.size : end])))
            del self.buffer[:end]
        return frames
