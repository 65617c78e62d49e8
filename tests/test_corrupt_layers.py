"""A driver that corrupts its own layers is reported, not trusted (issue 6).

The driver under test is real: fuse-overlayfs behind a wrapper (``sh -c``, inline: the
executor's private /tmp may hide a checkout that lives under /tmp) that writes into a layer
behind the suite's back and then mounts (before mounting, so nothing races the first
look). The lowers are compared byte for byte and the upper is decoded from disk after
every step, so the planted entry is a divergence naming the layer and the path, not a
silent pass; and it shows in the merged view too.
"""

from __future__ import annotations

import os
import shlex

import pytest
from hypothesis import settings

from adapters.base import DriverUnavailable
from adapters.drivers.driver_profile import load_driver_profile
from adapters.drivers.fuse import PROFILES, FuseDriver
from conformance.lockstep.machine import Diverged, run_machine
from reference.options import Options

#: $1: lower|upper, $2: lowerdir (top first), $3: upperdir, $4: workdir, $5: mountpoint,
#: $6: options. "lower": the top lower gains a file; "upper": the upper gains a FIFO.
WRAPPER = (
    "case $1 in"
    ' lower) printf planted >"${2%%:*}/zz";;'
    ' upper) mkfifo "$3/zz";;'
    " esac;"
    ' exec fuse-overlayfs -o "lowerdir=$2,upperdir=$3,workdir=$4$6" "$5"'
)
RUN = settings(max_examples=5, stateful_step_count=3, deadline=None, database=None)


def _driver(mode: str) -> FuseDriver:
    places = "{lowerdir} {upperdir} {workdir} {mountpoint} {options}"
    script = shlex.quote(WRAPPER.replace("{", "{{").replace("}", "}}"))
    template = f"sh -c {script} corrupting {mode} {places}"
    problem = FuseDriver.unavailable_reason()
    try:
        if problem is not None:
            raise DriverUnavailable(problem)
        profile = load_driver_profile(PROFILES / "fuse-overlayfs.toml")
        return FuseDriver(template, profile, "corrupting")
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
