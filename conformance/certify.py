"""Certification: run every feature check of a driver and give one verdict per cell.

A cell is (driver, option set): the lockstep state machine plus the named scenarios that
apply. A verdict is ``conforms``, ``diverges`` (with the shrunk counterexample), or
``skipped`` (with the reason: a driver that cannot run here is never reported as passing).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import attrs
from hypothesis import settings

from adapters import registry
from adapters.base import Driver, DriverFailure, DriverUnavailable
from conformance.claims import unclaimed_reason
from conformance.machine import DriverBroke, run_machine
from conformance.scenarios import SCENARIOS, run_scenario
from reference.options import MATRIX, Options

CONFORMS, DIVERGES, SKIPPED, UNCLAIMED = "conforms", "diverges", "skipped", "unclaimed"


@attrs.frozen
class Verdict:
    driver: str
    options: str
    verdict: str
    detail: str = ""
    seconds: float = 0.0


def _failure_text(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes]).strip()


def certify_cell(driver: Driver, options: Options, run_settings: settings) -> Verdict:
    reason = unclaimed_reason(driver, options)
    if reason is not None:
        return Verdict(driver.name, options.label, UNCLAIMED, reason)
    started = time.monotonic()
    try:
        for scenario in SCENARIOS:
            if scenario.applies(options):
                run_scenario(driver, scenario, options)
        run_machine(driver, options, run_settings)
    except DriverBroke as broke:
        detail = str(broke)
        return Verdict(
            driver.name, options.label, broke.verdict, detail, time.monotonic() - started
        )
    except (AssertionError, DriverFailure) as exc:
        return Verdict(
            driver.name, options.label, DIVERGES, _failure_text(exc), time.monotonic() - started
        )
    return Verdict(driver.name, options.label, CONFORMS, "", time.monotonic() - started)


def certify(
    drivers: Iterable[str],
    run_settings: settings,
    progress: Callable[[Verdict], None] = lambda verdict: None,
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for name in drivers:
        try:
            driver = registry.make(name)
        except DriverUnavailable as reason:
            for options in MATRIX:
                verdicts.append(Verdict(name, options.label, SKIPPED, str(reason)))
                progress(verdicts[-1])
            continue
        try:
            for options in MATRIX:
                verdicts.append(certify_cell(driver, options, run_settings))
                progress(verdicts[-1])
        finally:
            driver.close()
    return verdicts


def render_matrix(verdicts: list[Verdict]) -> str:
    """The feature x driver table: one row per option set, one column per driver."""
    drivers = list(dict.fromkeys(v.driver for v in verdicts))
    option_sets = list(dict.fromkeys(v.options for v in verdicts))
    cell = {(v.driver, v.options): v.verdict for v in verdicts}
    first = max(len("options"), *(len(o) for o in option_sets))
    widths = [max(len(d), *(len(v.verdict) for v in verdicts)) for d in drivers]
    lines = [
        "  ".join(
            [f"{'options':<{first}}", *(f"{d:<{w}}" for d, w in zip(drivers, widths, strict=True))]
        )
    ]
    for label in option_sets:
        row = [f"{cell.get((d, label), '-'):<{w}}" for d, w in zip(drivers, widths, strict=True)]
        lines.append("  ".join([f"{label:<{first}}", *row]).rstrip())
    return "\n".join(lines)
