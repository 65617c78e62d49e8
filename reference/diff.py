"""What ``docker diff`` / ``podman diff`` report for a container: A/C/D per path.

Both compare the container's writable layer with its image, by two different algorithms
(:class:`DiffRule`, a field of the engine profile). Inputs: the image's merged view, the
container root (an :class:`reference.overlay.Overlay`: its merged view and its upper tree,
the writable layer) and which upper objects have a *fresh* mtime (not the image's): the
model has no times, so :class:`reference.container.ContainerWorld` keeps that one bit per
upper object (:func:`fresh`). Paths are relative, without a leading slash.

Observed with docker.io 20.10.24 and podman 4.3.1 on this machine (by hand, inside the
suite's sandbox): docker printed nothing for ``chmod 644 /f`` of a 0644 file (a copy-up
with no visible change), podman printed ``C /f``; after ``echo hi > /e/new; rm /e/new``
docker printed nothing, podman ``C /e``; after ``rm -rf /a/d; mkdir /a/d; echo q >
/a/d/q`` docker printed ``C /a/d, D /a/d/y, A /a/d/q``, podman ``D /a/d, A /a/d/q``.
"""

from __future__ import annotations

import enum

from reference.layer import Inode, Kind, entry_at, walk
from reference.view import EntryView, View

#: tmpfs's directory size: two entries' worth, then 20 bytes per entry (mm/shmem.c
#: BOGO_DIRENT_SIZE). Both engines keep their layers on the suite's tmpfs here.
BOGO_DIRENT_SIZE = 20


class DiffRule(enum.Enum):
    """How an engine finds a container's changes."""

    #: moby pkg/archive/changes.go ChangesDirs (overlay2's "naive diff": used when the
    #: kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR, daemon/graphdriver/overlay2
    #: useNaiveDiff): the image's and the container's merged trees compared by lstat:
    #: mode (type included), uid, gid, rdev, and for non-directories mtime and size
    #: (statDifferent, changes_unix.go); a directory with a change below it is C (unless
    #: already A or C); a removed directory is one D (its children are not listed); the
    #: children of an added directory are A. Content and user xattrs are not compared.
    NAIVE = "naive"
    #: containers/storage pkg/archive/changes.go OverlayChanges: a walk of the upper
    #: directory. A whiteout (char 0/0) or an opaque directory is D; an object the image
    #: shows is C, except a directory with the same size, mode and mtime as the image's
    #: (then not listed, its children still are); anything else A; every ancestor of an A
    #: or D that is not listed itself is C (observed: ``rm /a/d/y`` listed ``C /a`` with
    #: ``/a`` unchanged). Every copied-up file is C, changed or not.
    NATIVE = "native"


def fresh(upper: Inode, touched: set[int]) -> bool:
    """An upper object's mtime is not the image's: made in the container (a copy-up keeps
    the lower's times: ovl_copy_up set_attr; it has an origin), or changed since."""
    return upper.origin is None or upper.ident in touched


def diff(
    rule: DiffRule,
    image: View,
    merged: View,
    upper: Inode,
    lowers: list[Inode],
    touched: set[int],
) -> dict[str, str]:
    """The changes ``rule`` reports: path -> "A", "C" or "D"."""
    if rule is DiffRule.NAIVE:
        return _naive(image.entries, merged.entries, upper, touched)
    return _native(image.entries, upper, lowers, touched)


def _children(entries: dict[str, EntryView]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"": []}
    for path, entry in entries.items():
        if entry.kind == "unreachable":
            continue
        parent = path.rpartition("/")[0]
        found.setdefault(parent, []).append(path)
    return found


def _size(entry: EntryView) -> int:
    return len(entry.target.encode()) if entry.kind == "symlink" else len(entry.data)


def _naive(
    old: dict[str, EntryView], new: dict[str, EntryView], upper: Inode, touched: set[int]
) -> dict[str, str]:
    old_children, new_children = _children(old), _children(new)
    changes: dict[str, str] = {}

    def is_fresh(path: str) -> bool:
        inode = entry_at(upper, path)
        return inode is not None and fresh(inode, touched)

    def different(was: EntryView, now: EntryView, path: str) -> bool:
        if (was.kind, was.mode, was.uid, was.gid) != (now.kind, now.mode, now.uid, now.gid):
            return True
        return was.kind != "dir" and (is_fresh(path) or _size(was) != _size(now))

    def add_changes(path: str, was_dir: bool) -> None:
        """addChanges of the directory ``path`` (``was_dir``: the image has one there)."""
        before = len(changes)
        olds = set(old_children.get(path, ())) if was_dir else set()
        added = path in changes
        for child in sorted(new_children.get(path, ())):
            previous = old.get(child) if child in olds else None
            olds.discard(child)
            now = new[child]
            if previous is None:
                changes[child] = "A"
            elif different(previous, now, child):
                changes[child] = "C"
            if now.kind == "dir":
                add_changes(child, previous is not None and previous.kind == "dir")
        for child in olds:
            changes[child] = "D"
        if len(changes) > before and not added and path:
            changes[path] = "C"

    add_changes("", True)
    return changes


def _native(
    image: dict[str, EntryView], upper: Inode, lowers: list[Inode], touched: set[int]
) -> dict[str, str]:
    changes: dict[str, str] = {}
    listed_dirs: set[str] = set()
    for path, inode in walk(upper):
        kind = _native_kind(path, inode, image, lowers, touched)
        if kind is None:
            continue
        changes[path] = kind
        if inode.is_dir:
            listed_dirs.add(path)
        parent = path.rpartition("/")[0]
        while kind in "AD" and parent:
            if parent not in listed_dirs:
                changes[parent] = "C"
                listed_dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return changes


def _native_kind(
    path: str, inode: Inode, image: dict[str, EntryView], lowers: list[Inode], touched: set[int]
) -> str | None:
    if inode.kind is Kind.WHITEOUT:
        return "D"
    was = image.get(path)
    if was is None or was.kind == "unreachable":
        # an opaque directory the image has no name for is new (observed with podman
        # 4.3.1: a directory made in the container, renamed into an image directory -
        # the kernel makes it opaque, ovl_rename - was listed A)
        return "A"
    if inode.is_dir and inode.opaque:
        return "D"
    if was.kind == "dir" and inode.is_dir:
        lower = _topmost(lowers, path)
        same = (
            lower is not None
            and _dir_size(lower) == _dir_size(inode)
            and was.mode == inode.mode
            and not fresh(inode, touched)
        )
        if same:
            return None
    return "C"


def _topmost(lowers: list[Inode], path: str) -> Inode | None:
    for layer in lowers:
        found = entry_at(layer, path)
        if found is not None:
            return found
    return None


def _dir_size(directory: Inode) -> int:
    return BOGO_DIRENT_SIZE * (2 + len(directory.entries))
