"""The oracle has teeth: every seeded fault is found.

Only generation runs here (detection is the claim under test); the benchmark
(`python -m conformance bench`) also shrinks and reports the counterexamples' length.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

from conformance.machine import Diverged, run_machine
from reference.options import Options
from tests.faults import FAULTS, FaultyDriver

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
        run_machine(FaultyDriver(fault), Options(), DETECT)
