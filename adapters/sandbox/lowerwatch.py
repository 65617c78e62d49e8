"""Changes to the lower directories, noticed without reading them: inotify(7).

After every step the executor proves the lowers untouched: a digest of every name, byte,
owner, mode and xattr (:func:`adapters.sandbox.layerdisk.layer_digest`), the largest part of an
observation. With an inotify watch on every entry of every lower (directories, files,
symlinks, FIFOs, whiteouts), a change made through any system call is reported: data
(IN_MODIFY), metadata, xattrs and link counts (IN_ATTRIB), names (IN_CREATE, IN_DELETE,
IN_MOVED_*), the watched entry itself going (IN_DELETE_SELF, IN_MOVE_SELF). Reads are not
in the mask, so the overlay reading its lowers reports nothing.

So a step with no event needs no digest. The rules (:meth:`LowerWatch.quiet`):

* the first observation of a mount digests and decodes (the baseline the reference checks);
* any event, a queue overflow, or a watch that could not be added: digest every step from
  then on in this mount (the lowers may differ from the baseline now);
* a write through a shared mmap(2) is not reported (inotify(7), "Limitations and
  caveats"): every :data:`FULL_EVERY`-th observation digests anyway, so such a write is
  found within that many steps.
"""

from __future__ import annotations

import ctypes
import os

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_DONT_FOLLOW = 0x02000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
#: Everything that changes an entry or a directory's names; not reads, opens or closes
#: after reading.
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
#: A full digest every this many observations of a mount, whatever inotify says.
FULL_EVERY = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class InotifyWatch:
    """One inotify instance for the executor's life (instances are a scarce per-user
    resource, watches are not): an observation may reuse the last reading while the watch
    is trusted and reported nothing, except every :data:`FULL_EVERY`-th one."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        #: None: inotify is not available; every observation reads everything.
        self.fd: int | None = fd if fd >= 0 else None
        #: Everything read last time is watched and nothing was reported since.
        self.trusted = False
        self.observations = 0

    def quiet(self) -> bool:
        """Whether this observation may reuse the last reading: the watch is trusted,
        nothing was reported since, and this is not a :data:`FULL_EVERY`-th one."""
        self.observations += 1
        if not self.trusted or self.fd is None:
            return False
        if self._drain():
            self.trusted = False
            return False
        return self.observations % FULL_EVERY != 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _drain(self) -> bool:
        assert self.fd is not None
        return drain(self.fd)


class LowerWatch(InotifyWatch):
    """Watches the lower directories of one mount at a time."""

    def __init__(self) -> None:
        super().__init__()
        self._complete = False

    def watch(self, directories: list[str]) -> None:
        """Watch every entry under ``directories`` (the lowers of a new mount, written and
        not yet mounted), dropping whatever earlier mounts' watches reported."""
        self.trusted, self.observations = False, 0
        if self.fd is None:
            return
        self._drain()
        complete = True
        for top in directories:
            for root, dirs, files in os.walk(top):
                # os.walk lists a symlink to a directory among dirs, and does not enter it
                links = [name for name in dirs if os.path.islink(os.path.join(root, name))]
                for name in ("", *files, *links):
                    path = os.path.join(root, name) if name else root
                    added = _libc.inotify_add_watch(
                        self.fd, os.fsencode(path), MASK | IN_DONT_FOLLOW
                    )
                    complete = complete and added >= 0
        self._complete = complete

    def baseline(self) -> None:
        """The lowers are being digested as the baseline: trust the watch from here on
        (events before now are of the mount's making or already in the baseline)."""
        if self.fd is not None:
            self._drain()
            self.trusted = self._complete



def drain(fd: int) -> bool:
    """Read every pending event of the inotify descriptor ``fd``; whether there was any."""
    seen = False
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return seen
        seen = seen or bool(chunk)
        if not chunk:
            return seen
