"""Replaying a recorded program on a driver, in lockstep with the reference (the
reproducers of ``expectations.toml`` and the corpus's programs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conformance.run_config import DEFAULT_RUN, RunConfig
from reference import layer, ops

if TYPE_CHECKING:
    from conformance.records.expectations import Expectation


def replay(
    driver: Any,
    expectation: Expectation,
    options: Any,
    feature: Any = None,
    run_config: RunConfig = DEFAULT_RUN,
) -> None:
    """Run the recorded reproducer on ``driver`` in lockstep with the reference (raises
    Diverged on a difference no record accounts for); for layer-interchange, write it
    with each pair's writer and mount it with the reader (InterchangeDiverged)."""
    if feature is not None and not feature.machine:
        from conformance.lockstep.interchange import replay_program

        replay_program(driver, options, expectation.stack, list(expectation.steps), run_config)
        return

    replay_steps(
        driver,
        expectation.stack,
        expectation.steps,
        options,
        feature,
        title=expectation.reason,
        source="conformance/records/expectations.toml",
        run_config=run_config,
    )


def replay_steps(
    driver: Any,
    stack: layer.StackSpec,
    steps: tuple[ops.Op, ...] | list[ops.Op],
    options: Any,
    feature: Any = None,
    title: str = "a recorded program",
    source: str = "",
    run_config: RunConfig = DEFAULT_RUN,
) -> None:
    """Run ``steps`` over ``stack`` on ``driver`` in lockstep with the reference, the full
    comparison after every step (raises Diverged, with the failure as data, when the
    driver does not conform). Shared by the expectations and the corpus
    (conformance.records.corpus)."""
    from conformance.lockstep.scenarios import Scenario, Step, run_scenario

    scenario = Scenario(
        id=f"replay:{driver.name}",
        title=title,
        source=source,
        stack=stack,
        steps=tuple(Step(op) for op in steps),
    )
    run_scenario(driver, scenario, options, feature, run_config)
