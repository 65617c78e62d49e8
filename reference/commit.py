"""What ``commit`` puts in the new image's top layer: the container's writable layer.

Observed with docker.io 20.10.24 and podman 4.3.1 (by hand in the suite's sandbox: the
top layer of ``save`` after ``commit``, decoded the OCI way): both write the whole upper
directory, not the changes ``diff`` lists - docker's layer held a file copied up by a
``chmod`` to its own mode and by a ``setxattr``, which its ``diff`` did not list; a
directory removed and made again is opaque (``.wh..wh..opq``), not a whiteout per child;
a removed image file is ``.wh.<name>``; hardlinks are tar hardlinks to the first name in
walk order (moby pkg/archive TarWithOptions with OverlayWhiteoutFormat, containers/storage
the same). Docker drops user xattrs (``EngineProfile.commit_keeps_xattrs``).
"""

from __future__ import annotations

from reference.layer import (
    DirSpec,
    EntrySpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    Inode,
    Kind,
    SymlinkSpec,
    WhiteoutSpec,
    walk,
)


def committed_layer(upper: Inode, *, keep_xattrs: bool) -> tuple[tuple[str, EntrySpec], ...]:
    """The layer's entries, sorted by path (``LayerSpec`` entries)."""
    first: dict[int, str] = {}
    entries: list[tuple[str, EntrySpec]] = []
    for path, inode in walk(upper):
        xattrs = tuple(sorted(inode.xattrs.items())) if keep_xattrs else ()
        entry: EntrySpec
        if inode.kind is Kind.WHITEOUT:
            entry = WhiteoutSpec()
        elif inode.kind is Kind.DIR:
            entry = DirSpec(inode.mode, inode.uid, inode.gid, xattrs, inode.opaque)
        elif inode.ident in first:
            entry = HardlinkSpec(first[inode.ident])
        elif inode.kind is Kind.FILE:
            first[inode.ident] = path
            entry = FileSpec(inode.data, inode.mode, inode.uid, inode.gid, xattrs)
        elif inode.kind is Kind.SYMLINK:
            entry = SymlinkSpec(inode.target)
        else:
            first[inode.ident] = path
            entry = FifoSpec(inode.mode)
        entries.append((path, entry))
    return tuple(sorted(entries))
