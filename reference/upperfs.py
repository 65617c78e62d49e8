"""What the upper filesystem does below the overlay that shows through it: the pages a
tmpfs file has allocated (mm/shmem.c), which decide whether truncate(2) to the size a file
already has changes its times.

``shmem_setattr`` updates mtime and ctime when the size changes, and otherwise only through
``shmem_truncate_range``, which it calls when the file has allocated pages
(``info->alloced``); found by the kernel run (a truncate of an empty upper file to 0 keeps
its times, one of a file with bytes changes them), then read in the source. Pages are
indexes of PAGE bytes: a write or a fallocate allocates those it touches, a truncate or a
punched hole frees those wholly past the new end or inside the hole (partial ones are
zeroed, and stay).
"""

from __future__ import annotations

from reference.layer import Inode

#: The page size of the machines this runs on (x86_64, aarch64 with 4 KiB pages).
PAGE = 4096


def _span(start: int, end: int) -> frozenset[int]:
    """Every page holding a byte of [start, end)."""
    return frozenset(range(start // PAGE, -(-end // PAGE))) if end > start else frozenset()


def allocate(inode: Inode, start: int, end: int) -> None:
    """Bytes [start, end) were written or allocated."""
    inode.pages |= _span(start, end)


def free(inode: Inode, start: int, end: int | None = None) -> None:
    """[start, end) (to the end of the file without ``end``) was truncated or punched:
    the pages wholly inside it are freed."""
    first = -(-start // PAGE)
    inode.pages = frozenset(
        p for p in inode.pages if p < first or (end is not None and (p + 1) * PAGE > end)
    )


def copied_up(inode: Inode) -> None:
    """A copy-up wrote the whole file's bytes (copy_up.c ovl_copy_up_file; a lower file
    as the suite writes it has no holes)."""
    inode.pages = _span(0, len(inode.data))


def truncate_changes_times(inode: Inode, old_size: int, new_size: int) -> bool:
    """Whether truncate(2) from ``old_size`` to ``new_size`` changes the times (module
    doc), given the pages the file had before."""
    return new_size != old_size or bool(inode.pages)
