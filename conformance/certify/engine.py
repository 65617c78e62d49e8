"""Certification: run every feature check of a driver and give one verdict per cell.

A cell is (driver, option set): the lockstep state machine plus the named scenarios that
apply. A verdict is ``conforms``, ``diverges`` (with the shrunk counterexample), or
``skipped`` (with the reason: a driver that cannot run here is never reported as passing).

Each feature (:mod:`conformance.features`) gets a verdict per (driver, option set) too:
its named scenarios and its focused machine, so one divergence does not hide the others.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs
from hypothesis import settings

from adapters import registry
from adapters.base import Driver, DriverFailure, DriverUnavailable
from conformance.certify.shard import Shard, cell_id
from conformance.features import FEATURES, Feature
from conformance.lockstep.claims import unclaimed_reason
from conformance.lockstep.interchange import FeatureSkipped
from conformance.lockstep.machine import DriverBroke, run_machine
from conformance.lockstep.scenarios import SCENARIOS, run_scenario
from conformance.records import behaviours as records
from conformance.records import corpus, expectations
from conformance.records.corpus import Program
from conformance.records.failure import Failure, exception_text, failures_of
from conformance.run_config import DEFAULT_RUN, RunConfig
from conformance.verdicts import BROKEN, CONFORMS, DIVERGES, SKIPPED, UNCLAIMED
from reference.options import MATRIX, Options


@attrs.frozen
class Verdict:
    driver: str
    options: str
    verdict: str
    detail: str = ""
    seconds: float = 0.0
    #: The feature's id; "" for the whole cell (every rule, every field).
    feature: str = ""
    #: The failing examples as data (conformance.records.failure), when the check produced them.
    failures: tuple[Failure, ...] = attrs.field(default=(), eq=False, repr=False)
    #: The recorded behaviours the cell saw (conformance.records.behaviours): (record id, examples).
    recorded: tuple[tuple[str, int], ...] = attrs.field(default=(), eq=False)

    @property
    def id(self) -> str:
        """A stable id of the cell: ``driver/feature/options`` (feature ``machine`` for the
        whole machine; conformance.certify.shard.cell_id)."""
        return cell_id(self.driver, self.feature, self.options)


#: The signals an interrupted run is stopped by (conformance.certify.command).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGALRM while a driver is closed (unmounted, its
    processes ended): an interruption is raised after it, not in the middle of it."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an exception was raised while handling, if any: Hypothesis
    6.155 turns a KeyboardInterrupt that arrives before its engine starts into an
    AssertionError (``assert state._runner is not None``, core.py wrapped_test), which
    must stop the run, not be reported as a divergence."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def certify_cell(
    driver: Driver,
    options: Options,
    run_settings: settings,
    feature: Feature | None = None,
    programs: Sequence[Program] = (),
    run_config: RunConfig = DEFAULT_RUN,
) -> Verdict:
    """The verdict of one cell; with ``feature``, of that feature's scenarios and machine.
    The corpus ``programs`` of the cell (conformance.records.corpus) are replayed first.
    ``run_config``: the run's records file, budget share and driver settings
    (conformance.run_config)."""
    name = feature.id if feature is not None else ""
    reason = unclaimed_reason(driver, options, feature)
    if reason is not None:
        return Verdict(driver.name, options.label, UNCLAIMED, reason, feature=name)
    wanted = None if feature is None else set(feature.scenarios)
    started = time.monotonic()
    failures: tuple[Failure, ...] = ()
    with records.tally() as counts:
        try:
            for program in corpus.matching(programs, options, name):
                program.replay(driver, feature, run_config)
            for scenario in SCENARIOS:
                if scenario.applies(options) and (wanted is None or scenario.id in wanted):
                    run_scenario(driver, scenario, options, feature, run_config)
            run_machine(driver, options, run_settings, feature, run_config)
        except DriverBroke as broke:
            verdict, detail, failures = broke.verdict, str(broke), failures_of(broke)
        except FeatureSkipped as reason:
            verdict, detail = SKIPPED, str(reason)
        except (AssertionError, DriverFailure) as exc:
            interruption = _interruption(exc)
            if interruption is not None:
                raise interruption from None
            verdict, detail, failures = DIVERGES, exception_text(exc), failures_of(exc)
        else:
            verdict, detail = CONFORMS, ""
    verdict, detail = expectations.settle(
        driver, options, feature, verdict, detail, counts, run_config
    )
    recorded = tuple(sorted(counts.items()))
    return Verdict(
        driver.name,
        options.label,
        verdict,
        detail,
        time.monotonic() - started,
        name,
        failures,
        recorded,
    )


#: A cell to certify: (driver, feature (None: the whole machine), option set).
Planned = tuple[str, Feature | None, Options]


def plan(
    drivers: Iterable[str],
    features: Iterable[Feature] = FEATURES,
    machine: bool = True,
    shard: Shard | None = None,
) -> list[Planned]:
    """The cells in report order: per driver, the whole machine's (unless ``machine`` is
    False), then each feature's, each under every option set; with ``shard``, only that
    shard's cells (conformance.certify.shard)."""
    wholes: tuple[Feature | None, ...] = (None,) if machine else ()
    features = tuple(features)
    return [
        (name, feature, options)
        for name in drivers
        for feature in (*wholes, *features)
        for options in MATRIX
        if shard is None or shard.has(planned_id((name, feature, options)))
    ]


def planned_id(cell: Planned) -> str:
    """The id of a planned cell (the id its verdict will have)."""
    name, feature, options = cell
    return cell_id(name, feature.id if feature is not None else "", options.label)


def certify(
    drivers: Iterable[str],
    run_settings: settings,
    progress: Callable[[Verdict], None] = lambda verdict: None,
    feature_settings: settings | None = None,
    features: Iterable[Feature] = FEATURES,
    machine: bool = True,
    programs: Sequence[Program] = (),
    shard: Shard | None = None,
    run_config: RunConfig = DEFAULT_RUN,
) -> list[Verdict]:
    """The verdict of every cell of :func:`plan` (the whole machine's with
    ``run_settings``, the features' with ``feature_settings``, by default the same), in
    its order; each driver made once (again after a hang or crash)."""
    per_feature = run_settings if feature_settings is None else feature_settings
    by_driver: dict[str, list[tuple[Feature | None, Options]]] = {}
    for name, feature, options in plan(drivers, features, machine, shard):
        by_driver.setdefault(name, []).append((feature, options))
    verdicts: list[Verdict] = []
    for name, cells in by_driver.items():
        try:
            driver = registry.make(name, run_config.driver_settings)
        except DriverUnavailable as reason:
            for feature, options in cells:
                fid = feature.id if feature is not None else ""
                verdicts.append(Verdict(name, options.label, SKIPPED, str(reason), feature=fid))
                progress(verdicts[-1])
            continue
        try:
            for feature, options in cells:
                chosen = run_settings if feature is None else per_feature
                verdicts.append(
                    certify_cell(driver, options, chosen, feature, programs, run_config)
                )
                progress(verdicts[-1])
                if verdicts[-1].verdict in BROKEN:
                    # a hung or crashed driver cannot be trusted again: a fresh one
                    with uninterrupted():
                        driver.close()
                    driver = registry.make(name, run_config.driver_settings)
        finally:
            with uninterrupted():
                driver.close()
    return verdicts
