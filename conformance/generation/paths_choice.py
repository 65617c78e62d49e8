"""State-aware path choices: a path drawn mostly from what the model holds now.

Each path of an operation is one ``draw_integer`` read as an index into a deterministic
list computed from the reference model's state (:class:`Inventory`): existing names of the
kind the operation wants, names just removed, fresh names in existing directories, and a
share of wrong kinds and of the fixed path universe (missing names, paths through files),
so errors stay reachable. The program is still data: it replays exactly from its choices,
and shrinking moves every choice towards index 0, the first entry of the first group (as
a Bundle draw does in Hypothesis's stateful testing).

The index is read as a group and an entry at once: ``n % SLOTS`` picks a group by its
weight (an empty group passes its slots to the first non-empty one), ``n // SLOTS`` the
entry within it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from conformance.generation.strategies import NAMES, WEIGHTED_PATHS
from reference.layer import Kind
from reference.overlay import Overlay

if TYPE_CHECKING:
    from hypothesis.internal.conjecture.data import ConjectureData

#: Weights of a role's groups add up to SLOTS; an index is below SLOTS * DEPTH.
SLOTS = 16
DEPTH = 64

#: NAME_MAX (limits.h): the longest name a Linux filesystem takes. A whiteout made the
#: fuse-overlayfs way (".wh." + name) of such a name is longer than NAME_MAX.
LONG_NAME = "n" * 255
#: A name that looks like an aufs/fuse-overlayfs whiteout but is an ordinary name.
WH_NAME = ".wh.a"
#: Fresh leaf names: the collision-prone universe first, then the unusual ones.
FRESH_LEAVES: tuple[str, ...] = (*NAMES, LONG_NAME, WH_NAME)
#: Removed names remembered for "recreate" and "rename over" choices.
REMEMBERED = 4


@attrs.define
class Inventory:
    """What the merged view holds now, by kind, in a deterministic order (shallow first,
    then by name)."""

    files: list[str]
    dirs: list[str]  # the root ("") first
    empty_dirs: list[str]
    symlinks: list[str]
    fifos: list[str]
    removed: list[str]
    fresh: list[str]
    #: names made, renamed to or copied up in the last steps, most recent first, that
    #: exist now
    recent: list[str] = attrs.field(factory=list)
    #: files and directories that have a user xattr
    with_xattrs: list[str] = attrs.field(factory=list)
    #: every name but the root, and every non-directory
    existing: list[str] = attrs.field(init=False)
    nondirs: list[str] = attrs.field(init=False)
    present: frozenset[str] = attrs.field(init=False)
    #: viable(role) of this inventory, as computed
    viable: dict[str, bool] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.nondirs = sorted(self.files + self.symlinks + self.fifos, key=_order)
        self.existing = sorted(self.nondirs + self.dirs[1:], key=_order)
        self.present = frozenset(self.existing) | {""}


def _order(path: str) -> tuple[int, str]:
    return path.count("/"), path


def inventory(model: Overlay, removed: list[str], recent: list[str] = ()) -> Inventory:
    """The merged view of ``model`` as lists of paths by kind (a walk of the lookups)."""
    found: dict[Kind, list[str]] = {kind: [] for kind in Kind}
    dirs, empty, xattrs = [""], [], []
    if model.meta(model.root()).xattrs:
        xattrs.append("")
    pending = [model.root()]
    while pending:
        directory = pending.pop()
        children = model.found_children(directory)
        if not children and directory.parent is not None:
            empty.append(directory.path)
        for _, node in children:
            if node.kind in (Kind.FILE, Kind.DIR) and model.meta(node).xattrs:
                xattrs.append(node.path)
            if node.is_dir:
                dirs.append(node.path)
                pending.append(node)
            else:
                found[node.kind].append(node.path)
    present = set(dirs) | {p for paths in found.values() for p in paths}
    known = set(dirs)
    gone = [
        path
        for path in removed
        if path not in present and (path.rpartition("/")[0] in known)
    ]
    fresh = list(gone)
    for directory in sorted(dirs, key=_order):
        prefix = f"{directory}/" if directory else ""
        if directory and directory.count("/") >= 3:
            continue
        for leaf in FRESH_LEAVES:
            path = prefix + leaf
            if path not in present and path not in fresh:
                fresh.append(path)
    return Inventory(
        files=sorted(found[Kind.FILE], key=_order),
        dirs=sorted(dirs, key=_order),
        empty_dirs=sorted(empty, key=_order),
        symlinks=sorted(found[Kind.SYMLINK], key=_order),
        fifos=sorted(found[Kind.FIFO], key=_order),
        removed=gone,
        fresh=fresh,
        recent=[path for path in recent if path in present],
        with_xattrs=sorted(xattrs, key=_order),
    )


UNIVERSE = list(WEIGHTED_PATHS)


def groups(role: str, inv: Inventory, source: str | None = None) -> list[tuple[list[str], int]]:
    """The (paths, weight) groups of a role, the right kind first; weights add up to
    SLOTS. Names made or removed in the last steps have a group of their own, so related
    steps on the same names (remove, recreate, rename) follow each other."""
    universe = UNIVERSE
    match role:
        case "any":
            return [(inv.existing, 10), (inv.recent, 3), (inv.removed, 1), (universe, 2)]
        case "source":
            dirs = inv.dirs[1:]
            return [(inv.existing, 6), (inv.recent, 5), (dirs, 2), (inv.removed, 1),
                    (universe, 2)]
        case "file":
            wrong = inv.dirs[1:] + inv.fifos + inv.symlinks
            recent = _of(inv.recent, inv.files)
            return [(inv.files, 10), (recent, 3), (wrong, 1), (universe, 2)]
        case "file_or_new":
            wrong = inv.dirs + inv.fifos
            return [(inv.files, 8), (inv.fresh, 3), (inv.removed, 2), (wrong, 1), (universe, 2)]
        case "dir":
            return [(inv.dirs, 12), (inv.nondirs, 2), (universe, 2)]
        case "empty_dir":
            recent = _of(inv.recent, inv.empty_dirs)
            return [(inv.empty_dirs, 9), (recent, 3), (inv.dirs[1:], 1), (inv.nondirs, 1),
                    (universe, 2)]
        case "nondir":
            recent = _of(inv.recent, inv.nondirs)
            return [(inv.nondirs, 10), (recent, 3), (inv.dirs[1:], 1), (inv.removed, 1),
                    (universe, 1)]
        case "symlink":
            return [(inv.symlinks, 11), (inv.existing, 2), (universe, 3)]
        case "xattr":
            wrong = inv.symlinks + inv.fifos
            return [(inv.files + inv.dirs, 12), (wrong, 2), (universe, 2)]
        case "has_xattr":
            wrong = inv.symlinks + inv.fifos
            return [(inv.with_xattrs, 10), (inv.files + inv.dirs, 3), (wrong, 1), (universe, 2)]
        case "new":
            return [(inv.fresh, 6), (inv.removed, 6), (inv.existing, 2), (universe, 2)]
        case "target":
            # rename's destination: a fresh or removed name (a whiteout), or one of the
            # source's kind to replace
            same = inv.empty_dirs if source in inv.dirs else inv.nondirs
            same = [path for path in same if path != source]
            # not into the source itself (EINVAL stays reachable through the universe)
            inside = f"{source}/"
            fresh = [path for path in inv.fresh if not path.startswith(inside)]
            return [(fresh, 5), (inv.removed, 4), (same, 4), (inv.existing, 1),
                    (universe, 2)]
    raise ValueError(f"no path role {role!r}")


def _of(paths: list[str], kind: list[str]) -> list[str]:
    wanted = set(kind)
    return [path for path in paths if path in wanted]


def viable(role: str, inv: Inventory) -> bool:
    """Whether the role's first group (the right kind) has a name now; a write can
    always succeed on a fresh name (O_CREAT)."""
    known = inv.viable.get(role)
    if known is None:
        table = groups(role, inv)
        known = bool(table[0][0]) or (role == "file_or_new" and bool(table[1][0]))
        inv.viable[role] = known
    return known


def choose(n: int, table: list[tuple[list[str], int]]) -> str:
    """The path index ``n`` names in ``table`` (see the module doc)."""
    slot, entry = n % SLOTS, n // SLOTS
    start = 0
    chosen = len(table) - 1
    for number, (_, weight) in enumerate(table):
        if slot < start + weight:
            chosen = number
            break
        start += weight
    # an empty group's slots go to the first non-empty group (the right kind, if any)
    for paths, _ in (table[chosen], *table):
        if paths:
            return paths[entry % len(paths)]
    return UNIVERSE[entry % len(UNIVERSE)]


def draw_path(data: ConjectureData, role: str, inv: Inventory, source: str | None = None) -> str:
    """One path of ``role``: a single choice."""
    return choose(data.draw_integer(0, SLOTS * DEPTH - 1), groups(role, inv, source))


#: The role of each path field of an operation, by rule name (conformance.generation.strategies).
ROLES: dict[str, tuple[str, ...]] = {
    "stat": ("any",),
    "read": ("file",),
    "readdir": ("dir",),
    "readlink": ("symlink",),
    "getxattr": ("has_xattr",),
    "listxattr": ("any",),
    "write": ("file_or_new",),
    "truncate": ("file",),
    "mkdir": ("new",),
    "rmdir": ("empty_dir",),
    "unlink": ("nondir",),
    "rename": ("source", "target"),
    "link": ("file", "new"),
    "symlink": ("new",),
    "chmod": ("any",),
    "chown": ("any",),
    "setxattr": ("xattr",),
    "removexattr": ("has_xattr",),
    "mkfifo": ("new",),
}
