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
follow the driver); ``"view"`` keeps the model while only the view differs and stops
where the driver's state differs too.

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
from reference.paths import FsError
from reference.permissions import may_delete
from reference.variants import tree_copies
from reference.view import View

WITHIN = ("outcome", "view", "upper", "lower")
AT = ("target", "any")
LAYERS = ("upper", "lower", "merged", "copied-up", "none")
TARGET_KINDS = ("file", "dir", "symlink", "fifo", "none")
RESYNC = ("model", "keep", "stop", "view")
#: The outcome a crash record's clauses see: the driver died at the step (its connection
#: gone); the record's ``crash`` pattern says how (conformance.lockstep.machine).
CRASHED = "crashed"
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
    #: The other names of the upper file the first path names (none for a directory).
    names: tuple[str, ...] = ()
    #: The size of the regular file the first path leads to (a final symlink followed).
    size: int | None = None


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
    #: The steps before this one since the mount (the lockstep machine's; () elsewhere).
    earlier: tuple[ops.Op, ...] = ()

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

    def fields(self) -> frozenset[str] | None:
        """The fields of the merged view (or of a stat result) the differences it accounts
        for are in; None where every machine compares them (an outcome, a layer, whether a
        path exists) or any field may be."""
        if self.within in ("upper", "lower"):
            return None  # the layers are compared whatever the feature (conformance.features)
        if self.within == "view" and self.field not in ("*", "exists"):
            return frozenset({self.field})
        return RULE_FIELDS.get(self.rule or "")

    def shows_with(self, compared: frozenset[str] | None) -> bool:
        """Whether a machine comparing the view fields ``compared`` (None: all) can see a
        difference this clause accounts for."""
        mine = self.fields()
        return compared is None or mine is None or bool(mine & compared)


def shows_with(clauses: tuple[Clause, ...], compared: frozenset[str] | None) -> bool:
    """Whether a record of ``clauses`` can match a step of a machine comparing the view
    fields ``compared``: one of its primary clauses is on a field it compares (a record
    without clauses, a variant, is modelled: it always can)."""
    return not clauses or any(c.shows_with(compared) for c in clauses if c.primary)


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
        except Exception:  # a path the model refuses (ELOOP, ENOTDIR): no object, but
            # the name it reached through symlinks (c/c with c -> a: a/c)
            reached = _through_symlinks(model, path)
            if reached is not None and reached != path:
                found.append(reached)
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
    leads_to = followed if first.kind is Kind.SYMLINK else first
    return Subject(
        first.kind.value,
        layers_of(first),
        tuple(found),
        followed.kind.value if followed is not None else "",
        layers_of(followed) if followed is not None else "",
        _other_names(model, first),
        len(leads_to.top.data) if leads_to is not None and leads_to.kind is Kind.FILE else None,
    )


def _through_symlinks(model: Overlay, path: str, hops: int = 40) -> str | None:
    """``path`` with every symlink among its directories replaced by its target, as far
    as the model's objects go (None for a loop): the name a lookup reached when it failed
    below it."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    while parts and hops > 0:
        here = "/".join([*done, parts[0]])
        try:
            node = model.resolve(here, follow=False).node
        except Exception:  # below a non-directory: the rest is as written
            break
        if node is None or node.kind is not Kind.SYMLINK or len(parts) == 1:
            done.append(parts.pop(0))
            continue
        target = model.meta(node).target
        hops -= 1
        base = [] if target.startswith("/") else done
        parts = [*[p for p in target.split("/") if p], *parts[1:]]
        done = list(base)
        while parts and parts[0] in (".", ".."):
            if parts.pop(0) == ".." and done:
                done.pop()
    return "/".join([*done, *parts]) if hops > 0 else None


def _other_names(model: Overlay, node: Node) -> tuple[str, ...]:
    """The other names of ``node``'s upper file in the upper layer."""
    if node.is_dir or node.upper is None or model.upper is None:
        return ()
    return tuple(p for p, o in walk(model.upper) if o is node.upper and p != node.path)


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
    allowed listing), when the driver listed all of the shortest allowed one (else None).
    The directory is where the path leads (through symlinks, as the model resolves it)."""
    if not isinstance(ctx.op, ops.Readdir) or not isinstance(ctx.actual_outcome, Ok):
        return None
    directory = ctx.op.path
    try:
        node = ctx.model.resolve(directory, follow=True).node
    except Exception:  # a path the model refuses: the path as it is
        node = None
    if node is not None:
        directory = node.path
    value = ctx.actual_outcome.value
    listings = [o.value for o in diff.expected if isinstance(o, Ok)] if isinstance(
        diff.expected, tuple
    ) else []
    if not isinstance(value, tuple) or not listings:
        return None
    if not set(min(listings, key=len)) <= set(value):
        return None
    return directory, sorted(set(value) - {n for listing in listings for n in listing})


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


def rule_past_non_dir_followed(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: the name the operand's final symlink leads to is found past a
    non-directory (chmod of b/b -> a, where only a branch past the FIFO b holds b/a:
    EROFS read-only, the kernel ENOENT); or, at the operand of a step the driver refused,
    the driver shows the object a lower layer holds there past the non-directory, where
    the model made its own (symlink b/b: EEXIST, b/b the lower file)."""
    if diff.field == "outcome":
        followed = _followed_name(ctx.model, ctx.op)
        return followed is not None and _shadowed(ctx.model, followed)
    if path not in ctx.paths:
        return False
    return _shows_shadowed(ctx, path)


def _followed_name(model: Overlay, op: ops.Op | None) -> str | None:
    """The name the final symlink of ``op``'s first path leads to in the model (an object
    or, for a dangling symlink, the name it names), for an operation that follows it."""
    paths = operands(op) if op is not None else ()
    if not paths or getattr(op, "follow", True) is False:
        return None
    try:
        node = model.resolve(paths[0], follow=False).node
        if node is None or node.kind is not Kind.SYMLINK:
            return None
        reached = model.resolve(paths[0], follow=True)
    except Exception:  # a path the model refuses (a loop): no name
        return None
    if reached.node is not None:
        return reached.node.path
    return _join(reached.parent.path, reached.name) if reached.parent is not None else None


def _shows_shadowed(ctx: StepContext, path: str) -> bool:
    """The step was refused and the driver shows at ``path``, a name found past a
    non-directory, an object of the kind a lower layer holds there."""
    shown = ctx.actual_view.entries.get(path) if ctx.actual_view is not None else None
    if shown is None or not isinstance(ctx.actual_outcome, Err):
        return False
    if not _shadowed(ctx.model, path):
        return False
    lower = _lower_objects(ctx.model, path)
    return any(o is not None and o.kind.value == shown.kind for o in lower)


def _lower_marker(model: Overlay, path: str, seen: frozenset[str] = frozenset()) -> bool:
    """``path`` is, or lies below, a whiteout of a lower layer; or it lies below a lower
    layer's opaque directory where a layer further down has an object on the way to it
    (what the marker hides shows); or it is a lower symlink whose target is such a path
    (``seen``: the symlinks already followed, so a loop of lower symlinks ends)."""
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
    if path in seen:
        return False
    for o in _lower_objects(model, path):
        if (
            o is not None
            and o.kind is Kind.SYMLINK
            and _through_marker(model, path, o.target, seen | {path})
        ):
            return True
    return False


def _through_marker(
    model: Overlay, path: str, target: str, seen: frozenset[str] = frozenset()
) -> bool:
    """The symlink at ``path`` to ``target`` is followed through a lower marker (each
    component as the walk meets it, before any ``..`` is applied)."""
    base = "" if target.startswith("/") else path.rpartition("/")[0]
    stack: list[str] = [part for part in base.split("/") if part]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if stack:  # ".." of the root is the root (path_resolution(7))
                stack.pop()
            continue
        stack.append(part)
        here = "/".join(stack)
        if here != path and any(
            o is not None and o.kind is Kind.WHITEOUT for o in _lower_objects(model, here)
        ):
            return True
    final = "/".join(stack)
    return final != path and _lower_marker(model, final, seen)


def rule_lower_markers_ignored(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: what a lower layer's whiteout or opaque directory hides shows (a
    whiteout as a character device, which also keeps its directory from being empty: an
    rmdir of a directory holding one, or what a lower opaque directory hides, fails, and
    the directory stays)."""
    model = ctx.model
    rmdir = isinstance(ctx.op, ops.Rmdir)
    if diff.field == "outcome":
        listed = _extras_all(diff, ctx, _lower_marker)
        if listed is not None:
            return listed
        return any(
            _lower_marker(model, p)
            or (rmdir and _shows_below(model, p))
            or _symlink_to_marker(model, p)
            for p in ctx.paths
        )
    return (
        _lower_marker(model, path)
        or (rmdir and path in ctx.paths and _shows_below(model, path))
        or (ctx.op is None and _upper_whiteout(model, path))
    )


def _upper_whiteout(model: Overlay, path: str) -> bool:
    """``path`` is, or lies below, a whiteout of the upper layer: at a mount of layers the
    kernel wrote (layer interchange), unionfs-fuse's read-write branch holds the kernel's
    markers, which it does not read either."""
    if model.upper is None:
        return False
    return any(
        (o := entry_at(model.upper, prefix)) is not None and o.kind is Kind.WHITEOUT
        for prefix in _prefixes(path)
    )


def rule_renamed_from_lower_marker(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a renamed directory takes what a lower marker below it showed (a
    whiteout as a character device) to the new name: ``path`` below the destination came
    from below the source, where a lower marker is."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or not path.startswith(op.dst + "/"):
        return False
    return _lower_marker(ctx.model, op.src + path[len(op.dst):])


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


def _shows_below(model: Overlay, path: str) -> bool:
    """A lower whiteout is below ``path``, or a lower object below it that a lower marker
    hides (so the directory is not empty to unionfs-fuse)."""
    if _holds_marker(model, path):
        return True
    return any(
        where.startswith(path + "/" if path else "") and _lower_marker(model, where)
        for root in model.lowers
        for where, _ in walk(root)
    )


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


def _merged_here(model: Overlay, path: str) -> bool:
    """``path`` itself is a directory in one lower layer and a symlink in one below it."""
    objects = _lower_objects(model, path)
    return any(
        o is not None and o.kind is Kind.SYMLINK and any(
            x is not None and x.is_dir for x in objects[:number]
        )
        for number, o in enumerate(objects)
    )


def rule_merged_with_lower_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a directory merges with a lower layer's symlink of the same name (so
    an rmdir of it finds what the symlink leads to: ENOTEMPTY, and it stays)."""
    model = ctx.model
    if isinstance(ctx.op, ops.Rmdir) and (
        diff.field == "outcome" or path in ctx.paths
    ) and any(_merged_here(model, p) for p in ctx.paths):
        return True
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
    has looked up so far (at least 1, less than its real count); nothing else differs. So
    does an upper file's after a remount (its names are looked up afresh)."""
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
            and _names_counted(model, ctx.op.path, follow=ctx.op.follow)
            for e in expected
        )
    return (
        diff.field == "nlink"
        and isinstance(diff.expected, int)
        and isinstance(diff.actual, int)
        and 1 <= diff.actual < diff.expected
        and _names_counted(model, path, follow=False)
    )


def _names_counted(model: Overlay, path: str, *, follow: bool) -> bool:
    """A lower hardlink's name, or a name of an upper file with several names (counted
    from the names looked up since the last mount)."""
    return _lower_hardlink(model, path, follow=follow) or _linked_file(model, path, follow=follow)


def _lower_hardlink(model: Overlay, path: str, *, follow: bool) -> bool:
    try:
        node = model.resolve(path, follow=follow).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return node is not None and node.upper is None and not node.is_dir


def rule_names_of_target_lower(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is a name of the lower object the step's target is (or was copied up
    from), and that object is a lower hardlink (more than one name in its layer): the
    target or another name of it. A lower file with one name is not this behaviour.
    The step's target is the first of its paths that names a file after the step: a
    rename's or a link's source, gone or not, counts through the new name (by hand,
    ``mv M/a/a M/b`` and ``ln M/b M/a`` of a lower hardlink: docs/recorded-behaviours.md
    "fo3")."""
    if _rename_onto_own_name(path, ctx):
        return True
    other = _non_dir_at(ctx.model, path)
    if other is None:
        return False
    for operand in ctx.paths:
        try:
            target = ctx.model.resolve(operand, follow=True).node
        except Exception:  # gone after the step (a rename's source): the next path
            continue
        if target is None or target.is_dir:
            continue
        lower = ctx.model.lower_of(target)
        return (
            lower is not None
            and ctx.model.lower_nlink.get(lower.ident, 1) > 1
            and lower is ctx.model.lower_of(other)
        )
    return False


def _rename_onto_own_name(path: str, ctx: StepContext) -> bool:
    """A rename of one name of a lower hardlink onto another of its names: one inode to
    fuse-overlayfs, so rename(2) does nothing and the source stays (by hand: ``touch
    L0/b; ln L0/b L0/c; rename(M/b, M/c)``; ``ls M``: b c; kernel: c, U holds the
    whiteout b). The difference is at the source."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or path != op.src:
        return False
    src = next((o for o in _lower_objects(ctx.model, op.src) if o is not None), None)
    dst = next((o for o in _lower_objects(ctx.model, op.dst) if o is not None), None)
    return (
        src is not None
        and src is dst
        and not src.is_dir
        and ctx.model.lower_nlink.get(src.ident, 1) > 1
    )


def rule_renamed_copy_up(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is a copied-up directory or symlink, or a copied-up object that no longer
    lives at its lower object's path or whose lower object is not in the top lower layer."""
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is not None and node.upper is not None:
        if node.is_dir and node.lowers:
            return True
        if node.kind is Kind.SYMLINK and node.upper.origin is not None:
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
    """The stack has a name that is a directory in one layer (a lower, or the upper) and a
    symlink in a lower layer below it. The upper's counts: fuse-overlayfs, remounted over
    an upper directory made where a lower symlink loop was removed, gives ENOMEM too (by
    hand, docs/recorded-behaviours.md "fo3")."""
    dirs: set[str] = set()
    upper = [ctx.model.upper] if ctx.model.upper is not None else []
    for root in [*upper, *ctx.model.lowers]:
        for where, inode in walk(root):
            if inode.kind is Kind.SYMLINK and where in dirs:
                return True
        dirs |= {where for where, inode in walk(root) if inode.is_dir}
    return False


def rule_below_dir_over_lower_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: an entry is missing from the mount below a directory that a lower
    layer has as a symlink (the upper layer holds it: mkdir there gave ENOMEM after making
    it, by hand, docs/recorded-behaviours.md "ENOMEM below a removed symlink loop"), and a
    step on it gives ENOENT. Only a missing entry, only ENOENT, only below such a name."""
    if diff.field == "outcome":
        refused = ctx.actual_outcome
        return (
            isinstance(refused, Err)
            and refused.name == "ENOENT"
            and any(_below_lower_symlink(ctx.model, p) for p in ctx.paths)
        )
    if diff.field != "exists" or diff.actual is not None or diff.expected is None:
        return False
    return _below_lower_symlink(ctx.model, path)


def _below_lower_symlink(model: Overlay, path: str) -> bool:
    """A directory above ``path`` is a symlink in some lower layer."""
    return any(
        o is not None and o.kind is Kind.SYMLINK
        for prefix in _prefixes(path)[:-1]
        for o in _lower_objects(model, prefix)
    )


def rule_found_through_lower_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: a name in a directory whose listing it dropped (a change in it frees
    a node: ``parent->loaded = 0``) is looked up in every layer down to the lowest that has
    the directory's name (make_ovl_node sets ``last_layer`` whatever the type there), by
    ``statat(layer, "<dir>/<name>", AT_SYMLINK_NOFOLLOW)`` (do_lookup_file, main.c v1.10),
    which follows a symlink that layer has at ``<dir>``; the kernel stops at the
    non-directory. The difference is the outcome of a step on such a name (what the
    symlink leads to in its layer exists); what the model did at a step the driver refused
    there (the step's names, their parents, what is below them); or, in the view, the
    object found so, at its own name (its node now has the other path: listed, but its
    lookup gives ENOENT)."""
    if ctx.op is None:
        return False
    reached = [r for p in operands(ctx.op) for r in _reached_through_lower_symlink(ctx.model, p)]
    if not reached:
        return False
    if diff.field == "outcome":
        return True
    if split_where(diff)[0] == "view" and any(
        path == r or path.startswith(f"{r}/") for r in reached
    ):
        return True
    return isinstance(ctx.actual_outcome, Err) and _touched_by_step(path, ctx.paths)


def _reached_through_lower_symlink(model: Overlay, path: str) -> list[str]:
    """The names of the objects ``path`` leads to in a lower layer where a directory above
    it is a symlink, the name being a directory in a layer above (the upper or a lower):
    ``path`` with its directory followed through that symlink (lexically) in that layer
    (``mkdir L0/a L1/c; ln -s . L1/a``: a/c is L1's c)."""
    upper = [model.upper] if model.upper is not None else []
    layers = [*upper, *model.lowers]
    reached: list[str] = []
    for prefix in _prefixes(path)[:-1]:
        objects = [entry_at(root, prefix) for root in layers]
        for number, o in enumerate(objects[len(upper) :], len(upper)):
            if o is None or o.kind is not Kind.SYMLINK:
                continue
            if not any(x is not None and x.is_dir for x in objects[:number]):
                continue
            there = _join(_lexical_hop(prefix, o.target), path[len(prefix) + 1 :])
            if entry_at(layers[number], there) is not None:
                reached.append(there)
    return reached


def rule_refused_with_enomem(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: the step gave ENOMEM (a lookup through the directory over a lower
    symlink, rule dir-over-lower-symlink), or ENOENT on a name below one that it does not
    show (below-dir-over-lower-symlink), and did nothing, so what the model did at it (a
    copy-up, a removal) is not in the layers nor the view. Only at a step the driver
    refused so, only in such a stack, only at the step's names, their parents and what
    is below them (what the model's step changed)."""
    refused = ctx.actual_outcome
    if not isinstance(refused, Err) or not _touched_by_step(path, ctx.paths):
        return False
    if refused.name == "ENOENT":
        return any(_below_lower_symlink(ctx.model, p) for p in ctx.paths)
    return refused.name == "ENOMEM" and rule_dir_over_lower_symlink(diff, path, ctx)


def _touched_by_step(path: str, paths: tuple[str, ...]) -> bool:
    """``path`` is one of ``paths``, a directory above one (a copy-up of the parents, a
    parent's times), or below one (a tree removed or renamed)."""
    return any(
        path in ("", step) or step.startswith(f"{path}/") or path.startswith(f"{step}/")
        for step in paths
    )


def rule_copied_up_inode_lag(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The name has an upper copy and a lower object at the same path: a FUSE driver's
    attribute cache may show either's inode number for a while after the copy-up. Or the
    name is another name (a link) of such an upper copy: compared with the lagging name,
    its own number differs (unionfs-fuse: ln a b of a lower a; stat a b shows a's lower
    number beside b's upper one for a second). Or, at a rename, the new name of an object
    whose old path has a lower object (the copied tree shows the lower attributes). Or a
    name of a lower hardlink left in the lower layer, beside another name of it that was
    copied up (and shows the lower number, the same as this one's, for a second)."""
    model = ctx.model
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is None:
        return False
    if node.upper is None:
        return diff.field == "st_ino" and _beside_lagging_copy(model, path)
    if (
        diff.field == "st_ino"
        and str(diff.expected).startswith("unchanged")
        and node.upper.ident in tree_copies(model)
    ):
        return True  # made by a tree copy: the lower's number, then (later) its own
    if any(o is not None for o in _lower_objects(model, path)):
        return True
    op = ctx.op
    if isinstance(op, ops.Rename) and (path == op.dst or path.startswith(op.dst + "/")):
        # renamed (its tree copied up): the old path's lower object, under the new name
        source = op.src + path[len(op.dst):]
        if any(o is not None for o in _lower_objects(model, source)):
            return True
    if diff.field != "st_ino" or model.upper is None or node.is_dir:
        return False
    return any(
        inode is node.upper
        and where != path
        and any(o is not None for o in _lower_objects(model, where))
        for where, inode in walk(model.upper)
    )


def _beside_lagging_copy(model: Overlay, path: str) -> bool:
    """``path`` is a name of a lower hardlink not copied up, another name of which was:
    that copy shows the lower number for a while, so the two look like one inode."""
    lower = next((o for o in _lower_objects(model, path) if o is not None), None)
    if lower is None or lower.is_dir or model.upper is None:
        return False
    return any(
        where != path
        and any(o is not None and o.ident == lower.ident for o in _lower_objects(model, where))
        for where, _ in walk(model.upper)
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
    than one name), or a directory on the way to one of its names (copied up with it).
    The upper layer's groups of hardlinks (at the layer, ``path`` empty) differ only in
    names of that hardlink: a link to it joins the name copied up (by hand, ``ln M/b
    M/a`` with c/c looked up first: U holds a and c/c, one inode)."""
    wanted = _target_hardlinks(ctx)
    if not wanted:
        return False
    if diff.field == "hardlinks":
        return path == "" and _hardlink_groups_differ_in(diff, wanted, ctx)
    for root in ctx.model.lowers:
        for where, inode in walk(root):
            if inode.ident in wanted and (where == path or where.startswith(path + "/")):
                return True
    return False


def rule_renamed_over_lower_hardlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: a rename over one name of a lower hardlink copies up another of its
    names, as an unlink of it does (lower-hardlink-one-inode; by hand, fo5: ``mv M/z M/x``
    with L0/x a link of L0/y leaves U/y a copy; the kernel none). The difference is at
    another lower name of the file the rename replaced."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or path == op.dst:
        return False
    model = ctx.model
    replaced = next((o for o in _lower_objects(model, op.dst) if o is not None), None)
    if replaced is None or replaced.is_dir or model.lower_nlink.get(replaced.ident, 1) < 2:
        return False
    return any(
        where == path and inode.ident == replaced.ident
        for root in model.lowers
        for where, inode in walk(root)
    )


def rule_refused_exchange_copies_up(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: ovl_rename_exchange copies up the source's parent, the
    destination's parent and the source (get_node_up) before it refuses to exchange a
    directory with a lower one (EXDEV, main.c v1.10); the kernel refuses first (by hand,
    fo5: ``rmdir M/c; mkdir M/c``, exchange c with the lower a/b: EXDEV on both, U/a on
    fuse-overlayfs alone). The difference is a directory of the upper layer that the
    model lacks: one of those parents or an ancestor of one, or the source, at an
    exchange refused with EXDEV."""
    op, refused = ctx.op, ctx.actual_outcome
    if not isinstance(op, ops.Rename) or op.flags != "RENAME_EXCHANGE":
        return False
    if not isinstance(refused, Err) or refused.name != "EXDEV":
        return False
    if diff.field != "exists" or diff.expected is not None:
        return False
    parents = (_parent(op.src), _parent(op.dst))
    return path == op.src or any(
        p == path or p.startswith(f"{path}/") for p in parents if path
    )


def _hardlink_groups_differ_in(diff: Divergence, wanted: set[int], ctx: StepContext) -> bool:
    """Every name in one side's hardlink groups but not the other's is a lower name of
    one of ``wanted`` (and some name differs)."""
    names = {
        where for root in ctx.model.lowers for where, inode in walk(root) if inode.ident in wanted
    }

    def flat(groups: object) -> set[str]:
        return {n for group in groups or () for n in group}  # type: ignore[union-attr]

    changed = flat(diff.expected) ^ flat(diff.actual)
    return bool(changed) and changed <= names


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


def _xattr_whiteout(model: Overlay, path: str) -> bool:
    """The topmost lower object at ``path`` is a whiteout stored as an xattr."""
    for found in _lower_objects(model, path):
        if found is not None:
            return found.kind is Kind.WHITEOUT and found.xattr_whiteout
    return False


def rule_xattr_whiteout_shown(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs 1.10: a whiteout stored as an ``overlay.whiteout`` xattr on an empty
    file (v6.7) is not honoured: the empty file shows, in its directory's listing too."""
    if diff.field == "outcome":
        extras = _listing_extras(diff, ctx)
        if extras is not None and extras[1]:
            directory, names = extras
            return all(
                _xattr_whiteout(ctx.model, f"{directory}/{n}" if directory else n) for n in names
            )
        return any(_xattr_whiteout(ctx.model, p) for p in ctx.paths)
    return _xattr_whiteout(ctx.model, path)


def rule_opaque_in_trusted(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs as root marks an opaque directory ``trusted.overlay.opaque=y``
    whatever form the layers have: on the userxattr axis (markers in ``user.overlay.*``)
    that is an ordinary xattr of the directory; nothing else of its xattrs differs."""
    if diff.field != "xattrs":
        return False
    if not isinstance(diff.expected, tuple) or not isinstance(diff.actual, tuple):
        return False
    extra = set(diff.actual) - set(diff.expected)
    return set(diff.expected) <= set(diff.actual) and extra == {
        ("trusted.overlay.opaque", b"y")
    }


#: The overlay's own xattr namespace with userxattr (doc "Permission model").
USER_OVERLAY = "user.overlay."


def _only_overlay_names(expected: object, actual: object) -> bool:
    """Two xattr tuples (or listings) that differ, and only by user.overlay.* names."""
    if not isinstance(expected, tuple) or not isinstance(actual, tuple):
        return False
    differing = set(expected) ^ set(actual)
    names = (item[0] if isinstance(item, tuple) else item for item in differing)
    return bool(differing) and all(str(n).startswith(USER_OVERLAY) for n in names)


def rule_overlay_xattrs_hidden(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs 1.10: xattrs named ``user.overlay.*`` are taken for its own markers:
    setxattr is accepted and stored unescaped, getxattr gives ENODATA, listxattr leaves
    them out, and a lower's escaped ``user.overlay.overlay.*`` is not shown; the kernel
    with userxattr escapes them (doc "Nesting") and shows them."""
    if diff.field == "xattrs":
        return _only_overlay_names(diff.expected, diff.actual)
    if diff.field != "outcome":
        return False
    op = ctx.op
    if isinstance(op, ops.GetXattr | ops.SetXattr | ops.RemoveXattr):
        return op.name.startswith(USER_OVERLAY)
    if isinstance(op, ops.ListXattr) and isinstance(ctx.actual_outcome, Ok):
        allowed = diff.expected if isinstance(diff.expected, tuple) else ()
        return any(
            isinstance(o, Ok) and _only_overlay_names(o.value, ctx.actual_outcome.value)
            for o in allowed
        )
    return False


def _name_bytes(path: str) -> int:
    return len(path.rpartition("/")[2].encode("utf-8", "surrogateescape"))


#: fuse-overlayfs: the longest name it gives a whiteout file room for (255 - len(".wh.")).
WHITEOUT_FILE_NAME_MAX = 251


def rule_lower_file_name_past_room(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: the step acts on a lower file or FIFO whose name is longer than 251
    bytes (copyup's unlinkat of the name's ``.wh.`` file fails with ENAMETOOLONG, copyup
    returns success without setting the node's layer, and get_node_up's assertion aborts
    the daemon: main.c copyup/get_node_up); or on a lower hardlink one of whose names
    is that long (the driver copies up the first name it looked up); or on a lower file
    beside which the upper layer holds a directory ``.wh.<name>`` (the same unlinkat
    fails with EISDIR). An open for reading copies nothing up: not this behaviour."""
    if isinstance(ctx.op, ops.Open) and ctx.op.access == "O_RDONLY":
        return False
    model = ctx.model
    for p in ctx.paths:
        top = next((o for o in _lower_objects(model, p) if o is not None), None)
        if top is None or top.kind not in (Kind.FILE, Kind.FIFO):
            continue
        if _name_bytes(p) > WHITEOUT_FILE_NAME_MAX:
            return True
        # the unlinkat fails with EISDIR: a directory named .wh.<name> beside it
        parent, _, name = p.rpartition("/")
        beside = f"{parent}/.wh.{name}" if parent else f".wh.{name}"
        found = entry_at(model.upper, beside) if model.upper is not None else None
        if found is not None and found.is_dir:
            return True
        # one in-memory inode for a lower hardlink (lower-hardlink-one-inode): the name
        # copied up may be another, long, name of it
        if any(
            inode.ident == top.ident and _name_bytes(where) > WHITEOUT_FILE_NAME_MAX
            for root in model.lowers
            for where, inode in walk(root)
        ):
            return True
    return False


def _is_wh_name(name: str) -> bool:
    """A ``.wh.``-prefixed name, but not fuse-overlayfs's own opaque markers (records
    ``opq-whiteout`` and ``interchange-private-markers`` are theirs)."""
    return name.startswith(".wh.") and name not in PRIVATE_NAMES


def _wh_layers(model: Overlay) -> list[Inode]:
    return [*model.lowers, *([model.upper] if model.upper is not None else [])]


def _wh_file_name(model: Overlay, path: str) -> bool:
    """fuse-overlayfs reads the whiteout-file form too: ``path`` has a component named
    ``.wh.*``, or one that a ``.wh.<component>`` beside it in some layer hides."""
    parts = [p for p in path.split("/") if p]
    layers = _wh_layers(model)
    for depth, part in enumerate(parts):
        if _is_wh_name(part):
            return True
        beside = "/".join([*parts[:depth], f".wh.{part}"])
        if any(entry_at(root, beside) is not None for root in layers):
            return True
    return False


def _wh_entries_hiding(model: Overlay, path: str) -> list[str]:
    """The ``.wh.<component>`` entries beside a component of ``path`` in some layer (what
    fuse-overlayfs reads as whiteouts hiding it)."""
    parts = [p for p in path.split("/") if p]
    layers = _wh_layers(model)
    found: list[str] = []
    for depth, part in enumerate(parts):
        beside = "/".join([*parts[:depth], f".wh.{part}"])
        if any(entry_at(root, beside) is not None for root in layers):
            found.append(beside)
    return found


def _unreachable(path: str, ctx: StepContext) -> bool:
    """The driver's view does not show ``path``, or lists it without reaching it."""
    if ctx.actual_view is None:
        return False
    entry = ctx.actual_view.entries.get(path)
    return entry is None or entry.kind == "unreachable"


def _holds_wh(model: Overlay, directory: str) -> bool:
    """Some layer has a ``.wh.*`` entry directly in ``directory``."""
    for root in _wh_layers(model):
        found = entry_at(root, directory)
        if found is not None and found.is_dir and any(map(_is_wh_name, found.entries)):
            return True
    return False


#: What fuse-overlayfs does to a directory holding a ``.wh.`` entry by what it has in memory:
#: the steps that list, remove or move it (their outcomes), and the fields of it and of the
#: names in it that its listing and count decide (record wh-file-names).
_WH_DIR_STEPS = (ops.Readdir, ops.Rmdir, ops.Rename)
_WH_DIR_FIELDS = ("exists", "nlink")


def rule_wh_file_names(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: a ``.wh.<name>`` entry of any layer is a whiteout of ``<name>``
    (main.c get_whiteout_name): it is not shown, nor is what it hides below it; a new
    ``.wh.*`` file cannot be created (EINVAL) and no ``.wh.*`` name can be looked up
    (ENOENT), though mkdir, mknod and rename make one. A directory that holds one is
    then counted, listed and removed by what the driver has in memory. The difference
    lies at such a name or what it hides; at what a step on such a name acts on (the
    object it leads to, the directories on the way) and, in whether they exist and their
    link counts, the names beside it and its other names; in the outcome of a listing,
    removal or rename of a directory that holds one, and in whether it and the names in
    it exist and its link count (a stat's too, :func:`_count_only`); in the outcome of a
    step on a symlink the model cannot follow (a loop) whose chain reaches one
    (:func:`_hops_of_unresolved_symlink`); at the other names of a ``.wh.`` entry that a
    step on what it hides removed (a copy-up), listed but not reached; or is an entry
    missing below a name such a directory's listing left out (:func:`_below_unlisted`).
    Anything else at a name beside one (its data, mode, owner...) is not it: lookups and
    attributes are the driver's usual ones."""
    model = ctx.model
    if diff.field == "mode" and _made_here(path, ctx) and not _is_wh_name(_base(path)):
        return False  # a new entry at a hidden name is made as any other (caller's umask)
    if diff.field == "outcome":
        return any(
            _wh_file_name(model, p)
            or (isinstance(ctx.op, _WH_DIR_STEPS) and _holds_wh(model, p))
            for p in ctx.paths
        ) or any(_wh_file_name(model, p) for p in _hops_of_unresolved_symlink(ctx)) or (
            _count_only(diff, ctx) and any(_holds_wh(model, p) for p in ctx.paths)
        )
    named = [p for p in ctx.paths if _wh_file_name(model, p)]
    counted = diff.field in _WH_DIR_FIELDS
    if named and (
        diff.field == "nlink"  # the link count of its other names, wherever they are
        or any(related(path, p) for p in ctx.paths)
        or (counted and any(_parent(path) == _parent(p) for p in ctx.paths))
    ):
        return True  # (the names beside it: what it hid, or its other links)
    if named and _another_name_of(model, path, named):
        return True  # a step the driver refused at the .wh. name left its other names as they were
    hiders = [w for p in ctx.paths for w in _wh_entries_hiding(model, p)]
    if hiders and _another_name_of(model, path, hiders) and _unreachable(path, ctx):
        return True  # the step removed the .wh. entry (copying up what it hid): its other names
    return (
        _wh_file_name(model, path)
        or (counted and (_holds_wh(model, path) or _holds_wh(model, _parent(path))))
        or (diff.field == "exists" and diff.actual is None and _below_unlisted(path, ctx))
    )


def _hops_of_unresolved_symlink(ctx: StepContext) -> list[str]:
    """The names the step's first path reaches, hop by hop, when it is a symlink the model
    cannot follow (a loop: :func:`subject` then adds nothing it leads to), each target as
    written and as reached: fuse-overlayfs stops at a name it hides on the way (``mkdir
    L0/.wh.a; ln -s a L0/a; ln -s a L0/b``: listxattr, stat or getxattr of M/b give ENOENT
    there, ELOOP on the kernel; ``ln -s a/../b L0/l`` the same; by hand, fo5)."""
    target = ctx.target
    if target is None or target.kind != "symlink" or target.followed_kind or not ctx.paths:
        return []
    hops: list[str] = []
    seen: set[str] = set()
    current = ctx.paths[0]
    for _ in range(40):  # (the kernel's MAXSYMLINKS)
        try:
            node = ctx.model.resolve(current, follow=False).node
        except Exception:  # a path the model refuses: the chain ends here
            break
        if node is None or node.kind is not Kind.SYMLINK:
            break
        target = ctx.model.meta(node).target
        # as written (``a/../b`` looks ``a`` up), then as it is reached
        written = target.lstrip("/") if target.startswith("/") else _join(_parent(current), target)
        hops.append(written)
        current = _lexical_hop(current, target)
        if current in seen:
            break
        seen.add(current)
        hops.append(current)
    return hops


def _count_only(diff: Divergence, ctx: StepContext) -> bool:
    """The step is a stat whose result differs from one the reference allows in st_nlink
    alone (``mkdir -p L0/c/.wh.a L0/c/x``: stat M/c gives 3 on fuse-overlayfs, 4 on the
    kernel; by hand, fo5)."""
    actual = ctx.actual_outcome
    if not isinstance(ctx.op, ops.Stat) or not isinstance(actual, Ok):
        return False
    stat = actual.value
    return isinstance(stat, ops.StatResult) and any(
        isinstance(o, Ok)
        and isinstance(o.value, ops.StatResult)
        and o.value != stat
        and attrs.evolve(o.value, nlink=stat.nlink) == stat
        for o in diff.expected
    )


def _lexical_hop(link: str, target: str) -> str:
    """The name a symlink at ``link`` with ``target`` names (relative to its directory;
    an absolute target from the mount's root), ``.`` and ``..`` taken lexically."""
    parts = [] if target.startswith("/") else [p for p in _parent(link).split("/") if p]
    for part in target.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _made_here(path: str, ctx: StepContext) -> bool:
    """``path`` is the step's operand, absent before the step and made by it in the model
    (the driver made it too where the step's outcome agreed): its mode is the caller's."""
    return (
        ctx.op is not None
        and ctx.target is not None
        and ctx.target.kind == "none"
        and path == operands(ctx.op)[0]
        and entry_exists(ctx.model, path)
    )


def _non_dir_at(model: Overlay, path: str) -> Node | None:
    """The object at ``path`` (not followed) when it is not a directory, else None."""
    try:
        node = model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: no object
        return None
    return None if node is None or node.is_dir else node


def entry_exists(model: Overlay, path: str) -> bool:
    try:
        return model.resolve(path, follow=False).node is not None
    except Exception:  # a path the model refuses: nothing made there
        return False


def _another_name_of(model: Overlay, path: str, names: list[str]) -> bool:
    """``path`` is another name of the non-directory one of ``names`` leads to (a hard
    link): ``ln M/b/b M/.wh.a``, remount, ``chmod 644 M/.wh.a`` gives ENOENT on
    fuse-overlayfs, so b/b keeps its mode; the kernel changes both names."""
    try:
        node = model.resolve(path, follow=False).node
        others = [model.resolve(name, follow=False).node for name in names]
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is None or node.is_dir:
        return False
    return any(o is not None and o.top.ident == node.top.ident for o in others)


def _below_unlisted(path: str, ctx: StepContext) -> bool:
    """``path`` lies below a name that the listing of a directory holding a ``.wh.``
    entry left out (the driver's view shows no such ancestor): the view is walked by
    listing, so what is below it is not reached, though a lookup finds it (``ln -s a
    M/.wh.a; ln -s a M/a/a; ls -A M`` shows nothing; ``ls M/c`` lists the lower c/c)."""
    if ctx.actual_view is None:
        return False
    parts = path.split("/")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        if ancestor not in ctx.actual_view.entries and _holds_wh(ctx.model, _parent(ancestor)):
            return True
    return False


#: S_ISUID, S_ISGID, S_IXGRP (stat.h).
_SUID, _SGID, _XGRP = 0o4000, 0o2000, 0o010


def rule_copy_up_drops_setid(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs copyup() creates the upper file with the lower mode, then fchown()s
    it when its owner is not the daemon's (main.c ``st.st_uid != lo->uid || st.st_gid !=
    lo->gid``) and never sets the mode again: chown clears S_ISUID, and S_ISGID when the
    group may execute (``setattr_should_drop_sgid``); the kernel sets the mode after the
    owner (ovl_set_attr). The difference is the mode of an upper non-directory owned by
    someone other than root:root, exactly those bits lost; in the view, the upper layer,
    or a later lstat's result (differing in the mode alone: :func:`_stat_modes`)."""
    if diff.field == "outcome":
        modes = _stat_modes(diff, ctx)
        if modes is None or not isinstance(ctx.op, ops.Stat) or ctx.op.follow:
            return False
        return rule_copy_up_drops_setid(Divergence(path, "mode", *modes), ctx.op.path, ctx)
    expected, actual = diff.expected, diff.actual
    if diff.field != "mode" or not (isinstance(expected, int) and isinstance(actual, int)):
        return False
    if _setid_back_at_write(expected, actual, path, ctx):
        return True
    lost = expected & (_SUID | (_SGID if expected & _XGRP else 0))
    if not lost or actual != expected & ~lost:
        return False
    if _made_here(path, ctx):
        return False  # the step made it: created-then-chowned
    model = ctx.model
    lower = next((o for o in _lower_objects(model, path) if o is not None), None)
    found = entry_at(model.upper, path) if model.upper is not None else None
    if found is None:  # a copy-up the model does not make (removexattr-copies-up)
        found = lower
    elif found.origin is not None:
        lower = found.origin
    if found is None or found.is_dir or lower is None:
        return False  # (a file made in the upper layer: created-then-chowned)
    return (found.uid, found.gid) != (0, 0)


def _stat_modes(diff: Divergence, ctx: StepContext) -> tuple[int, int] | None:
    """A stat's result that differs from one the reference allows in st_mode alone: (the
    mode allowed, the mode given); None otherwise."""
    actual = ctx.actual_outcome
    if not isinstance(actual, Ok) or not isinstance(actual.value, ops.StatResult):
        return None
    stat = actual.value
    for allowed in diff.expected if isinstance(diff.expected, tuple) else ():
        if not isinstance(allowed, Ok) or not isinstance(allowed.value, ops.StatResult):
            continue
        if allowed.value.mode != stat.mode and attrs.evolve(allowed.value, mode=stat.mode) == stat:
            return allowed.value.mode, stat.mode
    return None


def _setid_back_at_write(expected: int, actual: int, path: str, ctx: StepContext) -> bool:
    """The bits come back: root's write of data to a file copied up without them puts
    back the lower file's S_ISUID/S_ISGID (fuse-overlayfs writes its cached mode), while a
    model rebuilt from the upper layer (reference.rebuild) lacks them; the kernel keeps
    them throughout. By hand (docs/recorded-behaviours.md "fo3"): U/c 755 after empty
    writes, 4755 after ``write x``; also after a chown that cleared them (fo5:
    /tmp/fo5/hand/suidback.case: U/b 755 after ``chown 0:0``, 4755 after the write), shown
    at a later step (an lstat, the view once looked up again). Only those bits, only at
    the written path (at the write, or after it since the mount), only when the file the
    path was copied up from
    (a rename moves it: its origin) had them and is not owned by root:root."""

    def wrote(op: object) -> bool:
        return isinstance(op, ops.Write) and op.caller == "root" and bool(op.data) and (
            op.path == path
        )

    op = ctx.op
    if not (wrote(op) or any(map(wrote, ctx.earlier))):
        return False
    back = actual & ~expected
    if not back or back & ~(_SUID | _SGID) or actual != expected | back:
        return False
    upper = entry_at(ctx.model.upper, path) if ctx.model.upper is not None else None
    lower = upper.origin if upper is not None and upper.origin is not None else next(
        (o for o in _lower_objects(ctx.model, path) if o is not None), None
    )
    return (
        lower is not None
        and not lower.is_dir
        and lower.mode & back == back
        and (lower.uid, lower.gid) != (0, 0)
    )


#: The operand naming what a step removes from its directory.
_REMOVED_OPERAND: dict[type, str] = {ops.Unlink: "path", ops.Rename: "src"}


def rule_link_name_leaves_whiteout(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: the node ovl_link makes for the new name is made with the file's
    inode number (``make_ovl_node(..., node->tmp_ino, ...)``, main.c v1.10), which skips
    the walk of the layers that sets ``last_layer``; hide_node then sees a name not only in
    the upper layer (``node->last_layer != get_upper_layer``) in a parent that is not
    either, and leaves a whiteout where it unlinks or renames it away (by hand, fo5:
    ``touch M/g; ln M/g M/h; rm M/h`` leaves U/h a 0/0 whiteout, also once g is gone; the
    kernel none; ``mkfifo M/c; mv M/c M/a`` leaves none). The difference is at the step's
    removed name, an upper non-directory that a link made since the mount
    (:func:`_made_by_link`), in a directory merged with a lower one (not an opaque
    directory of the upper layer)."""
    operand, target = _REMOVED_OPERAND.get(type(ctx.op)), ctx.target
    if operand is None or getattr(ctx.op, operand) != path:
        return False
    if target is None or target.kind == "dir" or not _made_by_link(path, ctx.earlier):
        return False
    try:
        parent = ctx.model.resolve(_parent(path), follow=True).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return parent is not None and parent.is_dir and parent.is_merged


#: The steps that make a name, and the field naming it.
_MAKES: dict[type, str] = {
    ops.Link: "dst", ops.Rename: "dst", ops.Mkfifo: "path", ops.Mkdir: "path",
    ops.Symlink: "path", ops.Write: "path",
}


def _made_by_link(path: str, earlier: tuple[ops.Op, ...]) -> bool:
    """The last step before this one that made ``path`` (since the mount, or the last
    remount: a remount looks every name up afresh) is a link; a write makes it only with
    O_CREAT."""
    for op in reversed(earlier):
        if isinstance(op, ops.Remount):
            return False
        field = _MAKES.get(type(op))
        if field is None or getattr(op, field) != path:
            continue
        if isinstance(op, ops.Write) and "O_CREAT" not in op.flags:
            continue
        return isinstance(op, ops.Link)
    return False


def rule_size_kept_truncate(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs mounts with the FUSE writeback cache (``writeback=1``, main.c v1.10),
    so the FUSE kernel keeps its own mtime of a regular file: truncate(2) to the size the
    file has (no ATTR_MTIME from the VFS, no size change) leaves the mount showing the mtime
    from before, while the daemon's truncate changed the upper file's (by hand, fo5:
    ``printf x > L0/a; truncate(M/a, 1)``: M/a keeps the lower's mtime, U/a a new one; the
    kernel shows the new one). The difference is that mtime at the truncated file, the
    step keeping its size."""
    op, target = ctx.op, ctx.target
    if not isinstance(op, ops.Truncate) or target is None or target.size != op.size:
        return False
    return diff.field == "mtime" and path in ctx.paths


def rule_lower_name_in_remade_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """mkdir-eexist-remade-dir: a mkdir, mkfifo or symlink (by hand; an open with O_CREAT
    works) in an opaque upper directory that replaced a removed lower one, of a name that
    directory's lower held (a whiteout hid it before the removal); the difference is at the
    new name or its parent (which then counts one link less)."""
    op = ctx.op
    if not isinstance(op, ops.Mkdir | ops.Mkfifo | ops.Symlink):
        return False
    if path not in (op.path, _parent(op.path)):
        return False
    model = ctx.model
    parent = _parent(op.path)
    if model.upper is None or not parent:
        return False
    made = entry_at(model.upper, parent)
    if made is None or not made.is_dir or not made.opaque:
        return False
    return any(o is not None for o in _lower_objects(model, op.path)) and any(
        o is not None and o.is_dir for o in _lower_objects(model, parent)
    )


def rule_parent_of_operand(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """copy-up-parent-mtime where the lower directory's mtime is not pinned (the model
    expects it unchanged): the difference is at a directory above one of the step's
    paths (the parent fuse-overlayfs made in the upper layer while copying up); or, the
    step acting on a lower hardlink, at a lower directory above another of its names
    (lower-hardlink-one-inode: fuse-overlayfs copies up the name it looked up first,
    and makes that name's parents; by hand, docs/recorded-behaviours.md "fo")."""
    found = entry_at(ctx.model.upper, path) if ctx.model.upper is not None else None
    if (found is not None and found.is_dir) and any(
        path == "" or p.startswith(path + "/") for p in ctx.paths
    ):
        return True
    if found is not None and found.is_dir and _copied_up_parent(ctx.model, path, found):
        return True  # the mount shows the copy-up's time later, once it looks the name up
    wanted = _target_hardlinks(ctx)
    if not wanted or not any(o is not None and o.is_dir for o in _lower_objects(ctx.model, path)):
        return False
    return any(
        inode.ident in wanted and (path == "" or where.startswith(path + "/"))
        for root in ctx.model.lowers
        for where, inode in walk(root)
    )


def _copied_up_parent(model: Overlay, path: str, upper: Inode) -> bool:
    """A lower directory at ``path`` whose upper copy holds entries (made, as a parent, to
    hold a copy-up): fuse-overlayfs gave it the time of the copy-up, which the mount
    shows at a later step (by hand: ``printf '' >> M/a/c``; ``stat M/a``: the lower's
    time; ``mkdir M/b; ls M; stat M/a``: the copy-up's). The model's time is not compared
    with the lower's: a resynchronised model (reference.rebuild) has fresh ones."""
    return bool(upper.entries) and any(
        o is not None and o.is_dir for o in _lower_objects(model, path)
    )


def rule_created_then_chowned(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs makes a new node in its work directory and then chowns it to its
    owner: ovl_mknod always (``do_fchownat`` to the caller's ids, main.c v1.10), a file
    created by open(O_CREAT) when that owner is not the daemon's root:root
    (``create_file``); chown clears S_ISUID, and S_ISGID when the group may execute
    (fs/attr.c ``setattr_should_drop_sgid``). The kernel creates it with the mode asked
    for. The difference is the mode of the step's new FIFO or file, exactly those bits
    lost (by hand, docs/recorded-behaviours.md "Set-id bits of a new node")."""
    op, expected, actual = ctx.op, diff.expected, diff.actual
    if diff.field != "mode" or not (isinstance(expected, int) and isinstance(actual, int)):
        return False
    if not isinstance(op, ops.Mkfifo | ops.Write) or path != op.path:
        return False
    if ctx.target is None or ctx.target.kind != "none":
        return False  # (an existing file: no new node, no chown)
    if isinstance(op, ops.Write):
        if "O_CREAT" not in op.flags:
            return False
        node = _non_dir_at(ctx.model, path)
        if node is None:
            return False
        meta = ctx.model.meta(node)
        if (meta.uid, meta.gid) == (0, 0):
            return False
    lost = expected & (_SUID | (_SGID if expected & _XGRP else 0))
    return bool(lost) and actual == expected & ~lost


def rule_setgid_parent_ignored(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: mkdir, mkfifo and symlink in a set-group-ID directory give the new
    entry the caller's group (and a directory no S_ISGID); a regular file created there
    takes the directory's group, as the kernel gives every new entry (inode_init_owner).
    The difference is at the step's new entry, whose parent has S_ISGID in the model:
    its gid is the caller's instead of the parent's, or its mode lacks only S_ISGID."""
    if not isinstance(ctx.op, ops.Mkdir | ops.Mkfifo | ops.Symlink) or path != ctx.op.path:
        return False
    parent = _parent(path)
    try:
        node = ctx.model.resolve(parent, follow=True).node if parent else ctx.model.root()
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is None or not node.is_dir:
        return False
    meta = ctx.model.meta(node)
    if not meta.mode & _SGID:
        return False
    if diff.field == "gid":
        return diff.expected == meta.gid and diff.actual == ops.CALLERS[ctx.op.caller].gid
    if diff.field == "mode" and isinstance(ctx.op, ops.Mkdir):
        expected, actual = diff.expected, diff.actual
        return isinstance(expected, int) and bool(expected & _SGID) and actual == expected & ~_SGID
    return False


def rule_setgid_bit_lost(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: copying up a set-group-ID directory drops S_ISGID, so a directory
    the step makes in it lacks the bit too (setgid-dir-copy-up; the kernel keeps the mode,
    ovl_set_attr, and gives a new directory the bit, inode_init_owner). The difference is
    a mode lacking only S_ISGID at such a copied-up directory, or at the directory the
    step made in one; a bit lost anywhere else, a umask not applied or another bit lost
    is not this behaviour."""
    expected, actual = diff.expected, diff.actual
    if diff.field != "mode" or not isinstance(expected, int) or not isinstance(actual, int):
        return False
    if not (expected & _SGID and actual == expected & ~_SGID):
        return False
    if _copied_setgid_dir(ctx.model, path):
        return True
    made = isinstance(ctx.op, ops.Mkdir) and path == ctx.op.path
    return made and _copied_setgid_dir(ctx.model, _parent(path))


def _copied_setgid_dir(model: Overlay, path: str) -> bool:
    """Whether ``path`` is a directory copied up from a lower set-group-ID directory."""
    try:
        node = model.resolve(path, follow=False).node if path else model.root()
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is None or not node.is_dir or node.upper is None:
        return False
    lower = model.lower_of(node)
    return lower is not None and lower.is_dir and bool(lower.mode & _SGID)


def rule_copied_up_symlink(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs: a symlink it copies up (rename, chown -h, ...) gets the time of the
    copy-up as mtime; the kernel keeps the lower's (copy_up.c ovl_set_timestamps). The
    difference is at a symlink the model copied up and keeps at its lower's mtime."""
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if node is None or node.kind is not Kind.SYMLINK or node.upper is None:
        return False
    origin = node.upper.origin
    return origin is not None and node.upper.mtime == origin.mtime


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


#: unionfs-fuse: the longest name whose deletion it can record (``<name>_HIDDEN~``).
HIDDEN_NAME_MAX = 255 - len("_HIDDEN~")


def _removed(op: ops.Op | None) -> str | None:
    if isinstance(op, ops.Unlink | ops.Rmdir):
        return op.path
    if isinstance(op, ops.Rename):
        return op.src
    return None


def rule_hidden_name_too_long(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: the step removes (unlink, rmdir, rename's source) a name longer than
    247 bytes that a lower branch holds: its deletion mark ``.unionfs-fuse/<name>_HIDDEN~``
    is longer than NAME_MAX, so the step gives ENAMETOOLONG or, where the upper branch had
    a copy it removed, succeeds and the lower object shows again. The difference is the
    outcome, or at the removed name (or below it)."""
    removed = _removed(ctx.op)
    if removed is None or _name_bytes(removed) <= HIDDEN_NAME_MAX:
        return False
    candidates = [removed, *(ctx.target.paths[:1] if ctx.target is not None else ())]
    held = [p for p in candidates if any(o is not None for o in _lower_objects(ctx.model, p))]
    if not held:
        return False
    if diff.field == "outcome":
        return True
    return any(path == p or path.startswith(p + "/") for p in held)


def _linked_file(model: Overlay, path: str, *, follow: bool) -> bool:
    """``path`` is a file with more than one name (in the merged view)."""
    try:
        node = model.resolve(path, follow=follow).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return node is not None and not node.is_dir and model.nlink(node) > 1


def rule_nlink_lags_link(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse (libfuse 2 gives each path its own node): after a link (or an unlink),
    the other names of the file show the link count from before it until their cached
    attributes expire (attr_timeout, 1 s): lower after a link (at least 1), higher after
    an unlink, one off at the link or unlink itself; nothing else differs."""
    model = ctx.model
    if diff.field == "outcome":
        actual = ctx.actual_outcome
        if not isinstance(ctx.op, ops.Stat) or not isinstance(actual, Ok):
            return False
        stat, path, follow = actual.value, ctx.op.path, ctx.op.follow
        expected = [o.value for o in diff.expected if isinstance(o, Ok)]
        # lower after a link (a name of a linked file); higher after an unlink (a file's
        # count from before it, as in the view below)
        return isinstance(stat, ops.StatResult) and any(
            isinstance(e, ops.StatResult)
            and attrs.evolve(e, nlink=stat.nlink) == stat
            and (
                (1 <= stat.nlink < e.nlink and _linked_file(model, path, follow=follow))
                or (1 <= e.nlink < stat.nlink and _is_file(model, path, follow=follow))
            )
            for e in expected
        )
    if not (
        diff.field == "nlink" and isinstance(diff.expected, int) and isinstance(diff.actual, int)
    ):
        return False
    if 1 <= diff.actual < diff.expected and _linked_file(model, path, follow=False):
        return True
    # after an unlink (at any step within the timeout), a remaining name's count is the
    # higher one from before it: only a file's count, only higher
    if 1 <= diff.expected < diff.actual and _is_file(model, path):
        return True
    # at the link or unlink itself, another name's count is the one from before it
    return (
        isinstance(ctx.op, ops.Link | ops.Unlink)
        and abs(diff.actual - diff.expected) == 1
        and _is_file(model, path)
    )


def _is_file(model: Overlay, path: str, follow: bool = False) -> bool:
    try:
        node = model.resolve(path, follow=follow).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    return node is not None and not node.is_dir


def rule_renamed_from_top_branch_only(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a directory renamed with lower parts is copied from the topmost
    branch that holds it only (the upper one, if it has a part there): an entry below the
    new name that came from a branch further down is missing."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or not path.startswith(op.dst + "/"):
        return False
    if diff.field != "exists" or diff.actual is not None:
        return False
    source = op.src + path[len(op.dst):]
    if ctx.target is not None and ctx.target.layers in ("merged", "upper"):
        # the top branch is the upper one: what a lower branch held is not copied
        return any(o is not None for o in _lower_objects(ctx.model, source))
    objects = _lower_objects(ctx.model, op.src)
    top = next((i for i, o in enumerate(objects) if o is not None and o.is_dir), None)
    if top is None:
        return False
    return entry_at(ctx.model.lowers[top], source) is None


def rule_removed_name_back_in_renamed_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a directory renamed after a name below it was removed shows that name
    again under the new name: ``path`` is below the rename's destination, the model has
    nothing reachable there, the driver shows an object, and a lower branch holds an object
    of that kind at the same place below the source (the removed one)."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or not path.startswith(op.dst + "/"):
        return False
    return _removed_name_shown(path, ctx, lower_at=op.src + path[len(op.dst):])


def _removed_name_shown(path: str, ctx: StepContext, lower_at: str) -> bool:
    """The driver shows an object at ``path`` where the model has nothing reachable, and
    a lower branch holds an object of that kind at ``lower_at`` (the removed one)."""
    if ctx.actual_view is None or path not in ctx.actual_view.entries:
        return False
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: nothing reachable there
        node = None
    if node is not None:
        return False
    lower = next((o for o in _lower_objects(ctx.model, lower_at) if o is not None), None)
    return lower is not None and lower.kind.value == ctx.actual_view.entries[path].kind


def rule_hidden_lower_back_at_rename_dst(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a rename onto a name whose lower object is hidden (renamed or removed
    away) deletes its hide mark (rpodgorny/unionfs-fuse v1.0 src/unionfs.c unionfs_rename:
    remove_hidden(to, i) after the rename), so what the lower branches hold below that
    name shows inside the renamed object: ``path`` is below the destination, the model has
    nothing reachable there, the driver shows an object, and a lower branch holds an object
    of that kind at ``path``."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or op.flags or not path.startswith(op.dst + "/"):
        return False
    return _removed_name_shown(path, ctx, lower_at=path)


def rule_dst_parents_from_its_branch(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a rename onto a name found past a non-directory copies that name up
    first (src/unionfs.c unionfs_rename -> findbranch.c find_rw_branch_cutlast ->
    find_rw_branch_cow(to) -> cow_cp, whose path_create_cutlast makes the directories from
    the branch the name was found in): ``path`` is a directory above the destination, a
    shadowed name, and shows the mode, owner or group that directory has in a lower
    branch holding the destination."""
    op = ctx.op
    if not isinstance(op, ops.Rename) or diff.field not in ("mode", "uid", "gid"):
        return False
    if not path or not op.dst.startswith(path + "/") or not _shadowed(ctx.model, op.dst):
        return False
    return any(
        at_dst is not None
        and (directory := entry_at(root, path)) is not None
        and directory.is_dir
        and getattr(directory, diff.field) == diff.actual
        for root in ctx.model.lowers
        for at_dst in [entry_at(root, op.dst)]
    )


def rule_removed_name_back_in_copied_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: chmod, chown or utimensat of a directory that is not in the upper
    branch copies the lower branch's tree without its own hide marks, so a name removed
    below it shows again: ``path`` is below the operand, the model has nothing reachable
    there, the driver shows an object, and a lower branch holds an object of that kind at
    ``path`` (the removed one). The operand may be a symlink to the directory (the kernel
    follows it and asks for the directory). (utimensat: rpodgorny/unionfs-fuse v1.0
    src/unionfs.c unionfs_utimens -> find_rw_branch_cow -> cow_cp -> copy_directory.)"""
    op = ctx.op
    if not isinstance(op, ops.Chmod | ops.Chown | ops.Utimens):
        return False
    # through a final symlink: the directory it leads to (chmod of c -> a copies a)
    directory = _followed_name(ctx.model, op) or op.path
    if not path.startswith(directory + "/"):
        return False
    return _removed_name_shown(path, ctx, lower_at=path)


def rule_parent_of_removed(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: removing a name that only lower branches hold writes its hide mark
    in its own tree (.unionfs-fuse/<path>_HIDDEN~), not in the parent directory: ``path``
    is the directory the step removed a name from (its mtime stays as it was)."""
    op = ctx.op
    return isinstance(op, ops.Unlink | ops.Rmdir) and path == _parent(op.path)


#: The attributes a name of a file shows from its own cache (libfuse 2: a node per path).
_CACHED_FIELDS = ("mode", "uid", "gid", "data")


def rule_stale_other_name(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse (libfuse 2, a node per path, attr_timeout 1 s): ``path`` is one name
    of a file with several names and shows an attribute from before a change made through
    another name, at a step after that change: another name of the same file (one upper
    inode in the model) shows the expected value. (Not compared by st_ino: the stale name
    may also show the number from before its copy-up, copied-up-inode-lag.)"""
    view = ctx.actual_view
    if diff.field == "outcome":
        return _stale_stat(diff, ctx)
    if diff.field not in _CACHED_FIELDS or view is None or path not in view.entries:
        return False
    return _other_name_shows(ctx, path, diff.field, diff.expected)


def _stale_stat(diff: Divergence, ctx: StepContext) -> bool:
    """A stat of such a name: its mode, owner or group from before the change (each shown
    right at another name of the file), its link count the same or lower
    (nlink-lags-link), nothing else differing."""
    actual, op = ctx.actual_outcome, ctx.op
    if not isinstance(op, ops.Stat) or op.follow or not isinstance(actual, Ok):
        return False
    stat = actual.value
    if not isinstance(stat, ops.StatResult):
        return False
    for e in (o.value for o in diff.expected if isinstance(o, Ok)):
        if not isinstance(e, ops.StatResult) or not 1 <= stat.nlink <= e.nlink:
            continue
        stale = [f for f in ("mode", "uid", "gid") if getattr(stat, f) != getattr(e, f)]
        if (
            stale
            and attrs.evolve(e, nlink=stat.nlink, **{f: getattr(stat, f) for f in stale}) == stat
            and all(_other_name_shows(ctx, op.path, f, getattr(e, f)) for f in stale)
        ):
            return True
    return False


def _other_name_shows(ctx: StepContext, path: str, field: str, value: object) -> bool:
    """Another name of the non-directory at ``path`` (one upper inode in the model) shows
    ``value`` as ``field`` in the driver's view."""
    view = ctx.actual_view
    node = _upper_file(ctx, path)
    if view is None or node is None:
        return False
    for other, entry in view.entries.items():
        if other == path:
            continue
        try:
            same = ctx.model.resolve(other, follow=False).node
        except Exception:  # a path the model refuses: not a name of this file
            continue
        shown = getattr(entry, field)
        if same is not None and same.upper is node.upper and shown == value:
            return True
    return False


def rule_sibling_copied_up_only(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """fuse-overlayfs as a writer (layer interchange): ``path`` is a name of a lower
    hardlink that has no copy in the written upper layer while another name of it has
    one: the writer showed the change through every name (one in-memory inode), a reader
    shows the lower file at this one.

    fuse-overlayfs copies up the name its node was made for (the first it looked up), not
    always the one the step named (``printf x > L0/b; ln L0/b L0/c``; ``truncate -s 0 M/c``
    writes U/b; the kernel on the written layers shows b empty, c ``x``; by hand, fo5),
    while the reference copies up the name named. So ``path`` may have a copy in the
    model's upper layer too: then the reader shows the lower file's value of the field at
    it and the writer's value (the difference's expected one) at another of its names.

    Or the writer's view is the stale one: its inode (register_inode, keyed by the lower
    file's inode number) acts through the name registered last, so once a listing looked
    up another name, a name changed and copied up shows the lower file again (``setfattr
    -x user.a M/b/a`` with L0/b/a a link of L0/a/a, then ``ls -R M``: M/b/a shows user.a,
    U/b/a has none; by hand, fo5). Then the reader shows at ``path`` what the reference
    shows there (fuse-overlayfs's private markers aside) and, at another name of the file
    not copied up, the value the writer showed."""
    model = ctx.model
    if model.upper is not None:
        upper, originals = model.upper, list(model.lowers)
    elif model.lowers:
        upper, originals = model.lowers[0], list(model.lowers[1:])  # read-only: on top
    else:
        return False
    top = next((o for o in (entry_at(r, path) for r in originals) if o is not None), None)
    if top is None or top.is_dir:
        return False
    names = {w for root in originals for w, inode in walk(root) if inode.ident == top.ident}
    if len(names) < 2:
        return False
    if entry_at(upper, path) is None:
        return any(entry_at(upper, w) is not None for w in names)
    others = names - {path}
    not_copied = {w for w in others if entry_at(upper, w) is None}
    return _lower_value_here_written_beside(
        diff, top, others, ctx.actual_view
    ) or _writer_shows_lower_value(diff, path, not_copied, ctx)


#: The fields of a lower file a reader shows as the lower has them (data, mode, owner).
_LOWER_FIELDS = ("data", "mode", "uid", "gid")


def _writer_shows_lower_value(
    diff: Divergence, path: str, lower_names: set[str], ctx: StepContext
) -> bool:
    """The reader shows at ``path`` the reference's value (fuse-overlayfs's private xattrs
    aside), and at one of ``lower_names`` (names of the file the reference did not copy
    up) the value the writer showed at ``path``."""
    shown = ctx.actual_view
    if diff.field not in (*_LOWER_FIELDS, "xattrs") or shown is None or not lower_names:
        return False
    reference = ctx.model.view().entries.get(path)
    actual = diff.actual
    if diff.field == "xattrs" and isinstance(actual, tuple):
        actual = tuple(x for x in actual if not x[0].startswith(PRIVATE_XATTRS))
    if reference is None or getattr(reference, diff.field) != actual or actual == diff.expected:
        return False
    return any(
        (entry := shown.entries.get(name)) is not None
        and getattr(entry, diff.field, None) == diff.expected
        for name in lower_names
    )


def _lower_value_here_written_beside(
    diff: Divergence, lower: Inode, others: set[str], shown: View | None
) -> bool:
    """The reader shows the ``lower`` file's value of the difference's field (its actual
    value) where the writer showed another, and at one of ``others`` (the file's other
    names) the value the writer showed."""
    if diff.field not in _LOWER_FIELDS or shown is None or diff.actual == diff.expected:
        return False
    if getattr(lower, diff.field) != diff.actual:
        return False
    return any(
        (entry := shown.entries.get(name)) is not None
        and getattr(entry, diff.field, None) == diff.expected
        for name in others
    )


def rule_other_name_of_target(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """``path`` is another name of the file the step changed (one inode, several names),
    and the difference is one of its attributes or its data (not its existence)."""
    if diff.field in ("exists", "kind", "st_ino") or not ctx.paths:
        return False
    model = ctx.model
    try:
        changed = model.resolve(ctx.paths[0], follow=True).node
        other = model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return False
    if changed is None or other is None or changed.is_dir or other.path == changed.path:
        return False
    return changed.upper is not None and changed.upper is other.upper


def rule_stale_size_read(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a name whose cached attributes are from before the unlink of the
    file's other name (it still shows the higher link count, nlink-lags-link) reads the
    file up to its cached size: the data shown is a strict prefix of the file's."""
    view = ctx.actual_view
    if diff.field == "outcome" and isinstance(ctx.op, ops.Read):
        # a read of the name: the same cut (its view entry shows the stale count)
        path, shown = ctx.op.path, ctx.actual_outcome
        if not isinstance(shown, Ok):
            return False
        shown, data = shown.value, next(
            (o.value for o in diff.expected if isinstance(o, Ok) and isinstance(o.value, bytes)),
            None,
        )
    elif diff.field == "data":
        shown, data = diff.actual, diff.expected
    else:
        return False
    if view is None or path not in view.entries:
        return False
    if not (isinstance(shown, bytes) and isinstance(data, bytes)):
        return False
    if not (len(shown) < len(data) and data.startswith(shown)):
        return False
    node = _upper_file(ctx, path)
    return node is not None and view.entries[path].nlink > ctx.model.nlink(node)


def _upper_file(ctx: StepContext, path: str):  # type: ignore[no-untyped-def]
    """The model's node at ``path`` when it is a non-directory with an upper inode, else
    None (also where the model refuses the path)."""
    try:
        node = ctx.model.resolve(path, follow=False).node
    except Exception:  # a path the model refuses: not this behaviour
        return None
    if node is None or node.is_dir or node.upper is None:
        return None
    return node


def rule_setid_kept(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """The step's target keeps the set-user-ID or set-group-ID bits the kernel's rule drops
    (a write by a caller without CAP_FSETID, fs/attr.c setattr_should_drop_sgid): the
    mode shown is the expected one with those bits, nothing else (unionfs-fuse's
    fallocate fails before it writes, fallocate-enotsup)."""
    shown, mode = diff.actual, diff.expected
    if diff.field != "mode" or not isinstance(shown, int) or not isinstance(mode, int):
        return False
    return shown != mode and shown & ~0o6000 == mode and shown & 0o6000 != 0


def rule_sgid_kept_without_group_exec(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """FUSE without handle_killpriv (unionfs-fuse): a write or truncate by a caller
    without CAP_FSETID clears S_ISGID only when the group may execute (linux
    fs/fuse/dir.c fuse_setattr: ``(i_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)``),
    where the kernel also clears it for a caller outside the file's group (fs/attr.c
    setattr_should_drop_sgid): the mode shown is the expected one with S_ISGID, without
    group execute, at the step's target."""
    shown, mode = diff.actual, diff.expected
    if diff.field != "mode" or not isinstance(shown, int) or not isinstance(mode, int):
        return False
    if path not in ctx.paths:
        return False
    return shown == mode | 0o2000 and not mode & 0o2000 and not shown & 0o010


def rule_same_file_rename_checked(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse (libfuse 2 gives each path its own node): a rename of one name of a file
    onto another name of it gets the VFS's permission checks, which the kernel skips for
    one inode (fs/namei.c vfs_rename: ``if (source == target) return 0`` before may_delete;
    rename(2): "existing hard links referring to the same file ... does nothing"). So a
    caller that may not delete both names gets may_delete's error where the kernel succeeds;
    only a plain rename (the flags have rename-flags-einval), the rule's own errno."""
    op, actual = ctx.op, ctx.actual_outcome
    if not (isinstance(op, ops.Rename) and not op.flags and isinstance(actual, Err)):
        return False
    if Ok(None) not in diff.expected:
        return False
    model = ctx.model  # a no-op changes nothing: the state after it is the one before
    src = model.resolve(op.src, follow=False)
    dst = model.resolve(op.dst, follow=False)
    old, new = src.node, dst.node
    if old is None or new is None or src.parent is None or dst.parent is None:
        return False
    if old.path == new.path or model.vfs_inode(old) != model.vfs_inode(new):
        return False
    caller = ops.CALLERS[op.caller]
    try:
        for parent, victim in ((src.parent, old), (dst.parent, new)):
            may_delete(caller, model.meta(parent), model.meta(victim))
    except FsError as failure:
        return actual.name in failure.names
    return False


def rule_unlinked_other_name_lag(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: at the unlink of another name of the file, ``path`` shows the
    attributes cached before a change made through that name (libfuse 2: a node per path,
    attr_timeout 1 s): its mode or owner from before, or its data read up to the size from
    before (a strict prefix of the file's). other-name-attribute-lag where the cached link
    count, from before a link, happens to equal the count after the unlink."""
    target = ctx.target
    if not (isinstance(ctx.op, ops.Unlink) and target is not None and path in target.names):
        return False
    if diff.field in ("mode", "uid", "gid"):
        return True
    shown, data = diff.actual, diff.expected
    if diff.field != "data" or not (isinstance(shown, bytes) and isinstance(data, bytes)):
        return False
    return len(shown) < len(data) and data.startswith(shown)


def rule_rename_over_marker_dir(diff: Divergence, path: str, ctx: StepContext) -> bool:
    """unionfs-fuse: a rename over a directory a lower whiteout is below fails with
    ENOTEMPTY (the whiteout shows as a character device, lower-markers-ignored), after
    the source's tree was copied to the read-write branch; so does one over a directory a
    name was removed from (its tree copy brings the name back). The kernel's directory is
    empty and the rename succeeds. Every difference of that step at its paths."""
    op = ctx.op
    if not (isinstance(op, ops.Rename) and ctx.actual_outcome == Err("ENOTEMPTY")):
        return False
    return _holds_marker(ctx.model, op.dst) or _removed_below(ctx.model, op.dst)


def _removed_below(model: Overlay, path: str) -> bool:
    """A lower layer has an object below ``path`` that the merged view does not show (a
    name removed through the mount: unionfs-fuse's tree copy of ``path`` brings it back,
    dir-copy-up-removed-name-back)."""
    for root in model.lowers:
        for where, _ in walk(root):
            if not where.startswith(path + "/"):
                continue
            try:
                if model.resolve(where, follow=False).node is None:
                    return True
            except Exception:  # a path the model refuses (below a non-directory): hidden
                return True
    return False


RULES: dict[str, Callable[[Divergence, str, StepContext], bool]] = {
    "xattr-whiteout-shown": rule_xattr_whiteout_shown,
    "overlay-xattrs-hidden": rule_overlay_xattrs_hidden,
    "opaque-in-trusted": rule_opaque_in_trusted,
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
    "past-non-dir-followed": rule_past_non_dir_followed,
    "lower-markers-ignored": rule_lower_markers_ignored,
    "operand-lower-marker": rule_operand_lower_marker,
    "operand-shadowed": rule_operand_shadowed,
    "merged-with-lower-symlink": rule_merged_with_lower_symlink,
    "hardlink-sibling-shows-change": rule_hardlink_sibling,
    "below-unlistable-dir": rule_unlistable,
    "below-dir-over-lower-symlink": rule_below_dir_over_lower_symlink,
    "refused-with-enomem": rule_refused_with_enomem,
    "lower-name-in-remade-dir": rule_lower_name_in_remade_dir,
    "lower-file-name-past-whiteout-room": rule_lower_file_name_past_room,
    "setgid-parent-ignored": rule_setgid_parent_ignored,
    "created-then-chowned": rule_created_then_chowned,
    "setgid-bit-lost": rule_setgid_bit_lost,
    "copied-up-symlink": rule_copied_up_symlink,
    "wh-file-names": rule_wh_file_names,
    "copy-up-drops-setid": rule_copy_up_drops_setid,
    "refused-exchange-copies-up": rule_refused_exchange_copies_up,
    "renamed-over-lower-hardlink": rule_renamed_over_lower_hardlink,
    "size-kept-truncate": rule_size_kept_truncate,
    "found-through-lower-symlink": rule_found_through_lower_symlink,
    "link-name-leaves-whiteout": rule_link_name_leaves_whiteout,
    "parent-of-operand": rule_parent_of_operand,
    "hidden-name-too-long": rule_hidden_name_too_long,
    "nlink-lags-link": rule_nlink_lags_link,
    "same-file-rename-checked": rule_same_file_rename_checked,
    "renamed-from-top-branch-only": rule_renamed_from_top_branch_only,
    "sibling-copied-up-only": rule_sibling_copied_up_only,
    "other-name-of-target": rule_other_name_of_target,
    "removed-name-back-in-renamed-dir": rule_removed_name_back_in_renamed_dir,
    "renamed-from-lower-marker": rule_renamed_from_lower_marker,
    # --- unionfs-fuse, uf (issue 15 follow-up) ---
    "removed-name-back-in-copied-dir": rule_removed_name_back_in_copied_dir,
    "hidden-lower-back-at-rename-dst": rule_hidden_lower_back_at_rename_dst,
    "dst-parents-from-its-branch": rule_dst_parents_from_its_branch,
    "sgid-kept-without-group-exec": rule_sgid_kept_without_group_exec,
    "parent-of-removed": rule_parent_of_removed,
    "stale-other-name": rule_stale_other_name,
    "stale-size-read": rule_stale_size_read,
    "unlinked-other-name-lag": rule_unlinked_other_name_lag,
    "rename-over-marker-dir": rule_rename_over_marker_dir,
    "setid-kept": rule_setid_kept,
}


#: The fields a named rule accounts for differences in, for the rules that account only for
#: some (in a stat result too: conformance.lockstep.machine masks st_nlink in those where the
#: feature leaves nlink out).
RULE_FIELDS: dict[str, frozenset[str]] = {
    "lower-hardlink-nlink-names-seen": frozenset({"nlink"}),
    "nlink-lags-link": frozenset({"nlink"}),
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
    """Which of ``found`` the ``records`` (expectations with clauses) account for. A
    difference in an object's xattrs that no clause accounts for whole is matched name by
    name (:func:`xattr_parts`): it is accounted for when each of its names is."""
    whole = found
    part_of: dict[int, Divergence] = {}
    found = []
    for diff in whole:
        parts = xattr_parts(diff)
        if len(parts) > 1 and not any(
            c.matches(diff, ctx) for r in records for c in r.differs
        ):
            part_of.update((id(p), diff) for p in parts)
            found.extend(parts)
        else:
            found.append(diff)
    accounted: set[int] = set()
    by_record: dict[str, tuple[Divergence, ...]] = {}
    resync = "keep"
    order = {"keep": 0, "model": 1, "stop": 2}
    for record in records:
        clauses = record.differs
        if not clauses or getattr(record, "crash", ""):
            continue  # (a crash record describes a crash alone: crash_record)
        if not any(c.matches(d, ctx) for c in clauses if c.primary for d in found):
            continue
        mine = tuple(d for d in found if any(c.matches(d, ctx) for c in clauses))
        by_record[record.id] = mine
        accounted.update(id(d) for d in mine)
        wanted = record.resync
        acted = ctx.op is not None and type(ctx.op) not in ops.LOOKS and any(
            d.field == "outcome" for d in mine
        )
        if wanted == "keep" and acted:
            wanted = "model"  # the operation did something else: the state differs now
        if wanted == "view":
            # keep the model while only what the driver shows differs; where its state
            # differs (an upper layer, an operation that did something else) stop
            upper = any(split_where(d)[0] == "upper" for d in mine)
            wanted = "stop" if acted or upper else "keep"
        if order[wanted] > order[resync]:
            resync = wanted
    left = {id(part_of.get(id(d), d)) for d in found if id(d) not in accounted}
    unmatched = tuple(d for d in whole if id(d) in left)
    return Matched(by_record, unmatched, resync)


def xattr_parts(diff: Divergence) -> list[Divergence]:
    """A difference in the xattrs of one object, one per name that differs (each with
    that name's entries alone): fuse-overlayfs with userxattr stores a ``user.overlay.*``
    xattr as its own marker and marks the directory opaque in ``trusted.overlay.*``, two
    records in one field (by hand, fo5: ``mkdir M/c; setfattr -n user.overlay.e M/c``:
    U/c holds trusted.overlay.opaque and user.overlay.e, the kernel user.overlay.overlay.e).
    Any other difference: itself alone."""
    expected, actual = diff.expected, diff.actual
    if diff.field != "xattrs" or not isinstance(expected, tuple) or not isinstance(actual, tuple):
        return [diff]
    if not all(isinstance(x, tuple) and len(x) == 2 for x in (*expected, *actual)):
        return [diff]
    names = sorted({name for name, _ in set(expected) ^ set(actual)})

    def of(items: tuple[Any, ...], name: str) -> tuple[Any, ...]:
        return tuple(x for x in items if x[0] == name)

    return [Divergence(diff.where, "xattrs", of(expected, n), of(actual, n)) for n in names]


def crash_record(
    records: tuple[Any, ...], message: str, ctx: StepContext, expected: object = None
) -> Any | None:
    """The record that describes the crash ``message`` at the step of ``ctx`` (its
    ``crash`` pattern matches the message and one of its primary clauses the step, as an
    outcome whose actual value is :data:`CRASHED`), or None."""
    if ctx.op is None:
        return None
    diff = Divergence(next(iter(operands(ctx.op)), ""), "outcome", expected, CRASHED)
    for record in records:
        pattern = getattr(record, "crash", "")
        if pattern and fnmatch.fnmatchcase(message, pattern) and any(
            c.matches(diff, ctx) for c in record.differs if c.primary
        ):
            return record
    return None


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


#: Where the machine finds a driver's records: ``(driver, option set label, run
#: configuration) -> records`` (the run's records file, the driver's version asked with
#: its driver settings: conformance.run_config), registered by
#: conformance.records.expectations when it is imported (so this module and the machine
#: do not import the record file's reader, which runs scenarios and machines). Without
#: one, no difference is expected: a missing registration can only make a run stricter,
#: never hide a divergence.
_BOOK: Callable[[str, str, Any], tuple[Any, ...]] | None = None


def use_book(book: Callable[[str, str, Any], tuple[Any, ...]]) -> None:
    """Make ``book`` the source of every driver's records."""
    global _BOOK
    _BOOK = book


def behaviours_for(driver: str, options: str, run_config: Any) -> tuple[Any, ...]:
    """The records of ``driver`` under the option set ``options`` in the run's records
    file, the driver's version asked with its driver settings (``run_config``,
    conformance.run_config; none without a book)."""
    return () if _BOOK is None else tuple(_BOOK(driver, options, run_config))
