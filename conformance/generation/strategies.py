"""Hypothesis strategies for layers and operations, public for third-party suites.

Names come from a tiny alphabet so that they collide across layers (the interesting cases
of an overlay are names present in several layers), and operations draw their paths from
the same small universe: they hit names that exist, existed, or never did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.internal.conjecture.utils import calc_label_from_name

from reference import ops
from reference.layer import (
    DirSpec,
    EntrySpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    MetacopySpec,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
)

if TYPE_CHECKING:
    from hypothesis.internal.conjecture.data import ConjectureData

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
#: Set-ID and sticky bits (issue 18): set-user-ID, set-group-ID with and without group
#: execute (without, the kernel keeps S_ISGID on chown: fs/attr.c setattr_should_drop_sgid).
SETID_MODES = (0o4755, 0o2755, 0o6755, 0o2745, 0o1777)
MODES = (0o644, 0o600, 0o755, 0o444, 0o700, 0o000, 0o777, *SETID_MODES)
modes = st.sampled_from(MODES)
IDS = (0, 1000, 1001)
ids = st.sampled_from(IDS)
#: A valid v2 file capability (cap_net_bind_service permitted and effective) and the same
#: as v3 with root id 0, which reads back as v2 (reference.privileges.stored_xattr).
CAP_V2 = bytes.fromhex("0100000200040000000000000000000000000000")
CAP_V3 = bytes.fromhex("010000030004000000000000000000000000000000000000")
#: user.* and (issue 18) trusted.* and security.* names, and the file capability.
XATTR_NAMES = ("user.a", "user.b", "trusted.a", "security.a", "security.capability")
#: With userxattr, a name in the overlay's own namespace too: stored escaped
#: (``user.overlay.overlay.e``, doc "Nesting").
ESCAPED_XATTR_NAMES = ("user.overlay.e",)
XATTR_VALUES = (b"", b"1", b"value", CAP_V2, CAP_V3)
xattr_names = st.sampled_from(XATTR_NAMES)
xattr_values = st.sampled_from(XATTR_VALUES)
#: Every set of at most two user xattrs with distinct names, in either order, none first
#: (what ``lists(tuples(names, values), max_size=2, unique_by=name)`` drew, in one draw).
#: A layer's values: the capability only as the valid v2 (what a layer can hold).
_LAYER_VALUES = {name: (b"", b"1", b"value") for name in XATTR_NAMES}
_LAYER_VALUES["security.capability"] = (CAP_V2,)
XATTR_SETS: tuple[tuple[tuple[str, bytes], ...], ...] = (
    (),
    *(((n, v),) for n in XATTR_NAMES for v in _LAYER_VALUES[n]),
    *(
        ((n1, v1), (n2, v2))
        for n1, n2 in itertools.permutations(XATTR_NAMES, 2)
        for v1 in _LAYER_VALUES[n1]
        for v2 in _LAYER_VALUES[n2]
    ),
)
xattr_sets = st.sampled_from(XATTR_SETS)
#: Modes where a caller's class matters (issue 18): the group class decides for a member
#: of the group even where it grants less than "other" (generic_permission), and a
#: world-writable directory lets every caller create and remove names.
GROUP_MODES = (0o660, 0o604)
DIR_MODES = (0o755, 0o700, 0o555, 0o777, 0o705)
#: (mode, uid, gid) of a file, and of a directory: one draw each.
FILE_META = tuple(itertools.product(MODES + GROUP_MODES, IDS, IDS))
DIR_META = tuple(itertools.product(DIR_MODES, IDS, IDS))
#: Exact mtimes of generated entries (ns since the epoch; None: whenever written), so
#: copy-up's keeping them is checked (issue 18).
MTIMES: tuple[int | None, ...] = (None, 1_000_000_000_123_456_789, 1_500_000_000_000_000_001)
file_meta = st.sampled_from(FILE_META)
dir_meta = st.sampled_from(DIR_META)

#: "hardlink" twice: a lower hardlink is what index=on is about, and it needs a file
#: drawn before it in its layer.
_KINDS = ("file", "dir", "symlink", "fifo", "whiteout", "hardlink", "hardlink")
#: Inside directories most names are absent, so empty and nearly empty directories (the
#: interesting ones for rmdir, rename over, opaque) are common. "absent" comes first: it is
#: what shrinking moves towards.
_KINDS_AT_DEPTH = {
    1: ("absent", "absent", "dir", *_KINDS),
    2: ("absent",) * 5 + _KINDS,
    3: ("absent",) * 8 + _KINDS,
}
targets = st.sampled_from(TARGETS)


def _pick(data: ConjectureData, table: tuple[Any, ...] | list[Any]) -> Any:
    """One entry of ``table``: a single choice, shrinking towards the first entry."""
    return table[data.draw_integer(0, len(table) - 1)]


class Layers(st.SearchStrategy[LayerSpec]):
    """A layer over the name universe: files, directories, symlinks, FIFOs, hardlinks,
    user xattrs, and (with ``markers``) whiteouts and opaque directories.

    Each choice is one draw from a table (as :class:`Operations` draws): a ``composite``
    of ``sampled_from`` draws cost about three times as much per layer."""

    def __init__(
        self,
        markers: bool = True,
        without: frozenset[str] = frozenset(),
        xwhiteouts: bool = False,
        stubs: tuple[tuple[str, int], ...] = (),
    ) -> None:
        super().__init__()
        self.markers = markers
        #: object kinds this layer leaves out (swarm testing, conformance.generation.swarm)
        self.without = without
        #: whiteouts may take the xattr form; the layer marks their parents
        #: ``overlay.opaque=x``, or (one draw per layer) none of them: the kernel tells a
        #: marked directory by a flag of its layer (readdir.c ``has_xwhiteouts``), so a
        #: layer marks all or none
        self.xwhiteouts = xwhiteouts
        #: (path, size) of the files of a data-only layer below: a file of this layer may
        #: be a metacopy stub redirected to one of them (doc "Data-only lower layers")
        self.stubs = stubs

    def __repr__(self) -> str:
        return f"layers(markers={self.markers})"

    def do_draw(self, data: ConjectureData) -> LayerSpec:
        entries: list[tuple[str, EntrySpec]] = []
        files: list[str] = []
        markers = self.markers
        without = self.without
        xform = markers and self.xwhiteouts
        marked = xform and data.draw_boolean()

        def fill(prefix: str, depth: int) -> None:
            for name in NAMES:
                path = prefix + name
                kind = _pick(data, _KINDS_AT_DEPTH[depth])
                if kind == "whiteout" and not markers:
                    kind = "absent"
                if kind == "hardlink" and not files:
                    kind = "absent"
                if kind in without:
                    kind = "absent"
                if kind in ("absent", "file") and self.stubs and data.draw_boolean():
                    kind = "stub"
                match kind:
                    case "stub":
                        target, size = _pick(data, self.stubs)
                        mode, uid, gid = _pick(data, FILE_META)
                        entries.append((path, MetacopySpec("/" + target, size, mode, uid, gid)))
                    case "file":
                        mode, uid, gid = _pick(data, FILE_META)
                        spec = FileSpec(
                            _pick(data, DATA),
                            mode,
                            uid,
                            gid,
                            _pick(data, XATTR_SETS),
                            _pick(data, MTIMES),
                        )
                        entries.append((path, spec))
                        files.append(path)
                    case "dir":
                        mode, uid, gid = _pick(data, DIR_META)
                        opaque = markers and "opaque" not in without and data.draw_boolean()
                        xattrs = _pick(data, XATTR_SETS)
                        mtime = _pick(data, MTIMES)
                        entries.append((path, DirSpec(mode, uid, gid, xattrs, opaque, mtime)))
                        if depth < MAX_DEPTH:
                            fill(path + "/", depth + 1)
                    case "symlink":
                        entries.append((path, SymlinkSpec(_pick(data, TARGETS))))
                    case "fifo":
                        entries.append((path, FifoSpec(_pick(data, MODES))))
                    case "whiteout":
                        as_xattr = xform and data.draw_boolean()
                        entries.append((path, WhiteoutSpec(as_xattr, marked)))
                    case "hardlink":
                        entries.append((path, HardlinkSpec(_pick(data, files))))

        fill("", 1)
        return LayerSpec(tuple(entries))


def layers(*, markers: bool = True) -> Layers:
    return Layers(markers)


class Stacks(st.SearchStrategy[StackSpec]):
    """``min_lowers`` to ``max_lowers`` lower layers (top first). The bottom layer carries
    no markers: a whiteout or opaque dir there hides nothing."""

    def __init__(self, min_lowers: int = 1, max_lowers: int = 3) -> None:
        super().__init__()
        self.min_lowers, self.max_lowers = min_lowers, max_lowers
        self._marked, self._bottom = Layers(markers=True), Layers(markers=False)

    def __repr__(self) -> str:
        return f"stacks(min_lowers={self.min_lowers}, max_lowers={self.max_lowers})"

    def do_draw(self, data: ConjectureData) -> StackSpec:
        n = data.draw_integer(self.min_lowers, self.max_lowers)
        lowers = [data.draw(self._marked) for _ in range(n - 1)]
        return StackSpec((*lowers, data.draw(self._bottom)))


def stacks(*, min_lowers: int = 1, max_lowers: int = 3) -> Stacks:
    """1 to 3 lower layers (top first); see :class:`Stacks`."""
    return Stacks(min_lowers, max_lowers)


OPEN_FLAGS: tuple[tuple[str, ...], ...] = (
    (),
    ("O_CREAT",),
    ("O_TRUNC",),
    ("O_APPEND",),
    ("O_CREAT", "O_EXCL"),
    ("O_CREAT", "O_TRUNC"),
)
OFFSETS = (0, 1, 5, 20)
#: 8193: past two pages, so the file is sparse (holes read as zeros).
SIZES = (0, 1, 3, 20, 8193)
#: fallocate lengths: 0 is EINVAL (after the open's copy-up).
LENGTHS = (1, 3, 20, 8193, 0)
#: utimensat times: exact ns, the epoch, "now" and "omit".
TIMES = (1_000_000_000_123_456_789, 0, 2_000_000_000_999_999_999, ops.UTIME_NOW, ops.UTIME_OMIT)
open_flags = st.sampled_from(OPEN_FLAGS)
rename_flags = st.sampled_from(ops.RENAME_FLAGS)
offsets = st.sampled_from(OFFSETS)
sizes = st.sampled_from(SIZES)

#: Readdir's paths: the root ("") half of the time.
DIR_PATHS: tuple[str, ...] = ("",) * len(WEIGHTED_PATHS) + WEIGHTED_PATHS

#: The table each field domain of ``reference.ops.KINDS`` (an entry's ``draws``) is drawn
#: from. Paths come from the weighted universe, so operations mostly hit names that exist;
#: each table's first entry is where shrinking goes.
DOMAINS: dict[str, tuple[Any, ...]] = {
    "path": WEIGHTED_PATHS,
    "dir_path": DIR_PATHS,
    "follow": (False, True),
    "target": TARGETS,
    "data": DATA,
    "offset": OFFSETS,
    "size": SIZES,
    "open_flags": OPEN_FLAGS,
    "file_mode": MODES,
    "mode": MODES,
    "dir_mode": (0o755, 0o700),
    "uid": IDS,
    "gid": IDS,
    "xattr_name": XATTR_NAMES,
    "xattr_value": XATTR_VALUES,
    "rename_flags": ops.RENAME_FLAGS,
    "access": ops.OPEN_ACCESS,
    #: handles of open descriptors (conformance.generation.cases draws them from the model's)
    "handle": (0, 1, 2, 3),
    # issue 18, first half
    "time": TIMES,
    "fallocate_mode": ops.FALLOCATE_MODES,
    "length": LENGTHS,
}

#: Every operation the machines generate, by rule name (the names features select, see
#: conformance.features): its class and the table each of its fields is drawn from, in the
#: class's field order; derived from ``reference.ops.KINDS``, in its order.
OPERATIONS: dict[str, tuple[Callable[..., ops.Op], tuple[tuple[Any, ...], ...]]] = {
    kind.rule: (kind.cls, tuple(DOMAINS[domain] for domain in kind.draws))
    for kind in ops.KINDS.values()
}


class Operations(st.SearchStrategy[ops.Op]):
    """One operation of the given rules (all by default): one draw for the rule, one per
    field, each an index into its table (:data:`OPERATIONS`).

    Drawn straight from Hypothesis's choice sequence (``draw_integer``): ``sampled_from``
    and ``builds`` cost 4-5 times as much per operation (a span and a transform per
    field), and generation was most of a step's time (README "Performance"). Shrinking
    works as for any strategy: every choice moves towards index 0.
    """

    def __init__(self, rules: Iterable[str] | None = None) -> None:
        super().__init__()
        names = tuple(OPERATIONS) if rules is None else tuple(n for n in OPERATIONS if n in rules)
        unknown = set(rules or ()) - set(OPERATIONS)
        if unknown or not names:
            raise ValueError(f"no operations named {sorted(unknown) or '(none)'}")
        self.rules = names
        self._choices = tuple(
            (cls, tuple((table, len(table) - 1) for table in tables))
            for cls, tables in (OPERATIONS[name] for name in names)
        )
        self._last = len(names) - 1

    def __repr__(self) -> str:
        return f"Operations({list(self.rules)!r})"

    def do_draw(self, data: ConjectureData) -> ops.Op:
        cls, fields = self._choices[data.draw_integer(0, self._last)]
        return cls(*[table[data.draw_integer(0, last)] for table, last in fields])


_STEP_LABEL = calc_label_from_name("unionspec program step")


class Programs(st.SearchStrategy[list[ops.Op]]):
    """Up to ``max_steps`` operations, each an :class:`Operations` draw after a "stop
    here?" choice that is almost never true while generating (2**-16, as Hypothesis's
    stateful runner draws it): programs run to ``max_steps``, and shrinking cuts one
    short by setting that choice, or deletes a step by deleting its choices."""

    def __init__(self, operations: Operations, max_steps: int) -> None:
        super().__init__()
        self.operations, self.max_steps = operations, max_steps

    def __repr__(self) -> str:
        return f"Programs({self.operations!r}, max_steps={self.max_steps})"

    def do_draw(self, data: ConjectureData) -> list[ops.Op]:
        program: list[ops.Op] = []
        while True:
            # A step is one span (its stop choice and its operation), as in the stateful
            # runner and in lists: the shrinker deletes spans, so it deletes whole steps.
            # At max_steps the stop is forced but still recorded: when a step before it is
            # deleted, that recorded stop ends the shorter program (without it, the replay
            # would run out of choices and the deletion would be rejected).
            data.start_span(_STEP_LABEL)
            forced = True if len(program) >= self.max_steps else None
            if data.draw_boolean(2**-16, forced=forced):
                data.stop_span()
                return program
            program.append(self.operations.do_draw(data))  # in the step's span
            data.stop_span()


def programs(rules: Iterable[str] | None = None, max_steps: int = 25) -> Programs:
    """Programs of the given rules (all by default), up to ``max_steps`` long."""
    return Programs(Operations(rules), max_steps)
