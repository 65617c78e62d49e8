"""Comparison of what the reference predicts with what a driver shows.

Every check returns a list of :class:`Divergence` records; their rendering is the assertion
message. Inode numbers are compared as a consistent renaming (:class:`InodeMap`), never as
numbers: the reference's identities are abstract.
"""

from __future__ import annotations

import attrs

from reference.view import UNREACHABLE, LayerImage, View


@attrs.frozen
class Divergence:
    """One difference: ``where`` (a path, or a layer), the ``field``, and both sides."""

    where: str
    field: str
    expected: object
    actual: object

    def render(self) -> str:
        return f"{self.where}: {self.field}: expected {self.expected!r}, got {self.actual!r}"


def render(divergences: list[Divergence]) -> str:
    return "\n".join(d.render() for d in divergences)


def compare_entries(
    where: str,
    expected: dict[str, object],
    actual: dict[str, object],
    fields: frozenset[str] | None = None,
) -> list[Divergence]:
    """Paths present on one side only, and paths whose entries differ field by field
    (only the ``fields`` named, when given)."""
    if expected == actual:
        return []  # the same paths, equal entries (every field): nothing to list
    found: list[Divergence] = []
    for path in sorted(expected.keys() | actual.keys()):
        label = f"{where}{path}"
        if path not in actual:
            found.append(Divergence(label, "exists", expected[path], None))
        elif path not in expected:
            found.append(Divergence(label, "exists", None, actual[path]))
        elif expected[path] != actual[path]:
            mine, theirs = attrs.asdict(expected[path]), attrs.asdict(actual[path])
            found.extend(
                Divergence(label, name, mine[name], theirs[name])
                for name in mine
                if mine[name] != theirs[name]
                and name not in TIME_FIELDS
                and (fields is None or name in fields)
            )
    return found


#: The view's time fields: compared by :class:`TimeMap`, never as plain values.
TIME_FIELDS = frozenset({"mtime", "ctime"})


@attrs.define
class TimeMap:
    """Checks the times of the view against the reference's, observation after observation.

    The reference knows some times exactly (>= 0 ns: a layer spec's mtime, kept by copy-up;
    a Utimens) and others only as abstract stamps (< 0: "the filesystem's clock when this
    happened"; reference.layer.new_stamp). Rules, per path present on both sides:

    * ``mtime``: an exact time must be the driver's exactly; a stamp seen before must still
      be the time it was first seen as (unchanged); a stamp that replaces an exact time at
      a name must differ from it (changed: the clock never reads a generated time). Two
      names with one stamp (hardlinks) show one time.
    * ``ctime``: never earlier than what the same object showed at the name before.

    A stamp that replaces a stamp may read the same time: the kernel's timestamps are
    coarse (a clock tick) and never go back, so two changes in one tick can show one time,
    even with multigrain timestamps (found by the kernel run: a create over a whiteout
    after a chown of the directory left its ctime, then a link its mtime, as it was).
    For the same reason ctime's "changed" and "unchanged" are not checked (the overlay
    also changes ctimes the reference does not model: its own trusted.overlay.* xattrs).

    Only the ``fields`` asked for are checked (a feature without times checks none).
    """

    fields: frozenset[str] = TIME_FIELDS
    #: stamp -> the driver's mtime it was first seen as.
    stamps: dict[int, int] = attrs.field(factory=dict)
    #: path -> (expected mtime, actual mtime, identity, actual ctime) at the previous
    #: observation.
    last: dict[str, tuple[int, int, int | None, int]] = attrs.field(factory=dict)
    #: Identities whose times are no longer compared: a recorded behaviour of the driver
    #: accounted for a time of theirs (conformance.lockstep.machine), which the model
    #: cannot follow.
    forgiven: set[int] = attrs.field(factory=set)

    def forgive(self, identity: int | None) -> None:
        if identity is not None:
            self.forgiven.add(identity)

    def check(self, expected: View, actual: View) -> list[Divergence]:
        found: list[Divergence] = []
        last: dict[str, tuple[int, int, int | None, int]] = {}
        for path, mine in expected.entries.items():
            theirs = actual.entries.get(path)
            if theirs is None or mine.kind != theirs.kind or mine == UNREACHABLE:
                continue
            identity = expected.inodes.get(path)
            if identity in self.forgiven:
                continue
            before = self.last.get(path)
            last[path] = (mine.mtime, theirs.mtime, identity, theirs.ctime)
            if "mtime" in self.fields:
                found += self._mtime(path, mine.mtime, theirs.mtime, before)
            same_object = before is not None and before[2] == identity
            if "ctime" in self.fields and same_object and theirs.ctime < before[3]:  # type: ignore[index]
                found.append(
                    Divergence(path, "ctime", f"not before {before[3]}", theirs.ctime)  # type: ignore[index]
                )
        self.last = last
        return found

    def _mtime(
        self, path: str, mine: int, theirs: int, before: tuple[int, int, int | None, int] | None
    ) -> list[Divergence]:
        if mine >= 0:
            return [] if mine == theirs else [Divergence(path, "mtime", mine, theirs)]
        known = self.stamps.get(mine)
        if known is not None:
            if known == theirs:
                return []
            return [Divergence(path, "mtime", f"unchanged ({known})", f"changed to {theirs}")]
        self.stamps[mine] = theirs
        if before is not None and before[0] >= 0 and before[1] == theirs:
            return [Divergence(path, "mtime", "changed", f"unchanged ({theirs})")]
        return []


@attrs.define
class InodeMap:
    """Checks st_ino as a renaming of the reference's identities.

    Within one observation, two paths share an identity exactly when they share an inode
    number (hardlinks). Across observations, an identity keeps its number: across copy-up
    and remount (doc "Inode properties": all layers on one filesystem) and across writes to
    an upper file (copy-up happens once).
    """

    label: str
    known: dict[int, int] = attrs.field(factory=dict)
    #: The last observation that passed: the same pairs again pass again, and teach
    #: ``known`` nothing new.
    passed: tuple[dict[str, int], dict[str, int]] | None = None

    def check(self, expected: dict[str, int], actual: dict[str, int]) -> list[Divergence]:
        if self.passed is not None and self.passed == (expected, actual):
            return []
        found: list[Divergence] = []
        by_identity: dict[int, tuple[str, int]] = {}
        by_number: dict[int, tuple[str, int]] = {}
        for path in sorted(expected.keys() & actual.keys()):
            identity, number = expected[path], actual[path]
            seen = by_identity.setdefault(identity, (path, number))
            if seen[1] != number:
                found.append(
                    Divergence(
                        f"{self.label}{path}",
                        "st_ino",
                        f"same inode as {seen[0]}",
                        "a different inode",
                    )
                )
            other = by_number.setdefault(number, (path, identity))
            if other[1] != identity:
                found.append(
                    Divergence(
                        f"{self.label}{path}",
                        "st_ino",
                        f"an inode of its own, not {other[0]}'s",
                        f"the same inode as {other[0]}",
                    )
                )
            before = self.known.get(identity)
            if before is not None and before != number:
                found.append(
                    Divergence(
                        f"{self.label}{path}",
                        "st_ino",
                        f"unchanged ({before})",
                        f"changed to {number}",
                    )
                )
            self.known[identity] = number
        self.passed = None if found else (dict(expected), dict(actual))
        return found


def may_be_absent(expected: View, actual: View) -> set[str]:
    """Paths the reference records as UNREACHABLE that the driver's view leaves out.

    Decision (reference vs FUSE drivers): the kernel lists the whiteouts of a directory
    that is not merged, since readdir of such a directory is passed through to the one
    real directory (fs/overlayfs/readdir.c ``ovl_iterate``, ``ovl_dir_is_real``), while
    lookup of the name gives ENOENT; the reference records them as UNREACHABLE
    (reference/view.py). fuse-overlayfs hides them. Both are allowed: such an entry may be
    absent from the view (and from readdir, see ``Overlay._op_readdir``) or listed as
    unreachable. A *reachable* entry that is missing is still a divergence.
    """
    return {
        path
        for path, entry in expected.entries.items()
        if entry.kind == UNREACHABLE.kind and entry == UNREACHABLE and path not in actual.entries
    }


def compare_views(
    expected: View,
    actual: View,
    inodes: InodeMap,
    fields: frozenset[str] | None = None,
    times: TimeMap | None = None,
) -> list[Divergence]:
    """The merged view; ``fields`` (None: all) names the entry fields compared, and
    ``st_ino`` in it turns on the inode renaming check, ``mtime`` and ``ctime`` the time
    relations of ``times`` (:class:`TimeMap`; None: times are not compared). An
    unreachable entry may be absent (:func:`may_be_absent`)."""
    absent = may_be_absent(expected, actual)
    wanted = expected.entries
    if absent:
        wanted = {p: e for p, e in wanted.items() if p not in absent}
    found = compare_entries("", wanted, actual.entries, fields)
    if fields is None or "st_ino" in fields:
        found += inodes.check(expected.inodes, actual.inodes)
    if times is not None:
        found += times.check(expected, actual)
    return found


def compare_images(
    name: str, expected: LayerImage, actual: LayerImage, inodes: InodeMap | None = None
) -> list[Divergence]:
    found = compare_entries(f"{name}:", expected.entries, actual.entries)
    if expected.links != actual.links:
        found.append(
            Divergence(
                f"{name}:",
                "hardlinks",
                sorted(map(sorted, expected.links)),
                sorted(map(sorted, actual.links)),
            )
        )
    if inodes is not None:
        found += inodes.check(expected.inodes, actual.inodes)
    return found
