"""The regression corpus: step programs saved, loaded, replayed first, and the diff of two
reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import settings

from adapters import registry
from conformance.__main__ import main
from conformance.certify.engine import certify_cell
from conformance.features import BY_ID
from conformance.records import corpus
from conformance.reports.report import Report
from reference import ops
from reference.layer import FileSpec, LayerSpec, StackSpec
from reference.options import Options
from tests.test_reports import TruncatingDriver

PROGRAM = corpus.Program(
    driver="truncating",
    feature="copy-up",
    options=Options(),
    stack=StackSpec((LayerSpec((("a", FileSpec(b"x")),)),)),
    steps=(ops.Truncate("a", 3),),
    divergence="a: data: expected b'x\\x00\\x00', got b''",
)
ONE_EXAMPLE = settings(max_examples=1, stateful_step_count=1, deadline=None, database=None)


@pytest.fixture
def truncating(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(registry.BUILTIN, "truncating", "tests.test_reports:TruncatingDriver")
    return "truncating"


def test_a_program_is_saved_once_and_reads_back(tmp_path: Path) -> None:
    first = corpus.save(PROGRAM, tmp_path)
    assert corpus.save(PROGRAM, tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    loaded = corpus.load_file(first)
    assert loaded == PROGRAM and loaded.path == first
    assert json.loads(first.read_text())["steps"] == ["Truncate(path='a', size=3)"]


def test_the_project_corpus_loads_and_names_real_programs() -> None:
    programs = corpus.load_dir(corpus.PROJECT_CORPUS)
    drivers = {program.driver for program in programs}
    assert {"fuse-overlayfs", "unionfs-fuse"} <= drivers
    assert any(driver.startswith("fault:") for driver in drivers)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"options": "index=maybe"}, "unknown option set"),
        ({"feature": "teleport"}, "unknown feature"),
        ({"steps": ["os.system('true')"]}, "is not allowed"),
        ({"steps": ["Chmod(path='a')"]}, "TypeError"),
        ({"format": "other/9"}, "format"),
        ({"stack": "LayerSpec()"}, "StackSpec"),
    ],
)
def test_a_bad_program_is_one_line_and_exit_2(tmp_path: Path, change, says, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**PROGRAM.as_json(), **change}))
    with pytest.raises(corpus.CorpusError, match=says):
        corpus.load_file(path)
    assert main(["replay", str(path), "--driver", "reference"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_a_file_that_is_not_json_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    assert main(["replay", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_replay_passes_where_the_driver_conforms_and_fails_where_not(
    tmp_path: Path, truncating: str, capsys
) -> None:
    path = corpus.save(PROGRAM, tmp_path)
    assert main(["replay", str(path), "--driver", "reference"]) == 0
    assert "CONFORMS" in capsys.readouterr().out
    assert main(["replay", str(path)]) == 1  # the program's own driver
    out = capsys.readouterr().out
    assert "DIVERGES" in out and "Truncate(path='a', size=3)" in out


def test_a_cell_replays_its_corpus_programs_before_it_generates() -> None:
    """The verdict's failing example is the corpus program itself (the generation, one
    example of one step, would not draw it)."""
    verdict = certify_cell(
        TruncatingDriver(), Options(), ONE_EXAMPLE, BY_ID["copy-up"], programs=[PROGRAM]
    )
    assert verdict.verdict == "diverges"
    failure = verdict.failures[0]
    assert failure.stack == PROGRAM.stack and failure.ops == PROGRAM.steps
    other_cell = certify_cell(
        TruncatingDriver(), Options(), ONE_EXAMPLE, BY_ID["xattrs"], programs=[PROGRAM]
    )
    assert not other_cell.failures or other_cell.failures[0].ops != PROGRAM.steps


# --- diff -------------------------------------------------------------------------------------


def _report(tmp_path: Path, name: str, verdicts: dict[str, str], status: str = "complete") -> Path:
    from conformance.certify.engine import Verdict
    from conformance.reports.report import Cell

    report = Report(tmp_path / name, ["reference"], {}, planned=len(verdicts), status=status)
    report.directory.mkdir()
    for cell_id, verdict in verdicts.items():
        driver, feature, options = cell_id.split("/")
        report.cells.append(Cell(Verdict(driver, options, verdict, "why", feature=feature)))
    report.write()
    return report.directory / "report.json"


def test_diff_names_a_regression_and_exits_1(tmp_path: Path, capsys) -> None:
    old = _report(tmp_path, "old", {"k/copy-up/ro": "conforms", "k/xattrs/ro": "diverges"})
    new = _report(tmp_path, "new", {"k/copy-up/ro": "diverges", "k/xattrs/ro": "conforms"})
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: k/copy-up/ro: conforms -> diverges" in out
    assert "changed: k/xattrs/ro: diverges -> conforms" in out
    assert main(["diff", str(new), str(old)]) == 1  # the other way round, xattrs got worse
    capsys.readouterr()
    assert main(["diff", str(old), str(old)]) == 0
    assert "no verdict changed" in capsys.readouterr().out


def test_diff_an_improvement_is_exit_0_and_an_interrupted_run_is_not(
    tmp_path: Path, capsys
) -> None:
    old = _report(tmp_path, "old", {"k/copy-up/ro": "diverges"})
    new = _report(tmp_path, "new", {"k/copy-up/ro": "conforms", "k/metadata/ro": "conforms"})
    assert main(["diff", str(old), str(new)]) == 0
    assert "only in NEW: k/metadata/ro" in capsys.readouterr().out
    cut = _report(tmp_path, "cut", {"k/copy-up/ro": "conforms"}, status="interrupted")
    assert main(["diff", str(old), str(cut)]) == 1


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read"), ("[", "not valid JSON"), ('{"schema": "x"}', "not a unionspec")],
)
def test_diff_of_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, content, says, capsys) -> None:
    good = _report(tmp_path, "good", {"k/copy-up/ro": "conforms"})
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


# --- the pytest plugin --------------------------------------------------------------------------

FINDS_A_DIVERGENCE = """
from conformance.lockstep.machine import run_machine
from hypothesis import Phase, settings
from reference.options import Options

def test_machine(driver):
    run_machine(driver, Options(), settings(max_examples=200, deadline=None, database=None,
                                            phases=[Phase.generate, Phase.shrink]))
"""

REPLAYS = """
def test_corpus(driver, corpus_program):
    corpus_program.replay(driver)

def test_generating(driver):
    pass
"""

CONFTEST = """
from adapters import registry
registry.BUILTIN["truncating"] = "tests.test_reports:TruncatingDriver"
"""


def test_pytest_saves_divergences_and_replays_them_first(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_finds=FINDS_A_DIVERGENCE)
    where = pytester.path / "my-corpus"
    first = pytester.runpytest("-p", "no:xdist", "--driver=truncating", f"--corpus={where}")
    first.assert_outcomes(failed=1)
    saved = sorted(where.glob("truncating-*.json"))
    assert saved, "the divergence was not saved in the corpus"
    pytester.makepyfile(test_finds="", test_replays=REPLAYS)
    second = pytester.runpytest(
        "-p", "no:xdist", "-v", "--driver=truncating", "--driver=reference", f"--corpus={where}"
    )
    lines = [line for line in second.outlines if line.startswith("test_replays.py::")]
    corpus_items = [line for line in lines if "test_corpus[" in line]
    assert corpus_items and lines[: len(corpus_items)] == corpus_items  # replayed first
    assert any("truncating" in line and "FAILED" in line for line in corpus_items)
    assert any("reference" in line and "PASSED" in line for line in corpus_items)
