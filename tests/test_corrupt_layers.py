"""A driver that corrupts its own layers is reported, not trusted (issue 6).

The driver under test is real: fuse-overlayfs behind a wrapper script that, after
mounting, writes into a layer behind the mount's back (tests/drivers/). The lowers are
compared byte for byte and the upper is decoded from disk after every step, so the
planted entry is a divergence naming the layer and the path, not a silent pass; and it
shows in the merged view too, which the driver would otherwise "explain".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from adapters.base import DriverUnavailable
from adapters.fuse import PROFILES, FuseDriver
from adapters.profile import load_profile
from conformance.machine import Diverged, run_machine
from reference.options import Options

SCRIPT = Path(__file__).resolve().parent / "drivers" / "corrupting-fuse-overlayfs.sh"
RUN = settings(max_examples=5, stateful_step_count=3, deadline=None, database=None)


def _driver(mode: str) -> FuseDriver:
    places = "{lowerdir} {upperdir} {workdir} {mountpoint} {options}"
    template = f"sh {SCRIPT} {mode} {places}"
    problem = FuseDriver.unavailable_reason()
    try:
        if problem is not None:
            raise DriverUnavailable(problem)
        return FuseDriver(template, load_profile(PROFILES / "fuse-overlayfs.toml"), "corrupting")
    except DriverUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"fuse-overlayfs unavailable in CI: {reason}")
        pytest.skip(str(reason))


@pytest.mark.parametrize(
    ("mode", "where"),
    [("lower", "lower0:zz"), ("upper", "upper:zz")],
    ids=["writes-a-lower", "debris-in-upper"],
)
def test_a_driver_that_corrupts_its_layers_diverges(mode: str, where: str) -> None:
    driver = _driver(mode)
    try:
        with pytest.raises(Diverged) as diverged:
            run_machine(driver, Options(), RUN)
    finally:
        driver.close()
    report = str(diverged.value)
    assert where in report
    # the planted name is in the merged view as well, and reported there
    assert "\nzz:" in report or report.startswith("zz:") or " zz:" in report
