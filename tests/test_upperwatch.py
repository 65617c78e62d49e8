"""adapters/sandbox/upperwatch.py: an observation may reuse the last decoding of the upper only
while every entry of that decoding is watched and inotify has reported nothing since;
any change to any entry (or a new name) ends that until the next decoding, and every
FULL_EVERY-th observation decodes anyway (writes through mmap are not reported)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from adapters.sandbox.layerdisk import KERNEL_FORMAT, read_layer, write_layer
from adapters.sandbox.lowerwatch import FULL_EVERY
from adapters.sandbox.upperwatch import UpperWatch
from reference.layer import build
from reference.view import LayerImage
from tests.test_lowerwatch import CHANGES, LAYER, _read_everything


def _decode(watch: UpperWatch, root: str) -> LayerImage:
    """What the executor does when it decodes the upper (executor.Executor._upper)."""
    watch.before_decoding()
    image = read_layer(root, KERNEL_FORMAT)
    whiteouts = [path for path, entry in image.entries.items() if entry.kind == "whiteout"]
    watch.decoded(root, image.inodes, whiteouts)
    return image


def _upper(tmp_path: Path) -> str:
    root = str(tmp_path / "upper")
    write_layer(build(LAYER), root)
    return root


def test_nothing_is_trusted_before_the_first_decoding(tmp_path: Path) -> None:
    root = _upper(tmp_path)
    watch = UpperWatch()
    try:
        assert not watch.quiet()
        _decode(watch, root)
        assert watch.quiet()
        watch.start()  # a new mount
        assert not watch.quiet()
    finally:
        watch.close()


def test_reads_keep_it_quiet_until_every_full_th_observation(tmp_path: Path) -> None:
    root = _upper(tmp_path)
    watch = UpperWatch()
    try:
        _decode(watch, root)
        quiet = []
        for _ in range(2 * FULL_EVERY):
            _read_everything(root)
            read_layer(root, KERNEL_FORMAT)
            quiet.append(watch.quiet())
        assert quiet.count(False) == 2  # the FULL_EVERY-th ones
    finally:
        watch.close()


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_is_reported_until_decoded_again(tmp_path: Path, change: str) -> None:
    if change.endswith("owner") and os.geteuid() != 0:
        pytest.skip("chown needs root")
    root = _upper(tmp_path)
    watch = UpperWatch()
    try:
        before = _decode(watch, root)
        assert watch.quiet()
        CHANGES[change](root)
        assert not watch.quiet()
        assert not watch.quiet(), "stays off until the upper is decoded again"
        after = _decode(watch, root)
        assert after != before
        assert watch.quiet()
    finally:
        watch.close()


def test_a_name_made_after_a_decoding_is_watched_by_the_next(tmp_path: Path) -> None:
    """A new directory is reported through its parent; once decoded, a change below it
    is reported through its own watch."""
    root = _upper(tmp_path)
    watch = UpperWatch()
    try:
        _decode(watch, root)
        os.mkdir(f"{root}/new")
        assert not watch.quiet()
        _decode(watch, root)
        assert watch.quiet()
        with open(f"{root}/new/f", "wb") as f:
            f.write(b"x")
        assert not watch.quiet()
        _decode(watch, root)
        assert watch.quiet()
        os.setxattr(f"{root}/new/f", "user.k", b"v")
        assert not watch.quiet()
    finally:
        watch.close()


def test_an_xattr_whiteout_is_watched(tmp_path: Path) -> None:
    """A zero-size file with the overlay.whiteout xattr decodes as a whiteout; removing
    the xattr makes it a file, and that is reported."""
    if os.geteuid() != 0:
        pytest.skip("trusted.* xattrs need root")
    root = _upper(tmp_path)
    path = f"{root}/d/w"
    with open(path, "wb"):
        pass
    os.setxattr(path, "trusted.overlay.whiteout", b"")
    watch = UpperWatch()
    try:
        image = _decode(watch, root)
        assert image.entries["d/w"].kind == "whiteout"
        assert watch.quiet()
        os.removexattr(path, "trusted.overlay.whiteout")
        assert not watch.quiet()
        assert _decode(watch, root).entries["d/w"].kind == "file"
    finally:
        watch.close()


def test_an_mmap_write_is_found_by_the_full_decoding(tmp_path: Path) -> None:
    """inotify does not report the write itself; at the latest the FULL_EVERY-th
    observation decodes and sees it."""
    root = _upper(tmp_path)
    watch = UpperWatch()
    try:
        before = _decode(watch, root)
        with open(f"{root}/a", "r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
            mapped[0:1] = b"Z"
        skipped = 0
        while watch.quiet():
            skipped += 1
        assert skipped < FULL_EVERY
        assert _decode(watch, root) != before
    finally:
        watch.close()
