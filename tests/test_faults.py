"""The oracle has teeth: every seeded fault is found.

Only generation runs here (detection is the claim under test); the benchmark
(`python -m conformance bench`) also shrinks and reports the counterexamples' length.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from adapters.faults import FAULTS, FaultyDriver, options_for
from conformance.lockstep.machine import Diverged, run_machine
from reference.options import Options

DETECT = settings(
    max_examples=3000,
    stateful_step_count=30,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    report_multiple_bugs=False,
)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_seeded_fault_is_detected(fault: str) -> None:
    # A fault shows as a divergence, or as the faulty engine itself failing (a KeyError
    # when it removes an xattr its broken copy-up lost): both are detections.
    with pytest.raises((Diverged, LookupError)):
        run_machine(FaultyDriver(fault), options_for(fault), DETECT)


def test_several_distinct_divergences_are_one_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis reports distinct failures as an ExceptionGroup; run_machine turns it into
    one Diverged with every shrunk program, so a caller catching AssertionError (certify)
    does not lose them."""
    from conformance.lockstep import machine

    first, second = Diverged("Truncate: differs"), Diverged("Chown: differs")
    first.add_note("Falsifying example: program one")
    second.add_note("Falsifying example: program two")

    def hypothesis_found_two() -> None:
        raise ExceptionGroup("Hypothesis found 2 distinct failures.", [first, second])

    monkeypatch.setattr(machine, "lockstep_test", lambda *args: hypothesis_found_two)
    with pytest.raises(Diverged, match="2 distinct divergences") as info:
        run_machine(FaultyDriver("truncate-to-zero"), Options(), DETECT)
    for text in ("Truncate: differs", "program one", "Chown: differs", "program two"):
        assert text in str(info.value)


def test_a_feature_without_nlink_ignores_it_in_stat_results_too() -> None:
    """conformance.features: nlink belongs to metadata and hardlinks only, in the view and
    in stat results alike."""
    from conformance.features import BY_ID
    from reference.ops import StatResult
    from reference.outcome import Ok

    class OffByOneLink(FaultyDriver):
        def __init__(self) -> None:
            super().__init__("truncate-to-zero")

        def run(self, op):
            outcome = super().run(op)
            if isinstance(outcome, Ok) and isinstance(outcome.value, StatResult):
                value = outcome.value
                return Ok(
                    StatResult(
                        value.kind, value.mode, value.uid, value.gid, value.size, value.nlink + 1
                    )
                )
            return outcome

    from conformance.lockstep.machine import machine_for
    from reference import ops
    from reference.layer import FileSpec, LayerSpec, StackSpec

    stack = StackSpec((LayerSpec((("a", FileSpec(b"x")),)),))
    for feature, diverges in (("read-precedence", False), ("metadata", True)):
        machine = machine_for(OffByOneLink(), Options(), BY_ID[feature])()
        machine.mount(stack)
        if diverges:
            with pytest.raises(Diverged, match="nlink=2"):
                machine.apply(ops.Stat("a"))
        else:
            machine.apply(ops.Stat("a"))
