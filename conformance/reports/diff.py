"""``python -m conformance diff OLD.json NEW.json``: the cells whose verdict changed.

Cells are matched by id (``driver/feature/options``). A cell whose verdict got worse
(conformance.certify.engine.SEVERITY: conforms < unclaimed < skipped = expected-divergence <
diverges < hung = crashed) is a regression; so is a NEW report that is not complete
(interrupted, killed: its status is still "running"). Cells only in one report are
listed, not counted. Two kernels' cells compared, the kernel features found in one and
not the other are listed too (reference.kernel_features). Exit 1 on a regression, 0
otherwise, 2 for a file that is not a report (one line).
"""

from __future__ import annotations

import sys
from typing import Any

from conformance.errors import ConformanceError
from conformance.records.corpus import read_json
from conformance.reports.report import SCHEMA, worse


class ReportError(ConformanceError, ValueError):
    """A file that is not a readable report (one line)."""


def load(path: str) -> dict[str, Any]:
    doc = read_json(path, ReportError)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ReportError(f"{path}: not a unionspec report (schema {SCHEMA!r})")
    cells = doc.get("cells")
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("verdict"), str)
        for c in cells
    ):
        raise ReportError(f"{path}: 'cells' must be a list of objects with an id and a verdict")
    seen: set[str] = set()
    for cell in cells:
        if cell["id"] in seen:  # which verdict would count? neither: refuse the file
            raise ReportError(f"{path}: cell {cell['id']!r} appears more than once")
        seen.add(cell["id"])
    return doc


def kernels_of(doc: dict[str, Any]) -> list[str]:
    """The ``kernel@<release>`` drivers of a report (adapters.vm), in order."""
    names = [c.get("driver", "") for c in doc["cells"]]
    return list(dict.fromkeys(name for name in names if name.startswith("kernel@")))


def _verdicts(doc: dict[str, Any], driver: str | None) -> dict[str, str]:
    """Cell id -> verdict; with ``driver``, that driver's cells only, its name in the id
    replaced by ``*`` (so two drivers', e.g. two kernels', cells match)."""
    if driver is None:
        return {c["id"]: c["verdict"] for c in doc["cells"]}
    cells = [c for c in doc["cells"] if c.get("driver") == driver]
    return {"*" + c["id"][len(driver) :]: c["verdict"] for c in cells}


def kernel_features(doc: dict[str, Any], driver: str | None) -> dict[str, bool]:
    """The kernel features the VM of ``driver`` observed (report environment,
    ``drivers[driver].kernel_image.features``; adapters.vm.probes): name -> present."""
    drivers = (doc.get("environment") or {}).get("drivers") or {}
    info = (drivers.get(driver) or {}).get("kernel_image") or {}
    features = info.get("features") or {}
    return {
        name: entry["observed"]
        for name, entry in features.items()
        if isinstance(entry, dict) and isinstance(entry.get("observed"), bool)
    }


def feature_lines(
    old: dict[str, Any], new: dict[str, Any], old_driver: str | None, new_driver: str | None
) -> list[str]:
    """Each kernel feature present in one kernel and not the other, with the release the
    reference says it appeared in (reference.kernel_features): not a regression, the
    kernels' difference explained."""
    from reference.kernel_features import BY_NAME

    before, after = kernel_features(old, old_driver), kernel_features(new, new_driver)
    lines = []
    for name in sorted(set(before) & set(after)):
        if before[name] != after[name]:
            state = {True: "present", False: "absent"}
            known = BY_NAME.get(name)
            since = (
                f" (appeared in {'.'.join(map(str, known.since))}: {known.commit})"
                if known is not None else ""
            )  # fmt: skip
            lines.append(
                f"  kernel feature {name}: {state[before[name]]} -> {state[after[name]]}{since}"
            )
    return lines


def changes(
    old: dict[str, Any],
    new: dict[str, Any],
    old_driver: str | None = None,
    new_driver: str | None = None,
) -> tuple[list[str], bool]:
    """The lines to print and whether anything got worse. With ``old_driver`` and
    ``new_driver``, the cells of one driver in OLD against another's in NEW; two reports of
    one kernel each (``kernel@<release>``, different) are compared that way by default."""
    if old_driver is None and new_driver is None:
        mine, theirs = kernels_of(old), kernels_of(new)
        if len(mine) == 1 and len(theirs) == 1 and mine != theirs:
            old_driver, new_driver = mine[0], theirs[0]
    lines: list[str] = []
    if old_driver or new_driver:
        lines.append(f"comparing {old_driver} (OLD) with {new_driver} (NEW)")
    before = _verdicts(old, old_driver)
    after = _verdicts(new, new_driver)
    regressed = False
    for cell_id in [*before, *(i for i in after if i not in before)]:
        if cell_id not in after:
            lines.append(f"  only in OLD: {cell_id} ({before[cell_id]})")
        elif cell_id not in before:
            lines.append(f"  only in NEW: {cell_id} ({after[cell_id]})")
        elif before[cell_id] != after[cell_id]:
            got_worse = worse(before[cell_id], after[cell_id])
            regressed |= got_worse
            label = "REGRESSION" if got_worse else "changed"
            lines.append(f"{label}: {cell_id}: {before[cell_id]} -> {after[cell_id]}")
    if new.get("status") != "complete":
        regressed = True
        lines.append(
            f"REGRESSION: the NEW run is {new.get('status')!r}, not complete (interrupted, "
            f"killed or still running)"
        )
    if lines == lines[:1] and (old_driver or new_driver):
        lines.append(f"no verdict changed ({len(set(before) & set(after))} cells compared)")
    if old_driver and new_driver:
        lines += feature_lines(old, new, old_driver, new_driver)
    return lines, regressed


def diff_command(
    old_path: str, new_path: str, old_driver: str | None = None, new_driver: str | None = None
) -> int:
    try:
        old, new = load(old_path), load(new_path)
    except ReportError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if (old_driver is None) != (new_driver is None):
        print("error: --old-driver and --new-driver go together", file=sys.stderr)
        return 2
    for doc, driver, path in ((old, old_driver, old_path), (new, new_driver, new_path)):
        if driver is not None and not any(c.get("driver") == driver for c in doc["cells"]):
            print(f"error: {path}: no cell of driver {driver!r}", file=sys.stderr)
            return 2
    lines, regressed = changes(old, new, old_driver, new_driver)
    print("\n".join(lines) if lines else "no verdict changed")
    return 1 if regressed else 0
