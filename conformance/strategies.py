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
WEIGHTED_PATHS: tuple[str, ...] = tuple(
    path for path in PATHS for _ in range(len(NAMES) ** (MAX_DEPTH - path.count("/") - 1))
)
paths = st.sampled_from(WEIGHTED_PATHS)
#: Paths for readdir: the root ("") half of the time, as ``paths | st.just("")`` drew it.
dir_paths = st.sampled_from(("",) * len(WEIGHTED_PATHS) + WEIGHTED_PATHS)
#: File contents: every length from 0 to 12 (offsets and sizes are 0, 1, 3, 5, 20, so writes
#: and truncates land before, inside and past the end), a NUL and a high byte among them.
#: One draw from a table, where ``sampled_from(...) | binary(max_size=12)`` took two or
#: more; the bytes themselves never steer an overlay rule.
DATA: tuple[bytes, ...] = (
    b"",
    b"x",
    b"hello",
    b"0123456789",
    b"\x00",
    b"ab",
    b"abc",
    b"\xff\x00zz",
    b"0123",
    b"abcdefg",
    b"\x00" * 8,
    b"0123456789ab",
    b"x" * 11,
    b"hi\n",
)
data = st.sampled_from(DATA)
MODES = (0o644, 0o600, 0o755, 0o444, 0o700, 0o000, 0o777)
modes = st.sampled_from(MODES)
IDS = (0, 1000, 1001)
ids = st.sampled_from(IDS)
XATTR_NAMES = ("user.a", "user.b")
XATTR_VALUES = (b"", b"1", b"value")
xattr_names = st.sampled_from(XATTR_NAMES)
xattr_values = st.sampled_from(XATTR_VALUES)
#: Every set of at most two user xattrs with distinct names, in either order, none first
#: (what ``lists(tuples(names, values), max_size=2, unique_by=name)`` drew, in one draw).
XATTR_SETS: tuple[tuple[tuple[str, bytes], ...], ...] = (
    (),
    *(((n, v),) for n in XATTR_NAMES for v in XATTR_VALUES),
    *(
        ((n1, v1), (n2, v2))
        for n1, n2 in itertools.permutations(XATTR_NAMES, 2)
        for v1 in XATTR_VALUES
        for v2 in XATTR_VALUES
    ),
)
xattr_sets = st.sampled_from(XATTR_SETS)
#: (mode, uid, gid) of a file, and of a directory: one draw each.
FILE_META = tuple(itertools.product(MODES, IDS, IDS))
DIR_META = tuple(itertools.product((0o755, 0o700, 0o555), IDS, IDS))
file_meta = st.sampled_from(FILE_META)
dir_meta = st.sampled_from(DIR_META)

_KINDS = ("file", "dir", "symlink", "fifo", "whiteout", "hardlink")
#: Inside directories most names are absent, so empty and nearly empty directories (the
#: interesting ones for rmdir, rename over, opaque) are common. "absent" comes first: it is
#: what shrinking moves towards.
_KINDS_AT_DEPTH = {
    1: ("absent", "absent", "dir", *_KINDS),
    2: ("absent",) * 5 + _KINDS,
    3: ("absent",) * 8 + _KINDS,
}
_kinds_at_depth = {depth: st.sampled_from(kinds) for depth, kinds in _KINDS_AT_DEPTH.items()}
targets = st.sampled_from(TARGETS)


@st.composite
def layers(draw: st.DrawFn, *, markers: bool = True) -> LayerSpec:
    """A layer over the name universe: files, directories, symlinks, FIFOs, hardlinks,
    user xattrs, and (with ``markers``) whiteouts and opaque directories."""
    entries: list[tuple[str, EntrySpec]] = []
    files: list[str] = []

    def fill(prefix: str, depth: int) -> None:
        for name in NAMES:
            path = prefix + name
            kind = draw(_kinds_at_depth[depth])
            if kind == "whiteout" and not markers:
                kind = "absent"
            if kind == "hardlink" and not files:
                kind = "absent"
            match kind:
                case "file":
                    mode, uid, gid = draw(file_meta)
                    spec = FileSpec(draw(data), mode, uid, gid, draw(xattr_sets))
                    entries.append((path, spec))
                    files.append(path)
                case "dir":
                    mode, uid, gid = draw(dir_meta)
                    opaque = markers and draw(st.booleans())
                    entries.append((path, DirSpec(mode, uid, gid, draw(xattr_sets), opaque)))
                    if depth < MAX_DEPTH:
                        fill(path + "/", depth + 1)
                case "symlink":
                    entries.append((path, SymlinkSpec(draw(targets))))
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
    return st.one_of([_stack_of(n) for n in range(min_lowers, max_lowers + 1)])


def _stack_of(n: int) -> st.SearchStrategy[StackSpec]:
    """``n`` lower layers; built once per ``n`` (a flatmap built them again every draw)."""
    if n not in _STACKS:
        parts = [*(layers(markers=True) for _ in range(n - 1)), layers(markers=False)]
        _STACKS[n] = st.tuples(*parts).map(lambda lowers: StackSpec(tuple(lowers)))
    return _STACKS[n]


_STACKS: dict[int, st.SearchStrategy[StackSpec]] = {}


open_flags = st.sampled_from(
    [(), ("O_CREAT",), ("O_TRUNC",), ("O_APPEND",), ("O_CREAT", "O_EXCL"), ("O_CREAT", "O_TRUNC")]
)
rename_flags = st.sampled_from(ops.RENAME_FLAGS)
offsets = st.sampled_from([0, 1, 5, 20])
sizes = st.sampled_from([0, 1, 3, 20])
