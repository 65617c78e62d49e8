"""The container suite over every ``--engine``: the named scenarios and the state machine,
in lockstep with the container model under the engine's profile."""

from __future__ import annotations

import pytest
from hypothesis import settings

from conformance.containers.machine import (
    SCENARIOS,
    ContainerScenario,
    run_container_machine,
    run_scenario,
)


def _applies(engine, scenario: ContainerScenario) -> None:
    if scenario.profiles is not None and engine.profile.name not in scenario.profiles:
        pytest.skip(f"{scenario.id} is about {', '.join(scenario.profiles)} only")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_container_scenario(engine, scenario: ContainerScenario) -> None:
    _applies(engine, scenario)
    run_scenario(engine, scenario)


def test_container_machine(engine, conformance_settings) -> None:
    run_container_machine(engine, settings(conformance_settings, stateful_step_count=30))


def _records():
    from conformance.records import engine_records

    return engine_records.load()


@pytest.mark.parametrize("record", _records(), ids=lambda r: r.id)
def test_engine_record(engine, record) -> None:
    """conformance/records/engines.toml: the engine passes the record's program under its
    own profile and diverges under the other engine's value of the record's field."""
    from conformance.containers.machine import ContainerDiverged
    from conformance.records import engine_records

    if engine.profile.name not in engine_records.OTHER:
        pytest.skip("records compare docker and podman")
    if engine.profile.name not in record.replays:
        pytest.skip(f"{engine.profile.name} was seen to vary on {record.id} (its confirmed text)")
    engine_records.replay(engine, record, swapped=False)
    if engine.profile.name in record.shows:
        with pytest.raises(ContainerDiverged):
            engine_records.replay(engine, record, swapped=True)
