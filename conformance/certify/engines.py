"""Certification of container engines: the named container scenarios and the container
machine (conformance.containers.machine) of each engine under each profile it runs under
(adapters.engines.registry), as verdicts of the same kind as the overlay drivers'.

A verdict's driver is ``engine:NAME``, its options the profile (docker, podman,
kubernetes), its feature ``container:SCENARIO`` or ``container-machine``. An engine that
cannot run here gives ``skipped`` with the reason for every cell; one that hangs or
crashes gives ``hung``/``crashed`` and is started afresh for the next cell.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Iterable

import hypothesis.errors
from hypothesis import settings

from adapters.base import DriverFailure, DriverHung, DriverUnavailable
from adapters.engines import registry as engine_registry
from adapters.engines.base import EngineDriver
from conformance.certify.engine import Verdict, uninterrupted
from conformance.containers.machine import (
    SCENARIOS,
    ContainerScenario,
    run_container_machine,
    run_scenario,
)
from conformance.records.failure import exception_text
from conformance.verdicts import (
    BROKEN,
    CONFORMS,
    CRASHED,
    DIVERGES,
    ENGINE_PREFIX,
    HUNG,
    SKIPPED,
)

PREFIX = ENGINE_PREFIX
MACHINE = "container-machine"


def label(name: str) -> str:
    """The driver column of engine ``name`` in verdicts and reports."""
    return f"{PREFIX}{name}"


def scenarios_for(profile: str) -> list[ContainerScenario]:
    return [s for s in SCENARIOS if s.profiles is None or profile in s.profiles]


def plan(names: Iterable[str]) -> list[tuple[str, str, str]]:
    """The engine cells in report order: (driver label, feature, profile)."""
    return [
        (label(name), feature, profile)
        for name in names
        for profile in engine_registry.ENGINES[name]
        for feature in (*(f"container:{s.id}" for s in scenarios_for(profile)), MACHINE)
    ]


def _broken_engine(exc: BaseException) -> BaseException | None:
    """The DriverHung or DriverFailure behind ``exc``, if any: when an engine dies inside
    the container machine, Hypothesis replays the example on the dead engine, which fails
    at another step, and reports that as Flaky (an error about the test, not the engine)."""
    return _behind(exc, DriverHung | DriverFailure)


def _behind(exc: BaseException, wanted: type | types.UnionType) -> BaseException | None:
    """The first exception of type ``wanted`` in ``exc``, its causes, contexts and groups."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, wanted):
            return current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            pending += list(current.exceptions)
    return None


def _check(action: Callable[[], None]) -> tuple[str, str]:
    """The verdict of one check: conforms, diverges (a ContainerDiverged is an
    AssertionError, with the program), hung or crashed."""
    try:
        action()
    except DriverHung as exc:
        return HUNG, str(exc)
    except DriverFailure as exc:
        return CRASHED, str(exc)
    except hypothesis.errors.Flaky as exc:
        broken = _broken_engine(exc)
        if broken is not None:
            return (HUNG if isinstance(broken, DriverHung) else CRASHED), str(broken)
        # the engine answered the same program differently on replay (podman 4.3.1's
        # order of same-depth mounts varies): a divergence all the same, not an error
        found = _behind(exc, AssertionError)
        if found is None:
            raise
        return DIVERGES, ("not reproducible (a replay of the program gave another result); "
                          f"first seen: {exception_text(found)}")
    except AssertionError as exc:
        return DIVERGES, exception_text(exc)
    return CONFORMS, ""


def certify_engines(
    names: Iterable[str],
    machine_settings: settings,
    progress: Callable[[Verdict], None] = lambda verdict: None,
) -> list[Verdict]:
    """Every cell of every engine in ``names``, in :func:`plan` order."""
    verdicts: list[Verdict] = []

    def give(verdict: Verdict) -> None:
        verdicts.append(verdict)
        progress(verdict)

    for name in names:
        for profile in engine_registry.ENGINES[name]:
            checks: list[tuple[str, Callable[[EngineDriver], None]]] = [
                (f"container:{s.id}", lambda e, s=s: run_scenario(e, s))
                for s in scenarios_for(profile)
            ]
            checks.append((MACHINE, lambda e: run_container_machine(e, machine_settings)))
            engine: EngineDriver | None = None
            try:
                for feature, check in checks:
                    if engine is None:
                        try:
                            engine = engine_registry.make(name, profile)
                        except DriverUnavailable as reason:
                            give(Verdict(label(name), profile, SKIPPED, str(reason),
                                         feature=feature))
                            continue
                    started = time.monotonic()
                    verdict, detail = _check(functools.partial(check, engine))
                    give(Verdict(label(name), profile, verdict, detail,
                                 time.monotonic() - started, feature))
                    if verdict in BROKEN:
                        with uninterrupted():
                            engine.close()  # not to be trusted again: a fresh one
                        engine = None
            finally:
                if engine is not None:
                    with uninterrupted():
                        engine.close()
    return verdicts
