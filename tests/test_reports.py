"""certify --report-dir: the four reports, their content, an unwritable directory, and a
real interrupted run (SIGTERM, Ctrl-C) that keeps what it computed and leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from adapters import registry
from adapters.drivers.kernel import KernelDriver
from adapters.faults import FaultyDriver
from conformance.__main__ import main
from conformance.reports.report import FILES, SCHEMA
from reference.options import MATRIX
from tests.host import end_run, left_behind, mounts, processes_marked, require

ROOT = Path(__file__).resolve().parent.parent


class TruncatingDriver(FaultyDriver):
    """truncate() empties the file (adapters/faults.py), under a registry name of its own."""

    def __init__(self) -> None:
        super().__init__("truncate-to-zero")
        self.name = "truncating"


@pytest.fixture
def truncating(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(registry.BUILTIN, "truncating", "tests.test_reports:TruncatingDriver")
    return "truncating"


def _certify(tmp_path: Path, *argv: str) -> tuple[int, Path]:
    report = tmp_path / "report"
    code = main(["certify", *argv, "--report-dir", str(report), "--corpus", str(tmp_path / "c")])
    return code, report


def _first_verdict(report: Path, poll: float, seconds: float = 300.0) -> int:
    """Wait until a running certify's report.json records a verdict; how many it records
    (0 if none came within ``seconds``)."""
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline and done < 1:
        time.sleep(poll)
        try:
            done = json.loads((report / "report.json").read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = 0
    return done


def test_a_conforming_run_writes_the_four_reports(tmp_path: Path, capsys) -> None:
    code, report = _certify(tmp_path, "--driver", "reference", "--feature", "xattrs")
    assert code == 0
    assert sorted(p.name for p in report.iterdir()) == sorted(FILES)
    doc = json.loads((report / "report.json").read_text())
    assert doc["schema"] == SCHEMA and doc["status"] == "complete"
    assert doc["planned"] == doc["done"] == len(MATRIX)  # one cell per option set
    assert {c["verdict"] for c in doc["cells"]} == {"conforms"}
    assert next(c["id"] for c in doc["cells"]) == "reference/xattrs/redirect_dir=off,index=off"
    env = doc["environment"]
    assert env["kernel"]["release"] == os.uname().release
    assert "reference" in env["drivers"]
    if Path("/sys/module/overlay/parameters").is_dir():
        assert "redirect_dir" in env["overlay_parameters"]
    markdown = (report / "report.md").read_text()
    assert "| xattrs | conforms |" in markdown and "status: complete" in markdown
    page = (report / "report.html").read_text()
    for external in ("http://", "https://", "<script", "src=", "<link"):
        assert external not in page
    suites = ET.parse(report / "junit.xml").getroot()
    cases = suites.findall("testsuite/testcase")
    assert len(cases) == len(MATRIX) and not suites.findall(".//failure")


def test_a_divergence_is_in_every_report_with_its_steps_and_reproducer(
    tmp_path: Path, truncating: str, capsys
) -> None:
    # a corpus program makes the divergence certain (it replays before anything generates)
    from conformance.records import corpus
    from tests.test_corpus import PROGRAM

    corpus.save(PROGRAM, tmp_path / "c")
    code, report = _certify(tmp_path, "--driver", truncating, "--feature", "copy-up")
    assert code == 1
    doc = json.loads((report / "report.json").read_text())
    diverging = [c for c in doc["cells"] if c["verdict"] == "diverges"]
    assert diverging, doc["summary"]
    cell = diverging[0]
    assert cell["steps"] and any(step["op"].startswith("Truncate(") for step in cell["steps"])
    assert cell["failures"][0]["stack"].startswith("StackSpec(")
    reproducer = report / cell["reproducer"]
    compile(reproducer.read_text(), str(reproducer), "exec")  # a valid standalone script
    assert os.access(reproducer, os.X_OK)
    program = report / cell["failures"][0]["program"]
    assert json.loads(program.read_text())["steps"] == [s["op"] for s in cell["steps"]]
    markdown = (report / "report.md").read_text()
    assert "## Divergences" in markdown and cell["id"] in markdown
    assert cell["steps"][-1]["op"] in markdown
    page = (report / "report.html").read_text()
    assert "<details" in page and "#ef9a9a" in page  # expandable, coloured diverges
    failures = ET.parse(report / "junit.xml").getroot().findall(".//failure")
    assert len(failures) == len(diverging)


@pytest.mark.parametrize("make_bad", ["under-a-file", "read-only-dir"])
def test_a_report_dir_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, make_bad: str, capsys
) -> None:
    if make_bad == "under-a-file":
        (tmp_path / "file").write_text("")
        target = tmp_path / "file" / "report"
    else:
        target = Path("/proc/unionspec-report")  # procfs: no new directory there
    argv = ["certify", "--driver", "reference", "--report-dir", str(target)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "cannot be written" in captured.err
    assert "[1/" not in captured.err  # nothing ran
    assert not target.exists()


# --- a real interrupted run -------------------------------------------------------------------






@pytest.mark.parametrize(
    ("sig", "workers"),
    [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGTERM, "2")],
    ids=["sigterm", "ctrl-c", "sigterm-2-workers"],
)
def test_an_interrupted_run_keeps_its_verdicts_and_leaves_nothing(
    tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    require(KernelDriver, "kernel driver")
    before = mounts()
    marker = uuid.uuid4().hex
    report = tmp_path / "report"
    # every cell of the kernel (84 at the standard budget, minutes of work): the signal
    # always lands part-way through (with two features only, a fast run was once done)
    command = [sys.executable, "-m", "conformance", "certify", "--driver", "kernel",
               "--budget", "standard",
               "--report-dir", str(report), "--corpus", str(tmp_path / "c"), "-n", workers]
    child = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "UNIONSPEC_RUN_MARK": marker},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        done = _first_verdict(report, poll=0.5)
        assert done >= 1, "no verdict within 300 s"
        assert len(processes_marked(marker)) >= 2  # certify (its workers) and an executor
        child.send_signal(sig)
        _, err = child.communicate(timeout=120)
    finally:
        end_run(child)
    assert child.returncode == 130, err.decode()[-3000:]
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith(f"interrupted by {sig.name} after ")
    assert "Traceback" not in err.decode(), err.decode()
    doc = json.loads((report / "report.json").read_text())
    assert doc["status"] == "interrupted" and doc["interruption"] == sig.name
    assert doc["done"] >= done and doc["done"] < doc["planned"]
    assert all(c["verdict"] == "conforms" for c in doc["cells"]), [
        (c["id"], c["verdict"], c["reason"][:2000]) for c in doc["cells"]
    ]
    assert "interrupted" in (report / "report.md").read_text()
    assert "Interrupted" in (report / "report.html").read_text()
    junit = ET.parse(report / "junit.xml").getroot()
    assert junit.findall(".//error") and len(junit.findall(".//testcase")) == doc["done"] + 1
    assert not list(report.glob(".*.tmp*"))  # no half-written file
    assert left_behind(marker) == []
    assert mounts() == before


class HangsOnChmod(FaultyDriver):
    """Answers everything but chmod, which never returns (as a stopped FUSE daemon)."""

    def __init__(self) -> None:
        super().__init__("truncate-to-zero")
        self.name = "hangs"

    def run(self, op):
        from adapters.base import DriverHung
        from reference import ops

        if isinstance(op, ops.Chmod):
            raise DriverHung(f"no answer to {op!r} within 0.1s")
        return super().run(op)


def test_a_hung_driver_is_reported_with_the_program_up_to_the_hang(tmp_path: Path) -> None:
    from hypothesis import settings

    from conformance.certify.engine import certify_cell
    from conformance.features import BY_ID
    from conformance.reports.report import Cell, Report
    from reference.options import Options

    verdict = certify_cell(
        HangsOnChmod(), Options(),
        settings(max_examples=50, stateful_step_count=10, deadline=None, database=None),
        BY_ID["metadata"],
    )
    assert verdict.verdict == "hung"
    failure = verdict.failures[0]
    assert failure.kind == "hung" and repr(failure.ops[-1]).startswith("Chmod(")
    assert failure.steps[-1].actual is None
    report = Report(tmp_path, ["hangs"], {}, planned=1, cells=[Cell(verdict)])
    report.write()
    cell = json.loads((tmp_path / "report.json").read_text())["cells"][0]
    assert cell["verdict"] == "hung" and cell["steps"][-1]["actual"] is None
    assert "(no answer)" in (tmp_path / "report.md").read_text()


def test_a_killed_run_leaves_valid_reports_and_nothing_behind(tmp_path: Path) -> None:
    """SIGKILL: no handler runs, yet every report is whole (atomic rewrites), says
    "running" (so diff does not take it for a complete baseline), and the executor dies
    with its parent (PR_SET_PDEATHSIG) taking its mounts with it."""
    require(KernelDriver, "kernel driver")
    before = mounts()
    marker = uuid.uuid4().hex
    report = tmp_path / "report"
    command = [sys.executable, "-m", "conformance", "certify", "--driver", "kernel",
               "--feature", "whiteouts", "--budget", "standard", "--report-dir", str(report),
               "--corpus", str(tmp_path / "c")]
    child = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "UNIONSPEC_RUN_MARK": marker},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _first_verdict(report, poll=0.2)
        child.kill()
        child.wait(timeout=60)
    finally:
        end_run(child)
    doc = json.loads((report / "report.json").read_text())
    assert doc["status"] == "running" and doc["done"] >= 1
    ET.parse(report / "junit.xml")
    assert main(["diff", str(report / "report.json"), str(report / "report.json")]) == 1
    assert left_behind(marker) == []
    assert mounts() == before


class BreaksWhileInterrupted(FaultyDriver):
    """Raises an AssertionError while handling a KeyboardInterrupt, as Hypothesis 6.155
    does when one arrives before its engine starts (core.py wrapped_test)."""

    def __init__(self) -> None:
        super().__init__("truncate-to-zero")
        self.name = "interrupted"

    def mount(self, stack, options):
        try:
            raise KeyboardInterrupt("SIGTERM")
        except KeyboardInterrupt:
            raise AssertionError()  # noqa: B904 (the context is the point)


def test_an_assertion_raised_while_interrupted_stops_the_run_not_a_divergence() -> None:
    from hypothesis import settings

    from conformance.certify.engine import certify_cell
    from reference.options import Options

    with pytest.raises(KeyboardInterrupt):
        certify_cell(
            BreaksWhileInterrupted(), Options(),
            settings(max_examples=1, deadline=None, database=None),
        )


def test_each_cell_is_made_json_once_however_often_the_reports_are_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports are rewritten after every verdict: making every cell's JSON each time
    was quadratic in the cells."""
    from conformance.certify.engine import Verdict
    from conformance.reports.report import Cell, Report, environment

    made: list[str] = []
    real = Cell.as_json

    def counted(cell: Cell) -> dict:
        made.append(cell.verdict.id)
        return real(cell)

    monkeypatch.setattr(Cell, "as_json", counted)
    report = Report(tmp_path, ["reference"], {"budget": "quick"}, planned=20)
    report.env = environment([])
    for number in range(20):
        report.cells.append(Cell(Verdict("reference", f"o{number}", "conforms")))
        report.write()
    assert sorted(made) == sorted(f"reference/machine/o{n}" for n in range(20))
    doc = json.loads((tmp_path / "report.json").read_text())
    assert [c["options"] for c in doc["cells"]] == [f"o{n}" for n in range(20)]
