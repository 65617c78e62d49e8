"""Runs split over machines: ``certify --shard K/N`` and ``unionspec merge``.

A shard is a stable split of the cells: a cell (its id, ``driver/feature/options``) is in
shard ``crc32(id) mod N + 1``, whatever else is certified and in whatever order, so N
machines given the same command with ``--shard 1/N`` ... ``N/N`` certify every cell
exactly once. ``unionspec merge OUT REPORT...`` joins the shards' reports (``report.json``
files or their directories) into one report directory, the reproducers copied along.
"""

from __future__ import annotations

import json
import shutil
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from conformance.errors import ConformanceError
from conformance.verdicts import count


class ShardError(ConformanceError, ValueError):
    """A --shard that is not K/N with 1 <= K <= N (one line)."""


@attrs.frozen
class Shard:
    number: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise ShardError(f"--shard {text!r}: expected K/N, e.g. 1/4") from None
        if not 1 <= k <= n:
            raise ShardError(f"--shard {text!r}: K must be between 1 and N")
        return cls(k, n)

    def has(self, cell_id: str) -> bool:
        """Whether the cell ``cell_id`` is this shard's."""
        return zlib.crc32(cell_id.encode()) % self.count == self.number - 1

    @property
    def label(self) -> str:
        return f"{self.number}/{self.count}"


def cell_id(driver: str, feature: str, options: str) -> str:
    """The id of a cell as :class:`conformance.certify.engine.Verdict` makes it."""
    return f"{driver}/{feature or 'machine'}/{options}"


# --- merge ------------------------------------------------------------------------------


class MergeError(ConformanceError, ValueError):
    """Reports that cannot be merged (one line)."""


def _order(cell: dict[str, Any], drivers: list[str]) -> tuple[int, int, int, str]:
    from conformance.features import FEATURES
    from reference.options import MATRIX

    features = ["machine", *(f.id for f in FEATURES)]
    labels = [o.label for o in MATRIX]
    return (
        drivers.index(cell.get("driver", "")) if cell.get("driver") in drivers else len(drivers),
        features.index(cell["feature"]) if cell.get("feature") in features else len(features),
        labels.index(cell["options"]) if cell.get("options") in labels else len(labels),
        cell["id"],
    )


def merge_documents(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report of several shards' (or kernels') reports: every cell once, the drivers
    and environments joined; complete when every part is."""
    if not docs:
        raise MergeError("nothing to merge")
    seen: dict[str, int] = {}
    cells: list[dict[str, Any]] = []
    drivers: list[str] = []
    environment = json.loads(json.dumps(docs[0]["environment"]))
    for number, doc in enumerate(docs):
        for cell in doc["cells"]:
            if cell["id"] in seen:
                raise MergeError(
                    f"cell {cell['id']} is in report {seen[cell['id']] + 1} and report "
                    f"{number + 1} (shards of one run never share a cell)"
                )
            seen[cell["id"]] = number
            cells.append(cell)
            if cell.get("driver") not in drivers:
                drivers.append(cell.get("driver", ""))
        environment.setdefault("drivers", {}).update(doc["environment"].get("drivers", {}))
        environment.setdefault("engines", {}).update(doc["environment"].get("engines", {}))
    cells.sort(key=lambda cell: _order(cell, drivers))
    summary = count(cell["verdict"] for cell in cells)
    settings = {k: v for k, v in docs[0]["settings"].items() if k != "shard"}
    settings["merged"] = [doc["settings"].get("shard", "-") for doc in docs]
    statuses = {doc["status"] for doc in docs}
    left_out: dict[str, str] = {}
    for doc in docs:
        left_out.update(doc.get("left_out") or {})
    return {
        **docs[0],
        "left_out": left_out,
        "recorded": _merge_recorded(docs, [cell["id"] for cell in cells]),
        "status": "complete" if statuses == {"complete"} else "interrupted",
        "interruption": next((d["interruption"] for d in docs if d.get("interruption")), None),
        "started": min(doc["started"] for doc in docs),
        "updated": max(doc["updated"] for doc in docs),
        "settings": settings,
        "environment": environment,
        "planned": sum(doc["planned"] for doc in docs),
        "done": len(cells),
        "summary": summary,
        "cells": cells,
    }


def _merge_recorded(docs: Sequence[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """The reports' recorded behaviours, one entry per (driver, record id): the cells that
    saw it joined (in ``order``, the merged cells' ids), their examples summed; listed in
    the order of the first cell that saw each, as one whole run lists them
    (conformance.reports.report.recorded_behaviours)."""
    place = {cell: number for number, cell in enumerate(order)}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        for record in doc.get("recorded") or []:
            key = (record["driver"], record["id"])
            if key not in found:
                found[key] = {**record, "cells": list(record["cells"])}
                continue
            found[key]["cells"] += record["cells"]
            found[key]["examples"] += record["examples"]
    for record in found.values():
        record["cells"].sort(key=lambda cell: place.get(cell, len(place)))
    return sorted(
        found.values(),
        key=lambda record: min((place.get(c, len(place)) for c in record["cells"]),
                               default=len(place)),
    )


def _carry(source: Path, name: str, directory: Path) -> str:
    """A file a shard's report names (relative to it): copied into the merged report when
    it lies inside the shard's directory (a reproducer), else named by its absolute path
    (a corpus program, kept where it is)."""
    path = (source / name).resolve()
    if not path.is_relative_to(source.resolve()):
        return str(path)
    if path.is_file() and path != (directory / name).resolve():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, directory / name)
    return name


def merge(out: str | Path, paths: Sequence[str]) -> dict[str, Any]:
    """Merge the reports at ``paths`` into the report directory ``out``."""
    from conformance.reports.diff import ReportError, load
    from conformance.reports.report import prepare, write_files, writing

    files = [Path(p) / "report.json" if Path(p).is_dir() else Path(p) for p in paths]
    try:
        docs = [load(str(f)) for f in files]
    except ReportError as problem:
        raise MergeError(str(problem)) from None
    directory = prepare(out)
    doc = merge_documents(docs)
    doc["directory"] = str(directory)  # where the reproducers are copied to
    with writing(directory):  # a full disk: one line, as for certify's reports
        for source, part in zip(files, docs, strict=True):
            for cell in part["cells"]:
                for failure in cell.get("failures", []):
                    for key in ("reproducer", "program"):
                        if failure.get(key):
                            failure[key] = _carry(source.parent, failure[key], directory)
                if cell.get("reproducer"):
                    cell["reproducer"] = _carry(source.parent, cell["reproducer"], directory)
    write_files(directory, doc)
    return doc


def merge_command(out: str, paths: Sequence[str]) -> int:
    from conformance.reports.report import ReportDirError

    try:
        doc = merge(out, paths)
    except (MergeError, ReportDirError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(
        f"merged {len(paths)} reports: {doc['done']} cells, status {doc['status']} -> "
        f"{Path(out) / 'report.json'}"
    )
    return 0
