"""The reports of ``certify --report-dir DIR``: report.json, report.md, report.html, junit.xml.

The schema of report.json is documented in ``docs/report-schema.md``. Every file is
rewritten after every verdict, atomically (a temporary file in the same directory, then
``rename(2)``), so a run that is interrupted (Ctrl-C, SIGTERM) or killed keeps every
verdict computed so far, and a reader never sees a half-written file. An interrupted run
says so in every report (``status: interrupted``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import attrs

from adapters.settings import DEFAULT, DriverSettings
from conformance import verdicts as v
from conformance.errors import ConformanceError
from conformance.records.failure import step_text
from conformance.reports import safe_write
from conformance.reports.html import _status_line, grid, render_html
from conformance.reports.html import slug as slug  # the file name part of a cell id
from conformance.reports.safe_write import write_atomically
from conformance.run_config import DEFAULT_RUN, RunConfig
from conformance.verdicts import QUIET, SEVERITY, fails

if TYPE_CHECKING:
    from conformance.certify.engine import Verdict

SCHEMA = "unionspec-report/1"
FILES = ("report.json", "report.md", "report.html", "junit.xml")
OVERLAY_PARAMETERS = Path("/sys/module/overlay/parameters")
class ReportDirError(ConformanceError):
    """The report directory cannot be created or written (one line)."""


@contextlib.contextmanager
def writing(directory: Path) -> Iterator[None]:
    """Writes into the report directory: an OSError (a full disk) is a ReportDirError
    with one line (the temporary is gone already: safe_write)."""
    try:
        yield
    except OSError as exc:
        raise ReportDirError(
            f"report directory {str(directory)!r} cannot be written: "
            f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
        ) from None


def prepare(directory: str | Path) -> Path:
    """Create ``directory`` (and parents) and check it can be written, before anything
    runs; a :class:`ReportDirError` with one line otherwise."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        safe_write.probe(path)
    except OSError as exc:
        raise ReportDirError(
            f"report directory {str(directory)!r} cannot be written: {exc.strerror or exc}"
        ) from None
    return path


# --- the environment ------------------------------------------------------------------------


def overlay_parameters(where: Path = OVERLAY_PARAMETERS) -> dict[str, str]:
    """The overlay module's parameters (its defaults; every run passes its options
    explicitly), empty when the module is not loaded."""
    found: dict[str, str] = {}
    try:
        names = sorted(p.name for p in where.iterdir())
    except OSError:
        return found
    for name in names:
        try:
            found[name] = (where / name).read_text().strip()
        except OSError as exc:
            found[name] = f"(unreadable: {exc.strerror})"
    return found


def driver_info(name: str, settings: DriverSettings = DEFAULT) -> dict[str, Any]:
    """What a report records of a driver: its version (the profile's ``version_command``),
    its command template and the option sets its profile claims."""
    from adapters import registry

    info: dict[str, Any] = {"version": None, "command": None, "options_claimed": None}
    try:
        info["version"] = registry.installed_version(name, settings)
        info.update(registry.about(name, settings))
    except Exception as exc:  # a broken third-party driver: say so, keep the report
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def environment(
    drivers: Iterable[str], engines: Iterable[str] = (), settings: DriverSettings = DEFAULT
) -> dict[str, Any]:
    import hypothesis

    from adapters.engines import registry as engine_registry

    uname = os.uname()
    return {
        "kernel": {"release": uname.release, "version": uname.version, "machine": uname.machine},
        "overlay_parameters": overlay_parameters(),
        "python": platform.python_version(),
        "hypothesis": hypothesis.__version__,
        "euid": os.geteuid(),
        "drivers": {name: driver_info(name, settings) for name in drivers},
        "engines": {
            name: {
                "version": engine_registry.version(name),
                "profiles": list(engine_registry.ENGINES[name]),
            }
            for name in engines
        },
    }


# --- the document ---------------------------------------------------------------------------


@attrs.define
class Cell:
    """A verdict with the files written for it (paths relative to the report directory)."""

    verdict: Verdict
    reproducers: list[str] = attrs.field(factory=list)
    programs: list[str] = attrs.field(factory=list)

    def as_json(self) -> dict[str, Any]:
        v = self.verdict
        failures = []
        for number, failure in enumerate(v.failures):
            entry = failure.as_json()
            files = (self.reproducers, self.programs)
            entry["reproducer"], entry["program"] = (
                names[number] if number < len(names) else None for names in files
            )
            failures.append(entry)
        return {
            "id": v.id,
            "driver": v.driver,
            "feature": v.feature or "machine",
            "options": v.options,
            "verdict": v.verdict,
            "reason": v.detail,
            "seconds": round(v.seconds, 3),
            "reproducer": self.reproducers[0] if self.reproducers else None,
            "steps": failures[0]["steps"] if failures else [],
            "failures": failures,
            "recorded": dict(v.recorded),
        }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@attrs.define
class Report:
    """The state of one run; :meth:`write` renders every file."""

    directory: Path
    drivers: list[str]
    settings: dict[str, Any]
    planned: int = 0
    cells: list[Cell] = attrs.field(factory=list)
    status: str = "running"
    started: str = attrs.field(factory=_now)
    interruption: str | None = None
    env: dict[str, Any] | None = None
    #: Cell id -> its place in the plan: cells done in parallel are kept in plan order.
    order: dict[str, int] = attrs.field(factory=dict)
    #: The container engines certified (conformance.certify.engines).
    engines: list[str] = attrs.field(factory=list)
    #: The run's configuration: its driver settings (what the drivers' entries record
    #: depends on them) and its records file (the recorded behaviours listed).
    run_config: RunConfig = DEFAULT_RUN
    #: Drivers not asked for that cannot run for want of a setting: name -> what to give.
    left_out: dict[str, str] = attrs.field(factory=dict)
    #: Each cell's JSON, made once (the reports are rewritten after every verdict): by the
    #: cell's id(), the cells being kept in :attr:`cells`.
    _json: dict[int, dict[str, Any]] = attrs.field(factory=dict, init=False, repr=False)

    def cell_json(self, cell: Cell) -> dict[str, Any]:
        """``cell.as_json()``, made on its first write (its files are known by then)."""
        found = self._json.get(id(cell))
        if found is None:
            found = self._json[id(cell)] = cell.as_json()
        return found

    def document(self) -> dict[str, Any]:
        if self.env is None:
            self.env = environment(self.drivers, self.engines, self.run_config.driver_settings)
        summary = v.count(cell.verdict.verdict for cell in self.cells)
        cells = [
            self.cell_json(cell)
            for cell in sorted(
                self.cells, key=lambda c: self.order.get(c.verdict.id, len(self.order))
            )
        ]
        return {
            "schema": SCHEMA,
            "status": self.status,
            "interruption": self.interruption,
            "started": self.started,
            "updated": _now(),
            "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
            "settings": self.settings,
            "environment": self.env,
            "planned": self.planned,
            "done": len(self.cells),
            "summary": summary,
            "left_out": self.left_out,
            "directory": str(self.directory),
            "cells": cells,
            "recorded": recorded_behaviours(cells, self.run_config),
        }

    def write(self) -> None:
        write_files(self.directory, self.document())


def write_files(directory: Path, doc: dict[str, Any]) -> None:
    """Every report file of ``doc`` in ``directory`` (:data:`FILES`), each atomically; a
    full disk is a :class:`ReportDirError` (one line)."""
    with writing(directory):
        write_atomically(directory / "report.json", json.dumps(doc, indent=2) + "\n")
        write_atomically(directory / "report.md", render_markdown(doc))
        write_atomically(directory / "report.html", render_html(doc))
        write_atomically(directory / "junit.xml", render_junit(doc))


def recorded_behaviours(
    cells: list[dict[str, Any]], run_config: RunConfig = DEFAULT_RUN
) -> list[dict[str, Any]]:
    """The recorded behaviours (the run's records file) of the installed versions
    that cells of this run saw, each with the ids of those cells and how many of their
    examples showed it: a cell's ``recorded`` (conformance.records.behaviours), not its verdict,
    says which records it met, so a record is listed only where its behaviour was seen."""
    from conformance.records import expectations

    by_id = {(r.driver, r.id): r for r in expectations.loaded(run_config)}
    found: dict[tuple[str, str], tuple[Any, list[str], int]] = {}
    for cell in cells:
        for name, examples in (cell.get("recorded") or {}).items():
            record = by_id.get((cell["driver"], name))
            if record is None:
                continue
            _, ids, total = found.get((cell["driver"], name), (record, [], 0))
            found[(cell["driver"], name)] = (record, [*ids, cell["id"]], total + examples)
    return [
        {"driver": record.driver, "version": record.version, "id": record.id,
         "reason": record.reason, "upstream": record.upstream, "confirmed": record.confirmed,
         "cells": ids, "examples": total}
        for record, ids, total in found.values()
    ]


# --- renderings -----------------------------------------------------------------------------


def _failing_cells(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells with a divergence to show: any verdict but the quiet ones."""
    return [c for c in doc["cells"] if c["verdict"] not in QUIET]


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        "# unionspec certification report",
        "",
        f"- {_status_line(doc)}",
        f"- kernel {env['kernel']['release']} ({env['kernel']['machine']}), "
        f"Python {env['python']}, Hypothesis {env['hypothesis']}",
        "- overlay module parameters: "
        + (", ".join(f"{k}={v}" for k, v in env["overlay_parameters"].items()) or "(none)"),
        f"- settings: {', '.join(f'{k}={v}' for k, v in doc['settings'].items())}",
        f"- started {doc['started']}, updated {doc['updated']}",
    ]
    for name, info in env["drivers"].items():
        lines.append(f"- driver {name}: version {info.get('version') or 'unknown'}")
    if doc["status"] == "interrupted":
        lines += ["", "**This run was interrupted: the matrix holds only the cells done.**"]
    for driver, (rows, columns, by_key) in grid(doc).items():
        lines += ["", f"## {driver}", "", "| feature | " + " | ".join(columns) + " |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for row in rows:
            values = [by_key[(row, col)]["verdict"] if (row, col) in by_key else "-"
                      for col in columns]
            lines.append(f"| {row} | " + " | ".join(values) + " |")
    failing = _failing_cells(doc)
    if failing:
        lines += ["", "## Divergences"]
    for cell in failing:
        fence = _fence(cell["reason"])
        lines += ["", f"### {cell['id']}: {cell['verdict']}", "", f"{fence}text",
                  cell["reason"], fence]
        for failure in cell["failures"]:
            steps = [step_text(n, step) for n, step in enumerate(failure["steps"], 1)]
            fence = _fence(failure["stack"], *steps)
            lines += ["", f"Shrunk program ({failure['options']}):", "", f"{fence}text",
                      f"mount {failure['stack']}", *steps, fence]
            if failure.get("reproducer"):
                lines.append(f"Reproducer: `{failure['reproducer']}`")
            if failure.get("program"):
                lines.append(f"Corpus program: `{failure['program']}`")
    return "\n".join(lines) + "\n"


def render_junit(doc: dict[str, Any]) -> str:
    """JUnit XML: a testsuite per driver, a testcase per cell; a verdict that fails the run
    (diverges, hung, crashed or one unknown: verdicts.fails) is a failure, skipped and
    unclaimed are skips, an expected divergence is a skip of type
    ``xfail`` (as pytest writes one); an interrupted run adds an error testcase."""
    root = ET.Element("testsuites", name="unionspec certify")
    suites: dict[str, ET.Element] = {}
    for cell in doc["cells"]:
        suite = suites.get(cell["driver"])
        if suite is None:
            suite = suites[cell["driver"]] = ET.SubElement(root, "testsuite", name=cell["driver"])
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"unionspec.{cell['driver']}",
            name=f"{cell['feature']}[{cell['options']}]",
            time=f"{cell['seconds']:.3f}",
        )
        first = cell["reason"].splitlines()[0] if cell["reason"] else cell["verdict"]
        if fails(cell["verdict"]):
            failure = ET.SubElement(case, "failure", message=first, type=cell["verdict"])
            failure.text = cell["reason"]
        elif cell["verdict"] == v.EXPECTED:
            ET.SubElement(case, "skipped", message=first, type="pytest.xfail")
        elif cell["verdict"] in (v.SKIPPED, v.UNCLAIMED):
            ET.SubElement(case, "skipped", message=f"{cell['verdict']}: {first}")
    if doc["status"] == "interrupted":
        suite = ET.SubElement(root, "testsuite", name="run")
        case = ET.SubElement(suite, "testcase", classname="unionspec.run", name="complete")
        error = ET.SubElement(case, "error", message=f"interrupted by {doc['interruption']}")
        error.text = _status_line(doc)
    for element in root.iter():
        element.text = _xml_text(element.text)
        for key, value in element.attrib.items():
            element.set(key, _xml_text(value) or "")
    for suite in root:
        cases = list(suite)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
        suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
        suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


#: What XML 1.0 cannot hold even escaped (its Char production): control characters but
#: tab, newline and carriage return, surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str | None) -> str | None:
    """``text`` with each character XML cannot hold written as ``\\xNN`` / ``\\uNNNN``."""
    if text is None:
        return None
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)


def _fence(*texts: str) -> str:
    """A Markdown code fence longer than any run of backticks in ``texts`` (CommonMark: a
    block ends only at a fence at least as long as its opening one)."""
    longest = max((len(run) for t in texts for run in re.findall("`+", t)), default=0)
    return "`" * max(3, longest + 1)


def worse(old: str, new: str) -> bool:
    """Whether verdict ``new`` is worse than ``old`` (conformance.verdicts.SEVERITY)."""
    top = max(SEVERITY.values())
    return SEVERITY.get(new, top) > SEVERITY.get(old, top)
