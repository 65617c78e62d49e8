"""Reproducers: each failing example written as a standalone Python script.

The script (``conformance/records/repro_template.py`` with the example embedded as the literal
``DATA``) needs only the standard library and root: it builds the layers on a tmpfs in a
private mount and PID namespace, mounts them with the same driver (kernel overlayfs with
the same explicit options, or the FUSE command template of the profile), runs the steps
and prints, per step, the outcomes the reference allowed next to the driver's, then the
differences of the last observation (the fields that differed, and the st_ino renaming
rule when an inode number differed). Exit 1 while it reproduces, 0 once gone, 2 when it
cannot run. ``--kernel`` or ``--fuse-cmd TEMPLATE`` runs it against another driver (a
divergence found on an in-process driver, e.g. a seeded fault, defaults to the kernel).
"""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

import attrs

from adapters import syscalls
from conformance.records.failure import Failure
from reference import ops
from reference.layer import Kind, build, entry_at, walk
from reference.outcome import Err, Ok, Outcome
from reference.view import DiskEntry, EntryView

TEMPLATE = Path(__file__).resolve().parent / "repro_template.py"
#: The confined root (standard library only), embedded in every script.
CONFINE = Path(__file__).resolve().parents[2] / "adapters" / "sandbox" / "confine.py"
_MARK = "DATA: dict = {}  # __DATA__\n"
#: The template's imports of the confined root and of the system calls (each statement,
#: from its first line to its end), replaced by their modules' text verbatim.
_EMBEDDED = {
    "from adapters.sandbox.confine import (  # __CONFINE__\n": (CONFINE, "\n)\n"),
    "from adapters.syscalls import MAX_READ, close_handles, invoke, kind_of  # __SYSCALLS__\n": (
        None,
        "\n",
    ),
}


def _value(value: Any) -> Any:
    """An outcome's value as the script computes it (adapters.syscalls: a StatResult is a
    dict of its fields)."""
    if isinstance(value, ops.StatResult):
        return attrs.asdict(value)
    return value


def _outcome(outcome: Outcome) -> tuple[str, Any]:
    if isinstance(outcome, Err):
        return ("err", outcome.name)
    assert isinstance(outcome, Ok)
    return ("ok", _value(outcome.value))


def _expected(value: Any) -> Any:
    if isinstance(value, EntryView | DiskEntry):
        return attrs.asdict(value)
    return value


def _lowers(failure: Failure) -> list[list[tuple]]:
    """Each lower layer as (path, kind, mode, uid, gid, data, target, xattrs, opaque,
    link_to, markers, mtime) in the order :func:`reference.layer.build` makes them; ``markers``:
    the forms of issue 19 (an xattr whiteout and whether its parent is marked ``x``, a
    metacopy stub's redirect); ``mtime``: exact ns or None."""
    layers = []
    for spec in failure.stack.lowers:
        first: dict[int, str] = {}
        entries = []
        root = build(spec)
        for path, inode in walk(root):
            parent = entry_at(root, path.rpartition("/")[0])
            markers = {
                "xattr_whiteout": inode.xattr_whiteout,
                "parent_x": inode.xattr_whiteout and parent is not None and parent.xwhiteouts,
                "metacopy": inode.metacopy,
                "redirect": inode.redirect,
            }
            link_to = None
            if inode.kind not in (Kind.DIR, Kind.WHITEOUT):
                link_to = first.get(inode.ident)
                first.setdefault(inode.ident, path)
            entries.append(
                (
                    path,
                    inode.kind.value,
                    inode.mode,
                    inode.uid,
                    inode.gid,
                    inode.data,
                    inode.target,
                    tuple(sorted(inode.xattrs.items())),
                    inode.opaque,
                    link_to,
                    markers,
                    inode.mtime if inode.mtime >= 0 else None,
                )
            )
        layers.append(entries)
    return layers


def _checks(failure: Failure) -> list[dict[str, Any]]:
    """The differences of the last observation as the script checks them; an mtime
    expected "unchanged" also names where its object was before the last step
    (``was_at``, :func:`_former_names`)."""
    checks = []
    for found in failure.found:
        label, sep, path = found.where.partition(":")
        if sep and (label == "upper" or label.startswith("lower")):
            where = label
        else:
            where, path = "view", found.where
        check = {"where": where, "path": path, "field": found.field,
                 "expected": _expected(found.expected)}
        if where == "view" and found.field == "mtime" and str(found.expected).startswith(
            "unchanged"
        ):
            check["was_at"] = _former_names(failure).get(path, [])
        checks.append(check)
    return checks


def _former_names(failure: Failure) -> dict[str, list[str]]:
    """Per path of the reference's view after the last step whose mtime is a stamp (an
    abstract time, reference.layer.new_stamp): the paths that showed that stamp before
    the last step. "unchanged" is a relation of the object's time, which a rename takes
    to another name (conformance.lockstep.compare.TimeMap keys it by the stamp): the
    script compares the time there, not the one the name had (another object's)."""
    from reference.overlay import Overlay

    if not failure.steps:
        return {}
    model = Overlay(failure.stack, failure.options)
    for step in failure.steps[:-1]:
        model.apply(step.op)
    before = model.view().entries
    model.apply(failure.steps[-1].op)
    return {
        path: [old for old, was in before.items() if was.mtime == entry.mtime]
        for path, entry in model.view().entries.items()
        if entry.mtime < 0
    }


def data(failure: Failure, version: str | None = None) -> dict[str, Any]:
    """The ``DATA`` literal of the script."""
    options = failure.options
    mount: dict[str, Any] = {"kind": "kernel"}
    disk = {"whiteout_files": False, "opaque_sentinel": False, "private_xattrs": ()}
    written_for = failure.driver
    if failure.mounter is not None and failure.mounter[0] == "fuse":
        settings = failure.mounter[1]
        mount = {
            "kind": "fuse",
            "argv": list(settings["argv"]),
            "ro_argv": list(settings["ro_argv"]) if settings["ro_argv"] else None,
            "env": dict(settings["env"]),
        }
        fmt = settings["disk_format"]
        disk = {
            "whiteout_files": fmt.whiteout_files,
            "opaque_sentinel": fmt.opaque_sentinel,
            "private_xattrs": tuple(fmt.private_xattrs),
        }
    elif failure.mounter is None:
        written_for = f"{failure.driver} (not a mount: runs against the kernel by default)"
    if version:
        written_for += f", {version}"
    checks = _checks(failure)
    inode_checks = any(check["field"] == "st_ino" for check in checks)
    fields = failure.fields
    return {
        "driver": failure.driver,
        "written_for": written_for,
        "feature": failure.feature,
        "options": {
            "label": options.label,
            "read_only": options.read_only,
            "redirect_dir": options.redirect_dir,
            "index": options.index,
            "metacopy": options.metacopy,
            "redirect_dir_value": options.redirect_dir_value,
            "userxattr": options.userxattr,
            "data_only": options.data_only,
            "xino": options.xino,
            "separate_fs": options.separate_fs,
        },
        "prefix": "user.overlay." if options.userxattr else "trusted.overlay.",
        "mount": mount,
        "disk_format": disk,
        "lowers": _lowers(failure),
        "steps": [
            {
                "text": repr(step.op),
                "op": (ops.KINDS[type(step.op)].rule, _args(step.op)),
                "allowed": [_outcome(o) for o in step.allowed],
            }
            for step in failure.steps
        ],
        "ignore_nlink": fields is not None and "nlink" not in fields,
        "fields": sorted(fields) if fields is not None else None,
        "checks": checks,
        "identities": [list(pair) for pair in failure.identities] if inode_checks else [],
        "divergence": failure.divergence,
    }


def _args(op: ops.Op) -> dict[str, Any]:
    """The step's fields for ``syscalls.invoke``: ``caller`` as its credentials (None for
    root), as the executor passes them."""
    args = attrs.asdict(op)
    args["caller"] = ops.CALLERS[op.caller].creds
    return args


def script(failure: Failure, version: str | None = None) -> str:
    """The reproducer's source."""
    template = TEMPLATE.read_text(encoding="utf-8")
    title = f"{failure.driver} [{failure.options.label}]"
    if failure.feature:
        title += f" feature {failure.feature}"
    divergence = "\n".join(f"    {line}" for line in failure.divergence.splitlines())
    literal = pprint.pformat(data(failure, version), width=96, sort_dicts=False)
    text = (
        template.replace("__TITLE__", title.replace('"""', "'''"))
        .replace("__DIVERGENCE__", divergence.replace("\\", "\\\\").replace('"""', "'''"))
        .replace(_MARK, f"DATA = {literal}\n")
    )
    for mark, (module, end) in _EMBEDDED.items():
        start = text.index(mark)
        stop = text.index(end, start + len(mark) - 1) + len(end)
        source = module.read_text(encoding="utf-8") if module else syscalls_source()
        text = text[:start] + source + text[stop:]
    return text


def syscalls_source() -> str:
    """adapters/syscalls.py as the script embeds it: verbatim."""
    return Path(syscalls.__file__).read_text(encoding="utf-8")


def write(failure: Failure, path: str | Path, version: str | None = None) -> Path:
    """Write the reproducer of ``failure`` to ``path`` (executable); atomic."""
    from conformance.reports.safe_write import write_atomically

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, script(failure, version), mode=0o755)
    return target
