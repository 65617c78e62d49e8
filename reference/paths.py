"""Path resolution inside the mount (path_resolution(7), as seen from a chroot of the mount).

Every path, and every symlink target met on the way, resolves inside the mount under test:
an absolute target starts again at the mount's root and ".." stops at the root, exactly as
for a process chrooted into the mount. This is also what keeps a real driver's generated
symlinks from reaching the host (the adapters execute inside such a chroot).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import attrs

from reference.errors import SpecError
from reference.layer import Kind
from reference.lookup import Found, Node

#: Linux follows at most 40 symlinks in one resolution (path_resolution(7)), then ELOOP.
MAX_SYMLINKS = 40


class FsError(SpecError):
    """An operation fails; ``names`` are the errnos the rules allow, Linux's choice first."""

    def __init__(self, *names: str) -> None:
        super().__init__(*names)
        self.names = names


@attrs.frozen
class Resolved:
    """Where a path leads: the directory holding the last name, the name, and what is there.

    ``parent`` is None when the path ends at a directory reached through "." or ".." or a
    symlink to "/": then ``node`` is that directory and there is no name to create.
    """

    parent: Node | None
    name: str
    found: Found

    @property
    def node(self) -> Node | None:
        return self.found.node


def resolve(
    root: Node,
    path: str,
    child: Callable[[Node, str], Found],
    *,
    follow: bool,
    search: Callable[[Node], None] | None = None,
) -> Resolved:
    """Resolve ``path`` from ``root``; ``follow`` says whether a final symlink is followed.

    Raises FsError(ENOENT) for a missing intermediate name, ENOTDIR for a non-directory
    used as one, ELOOP after MAX_SYMLINKS symlinks. ``search`` checks the caller may
    search a directory (EACCES): called on the directory each component (".", ".." and
    the last one included) is looked up in, as link_path_walk calls may_lookup (fs/namei.c).
    """
    stack: list[Node] = [root]
    parts = deque(path.split("/"))
    if path.startswith("/"):
        parts.popleft()
    links = 0
    while True:
        while parts and parts[0] == "":
            parts.popleft()
        if not parts:
            return Resolved(None, "", Found(stack[-1]))
        name = parts.popleft()
        while parts and parts[0] == "":
            parts.popleft()
        last = not parts
        current = stack[-1]
        if search is not None:
            search(current)
        if name == ".":
            continue
        if name == "..":
            if len(stack) > 1:
                stack.pop()
            continue
        found = child(current, name)
        node = found.node
        if node is not None and node.kind is Kind.SYMLINK and (follow or not last):
            links += 1
            if links > MAX_SYMLINKS:
                raise FsError("ELOOP")
            target = node.top.target
            parts.extendleft(reversed(target.split("/")))
            if target.startswith("/"):
                del stack[1:]
            continue
        if last:
            return Resolved(current, name, found)
        if node is None:
            raise FsError("ENOENT")
        if not node.is_dir:
            raise FsError("ENOTDIR")
        stack.append(node)
