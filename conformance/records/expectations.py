"""Known divergences of installed driver versions, as data
(``conformance/records/expectations.toml``).

Each ``[[divergence]]`` record is one divergence found by the suite and confirmed by hand
(the reproducer run directly against the driver, and the kernel on the same steps). Keys:

``driver`` (string)
    The registry name (``fuse-overlayfs``).
``version`` (string)
    The driver's version exactly as its profile's ``version_command`` prints it
    (:func:`installed_version`); another installed version gets no expectation.
``features`` (array of strings)
    The feature ids (:mod:`conformance.features`) whose check this divergence fails.
``options`` (array of strings)
    The option set labels it fails under.
``reason`` (string)
    One line: what the driver does and what the reference (the kernel) does.
``stack`` (string), ``steps`` (array of strings)
    The minimal reproducer as the suite prints it: a ``StackSpec(...)`` and the operations
    (``Chmod(path='a', mode=0o700)``). The pytest items replay it first, so an expected
    failure does not depend on what the random exploration happens to draw.
``confirmed`` (string)
    How it was confirmed by hand: the commands and what the driver and the kernel did.
``upstream`` (string, optional)
    The upstream issue or pull request that knows it, or what was searched.
``scenarios`` (array of strings, optional)
    The named scenarios (:mod:`conformance.lockstep.scenarios`) this divergence fails; their
    ``test_scenario`` items are strict xfails too (a scenario is deterministic).
``crash`` (string, optional)
    The driver dies at the step: a shell pattern the crash's message (with the daemon's
    last stderr line, an assertion for instance) must match. Its ``differs`` clauses
    describe the step, matched against the outcome ``"crashed"``
    (:data:`conformance.records.behaviours.CRASHED`); a crash no record describes is the verdict
    ``crashed at step N`` as before.

Unknown keys, missing keys and wrong types are refused with a one-line
:class:`ExpectationError` (``python -m conformance certify`` exits 2 on it).

In the pytest plugin, the ``test_feature`` item of a matching (driver, version, feature,
option set) is marked ``xfail(strict=True)``: green while the divergence is there, red the
day it is fixed. ``test_state_machine`` (every rule) of a matching (driver, version,
option set) likewise, and the ``test_scenario`` items of the scenarios a record names.
:func:`settle` turns a ``diverges`` verdict of ``certify`` into ``expected-divergence``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from adapters.drivers.driver_profile import read_toml
from adapters.settings import DEFAULT, DriverSettings
from conformance.errors import ConformanceError
from conformance.records import behaviours as records
from conformance.records.program_check import ProgramError
from conformance.records.programs import parse_program
from conformance.records.replay import replay
from conformance.run_config import DEFAULT_RUN, RunConfig
from conformance.verdicts import VerdictKind
from reference import layer, ops

DEFAULT_PATH = Path(__file__).resolve().parent / "expectations.toml"
EXPECTED = VerdictKind.EXPECTED

_REQUIRED = {
    "driver": str,
    "version": str,
    "features": list,
    "options": list,
    "reason": str,
    "stack": str,
    "steps": list,
    "confirmed": str,
}
_OPTIONAL = {
    "upstream": str,
    "scenarios": list,
    "id": str,
    "variant": str,
    "differs": list,
    "resync": str,
    "crash": str,
}



class ExpectationError(ConformanceError, ValueError):
    """An expectations file that cannot be used; the message is one line."""


@attrs.frozen
class Expectation:
    driver: str
    version: str
    features: tuple[str, ...]
    options: tuple[str, ...]
    reason: str
    stack: layer.StackSpec
    steps: tuple[ops.Op, ...]
    confirmed: str
    upstream: str = ""
    scenarios: tuple[str, ...] = ()
    #: A short name for reports (default ``<driver>#<number in the file>``).
    id: str = ""
    #: The engine variant (reference.variants) that models it, selected by the profile.
    variant: str = ""
    #: The differences it accounts for (conformance.records.behaviours.Clause).
    differs: tuple[Any, ...] = ()
    #: After a step it accounts for: "model", "keep" or "stop" (conformance.records.behaviours).
    resync: str = "model"
    #: The crash it describes: a shell pattern on the crash's message ("" : not a crash).
    crash: str = ""

    def matches(self, driver: str, version: str | None, feature: str, options: str) -> bool:
        """Whether it applies to this cell; ``feature`` "" is the whole cell (any feature)."""
        return (
            self.driver == driver
            and self.version == version
            and (not feature or applies(self.features, feature))
            and options in self.options
        )

    def render(self) -> str:
        """The reproducer as the suite prints a program."""
        return "\n".join([f"mount {self.stack!r}", *(repr(op) for op in self.steps)])


def _record(data: Any, where: str) -> Expectation:
    from conformance.features import BY_ID
    from reference.options import MATRIX

    if not isinstance(data, dict):
        raise ExpectationError(f"{where}: must be a table")
    for key in data:
        if key not in _REQUIRED and key not in _OPTIONAL:
            known = ", ".join([*_REQUIRED, *_OPTIONAL])
            raise ExpectationError(f"{where}: unknown key {key!r} (known: {known})")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in data:
            if key in _REQUIRED:
                raise ExpectationError(f"{where}: missing key {key!r}")
            continue
        value = data[key]
        if key == "differs":
            if not isinstance(value, list):
                raise ExpectationError(f"{where}: key 'differs' must be an array of tables")
            continue
        if not isinstance(value, kind) or (
            kind is list and not all(isinstance(v, str) for v in value)
        ):
            wanted = "an array of strings" if kind is list else "a string"
            raise ExpectationError(f"{where}: key {key!r} must be {wanted}")
        if kind is str and key != "upstream" and not value.strip():
            raise ExpectationError(f"{where}: key {key!r} must not be empty")
    if "\n" in data["reason"].strip():
        raise ExpectationError(f"{where}: key 'reason' must be one line")
    for feature in data["features"]:
        if feature not in BY_ID:
            raise ExpectationError(f"{where}: unknown feature {feature!r}")
    labels = {options.label for options in MATRIX}
    for label in data["options"]:
        if label not in labels:
            raise ExpectationError(f"{where}: unknown option set {label!r}")
    from conformance.lockstep.scenarios import SCENARIOS

    named = {scenario.id for scenario in SCENARIOS}
    for scenario in data.get("scenarios", []):
        if scenario not in named:
            raise ExpectationError(f"{where}: unknown scenario {scenario!r}")
    if not data["features"] or not data["options"]:
        raise ExpectationError(f"{where}: 'features' and 'options' must not be empty")
    try:
        stack, steps = parse_program(data["stack"], data["steps"], where)
    except ProgramError as exc:
        raise ExpectationError(str(exc)) from None
    from reference import variants

    differs = records.with_primary(
        tuple(
            records.clause_from(clause, f"{where} differs[{i}]", ExpectationError)
            for i, clause in enumerate(data.get("differs", []))
        ),
        where,
        ExpectationError,
    )
    variant = data.get("variant", "")
    if variant and data.get("id", variant) != variant:
        raise ExpectationError(f"{where}: a record with a variant has the variant's name as id")
    if not variant and not data.get("differs"):
        raise ExpectationError(
            f"{where}: a record needs 'variant' or 'differs' (what it accounts for)"
        )
    if variant:
        try:
            variants.check([variant], where)
        except variants.VariantError as problem:
            raise ExpectationError(str(problem)) from None
    resync = data.get("resync", "model")
    if resync not in records.RESYNC:
        raise ExpectationError(f"{where}: 'resync' must be one of {', '.join(records.RESYNC)}")
    crash = data.get("crash", "")
    if crash and (variant or not any(c.within == "outcome" and c.primary for c in differs)):
        raise ExpectationError(
            f"{where}: a crash record needs a primary 'outcome' clause (the step it dies "
            "at) and no variant"
        )
    return Expectation(
        driver=data["driver"],
        version=data["version"],
        features=tuple(data["features"]),
        options=tuple(data["options"]),
        reason=data["reason"].strip(),
        stack=stack,
        steps=steps,
        confirmed=data["confirmed"].strip(),
        upstream=data.get("upstream", "").strip(),
        scenarios=tuple(data.get("scenarios", [])),
        id=data.get("id", "").strip()
        or variant
        or data["driver"] + where.rpartition(": ")[2].replace("divergence ", "#"),
        variant=variant,
        differs=differs,
        resync=resync,
        crash=crash,
    )


def load(path: str | Path = DEFAULT_PATH) -> tuple[Expectation, ...]:
    """Read and check an expectations file (an :class:`ExpectationError` if unusable)."""
    source = str(path)
    data = read_toml(path, ExpectationError)
    unknown = set(data) - {"divergence"}
    if unknown:
        raise ExpectationError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    tables = data.get("divergence", [])
    if not isinstance(tables, list):
        raise ExpectationError(f"{source}: 'divergence' must be an array of tables")
    loaded = tuple(
        _record(record, f"{source}: divergence {number}")
        for number, record in enumerate(tables, 1)
    )
    seen: set[tuple[str, str]] = set()
    for record in loaded:
        if (record.driver, record.id) in seen:
            raise ExpectationError(
                f"{source}: two records of {record.driver} have id {record.id!r}"
            )
        seen.add((record.driver, record.id))
    return loaded


def reload(path: str | None) -> tuple[Expectation, ...]:
    """The records of ``path`` (a run's ``expectations_path``, conformance.run_config; None:
    the default file), read again now: the pytest plugin and certify call it once, before
    anything runs, so a bad file fails early (an :class:`ExpectationError`, one line) and
    a file changed since an earlier run in this process is read as it is now."""
    _loaded.cache_clear()
    return _loaded(path)


def loaded(run_config: RunConfig = DEFAULT_RUN) -> tuple[Expectation, ...]:
    """The records of the run's file (read once per process, :func:`reload` reads it again)."""
    return _loaded(run_config.expectations_path)


@functools.cache
def _loaded(path: str | None) -> tuple[Expectation, ...]:
    return load(path or DEFAULT_PATH)


@functools.cache
def installed_version(driver: str, settings: DriverSettings = DEFAULT) -> str | None:
    """The version of the driver ``driver`` installed here, as its profile's
    ``version_command`` prints it (None: no version command, or not a FUSE driver)."""
    from adapters import registry

    return registry.installed_version(driver, settings)


def version_of(driver: str, settings: DriverSettings = DEFAULT) -> str | None:
    """:func:`installed_version` under the run's settings, passed only when there are some
    (a test may replace installed_version with a function of the driver alone)."""
    if settings == DEFAULT:
        return installed_version(driver)
    return installed_version(driver, settings)


def _of_version(
    driver: str, options: str, run_config: RunConfig, keep: Callable[[Expectation], bool]
) -> tuple[Expectation, ...]:
    """The records of the run's file of the installed version of ``driver`` under the
    option set ``options`` that ``keep`` selects (the version is asked, with the run's
    driver settings, only when some record names the driver)."""
    mine = [e for e in loaded(run_config) if e.driver == driver and keep(e)]
    if not mine:
        return ()
    version = installed_version(driver, run_config.driver_settings)
    return tuple(e for e in mine if e.matches(driver, version, "", options))


def applies(features: tuple[str, ...], feature: str) -> bool:
    """Whether a record of ``features`` applies to the cell of ``feature``: one of them, or
    a feature that draws every rule (``Feature.whole``, e.g. permissions) and a record of
    a machine."""
    from conformance.features import BY_ID

    if feature in features:
        return True
    return BY_ID[feature].whole and any(BY_ID[f].machine for f in features)


def matching(
    driver: str, feature: str, options: str, run_config: RunConfig = DEFAULT_RUN
) -> tuple[Expectation, ...]:
    """The expectations for this cell of the installed version (``feature`` "": the whole
    machine, so any feature that is a machine; layer-interchange is not part of it)."""
    from conformance.features import BY_ID

    def keep(e: Expectation) -> bool:
        if feature:
            return applies(e.features, feature)
        return any(BY_ID[f].machine for f in e.features)

    return _of_version(driver, options, run_config, keep)


def behaviours(
    driver: str, options: str, run_config: RunConfig = DEFAULT_RUN
) -> tuple[Expectation, ...]:
    """The records of the installed version of ``driver`` under the option set ``options``
    (any feature): the behaviours the lockstep machine accounts for
    (conformance.records.behaviours)."""
    return _of_version(driver, options, run_config, lambda e: True)


def matching_scenario(
    driver: str, scenario: str, options: str, run_config: RunConfig = DEFAULT_RUN
) -> tuple[Expectation, ...]:
    """The expectations of the installed version that fail the named scenario."""
    return _of_version(driver, options, run_config, lambda e: scenario in e.scenarios)


def describe(found: tuple[Expectation, ...]) -> str:
    return "; ".join(f"{e.reason} ({e.version})" for e in found)


def settle(
    driver: Any,
    options: Any,
    feature: Any,
    verdict: str,
    detail: str,
    seen: Counter[str] | None = None,
    run_config: RunConfig = DEFAULT_RUN,
) -> tuple[str, str]:
    """certify: the verdict of a cell (``feature`` None: the whole machine) in the light of
    the recorded behaviours of the installed version. ``seen`` counts the examples that
    showed each record (conformance.records.behaviours.tally); the replays of the reproducers add
    to it.

    A record accounts only for the differences it describes (conformance.records.behaviours), so a
    ``diverges`` stays ``diverges`` (the records seen are listed with it). ``conforms``
    with records seen is ``expected-divergence``, listing them with their counts. A cell
    that saw none replays the recorded reproducers: still shown, ``expected-divergence``;
    none shown any more, ``conforms`` saying the records are stale (fixed). Layer
    interchange matches its records as the machine does (conformance.lockstep.interchange.check)."""
    seen = Counter() if seen is None else seen
    feature_id = feature.id if feature is not None else ""
    found = matching(driver.name, feature_id, options.label, run_config)
    if verdict != "conforms":
        if seen and verdict == "diverges":
            detail += f"\nrecorded behaviours also seen: {records.describe_counts(seen)}"
        return verdict, detail
    if not seen and found:
        with records.tally() as replayed:
            for expectation in found:
                try:
                    replay(driver, expectation, options, feature, run_config)
                except AssertionError as exc:
                    # the reproducer shows something no record accounts for
                    return "diverges", f"{expectation.id}'s reproducer: {exc}"
        seen.update(replayed)
        # each reproducer must show its own record: one that shows nothing is stale
        stale = tuple(e for e in found if e.id not in replayed)
        note = (
            f"fixed? the recorded divergence no longer reproduces: {describe(stale)}"
            if stale
            else ""
        )
        if not seen:
            return verdict, note
        shown = "only recorded behaviours (their reproducers): " + records.describe_counts(seen)
        return EXPECTED, f"{shown}\n{note}" if note else shown
    if seen:
        return EXPECTED, "only recorded behaviours: " + records.describe_counts(seen)
    return verdict, detail


records.use_book(behaviours)
