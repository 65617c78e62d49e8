"""Hypothesis strategies for layers and operations, public for third-party suites.

Names come from a tiny alphabet so that they collide across layers (the interesting cases
of an overlay are names present in several layers), and operations draw their paths from
the same small universe: they hit names that exist, existed, or never did.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from reference import ops
from reference.layer import (
    DirSpec,
    EntrySpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
)

NAMES = ("a", "b", "c")
MAX_DEPTH = 3
#: Every path of the universe, shallow first (so shrinking prefers "a").
PATHS: tuple[str, ...] = tuple(
    "/".join(parts)
    for depth in range(1, MAX_DEPTH + 1)
    for parts in itertools.product(NAMES, repeat=depth)
)
#: Symlink targets: names in the mount, "..", absolute paths, and attempts to leave the
#: mount (they must resolve inside it).
TARGETS = (
    "a",
    "b/c",
    "../a",
    "/a",
    "/b/c",
    ".",
    "/",
    "a/../b",
    "../../..",
    "/etc",
    "/tmp/unionspec-escape",
    "missing",
)

#: Each depth is drawn a third of the time, so a shallow path (where layers have most
#: entries) is drawn far more often than a deep one: ops mostly hit names that exist.
paths = st.sampled_from(
    [path for path in PATHS for _ in range(len(NAMES) ** (MAX_DEPTH - path.count("/") - 1))]
)
data = st.sampled_from([b"", b"x", b"hello", b"0123456789"]) | st.binary(max_size=12)
modes = st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o700, 0o000, 0o777])
ids = st.sampled_from([0, 1000, 1001])
xattr_names = st.sampled_from(["user.a", "user.b"])
xattr_values = st.sampled_from([b"", b"1", b"value"])
xattr_sets = st.lists(st.tuples(xattr_names, xattr_values), max_size=2, unique_by=lambda x: x[0])

_KINDS = ("file", "dir", "symlink", "fifo", "whiteout", "hardlink")
#: Inside directories most names are absent, so empty and nearly empty directories (the
#: interesting ones for rmdir, rename over, opaque) are common. "absent" comes first: it is
#: what shrinking moves towards.
_KINDS_AT_DEPTH = {
    1: ("absent", "absent", "dir", *_KINDS),
    2: ("absent",) * 5 + _KINDS,
    3: ("absent",) * 8 + _KINDS,
}


@st.composite
def layers(draw: st.DrawFn, *, markers: bool = True) -> LayerSpec:
    """A layer over the name universe: files, directories, symlinks, FIFOs, hardlinks,
    user xattrs, and (with ``markers``) whiteouts and opaque directories."""
    entries: list[tuple[str, EntrySpec]] = []
    files: list[str] = []

    def fill(prefix: str, depth: int) -> None:
        for name in NAMES:
            path = prefix + name
            kind = draw(st.sampled_from(_KINDS_AT_DEPTH[depth]))
            if kind == "whiteout" and not markers:
                kind = "absent"
            if kind == "hardlink" and not files:
                kind = "absent"
            match kind:
                case "file":
                    entries.append(
                        (
                            path,
                            FileSpec(
                                data=draw(data),
                                mode=draw(modes),
                                uid=draw(ids),
                                gid=draw(ids),
                                xattrs=tuple(draw(xattr_sets)),
                            ),
                        )
                    )
                    files.append(path)
                case "dir":
                    entries.append(
                        (
                            path,
                            DirSpec(
                                mode=draw(st.sampled_from([0o755, 0o700, 0o555])),
                                uid=draw(ids),
                                gid=draw(ids),
                                xattrs=tuple(draw(xattr_sets)),
                                opaque=markers and draw(st.booleans()),
                            ),
                        )
                    )
                    if depth < MAX_DEPTH:
                        fill(path + "/", depth + 1)
                case "symlink":
                    entries.append((path, SymlinkSpec(draw(st.sampled_from(TARGETS)))))
                case "fifo":
                    entries.append((path, FifoSpec(draw(modes))))
                case "whiteout":
                    entries.append((path, WhiteoutSpec()))
                case "hardlink":
                    entries.append((path, HardlinkSpec(draw(st.sampled_from(files)))))

    fill("", 1)
    return LayerSpec(tuple(entries))


def stacks(*, min_lowers: int = 1, max_lowers: int = 3) -> st.SearchStrategy[StackSpec]:
    """1 to 3 lower layers (top first). The bottom layer carries no markers: a whiteout or
    opaque dir there hides nothing."""
    return st.integers(min_lowers, max_lowers).flatmap(
        lambda n: st.tuples(
            *[layers(markers=True) for _ in range(n - 1)], layers(markers=False)
        ).map(lambda lowers: StackSpec(tuple(lowers)))
    )


open_flags = st.sampled_from(
    [(), ("O_CREAT",), ("O_TRUNC",), ("O_APPEND",), ("O_CREAT", "O_EXCL"), ("O_CREAT", "O_TRUNC")]
)
rename_flags = st.sampled_from(ops.RENAME_FLAGS)
offsets = st.sampled_from([0, 1, 5, 20])
sizes = st.sampled_from([0, 1, 3, 20])
