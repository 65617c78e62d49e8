"""Recorded behaviours: a known divergence matches only the differences it describes.

A record of ``conformance/records/expectations.toml``
(:class:`conformance.records.expectations.Expectation`)
describes one behaviour of one driver version, in one of two ways:

* ``variant = "<name>"``: the behaviour is a rule of the engine (:mod:`reference.variants`)
  that the driver's profile selects; the lockstep model follows it, so nothing differs.
* ``[[divergence.differs]]`` clauses: which differences of a step it accounts for. A clause
  names where the difference is (``in``: ``outcome``, ``view``, ``upper``, ``lower``), the
  field (``field``: an EntryView/DiskEntry field, ``exists``, ``st_ino``, ``hardlinks``;
  ``*`` any), the operation kinds (``op``), the object the operation acts on before the
  step (``target_kind``: file, dir, symlink, fifo, none; ``target_layers``: upper, lower,
  merged, copied-up, none), where the difference may be (``at``: ``target``, the
  operation's paths and their ancestors and descendants, or ``any``), the values
  (``expected``, ``actual``: shell patterns on their rendering, :func:`render_value`) and a
  named ``rule`` (:data:`RULES`) that must hold too. The clauses with ``primary = true``
  (by default the first) show the behaviour: a record matches a step when one of them
  matches one of its differences; then every difference any of its clauses matches is
  accounted for. Any difference no record accounts for is a new divergence.

After a step whose differences are all accounted for, the run goes on: the model is
rebuilt from the upper layer the driver wrote (``resync = "model"``, the default;
:func:`reference.rebuild.rebuild_upper`), kept as it is (``"keep"``: the driver's state
is right, only what it shows differs) or the example ends there (``"stop"``: neither can
follow the driver).

:func:`tally` collects, for a certify cell or a pytest item, how many examples saw each
record (and each variant): the verdict lists them.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from conformance.errors import ConformanceError
from conformance.lockstep.compare import Divergence
from reference import ops
from reference.layer import Inode, Kind, entry_at, walk
from reference.lookup import Node
from reference.outcome import Err, Ok
from reference.overlay import Overlay
from reference.view import View

WITHIN = ("outcome", "view", "upper", "lower")
AT = ("target", "any")
LAYERS = ("upper", "lower", "merged", "copied-up", "none")
TARGET_KINDS = ("file", "dir", "symlink", "fifo", "none")
RESYNC = ("model", "keep", "stop")
OP_NAMES = {
    name: cls
    for name, cls in vars(ops).items()
    if isinstance(cls, type) and cls.__module__ == ops.__name__ and name != "StatResult"
}


@attrs.frozen
class Subject:
    """The object an operation acts on, before the step: its kind and where it lives, and
    the paths the operation's paths resolved to."""

    kind: str
    layers: str
    paths: tuple[str, ...] = ()
    #: The same of the object a final symlink leads to ("" when it is not a symlink).
    followed_kind: str = ""
    followed_layers: str = ""


@attrs.frozen
class StepContext:
    """What a clause may look at: the step's operation (None: the mount), its target
    before the step, the model after it, and what the driver showed."""

    op: ops.Op | None
    target: Subject | None
    model: Overlay
    actual_view: View | None = None
    actual_outcome: object = None
    #: The view compared with (layer interchange: the writer's; None: the model's).
    expected_view: View | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        """The operation's paths, and the paths they resolved to before the step (through
        symlinks in their directories)."""
        if self.op is None:
            return ()
        resolved = self.target.paths if self.target is not None else ()
        return tuple(dict.fromkeys((*operands(self.op), *resolved)))


@attrs.frozen
class Clause:
    within: str
    field: str = "*"
    ops: tuple[str, ...] = ()
    target_kinds: tuple[str, ...] = ()
    target_layers: tuple[str, ...] = ()
    at: str = "target"
    expected: str | None = None
    actual: str | None = None
    rule: str | None = None
    primary: bool = False

    def matches(self, diff: Divergence, ctx: StepContext) -> bool:
        within, path = split_where(diff)
        if within != self.within or (self.field != "*" and diff.field != self.field):
            return False
        name = "Mount" if ctx.op is None else type(ctx.op).__name__
        if self.ops and name not in self.ops:
            return False
        if self.target_kinds or self.target_layers:
            target = ctx.target
            if target is None:
                return False
            candidates = [(target.kind, target.layers)]
            if target.followed_kind:
                candidates.append((target.followed_kind, target.followed_layers))
            if not any(
                (not self.target_kinds or kind in self.target_kinds)
                and (not self.target_layers or layers in self.target_layers)
                for kind, layers in candidates
            ):
                return False
        if (
            self.at == "target"
            and within != "outcome"
            and not any(related(path, p) for p in ctx.paths)
        ):
            return False
        if self.expected is not None and not _like(diff.expected, self.expected):
            return False
        if self.actual is not None and not _like(diff.actual, self.actual):
            return False
        return self.rule is None or RULES[self.rule](diff, path, ctx)


def _like(value: object, pattern: str) -> bool:
    return fnmatch.fnmatchcase(render_value(value), pattern)


def render_value(value: object) -> str:
    """A difference's value as a clause's pattern sees it: ``none`` for an absent entry,
    an entry's kind for an entry, a string as it is, anything else as its repr."""
    if value is None:
        return "none"
    if isinstance(value, Err):
        return value.name
    if isinstance(value, Ok):
        return repr(value.value)
    if isinstance(value, tuple) and value and all(isinstance(v, Ok | Err) for v in value):
        return " or ".join(render_value(v) for v in value)
    if isinstance(value, str):
        return value
    kind = getattr(value, "kind", None)
    if isinstance(kind, str):
        return kind
    return repr(value)


def split_where(diff: Divergence) -> tuple[str, str]:
    """(``outcome``/``view``/``upper``/``lower``, the path) of a difference."""
    if diff.field == "outcome":
        return "outcome", diff.where
    head, sep, rest = diff.where.partition(":")
    if sep and (head == "upper" or head.startswith("lower")):
        return ("upper" if head == "upper" else "lower"), rest
    return "view", diff.where.rstrip("/")


def related(path: str, operand: str) -> bool:
    """``path`` is ``operand``, below it, or one of its ancestors (copy-up makes those)."""
    if path == operand or operand.startswith(path + "/") or path == "":
        return True
    return path.startswith(operand + "/") if operand else True


def operands(op: ops.Op) -> tuple[str, ...]:
    return tuple(
        value
        for name in ("path", "src", "dst")
        if isinstance(value := getattr(op, name, None), str)
    )


def subject(model: Overlay, op: ops.Op) -> Subject | None:
    """The object ``op`` acts on (its first path), before the step."""
    paths = operands(op)
    if not paths:
        return None
    found: list[str] = []
    first = None
    for number, path in enumerate(paths):
        try:
            resolved = model.resolve(path, follow=False)
        except Exception:  # a path the model refuses (ELOOP, ENOTDIR): no object
            continue
        if resolved.node is not None:
            found.append(resolved.node.path)
        elif resolved.parent is not None:
            found.append(_join(resolved.parent.path, resolved.name))
        if number == 0:
            first = resolved.node
    if first is None:
        return Subject("none", "none", tuple(found))
    followed = None
    if first.kind.value == "symlink":
        try:
            followed = model.resolve(paths[0], follow=True).node
        except Exception:  # a loop or a dangling link: nothing it leads to
            followed = None
        if followed is not None:
            found.append(followed.path)
    return Subject(
        first.kind.value,
        layers_of(first),
        tuple(found),
        followed.kind.value if followed is not None else "",
        layers_of(followed) if followed is not None else "",
    )


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def layers_of(node: Node) -> str:
    if node.upper is None:
        return "lower" if not (node.is_dir and node.is_merged) else "merged"
    if node.is_dir:
        return "merged" if node.is_merged else "upper"
    return "copied-up" if node.upper.origin is not None else "upper"


# --- named rules ------------------------------------------------------------------------


def _lower_objects(model: Overlay, path: str) -> list[Inode | None]:
    """The object at ``path`` in each lower layer (None where a layer has none), walking
    each layer alone (no overlay rules)."""
    return [entry_at(root, path) for root in model.lowers]


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _listing_extras(diff: Divergence, ctx: StepContext) -> tuple[str, list[str]] | None:
    """For a Readdir outcome difference: (the directory, the names listed beyond every
    allowed listing), when the driver listed all of the shortest allowed one (else None)."""
    if not isinstance(ctx.op, ops.Readdir) or not isinstance(ctx.actual_outcome, Ok):
        return None
    value = ctx.actual_outcome.value
    listings = [o.value for o in diff.expected if isinstance(o, Ok)] if isinstance(
        diff.expected, tuple
    ) else []
    if not isinstance(value, tuple) or not listings:
        return None
    if not set(min(listings, key=len)) <= set(value):
        return None
    return ctx.op.path, sorted(set(value) - {n for listing in listings for n in listing})


def _shadowed(model: Overlay, path: str) -> bool:
    """fuse-overlayfs: ``path`` is found below a lower layer where the lookup should have
    stopped: where one of its ancestors is not a directory, where ``path`` itself is not a
    directory in a layer below one that holds it as a directory (the directory merges on
    past it), or where one of its ancestors is an opaque directory (a layer further down
    has something on the way). A name that is a file in two layers with nothing merged
    above it is the plain precedence rule, not this."""
    prefixes = _prefixes(path)
    for depth, prefix in enumerate(prefixes):
        objects = _lower_objects(model, prefix)
        for stop, o in enumerate(objects):
            if o is None:
                continue
            if not o.is_dir:
                candidates = prefixes[depth + 1 :]
                if not candidates:
                    if not any(x is not None and x.is_dir for x in objects[:stop]):
                        break  # the top object at the name is not a directory: it decides
                    candidates = [path]
            elif o.opaque and prefix != path:
                candidates = prefixes[depth + 1 :]
            else:
                continue
            if any(
                x is not None
                for longer in candidates
                for x in _lower_objects(model, longer)[stop + 1 :]
            ):
                return True
            break  # the first layer with an object decides for this prefix
    return False


def _extras_all(
    diff: Divergence, ctx: StepContext, holds: Callable[[Overlay, str], bool]
) -> bool | None:
    """For an outcome that is a listing showing names the model does not: whether ``holds``
    for each of them (None: the outcome is no such listing)."""
    extras = _listing_extras(diff, ctx)
    if extras is None or not extras[1]:
        return None
    directory, names = extras
    return all(holds(ctx.model, f"{directory}/{n}" if directory else n) for n in names)


def rule_shadowed_by_non_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    model = ctx.model
    if diff.field == "outcome":
        listed = _extras_all(diff, ctx, _shadowed)
        if listed is not None:
            return listed
        return any(_shadowed(model, p) for p in ctx.paths)
    if diff.field == "exists":
        return diff.expected is None and _shadowed(model, path)
    if diff.field == "nlink" and ctx.actual_view is not None:
        # a directory that shows the extra subdirectories counts them
        return any(
            _shadowed(model, child)
            for child in ctx.actual_view.entries
            if child.rpartition("/")[0] == path
        )
    return False


def _lower_marker(model: Overlay, path: str) -> bool:
    """``path`` is, or lies below, a whiteout of a lower layer; or it lies below a lower
    layer's opaque directory where a layer further down has an object on the way to it
    (what the marker hides shows); or it is a lower symlink whose target is such a path."""
    prefixes = _prefixes(path)
    for depth, prefix in enumerate(prefixes):
        objects = _lower_objects(model, prefix)
        if any(o is not None and o.kind is Kind.WHITEOUT for o in objects):
            return True
        for i, o in enumerate(objects):
            if o is None or not (o.is_dir and o.opaque):
                continue
            for longer in prefixes[depth + 1 :]:
                if any(x is not None for x in _lower_objects(model, longer)[i + 1 :]):
                    return True
    for o in _lower_objects(model, path):
        if o is not None and o.kind is Kind.SYMLINK and _through_marker(model, path, o.target):
            return True
    return False


def _through_marker(model: Overlay, path: str, target: str) -> bool:
    """The symlink at ``path`` to ``target`` is followed through a lower marker (each
    component as the walk meets it, before any ``..`` is applied)."""
    base = "" if target.startswith("/") else path.rpartition("/")[0]
    stack: list[str] = [part for part in base.split("/") if part]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(part)
        here = "/".join(stack)
        if here != path and any(
            o is not None and o.kind is Kind.WHITEOUT for o in _lower_objects(model, here)
        ):
            return True
    final = "/".join(stack)
    return final != path and _lower_marker(model, final)


def rule_lower_markers_ignored(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: what a lower layer's whiteout or opaque directory hides shows (a
    whiteout as a character device, which also keeps its directory from being empty: an
    rmdir of a directory holding one fails, and the directory stays)."""
    model = ctx.model
    rmdir = isinstance(ctx.op, ops.Rmdir)
    if diff.field == "outcome":
        listed = _extras_all(diff, ctx, _lower_marker)
        if listed is not None:
            return listed
        return any(
            _lower_marker(model, p)
            or (rmdir and _holds_marker(model, p))
            or _symlink_to_marker(model, p)
            for p in ctx.paths
        )
    return _lower_marker(model, path) or (
        rmdir and path in ctx.paths and _holds_marker(model, path)
    )


def rule_operand_lower_marker(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: the step acts on what a lower marker hides (one of its paths is a
    lower whiteout or below one, or leads through one): what it did with that object."""
    return any(
        _lower_marker(ctx.model, p) or _symlink_to_marker(ctx.model, p) for p in ctx.paths
    )


def rule_operand_shadowed(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: the step acts on a name found past a non-directory or an opaque
    directory (one of its paths is shadowed): what it did, or did not do, there."""
    return any(_shadowed(ctx.model, p) for p in ctx.paths)


def _symlink_to_marker(model: Overlay, path: str) -> bool:
    """``path`` or one of its ancestors is a symlink of the merged view (an upper one too)
    that leads through a lower marker."""
    for prefix in _prefixes(path):
        try:
            node = model.resolve(prefix, follow=False).node
        except Exception:  # a path the model refuses: not this behaviour
            return False
        if node is None:
            return False
        if node.kind is Kind.SYMLINK and _through_marker(model, prefix, node.top.target):
            return True
    return False


def _holds_marker(model: Overlay, path: str) -> bool:
    """A lower layer has a whiteout below ``path``."""
    for root in model.lowers:
        for where, inode in walk(root):
            if inode.kind is Kind.WHITEOUT and where.startswith(path + "/" if path else ""):
                return True
    return False


def _through_lower_symlink(model: Overlay, path: str) -> bool:
    """``path`` lies below a name that is a directory in one lower layer and a symlink in a
    layer below it (the directory merged with what the symlink leads to). A path through
    an ordinary symlink is not this."""
    for prefix in _prefixes(path)[:-1]:
        objects = _lower_objects(model, prefix)
        for number, o in enumerate(objects):
            if o is not None and o.kind is Kind.SYMLINK and any(
                x is not None and x.is_dir for x in objects[:number]
            ):
                return True
    return False


def rule_merged_with_lower_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a directory merges with a lower layer's symlink of the same name."""
    model = ctx.model
    if diff.field == "outcome":
        listed = _extras_all(diff, ctx, _through_lower_symlink)
        if listed is not None:
            return listed
        return any(_through_lower_symlink(model, p) for p in ctx.paths)
    if diff.field == "nlink" and ctx.actual_view is not None:
        return any(
            _through_lower_symlink(model, child)
            for child in ctx.actual_view.entries
            if child.rpartition("/")[0] == path
        )
    return _through_lower_symlink(model, path)


def rule_hardlink_sibling(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: another name of the lower hardlink the step changed shows the change
    (one in-memory inode) though its own lower object is unchanged."""
    if ctx.actual_view is None or not ctx.paths:
        return False
    changed = ctx.model.resolve(ctx.paths[0], follow=True).node
    other = ctx.model.resolve(path, follow=False).node
    if changed is None or other is None or changed.upper is None or other.upper is not None:
        return False
    if changed.upper.origin is None or other.lowers[:1] != [changed.upper.origin]:
        return False
    mine = ctx.actual_view.entries.get(ctx.paths[0])
    return mine is not None and getattr(mine, diff.field, None) == diff.actual


def rule_unlistable(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The entry is missing below a directory the side that misses it could not list
    (the driver's view; in layer interchange, the writer's too)."""
    sides = ((ctx.actual_view, diff.actual), (ctx.expected_view, diff.expected))
    for view, entry in sides:
        if view is None or entry is not None:
            continue
        for where, shown in view.entries.items():
            if where.endswith("/") and shown.kind.startswith("readdir gives"):
                directory = where.rstrip("/")
                if not directory or path.startswith(directory + "/"):
                    return True
    return False


def rule_exchange_dir_with_non_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """RENAME_EXCHANGE of a directory with a non-directory (either way round)."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or op.flags != "RENAME_EXCHANGE":
        return False
    kinds = set()
    for name in (op.src, op.dst):
        try:
            node = ctx.model.resolve(name, follow=False).node
        except Exception:  # a path the model refuses: not this behaviour
            return False
        kinds.add(None if node is None else node.is_dir)
    return kinds == {True, False}


def rule_nlink_names_seen(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: st_nlink of a lower hardlink counts only the names of it the driver
    has looked up so far (at least 1, less than its real count); nothing else differs."""
    model = ctx.model
    if diff.field == "outcome":
        actual = ctx.actual_outcome
        if not isinstance(ctx.op, ops.Stat) or not isinstance(actual, Ok):
            return False
        stat = actual.value
        expected = [o.value for o in diff.expected if isinstance(o, Ok)]
        return isinstance(stat, ops.StatResult) and any(
            isinstance(e, ops.StatResult)
            and attrs.evolve(e, nlink=stat.nlink) == stat
            and 1 <= stat.nlink < e.nlink
            and _lower_hardlink(model, ctx.op.path, follow=ctx.op.follow)
            for e in expected
        )
    return (
        diff.field == "nlink"
        and isinstance(diff.expected, int)
        and isinstance(diff.actual, int)
        and 1 <= diff.actual < diff.expected
        and _lower_hardlink(model, path, follow=False)
    )


def _lower_hardlink(model: Overlay, path: str, *, follow: bool) -> bool:
    try:
        node = model.resolve(path, follow=follow).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return node is not None and node.upper is None and not node.is_dir


def rule_names_of_target_lower(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is a name of the lower object the step's target is (or was copied up
    from), and that object is a lower hardlink (more than one name in its layer): the
    target or another name of it. A lower file with one name is not this behaviour."""
    if not ctx.paths:
        return False
    try:
        target = ctx.model.resolve(ctx.paths[0], follow=True).node
        other = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if target is None or other is None or target.is_dir or other.is_dir:
        return False
    lower = ctx.model.lower_of(target)
    return (
        lower is not None
        and ctx.model.lower_nlink.get(lower.ident, 1) > 1
        and lower is ctx.model.lower_of(other)
    )


def rule_renamed_copy_up(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is a copied-up directory, or a copied-up object that no longer lives at its
    lower object's path or whose lower object is not in the top lower layer."""
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is not None and node.is_dir and node.upper is not None and node.lowers:
        return True
    if node is None or node.upper is None:
        return False
    if node.upper.origin is None:
        # copied up as another kind (fifo-copy-up-eio): no origin, and the top lower
        # object there is of another kind than the upper copy
        below = [o for o in _lower_objects(ctx.model, path) if o is not None]
        return bool(below) and below[0].kind is not node.upper.kind
    origin = node.upper.origin
    # kept only by a file copied up in place from the top lower layer
    return _lower_objects(ctx.model, path)[0] is not origin


def rule_dir_over_lower_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The stack has a name that is a directory in one lower layer and a symlink in a lower
    layer below it."""
    dirs: set[str] = set()
    for root in ctx.model.lowers:
        for where, inode in walk(root):
            if inode.kind is Kind.SYMLINK and where in dirs:
                return True
        dirs |= {where for where, inode in walk(root) if inode.is_dir}
    return False


def rule_copied_up_inode_lag(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The name has an upper copy and a lower object at the same path: a FUSE driver's
    attribute cache may show either's inode number for a while after the copy-up."""
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return (
        node is not None
        and node.upper is not None
        and any(o is not None for o in _lower_objects(ctx.model, path))
    )


def _target_hardlinks(ctx: StepContext) -> set[int]:
    """The lower hardlinks (files with more than one name in their layer) the step's
    paths are, or were copied up from."""
    model = ctx.model
    found: set[int] = set()
    for operand in ctx.paths:
        candidates = [o for o in _lower_objects(model, operand) if o is not None][:1]
        try:
            node = model.resolve(operand, follow=False).node
        except Exception:  # a path the model refuses: only its lower objects count
            node = None
        if node is not None and node.upper is not None and node.upper.origin is not None:
            candidates.append(node.upper.origin)
        found |= {
            o.ident
            for o in candidates
            if not o.is_dir and model.lower_nlink.get(o.ident, 1) > 1
        }
    return found


def rule_lower_hardlink_name(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is a name of the lower hardlink the step acts on (a lower file with more
    than one name), or a directory on the way to one of its names (copied up with it)."""
    wanted = _target_hardlinks(ctx)
    if not wanted:
        return False
    for root in ctx.model.lowers:
        for where, inode in walk(root):
            if inode.ident in wanted and (where == path or where.startswith(path + "/")):
                return True
    return False


def rule_opq_whiteout(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The entry is a whiteout named ``.wh..opq`` (on either side)."""
    entries = (diff.expected, diff.actual)
    return path.rpartition("/")[2] == ".wh..opq" and all(
        e is None or getattr(e, "kind", None) == "whiteout" for e in entries
    )


#: fuse-overlayfs's own markers in the layers it writes: its xattrs, and the opaque
#: directory's sentinel (with the .wh..opq whiteout it may hold, opq-whiteout).
PRIVATE_XATTRS = "user.fuseoverlayfs."
PRIVATE_NAMES = (".wh..wh..opq", ".wh..opq")


def rule_private_markers(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """Another driver reading layers fuse-overlayfs wrote shows its private markers: an
    entry's xattrs are the writer's plus ``user.fuseoverlayfs.*`` ones, or a name the
    writer did not show is one of its sentinels."""
    if diff.field == "xattrs" and isinstance(diff.expected, tuple) and isinstance(
        diff.actual, tuple
    ):
        extra = set(diff.actual) - set(diff.expected)
        return (
            set(diff.expected) <= set(diff.actual)
            and bool(extra)
            and all(name.startswith(PRIVATE_XATTRS) for name, _ in extra)
        )
    return (
        diff.field == "exists"
        and diff.expected is None
        and path.rpartition("/")[2] in PRIVATE_NAMES
    )


def rule_held_by_a_lower(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """Some lower layer has an object at ``path``, a whiteout included."""
    return any(o is not None for o in _lower_objects(ctx.model, path))


RULES: dict[str, Callable[[Divergence, str, StepContext], bool]] = {
    "held-by-a-lower": rule_held_by_a_lower,
    "private-markers": rule_private_markers,
    "opq-whiteout": rule_opq_whiteout,
    "lower-hardlink-name": rule_lower_hardlink_name,
    "copied-up-inode-lag": rule_copied_up_inode_lag,
    "names-of-target-lower": rule_names_of_target_lower,
    "renamed-copy-up": rule_renamed_copy_up,
    "dir-over-lower-symlink": rule_dir_over_lower_symlink,
    "lower-hardlink-nlink-names-seen": rule_nlink_names_seen,
    "exchange-dir-with-non-dir": rule_exchange_dir_with_non_dir,
    "shadowed-by-non-dir": rule_shadowed_by_non_dir,
    "lower-markers-ignored": rule_lower_markers_ignored,
    "operand-lower-marker": rule_operand_lower_marker,
    "operand-shadowed": rule_operand_shadowed,
    "merged-with-lower-symlink": rule_merged_with_lower_symlink,
    "hardlink-sibling-shows-change": rule_hardlink_sibling,
    "below-unlistable-dir": rule_unlistable,
}


def clause_from(data: Any, where: str, error: type[ValueError]) -> Clause:
    """A ``[[divergence.differs]]`` table, checked (``error`` with one line naming it)."""
    if not isinstance(data, dict):
        raise error(f"{where}: must be a table")
    known = {
        "in", "field", "op", "target_kind", "target_layers", "at", "expected", "actual",
        "rule", "primary",
    }
    for key in data:
        if key not in known:
            raise error(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    within = data.get("in")
    if within not in WITHIN:
        raise error(f"{where}: 'in' must be one of {', '.join(WITHIN)}")
    lists = {}
    for key, allowed in (
        ("op", (*OP_NAMES, "Mount")),
        ("target_kind", TARGET_KINDS),
        ("target_layers", LAYERS),
    ):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise error(f"{where}: {key!r} must be an array of strings")
        for v in value:
            if v not in allowed:
                raise error(f"{where}: {key!r}: unknown {v!r}")
        lists[key] = tuple(value)
    for key in ("field", "at", "expected", "actual", "rule"):
        if key in data and not isinstance(data[key], str):
            raise error(f"{where}: {key!r} must be a string")
    if data.get("at", "target") not in AT:
        raise error(f"{where}: 'at' must be one of {', '.join(AT)}")
    if "rule" in data and data["rule"] not in RULES:
        raise error(f"{where}: unknown rule {data['rule']!r} (known: {', '.join(RULES)})")
    if "primary" in data and not isinstance(data["primary"], bool):
        raise error(f"{where}: 'primary' must be a boolean")
    return Clause(
        within=within,
        field=data.get("field", "*"),
        ops=lists["op"],
        target_kinds=lists["target_kind"],
        target_layers=lists["target_layers"],
        at=data.get("at", "target"),
        expected=data.get("expected"),
        actual=data.get("actual"),
        rule=data.get("rule"),
        primary=data.get("primary", False),
    )


def with_primary(
    clauses: tuple[Clause, ...], where: str = "", error: type[ValueError] = ValueError
) -> tuple[Clause, ...]:
    """The first clause is primary when none is marked. A clause that is not primary needs
    a field or a rule (``error`` naming ``where`` otherwise): with neither, it would accept
    any difference at the step's paths whenever the record is seen."""
    if clauses and not any(c.primary for c in clauses):
        clauses = (attrs.evolve(clauses[0], primary=True), *clauses[1:])
    for number, clause in enumerate(clauses):
        if not clause.primary and clause.field == "*" and clause.rule is None:
            raise error(f"{where} differs[{number}]: a clause that is not primary needs a "
                        "'field' or a 'rule'")
    return clauses


@attrs.frozen
class Matched:
    """A step's differences split: those each record accounts for, and the rest."""

    by_record: dict[str, tuple[Divergence, ...]]
    unmatched: tuple[Divergence, ...]
    resync: str = "keep"


def match(records: tuple[Any, ...], found: list[Divergence], ctx: StepContext) -> Matched:
    """Which of ``found`` the ``records`` (expectations with clauses) account for."""
    accounted: set[int] = set()
    by_record: dict[str, tuple[Divergence, ...]] = {}
    resync = "keep"
    order = {"keep": 0, "model": 1, "stop": 2}
    for record in records:
        clauses = record.differs
        if not clauses:
            continue
        if not any(c.matches(d, ctx) for c in clauses if c.primary for d in found):
            continue
        mine = tuple(d for d in found if any(c.matches(d, ctx) for c in clauses))
        by_record[record.id] = mine
        accounted.update(id(d) for d in mine)
        wanted = record.resync
        if wanted == "keep" and ctx.op is not None and type(ctx.op) not in ops.LOOKS and any(
            d.field == "outcome" for d in mine
        ):
            wanted = "model"  # the operation did something else: the state differs now
        if order[wanted] > order[resync]:
            resync = wanted
    unmatched = tuple(d for d in found if id(d) not in accounted)
    return Matched(by_record, unmatched, resync)


# --- the tally of a cell ----------------------------------------------------------------

#: While set (:func:`plain`), machines hold drivers to the kernel's rules alone.
_PLAIN: list[bool] = []


@contextlib.contextmanager
def plain() -> Iterator[None]:
    """Machines made while open use no variant and no record: every recorded behaviour
    is a divergence again (what a reproducer of one is made from)."""
    _PLAIN.append(True)
    try:
        yield
    finally:
        _PLAIN.pop()


def is_plain() -> bool:
    return bool(_PLAIN)


#: The tallies open now (innermost last): every machine adds what its examples saw.
_OPEN: list[Counter[str]] = []


@contextlib.contextmanager
def tally() -> Iterator[Counter[str]]:
    """Count, while open, how many examples saw each record and variant (by id)."""
    counts: Counter[str] = Counter()
    _OPEN.append(counts)
    try:
        yield counts
    finally:
        # by identity: two tallies with equal counts are still two (list.remove compares)
        del _OPEN[next(i for i, open_ in enumerate(_OPEN) if open_ is counts)]


def count(seen: set[str]) -> None:
    """One example saw each of ``seen``."""
    for counts in _OPEN:
        counts.update(seen)


def describe_counts(counts: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{name} ({n} example{'s' if n != 1 else ''})" for name, n in sorted(
        counts.items(), key=lambda item: (-item[1], item[0])
    ))


class RecordedBehaviours(ConformanceError):
    """A pytest item found recorded behaviours and nothing else: the item's strict xfail
    (conformance.pytest_plugin) expects exactly this; any other failure fails it."""


def conclude(counts: Counter[str], item: Any) -> None:
    """End a pytest item that saw recorded behaviours: when the item is marked as a known
    divergence, raise :class:`RecordedBehaviours` listing them (its strict xfail); an item
    not marked passes (what it saw is expected, and it is not what the item checks)."""
    if counts and item.get_closest_marker("xfail") is not None:
        raise RecordedBehaviours("only recorded behaviours: " + describe_counts(counts))


#: Where the machine finds a driver's records: ``(driver, option set label, driver
#: settings) -> records``, registered by conformance.records.expectations when it is imported (so
#: this module and the machine do not import the record file's reader, which runs
#: scenarios and machines). Without one, no difference is expected: a missing registration
#: can only make a run stricter, never hide a divergence.
_BOOK: Callable[[str, str, Any], tuple[Any, ...]] | None = None


def use_book(book: Callable[[str, str, Any], tuple[Any, ...]]) -> None:
    """Make ``book`` the source of every driver's records."""
    global _BOOK
    _BOOK = book


def behaviours_for(driver: str, options: str, settings: Any) -> tuple[Any, ...]:
    """The records of ``driver`` under the option set ``options``, the driver's version
    asked with the run's driver ``settings`` (none without a book)."""
    return () if _BOOK is None else tuple(_BOOK(driver, options, settings))
