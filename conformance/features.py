"""Features as data: each a focused state machine (a subset of the rules of
:class:`conformance.lockstep.machine.OverlayMachine`) plus its named scenarios, so one divergence
does not hide the others.

``rules`` are rule names of the machine (the ``mount_layers`` initializer always runs),
derived from ``reference.ops.KINDS``: each operation kind names the features it belongs
to, and layer-interchange takes every kind that writes. ``fields`` names the per-path
fields of the merged view the comparison checks (EntryView field names, plus ``st_ino``
for the inode renaming); None checks them all.
Whether a path exists is always checked, and the upper and lower layers are always
compared (unless the profile says the upper cannot be decoded). ``nlink`` and ``st_ino``
belong to "metadata" and "hardlinks" only: a driver that reports a different st_nlink for
merged directories fails those two, not "whiteouts".
"""

from __future__ import annotations

import attrs

from reference import ops


@attrs.frozen
class Feature:
    id: str
    title: str
    rules: frozenset[str]
    fields: frozenset[str] | None
    scenarios: tuple[str, ...] = ()
    #: False: not a focused machine; its own runner (layer-interchange,
    #: conformance.lockstep.interchange), reached through conformance.lockstep.machine.run_machine.
    machine: bool = True
    #: Draws every rule, as the whole machine does: every record that applies to the
    #: whole machine applies to it (conformance.records.expectations.applies).
    whole: bool = False


#: Every field of the view (EntryView's fields and the st_ino renaming).
ALL_FIELDS = frozenset(
    {"kind", "mode", "uid", "gid", "nlink", "data", "target", "xattrs", "st_ino"}
    | {"mtime", "ctime"}
)
#: The time relations (conformance.lockstep.compare.TimeMap): the times feature and the whole
#: machine check them.
TIMES = frozenset({"mtime", "ctime"})
#: What metadata and hardlinks check.
WITHOUT_TIMES = ALL_FIELDS - TIMES
#: What every other feature checks.
WITHOUT_LINK_COUNTS = WITHOUT_TIMES - {"nlink", "st_ino"}



def rules_of(feature: str) -> frozenset[str]:
    """The rules of the operation kinds that declare ``feature`` (ops.KINDS)."""
    return frozenset(k.rule for k in ops.KINDS.values() if feature in k.features)


def _f(
    id: str,
    title: str,
    fields: frozenset[str] | None = WITHOUT_LINK_COUNTS,
    scenarios: tuple[str, ...] = (),
) -> Feature:
    return Feature(id, title, rules_of(id), fields, scenarios)


FEATURES: tuple[Feature, ...] = (
    _f(
        "read-precedence",
        "The topmost layer that has a name wins; directories merge",
        scenarios=("read-precedence-3-layers", "data-only-stub"),
    ),
    _f(
        "copy-up",
        "The first change to a lower entry copies it up, once",
        scenarios=("copy-up-once",),
    ),
    _f(
        "whiteouts",
        "Removing a lower name leaves a whiteout that hides it, across remount",
        scenarios=("unlink-whiteout-persists", "xattr-whiteouts", "xattr-whiteouts-xino"),
    ),
    _f(
        "opaque-directories",
        "A directory made over a removed one hides the lower contents",
        scenarios=("rmdir-mkdir-opaque",),
    ),
    _f(
        "file-rename",
        "Renaming files (and whiteouts left at the source)",
    ),
    _f(
        "directory-rename",
        "Renaming directories: EXDEV or a redirect",
        scenarios=("dir-rename-exdev", "dir-rename-redirect"),
    ),
    _f(
        "hardlinks",
        "Hardlinks share an inode, across copy-up",
        fields=WITHOUT_TIMES,
    ),
    _f(
        "xattrs",
        "Extended attributes: set, get, list, remove",
    ),
    _f("metadata", "Mode, owner, link counts, inode numbers", WITHOUT_TIMES),
    _f("readdir", "Directory listings"),
    _f(
        "special-files",
        "FIFOs and symlinks",
    ),
    _f(
        "persistence",
        "What was changed is the same after a remount",
    ),
    # issue 18, first half
    _f(
        "times",
        "mtime kept by copy-up and set by utimensat; what changes mtime and ctime",
        fields=WITHOUT_LINK_COUNTS | TIMES,
    ),
    _f(
        "set-id",
        "Set-ID bits and file capabilities: what keeps and what clears them",
    ),
    _f("sizes", "fallocate, sparse truncates and writes past the end"),
    Feature(
        "permissions",
        "Callers other than root: EACCES and EPERM where the VFS gives them, the caller's "
        "ids and umask on what it makes (issue 18)",
        frozenset(
            k.rule
            for k in ops.KINDS.values()
            if k.effect is not ops.Effect.REMOUNTS and not k.descriptor
        ),
        WITHOUT_LINK_COUNTS,
        whole=True,
    ),
    Feature(
        "descriptors",
        "Open descriptors: what one opened before a copy-up, a write, an unlink or a rename "
        "reads and writes; a remount closes them (issue 18)",
        rules_of("descriptors")
        | {"read", "write", "truncate", "chmod", "unlink", "rename", "link", "remount"},
        WITHOUT_LINK_COUNTS,
    ),
    Feature(
        "layer-interchange",
        "Layers written by one driver show the same view when another mounts them",
        frozenset(ops.KINDS[cls].rule for cls in ops.WRITES if not ops.KINDS[cls].descriptor),
        WITHOUT_LINK_COUNTS,
        machine=False,
    ),
)

BY_ID: dict[str, Feature] = {feature.id: feature for feature in FEATURES}


def _check() -> None:
    for feature in FEATURES:
        assert feature.fields is None or feature.fields <= ALL_FIELDS, feature
        assert feature.rules, feature
    declared = {name for kind in ops.KINDS.values() for name in kind.features}
    assert declared <= set(BY_ID), declared - set(BY_ID)


_check()
