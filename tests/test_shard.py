"""certify --shard K/N and unionspec merge: the shards of a run, merged, give the verdicts
of the run made whole; the split is stable; bad shards and merges are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters import registry
from conformance.__main__ import main
from conformance.certify.shard import MergeError, Shard, ShardError, cell_id, merge_documents
from conformance.records import corpus
from reference.options import MATRIX
from tests.test_corpus import PROGRAM

FEATURES = ("--feature", "copy-up", "--feature", "whiteouts")


@pytest.fixture
def truncating(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(registry.BUILTIN, "truncating", "tests.test_reports:TruncatingDriver")
    return "truncating"


def _run(tmp_path: Path, name: str, *argv: str) -> dict:
    out = tmp_path / name
    main(["certify", *argv, "--report-dir", str(out), "--corpus", str(tmp_path / "c")])
    return json.loads((out / "report.json").read_text())


def test_shards_merged_give_the_verdicts_of_the_whole_run(
    tmp_path: Path, truncating: str, capsys
) -> None:
    corpus.save(PROGRAM, tmp_path / "c")  # a divergence on the faulty driver, for certain
    argv = ("--driver", "reference", "--driver", truncating, *FEATURES, "--seed", "7")
    whole = _run(tmp_path, "whole", *argv)
    first = _run(tmp_path, "s1", *argv, "--shard", "1/2")
    second = _run(tmp_path, "s2", *argv, "--shard", "2/2")
    assert first["cells"] and second["cells"], "a split of 24 cells left a shard empty"
    assert first["settings"]["shard"] == "1/2"
    assert not {c["id"] for c in first["cells"]} & {c["id"] for c in second["cells"]}
    parts = [str(tmp_path / "s1"), str(tmp_path / "s2")]
    assert main(["merge", str(tmp_path / "merged"), *parts]) == 0
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in whole["cells"]}
    assert {c["id"]: c["verdict"] for c in merged["cells"]} == verdicts
    assert [c["id"] for c in merged["cells"]] == [c["id"] for c in whole["cells"]]
    assert "diverges" in verdicts.values() and "conforms" in verdicts.values()
    assert merged["status"] == "complete" and merged["planned"] == whole["planned"]
    assert merged["recorded"] == whole["recorded"] and merged["left_out"] == whole["left_out"]
    assert merged["summary"] == whole["summary"]
    for cell in merged["cells"]:
        if cell["reproducer"]:
            assert (tmp_path / "merged" / cell["reproducer"]).is_file()
    assert (tmp_path / "merged" / "report.md").read_text().count("truncating") >= 1
    # diff of the whole run and the merged shards: nothing changed
    reports = [str(tmp_path / name / "report.json") for name in ("whole", "merged")]
    assert main(["diff", *reports]) == 0


def test_a_shard_is_a_stable_function_of_the_cell_alone() -> None:
    ids = [cell_id(d, f, o) for d in ("a", "b") for f in ("", "x") for o in ("p", "q", "r")]
    for n in (1, 2, 3, 5):
        shards = [Shard(k, n) for k in range(1, n + 1)]
        for cell in ids:
            assert sum(shard.has(cell) for shard in shards) == 1
    assert Shard.parse("2/3") == Shard(2, 3)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_one_line_and_exit_2(text: str, capsys) -> None:
    with pytest.raises(ShardError):
        Shard.parse(text)
    assert main(["certify", "--driver", "reference", "--shard", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --shard") and err.count("\n") == 1


def test_merging_a_cell_twice_is_refused(tmp_path: Path, capsys) -> None:
    doc = {"environment": {}, "settings": {}, "status": "complete", "interruption": None,
           "started": "t", "updated": "t", "planned": 1,
           "cells": [{"id": "reference/machine/ro", "verdict": "conforms"}]}
    with pytest.raises(MergeError, match="reference/machine/ro"):
        merge_documents([doc, doc])
    (tmp_path / "bad.json").write_text("{}")
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "bad.json")]) == 2
    assert "not a unionspec report" in capsys.readouterr().err


def _shard_doc(shard: str, cells: list[str], recorded: list[dict], left_out: dict) -> dict:
    return {"schema": "unionspec-report/1", "environment": {"drivers": {}, "engines": {}},
            "settings": {"shard": shard}, "status": "complete", "interruption": None,
            "started": "t", "updated": "t", "planned": len(cells), "left_out": left_out,
            "cells": [{"id": c, "driver": c.split("/")[0], "feature": c.split("/")[1],
                       "options": c.split("/", 2)[2], "verdict": "expected-divergence"}
                      for c in cells],
            "recorded": recorded}


def _record(record_id: str, cells: list[str], examples: int) -> dict:
    return {"driver": "kernel", "version": "6.1", "id": record_id, "reason": "r",
            "upstream": None, "confirmed": "c", "cells": cells, "examples": examples}


def test_merging_keeps_every_shards_recorded_behaviours_and_left_out_drivers() -> None:
    """Each shard's report lists the recorded behaviours its cells saw: the merged report
    lists every one, its cells joined and its examples summed (shard 1's alone lost the
    others'), and every driver a shard left out."""
    first = _shard_doc("1/2", ["kernel/machine/ro"], [_record("a", ["kernel/machine/ro"], 2)],
                       {"fuse": "give --driver-cmd"})
    second = _shard_doc(
        "2/2", ["kernel/whiteouts/ro", "kernel/copy-up/ro"],
        [_record("b", ["kernel/copy-up/ro"], 5),
         _record("a", ["kernel/whiteouts/ro", "kernel/copy-up/ro"], 3)],
        {"other": "give --other"},
    )
    merged = merge_documents([first, second])
    by_id = {record["id"]: record for record in merged["recorded"]}
    assert set(by_id) == {"a", "b"} and len(merged["recorded"]) == 2
    order = [cell["id"] for cell in merged["cells"]]
    assert by_id["a"]["cells"] == sorted(
        ["kernel/machine/ro", "kernel/whiteouts/ro", "kernel/copy-up/ro"], key=order.index)
    assert by_id["a"]["examples"] == 5 and by_id["b"]["examples"] == 5
    assert by_id["b"]["cells"] == ["kernel/copy-up/ro"]
    assert merged["left_out"] == {"fuse": "give --driver-cmd", "other": "give --other"}
    assert first["recorded"][0]["cells"] == ["kernel/machine/ro"], "a part was changed"


def _shard_files(tmp_path: Path) -> list[str]:
    """Two shards' report.json files, one cell each; shard 2's with a reproducer."""
    from conformance.reports import report

    parts = []
    for number, cell in enumerate(["reference/machine/ro", "reference/machine/rw"], 1):
        path = tmp_path / f"s{number}" / "report.json"
        path.parent.mkdir()
        doc = _shard_doc(f"{number}/2", [cell], [], {})
        doc.update(environment=report.environment([]), command=["unionspec"], done=1,
                   directory=str(path.parent))
        for c in doc["cells"]:
            c.update(verdict="conforms", reason="", seconds=0.0, reproducer=None, steps=[],
                     failures=[], recorded={})
        if number == 2:
            (path.parent / "reproducers").mkdir()
            (path.parent / "reproducers" / "r-1.py").write_text("print()\n")
            doc["cells"][0].update(verdict="diverges", reason="AssertionError: x", failures=[
                {"kind": "diverges", "stack": "S()", "options": "rw", "feature": "",
                 "steps": [], "divergence": "x", "differences": [],
                 "reproducer": "reproducers/r-1.py", "program": None}])
        path.write_text(json.dumps(doc))
        parts.append(str(path))
    return parts


def test_the_merged_report_names_its_own_directory_for_the_reproducers(tmp_path: Path) -> None:
    """The reproducers are copied into the merged directory: the reproducer commands of
    the merged report.html run them there, not in a shard's directory."""
    out = tmp_path / "out"
    assert main(["merge", str(out), *_shard_files(tmp_path)]) == 0
    merged = json.loads((out / "report.json").read_text())
    assert merged["directory"] == str(out)
    assert (out / "reproducers" / "r-1.py").is_file()
    page = (out / "report.html").read_text()
    assert f"{out}/reproducers/r-1.py" in page
    assert str(tmp_path / "s1") not in page and str(tmp_path / "s2") not in page


def test_a_full_disk_during_a_merge_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import errno

    from conformance.reports import report

    parts = _shard_files(tmp_path)
    real = report.write_atomically

    def full(path, text, *args, **kwargs):
        if Path(path).name == "report.md":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(report, "write_atomically", full)
    assert main(["merge", str(tmp_path / "out"), *parts]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: report directory") and "No space left" in err
    assert err.count("\n") == 1


def test_the_plan_of_the_shards_is_the_plan_split() -> None:
    """certify.plan gives the cells in report order; the shards' plans split it, each
    cell's id the id its verdict gets."""
    from conformance.certify.engine import Verdict, plan, planned_id
    from conformance.features import FEATURES

    drivers, features = ["reference", "kernel"], FEATURES[:2]
    whole = [planned_id(cell) for cell in plan(drivers, features)]
    assert len(whole) == len(set(whole)) == 2 * 3 * len(MATRIX)
    assert whole[0] == f"reference/machine/{MATRIX[0].label}"
    parts = [[planned_id(c) for c in plan(drivers, features, shard=Shard(k, 3))] for k in (1, 2, 3)]
    assert sorted(cell for part in parts for cell in part) == sorted(whole)
    for part in parts:
        assert part == [cell for cell in whole if cell in part]  # in report order
    name, feature, options = plan(drivers, features, machine=False)[0]
    assert Verdict(name, options.label, "conforms", feature=feature.id).id == planned_id(
        (name, feature, options)) == cell_id(name, feature.id, options.label)
