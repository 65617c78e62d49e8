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
                if mine[name] != theirs[name] and (fields is None or name in fields)
            )
    return found


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
    expected: View, actual: View, inodes: InodeMap, fields: frozenset[str] | None = None
) -> list[Divergence]:
    """The merged view; ``fields`` (None: all) names the entry fields compared, and
    ``st_ino`` in it turns on the inode renaming check. An unreachable entry may be absent
    (:func:`may_be_absent`)."""
    absent = may_be_absent(expected, actual)
    wanted = expected.entries
    if absent:
        wanted = {p: e for p, e in wanted.items() if p not in absent}
    found = compare_entries("", wanted, actual.entries, fields)
    if fields is None or "st_ino" in fields:
        found += inodes.check(expected.inodes, actual.inodes)
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
