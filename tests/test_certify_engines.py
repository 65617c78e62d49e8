"""certify over container engines: every scenario and the container machine of each engine
under each of its profiles becomes a verdict; a wrong engine diverges, a missing one is
skipped with its reason, and they are in the reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from adapters.base import DriverFailure, DriverHung
from adapters.engines import registry as engine_registry
from adapters.engines.base import ReferenceEngine
from conformance.__main__ import main
from conformance.certify.engines import MACHINE, _check, certify_engines, label, plan
from conformance.containers.machine import SCENARIOS, run_container_machine
from conformance.verdicts import CONFORMS, DIVERGES, SKIPPED
from tests.test_containers import RefillsNever

FEW = settings(max_examples=3, stateful_step_count=8, database=None, deadline=None,
               phases=[Phase.generate])


def test_the_plan_has_every_applicable_scenario_and_the_machine_per_profile() -> None:
    cells = plan(["reference", "docker"])
    reference = [c for c in cells if c[0] == label("reference")]
    assert {profile for _, _, profile in reference} == {"docker", "podman", "kubernetes"}
    docker = [c for c in cells if c[0] == label("docker")]
    assert {profile for _, _, profile in docker} == {"docker"}
    assert (label("docker"), MACHINE, "docker") in docker
    for scenario in SCENARIOS:
        applies = scenario.profiles is None or "docker" in scenario.profiles
        assert ((label("docker"), f"container:{scenario.id}", "docker") in docker) == applies


def test_the_reference_engine_conforms_in_every_cell() -> None:
    verdicts = certify_engines(["reference"], FEW)
    assert [(v.driver, v.feature, v.options) for v in verdicts] == plan(["reference"])
    assert {v.verdict for v in verdicts} == {CONFORMS}


def test_a_wrong_engine_diverges_with_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_registry, "make", lambda name, profile: RefillsNever())
    monkeypatch.setitem(engine_registry.ENGINES, "reference", ("docker",))
    verdicts = certify_engines(["reference"], FEW)
    refill = next(v for v in verdicts if v.feature == "container:emptied-volume-refill")
    assert refill.verdict == DIVERGES
    assert "program:" in refill.detail and "create" in refill.detail


def test_a_missing_engine_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_registry, "unavailable_reason", lambda name: "no engine here")
    verdicts = certify_engines(["docker"], FEW)
    assert verdicts and {v.verdict for v in verdicts} == {SKIPPED}
    assert {v.detail for v in verdicts} == {"no engine here"}


def test_a_hung_engine_is_replaced_for_the_next_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ReferenceEngine] = []
    closed: list[ReferenceEngine] = []

    class HangsOnce(ReferenceEngine):
        def start_image(self, image, volumes=()) -> None:
            if not made.index(self):
                raise DriverHung("no answer to image within 1s")
            super().start_image(image, volumes)

        def close(self) -> None:
            closed.append(self)

    def make(name: str, profile: str) -> ReferenceEngine:
        made.append(HangsOnce(profile))
        return made[-1]

    monkeypatch.setattr(engine_registry, "make", make)
    monkeypatch.setitem(engine_registry.ENGINES, "reference", ("docker",))
    verdicts = certify_engines(["reference"], FEW)
    assert verdicts[0].verdict == "hung" and "no answer" in verdicts[0].detail
    assert {v.verdict for v in verdicts[1:]} == {CONFORMS}
    assert len(made) == 2 and closed == made  # the hung one closed at once, the other at the end


def test_an_engine_that_dies_inside_the_machine_is_crashed_not_a_traceback() -> None:
    """Once dead, every call fails, so Hypothesis's replay of the failing example fails
    earlier than the first run and it reports Flaky: the verdict is still the crash."""
    calls = {"n": 0}

    class DiesAfterAFewExamples(ReferenceEngine):
        def start_image(self, image, volumes=()) -> None:
            calls["n"] += 1
            if calls["n"] > 2:
                raise DriverFailure("engine executor: image: the daemon is gone")
            super().start_image(image, volumes)

    config = settings(max_examples=10, stateful_step_count=5, database=None, deadline=None)
    verdict, detail = _check(
        lambda: run_container_machine(DiesAfterAFewExamples("docker"), config)
    )
    assert (verdict, detail) == ("crashed", "engine executor: image: the daemon is gone")


def test_certify_engine_writes_the_engine_cells_to_the_reports(tmp_path: Path, capsys) -> None:
    assert main(["certify", "--engine", "reference", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # one column per engine, a symbol per profile (the profiles' order printed above)
    assert "container feature" in out and "reference docker,podman,kubernetes" in out
    assert ["container-machine", "..."] in [line.split() for line in out.splitlines()]
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["status"] == "complete" and doc["planned"] == doc["done"] == len(plan(["reference"]))
    ids = {cell["id"] for cell in doc["cells"]}
    assert f"{label('reference')}/{MACHINE}/podman" in ids
    assert "reference" in doc["environment"]["engines"]
    assert doc["environment"]["drivers"] == {}  # --engine alone certifies no overlay driver


@pytest.mark.parametrize(
    ("argv", "engines"),
    [
        ([], list(engine_registry.ENGINES)),
        (["--driver", "reference"], []),
        (["--feature", "copy-up"], []),
        (["--engine", "docker", "--engine", "docker"], ["docker"]),
    ],
)
def test_which_engines_certify_runs(argv: list[str], engines: list[str]) -> None:
    from conformance.__main__ import _parser
    from conformance.certify.command import chosen_engines

    assert chosen_engines(_parser().parse_args(["certify", *argv])) == engines


def test_an_unknown_engine_is_one_line_and_exit_2(capsys) -> None:
    assert main(["certify", "--engine", "lxc"]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'lxc'" in err and len(err.splitlines()) == 1


def test_a_divergence_the_engine_does_not_repeat_on_replay_is_diverges() -> None:
    """Hypothesis reports Flaky when a replay of the failing program passes or fails
    elsewhere (an engine whose mount order varies): the cell is ``diverges`` with the first
    divergence, one line, not a traceback; a Flaky with no divergence in it stays an error."""
    import hypothesis.errors

    from conformance.certify.engines import _check
    from conformance.verdicts import DIVERGES

    def flaky() -> None:
        raise hypothesis.errors.FlakyFailure(
            "Inconsistent results from replaying a test case!",
            [AssertionError("diff c2:n: change: expected 'A', got '-'")],
        )

    verdict, detail = _check(flaky)
    assert verdict == DIVERGES
    assert "not reproducible" in detail and "expected 'A', got '-'" in detail

    def other() -> None:
        raise hypothesis.errors.FlakyFailure("Inconsistent", [ValueError("a bug of ours")])

    with pytest.raises(hypothesis.errors.FlakyFailure):
        _check(other)
