"""Changes to the upper directory since it was last decoded, noticed without reading it: inotify(7).

After every step the executor decodes the upper layer
(:func:`adapters.sandbox.layerdisk.read_layer`) and sends it unless it equals the one it
sent last. Most steps leave the upper as it was
(an operation that only looks, one that fails, one on a name already copied up that
changes nothing on disk), and decoding it is a third of an observation. So, as the lowers
are watched (:mod:`adapters.sandbox.lowerwatch`), every entry of the upper is watched
after each time it is decoded; a step with no event reuses what was decoded last.

Every change the decoding can see is reported, whoever makes it (overlayfs changes its
upper through the VFS: ``ovl_do_*`` in fs/overlayfs/overlayfs.h call ``vfs_*``, which
notify; a FUSE daemon through system calls): data (IN_MODIFY, IN_CLOSE_WRITE), mode, owner,
xattrs (markers included) and link counts (IN_ATTRIB), names (IN_CREATE, IN_DELETE,
IN_MOVED_*: a copy-up renames its new object in from the work directory), the watched
entry going (IN_DELETE_SELF, IN_MOVE_SELF). Reading sends no event of the mask.

The rules (:meth:`UpperWatch.quiet`):

* the first observation of a mount decodes, and so does any observation after an event,
  a queue overflow, or a watch that could not be added (until the next decoding has added
  them all);
* a write through a shared mmap(2) is not reported: every
  :data:`adapters.sandbox.lowerwatch.FULL_EVERY`-th observation decodes anyway.

Whiteouts in the form of ``.wh.<name>`` files (a FUSE driver's) are decoded from their
names alone, so they are watched through their directory only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from adapters.sandbox.lowerwatch import IN_DONT_FOLLOW, MASK, InotifyWatch, _libc


class UpperWatch(InotifyWatch):
    """Watches the upper directory of one mount at a time."""

    def start(self) -> None:
        """A new mount (or none): nothing is trusted until the first decoding."""
        self.trusted, self.observations = False, 0

    def before_decoding(self) -> None:
        """The upper is decoded now: what was reported before is in what it reads."""
        self.trusted = False
        if self.fd is not None:
            self._drain()

    def decoded(self, directory: str, paths: Iterable[str], whiteouts: Iterable[str]) -> None:
        """Watch ``directory`` and each of ``paths`` below it (what the decoding just
        read): trusted when every watch was added. ``whiteouts`` are watched where they
        are files of their own name (a whiteout file ``.wh.<name>`` is not)."""
        if self.fd is None:
            return
        complete = self._add(directory)
        for path in paths:
            complete = self._add(f"{directory}/{path}") and complete
        for path in whiteouts:
            self._add(f"{directory}/{path}")
        self.trusted = complete

    def _add(self, path: str) -> bool:
        assert self.fd is not None
        return _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK | IN_DONT_FOLLOW) >= 0
