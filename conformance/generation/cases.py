"""A mount and a program drawn together, step by step against a private reference model.

What the lockstep machine runs (conformance.lockstep.machine.lockstep_test). The reference engine
is pure, so the strategy mounts its own copy of the stack and applies each operation as
it draws it: every path is chosen from what the model holds at that step
(conformance.generation.paths_choice), in the kinds this example's swarm enables
(conformance.generation.swarm). The program is still data drawn from Hypothesis's choice sequence:
it replays exactly, and it shrinks as :class:`conformance.generation.strategies.Programs` does (one
span per step after a "stop here?" choice, forced at ``max_steps``), so deleting a step
deletes its choices.

Besides the paths it draws (each table's first entry still where shrinking goes):

- file data, offsets and sizes around a page (4096) and beyond, a 1 MiB file now and
  then;
- up to 6 lower layers;
- sometimes a top lower that an earlier overlay left behind: a short generated program
  run on the stack, its upper layer (whiteouts, opaque directories, hardlinks) becoming a
  lower of the mount under test;
- sometimes a remount after the first few steps, so the rest of the program runs on an
  upper layer that starts non-empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.internal.conjecture.utils import calc_label_from_name

from conformance.generation import strategies as s
from conformance.generation.paths_choice import (
    REMEMBERED,
    ROLES,
    VIABLE,
    Inventory,
    Tree,
    draw_path,
    inventory_of,
    tree_of,
)
from conformance.generation.strategies import _STEP_LABEL, _pick
from conformance.generation.swarm import Swarm, draw_swarm
from reference import ops
from reference.layer import (
    DirSpec,
    EntrySpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    Inode,
    Kind,
    LayerSpec,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
    walk,
)
from reference.options import Options
from reference.outcome import Ok
from reference.overlay import Overlay
from reference.paths import FsError

if TYPE_CHECKING:
    from hypothesis.internal.conjecture.data import ConjectureData

PAGE = 4096
#: Write data: the small table first (where shrinking goes), then a full page. Files grow
#: past a page by offsets and truncates (a page of data printed in a program is long enough).
WRITE_DATA: tuple[bytes, ...] = (*s.DATA, b"P" * PAGE)
#: Offsets: the small ones, then just before, at and after the first and second page end.
WRITE_OFFSETS = (*s.OFFSETS, PAGE - 5, PAGE - 1, PAGE, 2 * PAGE - 2, 2 * PAGE + 3)
#: Truncate sizes: the small ones, around a page, a few pages, 1 MiB (the kernel copies a
#: file up in chunks of that size: fs/overlayfs/copy_up.c OVL_COPY_UP_CHUNK_SIZE; also
#: conformance.records.program_check's MAX_BYTES).
SIZES = (*s.SIZES, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 5, 1 << 20)
#: open(2) flags for a name that does not exist yet: mostly creating ones.
NEW_FLAGS: tuple[tuple[str, ...], ...] = (
    ("O_CREAT",),
    ("O_CREAT", "O_TRUNC"),
    ("O_CREAT", "O_EXCL"),
    (),
)
#: renameat2 flags onto an existing name (mostly replacing or exchanging it), and onto a
#: missing one (mostly plain or RENAME_NOREPLACE; RENAME_EXCHANGE there is ENOENT).
EXCHANGE = ("", "RENAME_EXCHANGE", "", "RENAME_EXCHANGE", "RENAME_NOREPLACE")
NOREPLACE = ("", "RENAME_NOREPLACE", "", "RENAME_EXCHANGE")
#: How many lower layers (before any earlier-overlay layer), one choice.
LOWER_COUNTS = (1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 6)
#: After how many steps a remount happens (-1: none), one choice.
REMOUNT_AT = (-1, -1, -1, 3, 6)
#: Steps of the program whose upper becomes the top lower (0: none), one choice.
EARLIER_STEPS = (0, 0, 0, 0, 4, 8)
#: The operations an earlier overlay ran (the ones that leave something in its upper).
EARLIER_RULES = ("write", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "mkfifo")

#: The rules that change the tree (drawn twice as often when they can succeed): the
#: writing kinds of ``ops.KINDS``.
CHANGING = frozenset(ops.KINDS[cls].rule for cls in ops.WRITES)
#: The rules that act on an open descriptor (drawn as able only while one is open).
ON_HANDLES = frozenset({"read_fd", "write_fd", "close"})

#: The rules that change a file's data, copying it up first (file.c ovl_open: an open for
#: write copies up): while a read-only descriptor is open on a lower file they are drawn
#: more, on its path more (paths_choice, ``Inventory.descriptors``).
DATA_CHANGES = frozenset({"write", "truncate", "fallocate"})
#: How many more times each is in the rule table then; an open while a file is still in
#: a lower layer and no descriptor waits on one; and a read through a descriptor whose
#: file was copied up and changed since its open (what a driver that keeps reading the
#: lower file gets wrong: the seeded fault stale-descriptor).
OPEN_WEIGHT = 30
COPY_UP_WEIGHT = 12
STALE_READ_WEIGHT = 60

#: open(2) access modes for a file still in a lower layer: mostly read-only (an open for
#: writing copies the file up at once, so no descriptor is left on the lower file).
LOWER_ACCESS = ("O_RDONLY", "O_RDWR", "O_RDONLY", "O_RDONLY")

#: The rules that add, remove or move names (drawn more often still).
NAMESPACE = frozenset({"mkdir", "rmdir", "unlink", "rename"})
#: Field domains (``ops.Kind.draws``) drawn from bigger tables than ``strategies.DOMAINS``.
BIGGER: dict[str, tuple[Any, ...]] = {"data": WRITE_DATA, "offset": WRITE_OFFSETS, "size": SIZES}
#: Field domains that are paths: drawn from the model's inventory (paths_choice.ROLES).
PATH_DOMAINS = frozenset({"path", "dir_path"})

_EARLIER_LABEL = calc_label_from_name("unionspec earlier overlay step")


class _Drawer:
    """Draws operations against a model, keeping its inventory up to date."""

    def __init__(
        self,
        model: Overlay,
        rules: tuple[str, ...],
        big: bool = True,
        callers: tuple[str, ...] = ("root",),
    ) -> None:
        self.model = model
        self.rules = rules
        #: who each operation runs as (ops.CALLERS; one choice per step when several)
        self.callers = callers
        #: the bigger data, offset and size tables (an earlier overlay's do not: its files
        #: become a lower layer's specs, printed with a failing example)
        self.bigger = BIGGER if big else {}
        self.removed: list[str] = []
        self.recent: list[str] = []
        #: directories made at a name removed before (over a whiteout, if it had a lower),
        #: most recent first, followed through renames: what a rename moves first
        self.recreated: list[str] = []
        self.inv: Inventory | None = None
        #: read-only descriptors opened on a file not copied up yet: the path, by handle
        self.lower_fds: dict[int, str] = {}
        #: of those, the paths whose data is unchanged since (a data change copies one up
        #: under its descriptor), and the handles whose file was copied up and changed
        #: since (a read through one must show the copy): :meth:`_descriptors`
        self.waiting: list[str] = []
        self.stale: tuple[int, ...] = ()
        #: the files not copied up yet, and what they were computed for (the inventory
        #: and the number of copy-ups): :meth:`_lower_files`
        self._lower: list[str] = []
        self._lower_for: tuple[int, int] | None = None
        self._inventories = 0
        #: whether this mount and these rules can tell "open a lower file, change its
        #: data, read the descriptor": only then are those steps drawn more
        self._story = (
            not model.options.read_only
            and {"open", "read_fd"} <= set(rules)
            and bool(DATA_CHANGES & set(rules))
        )
        self._opening = False
        #: the merged view's names, kept up to date step by step (paths_choice.Tree)
        self.tree: Tree = tree_of(model)
        self._table: tuple[str, ...] | None = None
        read_only = model.options.read_only
        #: the rules that may succeed on this mount, and the roles of their first paths
        self._candidates = tuple(r for r in rules if not (read_only and r in CHANGING))
        self._roles = tuple(sorted({ROLES[r][0] for r in self._candidates if r in ROLES}))
        #: whether each of those roles is viable, asked of an inventory (paths_choice.viable
        #: without its cache: each is asked once per inventory)
        self._viable = tuple(VIABLE[role] for role in self._roles)
        #: the rule table of each combination of viable roles and of "a directory was made
        #: over a whiteout" (they repeat)
        self._tables: dict[tuple[bool, ...], tuple[str, ...]] = {}

    def inventory(self) -> Inventory:
        if self.inv is None:
            self.inv = inventory_of(
                self.tree, self.removed, self.recent, self.recreated, self.waiting
            )
            self._inventories += 1
            self._table = None
        return self.inv

    def rule_table(self) -> tuple[str, ...]:
        """The rules to pick from: each rule whose first path has a name of the right kind
        now three times, first (where shrinking goes), then once each other rule (as a
        precondition would, without excluding it). A rule that changes the tree counts
        double, one that adds or removes names (whiteouts, opaque dirs, redirects: the
        overlay's own machinery) more: the whole view is compared after every step, so
        the reading rules add only their own outcome. On a read-only mount a writing rule
        can only give EROFS: it counts once, as one that cannot succeed. While a
        read-only descriptor is open on a lower file, the rules that change its data
        (copying it up) count more, and once it was copied up and changed, a read
        through it does: "open, copy up, read the old descriptor" is a story of three
        related steps, rare when each is one draw among twenty kinds."""
        if self.lower_fds or self.waiting or self.stale:
            self._descriptors()
        inv = self.inventory()
        opening = self._story and not self.lower_fds and bool(self._lower_files())
        if opening != self._opening:
            self._opening, self._table = opening, None
        if self._table is None:
            handles = any(h is not None for h in self.model.handles)
            flags = (
                *[able(inv) for able in self._viable],
                handles,
                opening,
                bool(self.waiting),
                bool(self.stale),
                bool(inv.recreated),
            )
            table = self._tables.get(flags)
            if table is None:
                can = dict(zip(self._roles, flags, strict=False))
                able = [
                    rule
                    for rule in self._candidates
                    if (rule not in ROLES or can[ROLES[rule][0]])
                    and (rule not in ON_HANDLES or handles)
                ]
                changing = [rule for rule in able if rule in CHANGING] * 3
                names = [rule for rule in able if rule in NAMESPACE] * 2
                # a directory made over a whiteout: renaming it away is the rare next step
                moves = [rule for rule in able if rule == "rename"] * 4 * flags[-1]
                opens = [rule for rule in able if rule == "open"] * OPEN_WEIGHT * flags[-4]
                copying = [rule for rule in able if rule in DATA_CHANGES] * (
                    COPY_UP_WEIGHT * flags[-3]
                )
                reading = [rule for rule in able if rule == "read_fd"] * (
                    STALE_READ_WEIGHT * flags[-2]
                )
                others = [rule for rule in self.rules if rule not in able]
                table = (
                    *able, *able, *able, *changing, *names, *moves, *opens, *copying, *reading,
                    *others,
                )
                self._tables[flags] = table
            self._table = table
        return self._table

    def draw(self, data: ConjectureData) -> ops.Op:
        """One operation: a rule, then each field by its domain (``ops.Kind.draws``):
        paths by their role, flags and xattr names by what the paths hold, the rest from
        ``strategies.DOMAINS`` (bigger tables for data, offsets and sizes)."""
        rule = _pick(data, self.rule_table())
        kind = ops.BY_RULE[rule]
        # a kind with no roles of its own draws each path as "any" (an existing name of any
        # kind, or a fresh one): a new operation kind needs no entry here
        roles = ROLES.get(rule) or ("any",) * len(kind.draws)
        paths: list[str] = []
        args: list[Any] = []
        for domain in kind.draws:
            if domain in PATH_DOMAINS:
                source = paths[0] if paths else None
                role = roles[len(paths)]
                lower = self._lower_files() if role == "lower_file" else ()
                value = draw_path(data, role, self.inventory(), source, lower)
                paths.append(value)
            elif domain == "open_flags":
                value = _pick(data, s.OPEN_FLAGS if self._exists(paths[0]) else NEW_FLAGS)
            elif domain == "rename_flags":
                value = _pick(data, EXCHANGE if self._exists(paths[1]) else NOREPLACE)
            elif domain == "handle":
                value = _pick(data, self._handles(rule))
            elif domain == "access":
                value = _pick(data, LOWER_ACCESS if paths[0] in self._lower else ops.OPEN_ACCESS)
            elif domain == "xattr_name" and roles[0] == "has_xattr":
                value = _pick(data, self._xattr_names(paths[0]))
            elif domain == "xattr_name":
                value = _pick(data, self._all_xattr_names())
            else:
                value = _pick(data, self.bigger.get(domain, s.DOMAINS[domain]))
            args.append(value)
        if len(self.callers) > 1 and kind.effect is not ops.Effect.REMOUNTS and not kind.descriptor:
            return kind.cls(*args, caller=_pick(data, self.callers))
        return kind.cls(*args)

    def _handles(self, rule: str) -> tuple[int, ...]:
        """The handles open now (three times: mostly one of them), for a read those whose
        file was copied up and changed since their open three times more, then the closed
        ones and the next number (EBADF)."""
        handles = self.model.handles
        open_now = tuple(n for n, h in enumerate(handles) if h is not None)
        closed = tuple(n for n, h in enumerate(handles) if h is None)
        stale = self.stale if rule == "read_fd" else ()
        return open_now * 3 + stale * 3 + closed + (len(handles),)

    def _lower_files(self) -> list[str]:
        """The files of the merged view not copied up yet (a lookup of each, again only
        when a name changed or a file was copied up since)."""
        inv = self.inventory()
        key = (self._inventories, len(self.model.copies))
        if key != self._lower_for:
            resolve = self.model.resolve
            self._lower = [path for path in inv.files
                           if resolve(path, follow=False).node.upper is None]
            self._lower_for = key
        return self._lower

    def _opened_on_lower(self, op: ops.Open) -> str | None:
        """The path of the lower file a read-only open of ``op`` would open (None: not
        one), asked before the open."""
        if op.access != "O_RDONLY":
            return None
        try:
            node = self.model.resolve(op.path, follow=True).node
        except FsError:
            return None
        if node is None or node.kind is not Kind.FILE or node.upper is not None:
            return None
        return node.path

    def _descriptors(self) -> None:
        """Sort the read-only descriptors opened on lower files (:attr:`lower_fds`) into
        those whose file's data is as at the open (:attr:`waiting`, by path) and those
        whose file was copied up and changed since (:attr:`stale`); forget the closed."""
        model = self.model
        waiting: list[str] = []
        stale: list[int] = []
        for number, path in list(self.lower_fds.items()):
            if model.handles[number] is None:
                del self.lower_fds[number]
            elif copied_since_open(model, number):
                stale.append(number)
            elif self.tree.kinds.get(path) is Kind.FILE and path not in waiting:
                waiting.append(path)
        if waiting != self.waiting:
            self.waiting = waiting
            self._table = None
            if self.inv is not None:
                self.inv.descriptors = list(waiting)
                self.inv.groups.clear()
        if tuple(stale) != self.stale:
            self.stale = tuple(stale)
            self._table = None

    def _exists(self, path: str) -> bool:
        """Whether the merged view has ``path`` (a symlink counts as what it is)."""
        return path == "" or path in self.tree.kinds

    def _xattr_names(self, path: str) -> tuple[str, ...]:
        """The names the object has (three times: mostly one it has), then all names."""
        try:
            node = self.model.resolve(path, follow=True).node
        except FsError:
            node = None
        present: tuple[str, ...] = ()
        if node is not None:
            present = tuple(sorted(self.model.meta(node).xattrs))
        return present * 3 + self._all_xattr_names()

    def _all_xattr_names(self) -> tuple[str, ...]:
        """The names drawn: with userxattr also one the overlay must escape."""
        if self.model.options.userxattr:
            return s.XATTR_NAMES + s.ESCAPED_XATTR_NAMES
        return s.XATTR_NAMES

    def apply(self, op: ops.Op) -> None:
        if isinstance(op, ops.ReadFd) and op.handle in self.stale:
            del self.lower_fds[op.handle]  # read after its copy-up: the story is told
        if type(op) in ops.LOOKS:
            return  # the engine changes nothing for these (tests/test_looks.py)
        roots = self._roots(op)
        lower = self._opened_on_lower(op) if isinstance(op, ops.Open) else None
        opened = len(self.model.handles)
        allowed = self.model.apply(op)
        if ops.KINDS[type(op)].descriptor or isinstance(op, ops.Remount):
            self._table = None  # which handles are open decides the descriptor rules
        if lower is not None and self._story and len(self.model.handles) > opened:
            self.lower_fds[opened] = lower
        if not any(isinstance(o, Ok) for o in allowed):
            return
        if roots is None:
            self.tree = tree_of(self.model)
            self.inv = None
        elif roots:
            if _xattrs_only(op):
                self.tree.recheck_xattrs(self.model, roots[0])
            else:
                self.tree.update(self.model, roots)
            self.inv = None  # the inventory holds names, kinds and who has xattrs
        if isinstance(op, ops.Mkdir) and op.path in self.removed:
            self.recreated = [op.path, *self.recreated][:REMEMBERED]
        elif isinstance(op, ops.Rename) and op.src in self.recreated:
            self.recreated = [op.dst, *(p for p in self.recreated if p != op.src)][:REMEMBERED]
        gone = None
        if isinstance(op, ops.Unlink | ops.Rmdir):
            gone = op.path
        elif isinstance(op, ops.Rename) and op.flags != "RENAME_EXCHANGE":
            gone = op.src
        if gone is not None:
            self.removed = [gone, *(p for p in self.removed if p != gone)][:REMEMBERED]
        made = _made(op)
        if made is not None:
            self.recent = [made, *(p for p in self.recent if p != made)][:REMEMBERED]
            if self.inv is not None:  # kept (no name changed): what a fresh one holds
                kinds = self.tree.kinds
                self.inv.recent = [path for path in self.recent if path in kinds or path == ""]
                self.inv.groups.clear()  # some hold the recent names

    def _roots(self, op: ops.Op) -> tuple[str, ...] | None:
        """The paths below which ``op`` may change the tree (names, kinds, who has an
        xattr) if it succeeds: () for none, None for "walk the whole view again". Only a
        path whose parent is a directory of the tree (no symlink on the way), a write that
        does not follow a symlink, and an xattr change of a directory or of a file with
        one name (a hardlink's other names share its xattrs) are read again alone."""
        tree = self.tree
        match op:
            case ops.Mkdir(path) | ops.Rmdir(path) | ops.Unlink(path) | ops.Symlink(_, path):
                roots: tuple[str, ...] = (path,)
            case ops.Mkfifo(path) | ops.Link(_, path):
                roots = (path,)
            case ops.Write(path, _, _, flags) if "O_CREAT" in flags:
                if tree.kinds.get(path) is Kind.SYMLINK:
                    return None
                roots = (path,)
            case ops.Rename(src, dst):
                roots = (src, dst)
            case ops.SetXattr(path) | ops.RemoveXattr(path):
                if not tree.is_dir(path) and not self._single_file(path):
                    return None
                return (path,)
            case ops.Write(path=path) | ops.Truncate(path=path) | ops.Fallocate(
                path=path
            ) | ops.Chown(path=path):
                # may drop security.capability (reference.privileges): who has xattrs
                if not tree.is_dir(path) and not self._single_file(path):
                    return None
                return (path,)
            case ops.WriteFd():  # drops the capability of a file known by its handle
                return None
            case ops.Remount():
                return None
            case _:
                return ()
        if all(tree.is_dir(root.rpartition("/")[0]) for root in roots):
            return roots
        return None

    def _single_file(self, path: str) -> bool:
        """Whether ``path`` is a file of the tree with one name (its xattrs are its own)."""
        if self.tree.kinds.get(path) is not Kind.FILE:
            return False
        node = self.model.resolve(path, follow=False).node
        return node is not None and self.model.nlink(node) == 1


def copied_since_open(model: Overlay, number: int) -> bool:
    """Whether the descriptor of handle ``number`` was opened on a file that was copied up
    and changed since: a read through it must show the copy (Overlay._op_open), not what
    it was opened on (the seeded fault stale-descriptor; also a rare state of
    conformance.generation.coverage)."""
    handle = model.handles[number] if 0 <= number < len(model.handles) else None
    if handle is None or handle.path_only:
        return False
    now = model.copies.get(handle.key, handle.inode)
    return now is not handle.inode and _content(now) != _content(handle.inode)


def _content(inode: Inode) -> bytes:
    """What a read of ``inode`` gives (a metacopy file's data is its origin's)."""
    if inode.metacopy and inode.origin is not None:
        return inode.origin.data
    return inode.data


def _xattrs_only(op: ops.Op) -> bool:
    """Whether a successful ``op`` can change, of the tree, only who has xattrs: an xattr
    call, or a write, truncate, fallocate or chown that does not create (they drop
    security.capability, reference.privileges)."""
    if isinstance(op, ops.Write):
        return "O_CREAT" not in op.flags
    return isinstance(op, ops.SetXattr | ops.RemoveXattr | ops.Truncate | ops.Fallocate | ops.Chown)


def created(op: ops.Op) -> str | None:
    """The name an operation makes or moves to when it succeeds (a write with O_CREAT may
    have made it); also what conformance.generation.coverage looks under for a whiteout."""
    match op:
        case ops.Mkdir(path) | ops.Symlink(_, path) | ops.Mkfifo(path):
            return path
        case ops.Write(path, _, _, flags) if "O_CREAT" in flags:
            return path
        case ops.Link(_, path) | ops.Rename(_, path):
            return path
    return None


def _made(op: ops.Op) -> str | None:
    """The name an operation that succeeded made, moved to or copied up."""
    match op:
        case ops.Chmod(path) | ops.Chown(path) | ops.SetXattr(path):
            return path  # copied up (metadata only with metacopy=on)
    return created(op)


def upper_as_layer(model: Overlay) -> LayerSpec:
    """The upper layer of ``model`` as a lower layer spec: what an earlier overlay left.
    Hardlinks stay hardlinks; whiteouts and opaque directories stay markers."""
    assert model.upper is not None
    entries: list[tuple[str, EntrySpec]] = []
    first: dict[int, str] = {}
    for path, inode in walk(model.upper):
        entries.append((path, _spec(inode, first.get(inode.ident))))
        if inode.kind is Kind.FILE:
            first.setdefault(inode.ident, path)
    return LayerSpec(tuple(entries))


def _exact(inode: Inode) -> int | None:
    """The inode's mtime where the reference knows it exactly (reference.layer.new_stamp)."""
    return inode.mtime if inode.mtime >= 0 else None


def _spec(inode: Inode, linked_to: str | None) -> EntrySpec:
    xattrs = tuple(sorted(inode.xattrs.items()))
    match inode.kind:
        case Kind.FILE if linked_to is not None:
            return HardlinkSpec(linked_to)
        case Kind.FILE:
            return FileSpec(inode.data, inode.mode, inode.uid, inode.gid, xattrs, _exact(inode))
        case Kind.DIR:
            return DirSpec(inode.mode, inode.uid, inode.gid, xattrs, inode.opaque, _exact(inode))
        case Kind.SYMLINK:
            return SymlinkSpec(inode.target)
        case Kind.FIFO:
            return FifoSpec(inode.mode)
    return WhiteoutSpec()


class Cases(st.SearchStrategy[tuple[StackSpec, list[ops.Op]]]):
    """A stack and a program of up to ``max_steps`` operations of ``rules`` (all by
    default), for a mount with ``options`` (see the module doc)."""

    def __init__(
        self,
        rules: Iterable[str] | None,
        max_steps: int,
        options: Options,
        min_lowers: int = 1,
        callers: tuple[str, ...] = ("root",),
    ) -> None:
        super().__init__()
        self.rules = s.Operations(rules).rules
        self.max_steps, self.options, self.min_lowers = max_steps, options, min_lowers
        self.callers = callers
        self._counts = tuple(n for n in LOWER_COUNTS if n >= min_lowers) or (min_lowers,)

    def __repr__(self) -> str:
        return f"Cases({list(self.rules)!r}, max_steps={self.max_steps}, {self.options.label})"

    def do_draw(self, data: ConjectureData) -> tuple[StackSpec, list[ops.Op]]:
        swarm = draw_swarm(data, self.rules)
        stack = self._stack(data, swarm)
        drawer = _Drawer(Overlay(stack, self.options), swarm.rules, callers=self.callers)
        remount_at = _pick(data, REMOUNT_AT)
        program: list[ops.Op] = []
        while True:
            if len(program) == remount_at:
                program.append(ops.Remount())
                drawer.apply(program[-1])
            # one span per step, its stop choice forced at max_steps (strategies.Programs)
            data.start_span(_STEP_LABEL)
            forced = True if len(program) >= self.max_steps else None
            if data.draw_boolean(2**-16, forced=forced):
                data.stop_span()
                return stack, program
            op = drawer.draw(data)
            data.stop_span()
            program.append(op)
            drawer.apply(op)

    def _stack(self, data: ConjectureData, swarm: Swarm) -> StackSpec:
        n = _pick(data, self._counts)
        marked = s.Layers(markers=True, without=swarm.without, xwhiteouts=self.options.xwhiteouts)
        if self.options.data_only:
            lowers = self._data_only_lowers(data, swarm, marked, max(n, 2))
        else:
            lowers = [marked.do_draw(data) for _ in range(n - 1)]
            lowers.append(s.Layers(markers=False, without=swarm.without).do_draw(data))
        stack = StackSpec(tuple(lowers))
        steps = _pick(data, EARLIER_STEPS)
        if not steps:
            return stack
        # an earlier overlay over these lowers (default options: its upper has no
        # redirects or metacopy files, which a layer spec cannot carry)
        earlier = Overlay(stack, Options(data_only=self.options.data_only))
        drawer = _Drawer(earlier, EARLIER_RULES, big=False)
        for _ in range(steps):
            data.start_span(_EARLIER_LABEL)
            op = drawer.draw(data)
            data.stop_span()
            drawer.apply(op)
        return StackSpec((upper_as_layer(earlier), *lowers))


    @staticmethod
    def _data_only_lowers(
        data: ConjectureData, swarm: Swarm, marked: s.Layers, n: int
    ) -> list[LayerSpec]:
        """``n`` lowers whose bottom one is data-only; the lowest regular one may hold
        metacopy stubs redirected to its files (a stub higher up is refused without
        metacopy=on, docs/mount-validation.md)."""
        bottom = s.Layers(markers=False, without=swarm.without).do_draw(data)
        files = tuple(
            (path, len(spec.data)) for path, spec in bottom.entries if isinstance(spec, FileSpec)
        )
        upper = [marked.do_draw(data) for _ in range(n - 2)]
        stubs = s.Layers(markers=False, without=swarm.without, stubs=files).do_draw(data)
        return [*upper, stubs, bottom]


def cases(
    rules: Iterable[str] | None = None,
    max_steps: int = 25,
    options: Options | None = None,
    min_lowers: int = 1,
    callers: tuple[str, ...] = ("root",),
) -> Cases:
    """Stacks with programs drawn against the reference model (see :class:`Cases`), each
    operation run by one of ``callers`` (reference.ops.CALLERS)."""
    return Cases(rules, max_steps, options or Options(), min_lowers, callers)
