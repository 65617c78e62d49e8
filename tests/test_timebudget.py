"""``--budget 10m``: a duration explores until it is spent, spread over the cells."""

from __future__ import annotations

import time

import pytest

from conformance import timebudget
from conformance.lockstep import machine as machine_module


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("quick", None), ("deep", None), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0)],
)
def test_a_budget_is_a_name_or_a_duration(text: str, seconds: float | None) -> None:
    assert timebudget.seconds(text) == seconds


def test_the_budget_names_are_the_settings_budgets() -> None:
    """One list of names (certify, coverage, bench and the plugin offer it): each has its
    examples and steps in conformance.budgets, for machines, features and containers."""
    from conformance import budgets as settings

    assert tuple(settings.BUDGETS) == timebudget.NAMES
    assert set(settings.FEATURE_BUDGETS) == set(settings.CONTAINER_BUDGETS) == set(timebudget.NAMES)


def test_coverage_refuses_a_bad_budget_in_one_line(capsys) -> None:
    from conformance.__main__ import main

    assert main(["coverage", "--budget", "10m"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "invalid choice: '10m'" in error[0], error


@pytest.mark.parametrize("text", ["", "10", "ten", "10x", "0s", "m", "1m2h"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        timebudget.seconds(text)


def test_certify_refuses_a_bad_budget_in_one_line(capsys) -> None:
    from conformance.__main__ import main

    assert main(["certify", "--budget", "10x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "10x" in err and "Traceback" not in err


def test_explore_runs_rounds_until_the_time_is_spent() -> None:
    rounds: list[int] = []

    def run_round(number: int) -> None:
        rounds.append(number)
        time.sleep(0.05)

    started = time.monotonic()
    assert timebudget.explore(run_round, 0.3) == len(rounds)
    assert time.monotonic() - started >= 0.3
    assert rounds == list(range(len(rounds))) and len(rounds) >= 4
    rounds.clear()
    assert timebudget.explore(run_round, 0.001) == 1  # at least one round


def test_a_machine_under_a_duration_runs_rounds_from_other_seeds(monkeypatch) -> None:
    from hypothesis import settings

    from adapters.drivers.reference import ReferenceDriver
    from reference.options import Options

    calls: list[object] = []
    real = machine_module.lockstep_test

    def counted(machine, run_settings=None):
        test = real(machine, run_settings)
        calls.append(test)
        return test

    monkeypatch.setattr(machine_module, "lockstep_test", counted)
    tiny = settings(max_examples=2, stateful_step_count=3, database=None, deadline=None)
    monkeypatch.setattr(timebudget, "SECONDS_PER_RUN", None)
    machine_module.run_machine(ReferenceDriver(), Options(), tiny)
    assert len(calls) == 1
    calls.clear()
    monkeypatch.setattr(timebudget, "SECONDS_PER_RUN", 1.0)
    started = time.monotonic()
    machine_module.run_machine(ReferenceDriver(), Options(), tiny)
    assert time.monotonic() - started >= 1.0
    assert len(calls) >= 2
    seeds = [getattr(test, "_hypothesis_internal_use_seed", None) for test in calls]
    assert seeds[0] is None and len(set(seeds[1:])) == len(seeds) - 1


def test_certify_spreads_a_duration_over_its_cells(tmp_path, monkeypatch) -> None:
    """Six cells (one feature on the six option sets) and 6s: each cell's machine explores
    for about a second, and the share is reset afterwards."""
    from conformance.__main__ import main

    monkeypatch.chdir(tmp_path)
    shares: list[float | None] = []
    real = machine_module._explore

    def noted(machine, run_settings):
        shares.append(timebudget.SECONDS_PER_RUN)
        real(machine, run_settings)

    monkeypatch.setattr(machine_module, "_explore", noted)
    started = time.monotonic()
    code = main(
        ["certify", "--driver", "reference", "--feature", "xattrs", "--budget", "6s",
         "--corpus", str(tmp_path / "corpus")]
    )
    assert code == 0
    assert shares == [1.0] * len(shares) and len(shares) >= 5  # read-only is unclaimed
    assert time.monotonic() - started >= 5.0
    assert timebudget.SECONDS_PER_RUN is None


def test_the_pytest_plugin_spreads_a_duration_over_the_selected_machine_items() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "tests/test_conformance.py", "-k",
        "test_state_machine and (redirect_dir-off+index-off or redirect_dir-on+index-off)",
        "--budget", "4s",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout  # metacopy=on matches the second name too
    assert time.monotonic() - started >= 4.0
    bad = subprocess.run(
        [*command[:-1], "4 minutes"], cwd=root, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "4 minutes" in bad.stderr
