"""adapters/sandbox/lowerwatch.py: a step may skip the digest of the lowers only while inotify
has reported nothing since the baseline; any change to any entry ends that for the mount,
and every FULL_EVERY-th observation digests anyway (writes through mmap are not reported)."""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.sandbox.layerdisk import layer_digest, read_all, user_xattrs, write_layer
from adapters.sandbox.lowerwatch import FULL_EVERY, LowerWatch
from reference.layer import (
    DirSpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    SymlinkSpec,
    build,
)

LAYER = LayerSpec(
    (
        ("a", FileSpec(b"abc", 0o644, xattrs=(("user.k", b"v"),))),
        ("d", DirSpec()),
        ("d/f", FileSpec(b"x")),
        ("d/e", DirSpec()),
        ("d/e/g", FileSpec(b"deep")),
        ("s", SymlinkSpec("d")),
        ("p", FifoSpec()),
        ("h", HardlinkSpec("a")),
    )
)


def _rewrite(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"Z", 0)
    finally:
        os.close(fd)


#: One change each, through a system call, anywhere in the layer.
CHANGES: dict[str, Callable[[str], object]] = {
    "data": lambda root: _rewrite(f"{root}/d/e/g"),
    "mode": lambda root: os.chmod(f"{root}/a", 0o600),
    "owner": lambda root: os.lchown(f"{root}/d/f", 1000, -1),
    "xattr": lambda root: os.setxattr(f"{root}/d", "user.k", b"w"),
    "symlink-owner": lambda root: os.lchown(f"{root}/s", 1000, -1),
    "fifo-mode": lambda root: os.chmod(f"{root}/p", 0o600),
    "new-name": lambda root: os.mkdir(f"{root}/d/e/n"),
    "unlink": lambda root: os.unlink(f"{root}/h"),
    "rename": lambda root: os.rename(f"{root}/d/f", f"{root}/d/e/f"),
    "truncate": lambda root: os.truncate(f"{root}/a", 0),
}


def _layer(tmp_path: Path) -> str:
    root = str(tmp_path / "l0")
    write_layer(build(LAYER), root)
    return root


def _read_everything(root: str) -> None:
    """What an overlay does to its lowers: look, list, read, read xattrs."""
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                read_all(path)
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                user_xattrs(path)
    layer_digest(root)


def test_reads_keep_it_quiet_until_every_full_th_observation(tmp_path: Path) -> None:
    root = _layer(tmp_path)
    watch = LowerWatch()
    try:
        watch.watch([root])
        assert not watch.trusted  # no baseline yet
        watch.baseline()
        quiet = []
        for _ in range(2 * FULL_EVERY):
            _read_everything(root)
            quiet.append(watch.quiet())
        assert quiet.count(False) == 2  # the FULL_EVERY-th ones
        assert not quiet[FULL_EVERY - 1] and not quiet[2 * FULL_EVERY - 1]
    finally:
        watch.close()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_ends_the_quiet_for_the_mount(tmp_path: Path, change: str) -> None:
    if change.endswith("owner") and os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = _layer(tmp_path)
    watch = LowerWatch()
    try:
        watch.watch([root])
        watch.baseline()
        assert watch.quiet()
        CHANGES[change](root)
        assert not watch.quiet()
        assert not watch.quiet(), "stays off: the lowers may differ from the baseline"
    finally:
        watch.close()


def test_a_new_mount_watches_afresh(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = _layer(tmp_path / "one"), _layer(tmp_path / "two")
    watch = LowerWatch()
    try:
        watch.watch([first])
        watch.baseline()
        CHANGES["data"](first)
        assert not watch.quiet()
        watch.watch([second])
        watch.baseline()
        assert watch.quiet()
    finally:
        watch.close()


def test_an_mmap_write_is_found_by_the_full_digest(tmp_path: Path) -> None:
    """inotify does not report the write itself (only the close of a file opened for
    writing); at the latest the FULL_EVERY-th observation digests and sees it."""
    root = _layer(tmp_path)
    before = layer_digest(root)
    watch = LowerWatch()
    try:
        watch.watch([root])
        watch.baseline()
        with open(f"{root}/a", "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
            mapped[0:1] = b"Z"
        skipped = 0
        while watch.quiet():
            skipped += 1
        assert skipped < FULL_EVERY
        assert layer_digest(root) != before
    finally:
        watch.close()
