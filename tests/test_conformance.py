"""The conformance suite itself: every driver under every option set, in lockstep with the
reference, plus the named scenarios. Select drivers with ``--driver``."""

from __future__ import annotations

import pytest

from conformance.claims import unclaimed_reason
from conformance.machine import run_machine
from conformance.scenarios import SCENARIOS, Scenario, run_scenario
from reference.options import MATRIX, Options


@pytest.mark.parametrize("options", MATRIX, ids=lambda o: o.test_id)
def test_state_machine(driver, options: Options, conformance_settings) -> None:
    _skip_unclaimed(driver, options)
    run_machine(driver, options, conformance_settings)


CASES = [
    pytest.param(scenario, options, id=f"{scenario.id}+{options.test_id}")
    for scenario in SCENARIOS
    for options in MATRIX
    if scenario.applies(options)
]


@pytest.mark.parametrize(("scenario", "options"), CASES)
def test_scenario(driver, scenario: Scenario, options: Options) -> None:
    _skip_unclaimed(driver, options)
    run_scenario(driver, scenario, options)


def _skip_unclaimed(driver, options: Options) -> None:
    reason = unclaimed_reason(driver, options)
    if reason is not None:
        pytest.skip(reason)
