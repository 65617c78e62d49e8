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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from conformance.generation.strategies import NAMES, WEIGHTED_PATHS
from reference.layer import Kind
from reference.lookup import Node
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


class _cached:
    """functools.cached_property without its lock (Python 3.11 takes an RLock on every
    first access; an inventory is never shared between threads): the value is computed
    once, then found in the instance's ``__dict__``."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func, self.name = func, func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


class Inventory:
    """What the merged view (a :class:`Tree`) holds now, by kind, in a deterministic order
    (shallow first, then by name). Each list is computed when first asked for, from the
    tree as it is then: an inventory is dropped when its tree changes (the drawer does)."""

    #: the lists an inventory holds (what tests compare)
    FIELDS = ("files", "dirs", "empty_dirs", "symlinks", "fifos", "removed", "fresh",
              "recent", "recreated", "with_xattrs", "existing", "nondirs", "descriptors")

    def __init__(
        self,
        tree: Tree,
        removed: list[str],
        recent: list[str] = (),
        recreated: list[str] = (),
        descriptors: list[str] = (),
    ) -> None:
        self.tree = tree
        self._removed = removed
        #: files a read-only descriptor was opened on before their copy-up, their data
        #: unchanged since (cases._Drawer keeps them): changing one's data copies it up
        #: under the descriptor, whose next read must show the copy
        self.descriptors = [path for path in descriptors if tree.kinds.get(path) is Kind.FILE]
        #: directories made at a removed name (over a whiteout, if it had a lower) that
        #: are still directories, most recent first
        self.recreated = [path for path in recreated if tree.kinds.get(path) is Kind.DIR]
        #: names made, renamed to or copied up in the last steps, most recent first, that
        #: exist now
        self.recent = [path for path in recent if path in tree.kinds or path == ""]
        #: viable(role) and groups(role) of this inventory, as computed
        self.viable: dict[str, bool] = {}
        self.groups: dict[str, list[tuple[list[str], int]]] = {}

    @_cached
    def existing(self) -> list[str]:
        """Every name but the root."""
        return sorted(self.tree.kinds, key=_order)

    @_cached
    def _by_kind(self) -> dict[Kind, list[str]]:
        found: dict[Kind, list[str]] = {kind: [] for kind in Kind}
        kinds = self.tree.kinds
        for path in self.existing:
            found[kinds[path]].append(path)
        return found

    @property
    def counts(self) -> dict[Kind, int]:
        return self.tree.counts

    @_cached
    def files(self) -> list[str]:
        return self._by_kind[Kind.FILE]

    @_cached
    def dirs(self) -> list[str]:
        """The root ("") first."""
        return ["", *self._by_kind[Kind.DIR]]

    @_cached
    def empty_dirs(self) -> list[str]:
        children = self.tree.children
        return [path for path in self._by_kind[Kind.DIR] if not children[path]]

    @_cached
    def symlinks(self) -> list[str]:
        return self._by_kind[Kind.SYMLINK]

    @_cached
    def fifos(self) -> list[str]:
        return self._by_kind[Kind.FIFO]

    @_cached
    def nondirs(self) -> list[str]:
        kinds = self.tree.kinds
        return [path for path in self.existing if kinds[path] is not Kind.DIR]

    @_cached
    def with_xattrs(self) -> list[str]:
        """Files and directories that have a user xattr."""
        return sorted(self.tree.xattrs, key=_order)

    @_cached
    def removed(self) -> list[str]:
        """The removed names still missing, in a directory that exists."""
        tree = self.tree
        return [
            path
            for path in self._removed
            if path not in tree.kinds and tree.is_dir(path.rpartition("/")[0])
        ]

    @_cached
    def fresh(self) -> list[str]:
        """The removed names, then every missing name of FRESH_LEAVES in each directory
        less than three deep."""
        kinds = self.tree.kinds
        fresh = list(self.removed)
        for directory in self.dirs:
            prefix = f"{directory}/" if directory else ""
            if directory and directory.count("/") >= 3:
                continue
            for leaf in FRESH_LEAVES:
                path = prefix + leaf
                if path not in kinds and path not in fresh:
                    fresh.append(path)
        return fresh

    def has_fresh(self) -> bool:
        """Whether :attr:`fresh` has a name (a missing name in the root settles it)."""
        kinds = self.tree.kinds
        return any(leaf not in kinds for leaf in FRESH_LEAVES) or bool(self.fresh)

    def has_empty_dir(self) -> bool:
        return self.tree.empty_dirs > 0


def _order(path: str) -> tuple[int, str]:
    return path.count("/"), path


@attrs.define
class Tree:
    """Every name of the merged view (the root left out) with its kind, the names whose
    object has a user xattr (the root "" too), and how many names each directory holds.
    Kept up to date step by step (:meth:`update`): a walk of the whole view after every
    step that changes names cost more than the rest of the drawing."""

    kinds: dict[str, Kind] = attrs.field(factory=dict)
    xattrs: set[str] = attrs.field(factory=set)
    children: dict[str, int] = attrs.field(factory=lambda: {"": 0})
    #: how many names of each kind there are (what a rule's viability asks), and how many
    #: directories other than the root are empty: kept with the names
    counts: dict[Kind, int] = attrs.field(factory=lambda: dict.fromkeys(Kind, 0))
    empty_dirs: int = 0

    def add(self, model: Overlay, node: Node) -> None:
        """``node`` and, for a directory, every name below it (none may be known yet)."""
        pending = [node]
        children, counts = self.children, self.counts
        while pending:
            node = pending.pop()
            path = node.path
            is_dir = node.is_dir
            if path:
                kind = Kind.DIR if is_dir else node.kind
                self.kinds[path] = kind
                counts[kind] += 1
                parent = path.rpartition("/")[0]
                if not children[parent] and parent:
                    self.empty_dirs -= 1
                children[parent] += 1
            if node.kind in (Kind.FILE, Kind.DIR) and model.meta(node).xattrs:
                self.xattrs.add(path)
            if is_dir:
                children[path] = 0
                if path:
                    self.empty_dirs += 1
                pending.extend(child for _, child in model.found_children(node))

    def remove(self, path: str) -> None:
        """``path`` and every name below it."""
        if path not in self.kinds:
            return
        inside = f"{path}/"
        gone = [p for p in self.kinds if p == path or p.startswith(inside)] if (
            self.kinds[path] is Kind.DIR
        ) else [path]
        children, counts = self.children, self.counts
        for p in gone:
            kind = self.kinds.pop(p)
            counts[kind] -= 1
            if kind is Kind.DIR and not children.pop(p):
                self.empty_dirs -= 1
            self.xattrs.discard(p)
        parent = path.rpartition("/")[0]
        children[parent] -= 1
        if not children[parent] and parent:
            self.empty_dirs += 1

    def update(self, model: Overlay, roots: tuple[str, ...]) -> None:
        """Read the names at and below each of ``roots`` again from ``model``, after a
        step that changed only them (their parents are directories of the tree)."""
        for root in roots:
            self.remove(root)
        for root in roots:
            if root not in self.kinds:
                node = model.resolve(root, follow=False).node
                if node is not None:
                    self.add(model, node)

    def recheck_xattrs(self, model: Overlay, path: str) -> None:
        """Whether the object at ``path`` has a user xattr, read again."""
        node = model.resolve(path, follow=False).node
        self.xattrs.discard(path)
        if node is not None and node.kind in (Kind.FILE, Kind.DIR) and model.meta(node).xattrs:
            self.xattrs.add(path)

    def is_dir(self, path: str) -> bool:
        return path == "" or self.kinds.get(path) is Kind.DIR


def tree_of(model: Overlay) -> Tree:
    """The merged view of ``model`` as a :class:`Tree` (a walk of the lookups)."""
    tree = Tree()
    tree.add(model, model.root())
    return tree


def inventory(
    model: Overlay,
    removed: list[str],
    recent: list[str] = (),
    recreated: list[str] = (),
    descriptors: list[str] = (),
) -> Inventory:
    """The merged view of ``model`` as lists of paths by kind (a walk of the lookups)."""
    return inventory_of(tree_of(model), removed, recent, recreated, descriptors)


def inventory_of(
    tree: Tree,
    removed: list[str],
    recent: list[str] = (),
    recreated: list[str] = (),
    descriptors: list[str] = (),
) -> Inventory:
    """The inventory of a :class:`Tree`: its names by kind, the removed names that are
    still missing in a directory that exists, and fresh names."""
    return Inventory(tree, removed, recent, recreated, descriptors)


UNIVERSE = list(WEIGHTED_PATHS)


def groups(
    role: str, inv: Inventory, source: str | None = None, lower: list[str] = ()
) -> list[tuple[list[str], int]]:
    """The (paths, weight) groups of a role, the right kind first; weights add up to
    SLOTS. Names made or removed in the last steps have a group of their own, so related
    steps on the same names (remove, recreate, rename) follow each other. ``lower``: the
    files not copied up yet (role "lower_file", asked of the model when drawn)."""
    universe = UNIVERSE
    match role:
        case "any":
            return [(inv.existing, 10), (inv.recent, 3), (inv.removed, 1), (universe, 2)]
        case "source":
            # a directory just made over a whiteout first among the recent names: moving it
            # (an opaque directory, its whiteout left behind) is the kind of three-step
            # story the drivers get wrong
            dirs = inv.dirs[1:]
            return [(inv.existing, 4), (inv.recreated, 5), (inv.recent, 2), (dirs, 2),
                    (inv.removed, 1), (universe, 2)]
        # a file a descriptor reads from its lower layer takes slots of the files (right
        # after them: while there is none, the same index names the same file)
        case "file":
            wrong = inv.dirs[1:] + inv.fifos + inv.symlinks
            recent = _of(inv.recent, inv.files)
            return [(inv.files, 6), (inv.descriptors, 4), (recent, 3), (wrong, 1),
                    (universe, 2)]
        case "lower_file":
            # open: a file still in a lower layer takes slots of the files (after them:
            # while there is none, the same index names the same file), since a
            # descriptor opened before its file's copy-up must then read the copy; most
            # files are copied up or made in the upper by the time an open is drawn
            wrong = inv.dirs[1:] + inv.fifos + inv.symlinks
            recent = _of(inv.recent, inv.files)
            return [(inv.files, 5), (list(lower), 5), (recent, 3), (wrong, 1), (universe, 2)]
        case "file_or_new":
            wrong = inv.dirs + inv.fifos
            return [(inv.files, 5), (inv.descriptors, 3), (inv.fresh, 3), (inv.removed, 2),
                    (wrong, 1), (universe, 2)]
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


#: Whether a role's first group (the right kind) has a name, from counts (no list needed).
VIABLE: dict[str, Callable[[Inventory], bool]] = {
    "any": lambda inv: bool(inv.tree.kinds),
    "source": lambda inv: bool(inv.tree.kinds),
    "file": lambda inv: bool(inv.counts[Kind.FILE]),
    "lower_file": lambda inv: bool(inv.counts[Kind.FILE]),
    # a write can always succeed on a fresh name (O_CREAT)
    "file_or_new": lambda inv: bool(inv.counts[Kind.FILE]) or inv.has_fresh(),
    "dir": lambda inv: True,  # the root
    "empty_dir": Inventory.has_empty_dir,
    "nondir": lambda inv: len(inv.tree.kinds) > inv.counts[Kind.DIR],
    "symlink": lambda inv: bool(inv.counts[Kind.SYMLINK]),
    "xattr": lambda inv: True,  # the root
    "has_xattr": lambda inv: bool(inv.tree.xattrs),
    "new": Inventory.has_fresh,
    "target": Inventory.has_fresh,
}


def viable(role: str, inv: Inventory) -> bool:
    """Whether the role's first group (the right kind) has a name now; a write can
    always succeed on a fresh name (O_CREAT)."""
    known = inv.viable.get(role)
    if known is None:
        known = inv.viable[role] = VIABLE[role](inv)
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


def draw_path(
    data: ConjectureData,
    role: str,
    inv: Inventory,
    source: str | None = None,
    lower: list[str] = (),
) -> str:
    """One path of ``role``: a single choice (``lower``: see :func:`groups`)."""
    if role in ("target", "lower_file"):  # depends on the source, on the model
        table = groups(role, inv, source, lower)
    else:
        table = inv.groups.get(role) or inv.groups.setdefault(role, groups(role, inv))
    return choose(data.draw_integer(0, SLOTS * DEPTH - 1), table)


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
    "open": ("lower_file",),
    # issue 18, first half
    "utimens": ("any",),
    "fallocate": ("file",),
}
