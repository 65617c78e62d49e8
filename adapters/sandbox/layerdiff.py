"""The engines' two diff algorithms over real directories (reference/diff.py ``DiffRule``),
for the kernel-mounts engine: what ``docker diff`` / ``podman diff`` would print for a
container made of real kernel objects, from real lstat(2) results (so the model's
"fresh mtime" bookkeeping is checked against the kernel's times).

- :func:`naive`: moby pkg/archive/changes.go ChangesDirs of two trees (the image view and
  the container root without its mounts);
- :func:`native`: containers/storage OverlayChanges, a walk of the upper directory.
"""

from __future__ import annotations

import os
import stat

OPAQUE = "trusted.overlay.opaque"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _different(old: os.stat_result, new: os.stat_result) -> bool:
    """statDifferent (changes_unix.go): size and mtime only for non-directories."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != (
        new.st_mode,
        new.st_uid,
        new.st_gid,
        new.st_rdev,
    ):
        return True
    return not stat.S_ISDIR(old.st_mode) and (
        old.st_mtime_ns != new.st_mtime_ns or old.st_size != new.st_size
    )


def naive(old_root: str, new_root: str, skip: set[str]) -> dict[str, str]:
    """ChangesDirs(new, old); top-level names in ``skip`` are left out."""
    changes: dict[str, str] = {}

    def add_changes(rel: str, old_is_dir: bool) -> None:
        before = len(changes)
        added = rel in changes
        new_dir = os.path.join(new_root, rel)
        olds = set(os.listdir(os.path.join(old_root, rel))) if old_is_dir else set()
        for name in sorted(os.listdir(new_dir)):
            child = f"{rel}/{name}" if rel else name
            if not rel and name in skip:
                olds.discard(name)
                continue
            now = os.lstat(os.path.join(new_root, child))
            was = _lstat(os.path.join(old_root, child)) if name in olds else None
            olds.discard(name)
            if was is None:
                changes[child] = "A"
            elif _different(was, now):
                changes[child] = "C"
            if stat.S_ISDIR(now.st_mode):
                add_changes(child, was is not None and stat.S_ISDIR(was.st_mode))
        for name in olds:
            if rel or name not in skip:
                changes[f"{rel}/{name}" if rel else name] = "D"
        if len(changes) > before and not added and rel:
            changes[rel] = "C"

    add_changes("", True)
    return changes


def native(upper: str, lowers: list[str]) -> dict[str, str]:
    """OverlayChanges: ``lowers`` top first."""
    changes: dict[str, str] = {}
    listed: set[str] = set()
    for current, dirs, files in os.walk(upper):
        dirs.sort()
        rel_dir = os.path.relpath(current, upper)
        for name in sorted(dirs + files):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            kind = _native_kind(os.path.join(upper, rel), rel, lowers)
            if kind is None:
                continue
            changes[rel] = kind
            if name in dirs:
                listed.add(rel)
            parent = os.path.dirname(rel)
            while kind in "AD" and parent:
                if parent not in listed:
                    changes[parent] = "C"
                    listed.add(parent)
                parent = os.path.dirname(parent)
    return dict(sorted(changes.items()))


def _native_kind(path: str, rel: str, lowers: list[str]) -> str | None:
    now = os.lstat(path)
    if _is_whiteout(now):
        return "D"
    for layer in lowers:
        was = _lstat(os.path.join(layer, rel))
        if was is None:
            continue
        if _is_whiteout(was):
            break  # a lower whiteout: the image does not show it (observed: A)
        if stat.S_ISDIR(now.st_mode) and _opaque(path):
            return "D"  # an opaque directory where the image has the name
        if stat.S_ISDIR(was.st_mode) and stat.S_ISDIR(now.st_mode):
            same = (was.st_size, was.st_mode, was.st_mtime_ns) == (
                now.st_size,
                now.st_mode,
                now.st_mtime_ns,
            )
            if same:
                return None
        return "C"
    return "A"


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False
