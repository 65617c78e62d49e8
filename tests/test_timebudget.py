"""``--budget 10m``: a duration explores until it is spent, spread over the cells."""

from __future__ import annotations

import time

import pytest

from conformance import timebudget
from conformance.lockstep import machine as machine_module
from conformance.run_config import RunConfig
from reference.options import MATRIX


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
    machine_module.run_machine(ReferenceDriver(), Options(), tiny)
    assert len(calls) == 1
    calls.clear()
    started = time.monotonic()
    shared = RunConfig(seconds_per_run=1.0)
    machine_module.run_machine(ReferenceDriver(), Options(), tiny, run_config=shared)
    assert time.monotonic() - started >= 1.0
    assert len(calls) >= 2
    seeds = [getattr(test, "_hypothesis_internal_use_seed", None) for test in calls]
    assert seeds[0] is None and len(set(seeds[1:])) == len(seeds) - 1


def _claimed(feature_id: str) -> list[object]:
    """The option sets whose cells of ``feature_id`` the reference driver explores (an
    unclaimed cell ends at once)."""
    from adapters import registry
    from conformance.features import BY_ID
    from conformance.lockstep.claims import unclaimed_reason

    driver = registry.make("reference")
    try:
        return [o for o in MATRIX if unclaimed_reason(driver, o, BY_ID[feature_id]) is None]
    finally:
        driver.close()


def test_certify_spreads_a_duration_over_its_cells(tmp_path, monkeypatch) -> None:
    """One feature on every option set (a cell each) and 6s: each claimed cell's machine
    explores for its share, 6s over the number of cells (an unclaimed cell counts in the
    plan too, it just ends at once)."""
    from conformance.__main__ import main

    monkeypatch.chdir(tmp_path)
    shares: list[float | None] = []
    real = machine_module._explore

    def noted(machine, run_settings, budget=None):
        shares.append(budget)
        real(machine, run_settings, budget)

    monkeypatch.setattr(machine_module, "_explore", noted)
    claimed = _claimed("xattrs")
    assert claimed
    share = 6.0 / len(MATRIX)
    started = time.monotonic()
    code = main(
        ["certify", "--driver", "reference", "--feature", "xattrs", "--budget", "6s",
         "--corpus", str(tmp_path / "corpus")]
    )
    assert code == 0
    assert shares == [pytest.approx(share)] * len(claimed)
    assert time.monotonic() - started >= len(claimed) * share


def test_the_plugin_gives_each_selected_machine_item_an_equal_share(
    pytester, monkeypatch
) -> None:
    """The share is the duration over the machine items left after -k, the items that ask
    for a budget's settings: here two of the three ``test_machine`` and ``test_feature``.
    The plain item gets the same configuration, it just has no machine to spend it on."""
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(
        test_shares="""
import os
import pytest

@pytest.mark.parametrize("n", ["one", "two", "three"])
def test_machine(run_config, conformance_settings, n):
    assert repr(run_config.seconds_per_run) == os.environ["SHARE"]

def test_feature(run_config, feature_settings):
    assert repr(run_config.seconds_per_run) == os.environ["SHARE"]

def test_plain(run_config):
    assert repr(run_config.seconds_per_run) == os.environ["SHARE"]
"""
    )
    monkeypatch.setenv("SHARE", "3.0")
    result = pytester.runpytest("-p", "no:randomly", "--budget=9s", "-k", "not three")
    result.assert_outcomes(passed=4, deselected=1)
    monkeypatch.setenv("SHARE", "None")  # a named budget: one run each, no share
    result = pytester.runpytest("-p", "no:randomly", "--budget=quick")
    result.assert_outcomes(passed=5)


def test_the_pytest_plugin_spreads_a_duration_over_the_selected_machine_items() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    names = ("redirect_dir-off+index-off", "redirect_dir-on+index-off")
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "tests/test_conformance.py", "-k", f"test_state_machine and ({' or '.join(names)})",
        "--budget", "4s",
    ]
    # -k matches a name inside another (metacopy=on, data-only, ... extend these)
    selected = [o for o in MATRIX if any(name in o.test_id for name in names)]
    assert len(selected) > len(names)
    started = time.monotonic()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(selected)} passed" in done.stdout
    assert time.monotonic() - started >= 4.0
    bad = subprocess.run(
        [*command[:-1], "4 minutes"], cwd=root, capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "4 minutes" in bad.stderr
