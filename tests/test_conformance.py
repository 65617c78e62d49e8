"""The conformance suite itself: every driver under every option set, in lockstep with the
reference, plus the named scenarios. Select drivers with ``--driver``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from conformance.features import FEATURES, Feature
from conformance.generation.strategies import OPERATIONS, programs
from conformance.lockstep.claims import unclaimed_reason
from conformance.lockstep.interchange import FeatureSkipped
from conformance.lockstep.machine import RULES, machine_for, run_machine
from conformance.lockstep.scenarios import SCENARIOS, Scenario, run_scenario
from conformance.records import behaviours as records
from conformance.records import expectations, replay
from reference.options import MATRIX, Options


@pytest.mark.records("machine")
@pytest.mark.parametrize("options", MATRIX, ids=lambda o: o.test_id)
def test_state_machine(
    driver, options: Options, conformance_settings, run_config, request
) -> None:
    _skip_unclaimed(driver, options)
    with records.tally() as seen:
        _replay_expected(driver, "", options, run_config)
        run_machine(driver, options, conformance_settings, run_config=run_config)
    records.conclude(seen, request.node)


CASES = [
    pytest.param(scenario, options, id=f"{scenario.id}+{options.test_id}")
    for scenario in SCENARIOS
    for options in MATRIX
    if scenario.applies(options)
]


@pytest.mark.records("scenario")
@pytest.mark.parametrize(("scenario", "options"), CASES)
def test_scenario(driver, scenario: Scenario, options: Options, run_config, request) -> None:
    _skip_unclaimed(driver, options)
    with records.tally() as seen:
        run_scenario(driver, scenario, options, run_config=run_config)
    records.conclude(seen, request.node)


FEATURE_CASES = [
    pytest.param(feature, options, id=f"{feature.id}+{options.test_id}")
    for feature in FEATURES
    for options in MATRIX
]


@pytest.mark.records("feature")
@pytest.mark.parametrize(("feature", "options"), FEATURE_CASES)
def test_feature(
    driver, feature: Feature, options: Options, feature_settings, run_config, request
) -> None:
    """One feature: the reproducers of its known divergences (conformance/records/expectations.toml:
    the item is then a strict xfail), its named scenarios, then its focused machine (its
    rules, its fields)."""
    _skip_unclaimed(driver, options, feature)
    try:
        with records.tally() as seen:
            _replay_expected(driver, feature.id, options, run_config, feature)
            by_id = {scenario.id: scenario for scenario in SCENARIOS}
            for scenario_id in feature.scenarios:
                if by_id[scenario_id].applies(options):
                    run_scenario(driver, by_id[scenario_id], options, feature, run_config)
            _run_feature_machine(driver, options, feature_settings, feature, run_config)
    except FeatureSkipped as reason:
        if reason.missing_driver and request.config.getoption("--require-drivers"):
            pytest.fail(f"{reason} (--require-drivers is on)", pytrace=False)
        pytest.skip(str(reason))
    records.conclude(seen, request.node)


def test_features_name_rules_and_scenarios_that_exist() -> None:
    known = {scenario.id for scenario in SCENARIOS}
    for feature in FEATURES:
        assert feature.rules and feature.rules <= RULES, feature.id
        assert set(feature.scenarios) <= known, feature.id
    assert {s for f in FEATURES for s in f.scenarios} == known


def test_a_feature_machine_has_only_its_rules() -> None:
    from adapters import registry

    feature = next(f for f in FEATURES if f.id == "xattrs")
    driver = registry.make("reference")
    try:
        machine = machine_for(driver, MATRIX[0], feature)
        assert machine.rules == feature.rules
        assert machine.fields == feature.fields
        drawn: set[type] = set()

        @settings(max_examples=50, database=None, derandomize=True)
        @given(programs(machine.rules, 30))
        def draw(program: list) -> None:
            drawn.update(type(op) for op in program)

        draw()
        assert drawn == {OPERATIONS[rule][0] for rule in feature.rules}
        full = machine_for(driver, MATRIX[0])
        assert full.rules == RULES
        assert full.fields is None
    finally:
        driver.close()


def _replay_expected(
    driver, feature_id: str, options: Options, run_config, feature: Feature | None = None
) -> None:
    """Replay the recorded reproducers first, so a strict xfail does not depend on what
    the exploration draws. Each must show its own record (or variant): a reproducer that
    shows nothing proves nothing (the record is stale, or its program wrong)."""
    for expectation in expectations.matching(driver.name, feature_id, options.label, run_config):
        # a record of the whole machine that a feature takes on (Feature.whole, e.g.
        # permissions) shows under the whole machine's comparison, not the feature's
        own = feature if feature is None or feature.id in expectation.features else None
        with records.tally() as shown:
            replay.replay(driver, expectation, options, own, run_config)
        if expectation.id not in shown:
            raise AssertionError(
                f"{expectation.id}'s reproducer shows nothing on {driver.name} "
                f"[{options.label}]: fixed, or a wrong program? ({expectation.render()!r})"
            )


def _run_feature_machine(
    driver, options: Options, run_settings, feature: Feature, run_config
) -> None:
    """The feature's machine (layer interchange: its exchanges, records matched as in the
    machine, conformance.lockstep.interchange.check)."""
    run_machine(driver, options, run_settings, feature, run_config)


def _skip_unclaimed(driver, options: Options, feature: Feature | None = None) -> None:
    reason = unclaimed_reason(driver, options, feature)
    if reason is not None:
        pytest.skip(reason)


def test_corpus(driver, corpus_program, run_config, request) -> None:
    """A program of the regression corpus (conformance/records/corpus/ and --corpus), replayed in
    lockstep with the reference before anything is generated. Where
    conformance/records/expectations.toml records a divergence of the installed version for the
    program's feature and option set: a program recorded on this very driver must still
    diverge (a strict expected failure: it fails the day the driver is fixed), another
    one is an expected failure if it diverges."""
    from conformance.features import BY_ID

    feature = BY_ID[corpus_program.feature] if corpus_program.feature else None
    _skip_unclaimed(driver, corpus_program.options, feature)
    known = expectations.matching(
        driver.name, corpus_program.feature, corpus_program.options.label, run_config
    )
    try:
        with records.tally() as seen:
            corpus_program.replay(driver, feature, run_config)
    except FeatureSkipped as reason:
        if reason.missing_driver and request.config.getoption("--require-drivers"):
            pytest.fail(f"{reason} (--require-drivers is on)", pytrace=False)
        pytest.skip(str(reason))
    # (any other failure is a difference no record accounts for: it fails the item)
    if seen:
        pytest.xfail(f"only recorded behaviours: {records.describe_counts(seen)}")
    if known and corpus_program.driver == driver.name:
        pytest.fail(
            f"[XPASS(strict)] {corpus_program.path}: the recorded divergence no longer "
            f"reproduces on {driver.name} ({expectations.describe(known)})",
            pytrace=False,
        )
