"""The unionspec pytest plugin: wires options to drivers and Hypothesis settings.

Options (group "unionspec"):

- ``--driver NAME`` (repeatable): the drivers to run the conformance tests against
  (default: ``reference``). Names come from :mod:`adapters.registry`.
- ``--budget quick|standard|deep|DURATION``: how many examples the state machines explore;
  a duration (``10m``) is spread over the machine items (conformance.timebudget).
- ``--driver-cmd TEMPLATE``: the command template of the generic ``fuse`` driver
  (see :mod:`adapters.drivers.fuse`);
- ``--profile PATH``: a driver profile (TOML, :mod:`adapters.drivers.driver_profile`) for the FUSE
  drivers; it replaces a preset's own profile;
- ``--driver-timeout SECONDS``: how long one request to a driver may take before its
  verdict is "hung at step N" (default: the driver's own, 30 s for the sandboxed drivers);
- ``--kernel-image PATH`` (repeatable), ``--kernel-modules DIR``: the kernel driver in a
  VM booted on that kernel (:mod:`adapters.vm`), as the driver ``kernel@<release>``;
- ``--require-drivers``: a driver that cannot run here fails instead of skipping; on by
  default when the ``CI`` environment variable is set, since a skip in CI hides a gap;
- ``--engine NAME`` (repeatable): the container engines of tests/test_container_engines.py
  (default ``reference``; ``kernel-mounts``, ``docker``, ``podman``), each under the
  profiles of :data:`ENGINES`;
- ``--expectations PATH``: the known divergences of installed driver versions
  (:mod:`conformance.records.expectations`; default ``conformance/records/expectations.toml``). The
  items marked ``@pytest.mark.records(scope)`` (scope ``feature``, ``machine`` or
  ``scenario``) of a matching driver, version, feature and option set are marked
  ``xfail(strict=True, raises=RecordedBehaviours)``: they xfail
  only when every difference they found is one a record describes
  (:mod:`conformance.records.behaviours`); any other difference fails them.

- ``--corpus DIR``: the user's regression corpus (:mod:`conformance.records.corpus`; default
  ``.unionspec/corpus`` under the rootdir). Its programs and those of the project's
  ``conformance/records/corpus/`` are ``test_corpus`` items, run before anything is generated;
  every new divergence a test finds is saved there as a step program.
- ``--example-db DIR``: a Hypothesis example database shared with other runs, joined to
  the local ``.hypothesis/examples`` (:func:`conformance.budgets.example_database`;
  default ``$UNIONSPEC_EXAMPLE_DB``).

A SIGTERM ends the run as Ctrl-C does (:mod:`conformance.certify.interrupt`): drivers are
closed and pytest reports what ran.

Fixtures: ``driver`` (one per ``--driver``, closed after the test) and
``conformance_settings`` (the Hypothesis settings of the chosen budget) and
``feature_settings`` (those of one feature's machine, :mod:`conformance.features`);
``run_config`` (the run's configuration, :mod:`conformance.run_config`: ``--expectations``,
the share of a duration ``--budget``, ``--hypothesis-show-statistics``, the driver
settings), to pass to ``run_machine`` and the records' readers, and ``driver_settings``
(its driver settings).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from adapters.engines.registry import ENGINES
from adapters.settings import DriverSettings, SettingsError
from adapters.vm.image import KernelImage
from conformance.run_config import RunConfig

DRIVER_OPTION = "--driver"
BUDGET_OPTION = "--budget"
REQUIRE_OPTION = "--require-drivers"
DRIVER_CMD_OPTION = "--driver-cmd"
PROFILE_OPTION = "--profile"
EXPECTATIONS_OPTION = "--expectations"
ENGINE_OPTION = "--engine"
TIMEOUT_OPTION = "--driver-timeout"
CORPUS_OPTION = "--corpus"
KERNEL_IMAGE_OPTION = "--kernel-image"
KERNEL_MODULES_OPTION = "--kernel-modules"
EXAMPLE_DB_OPTION = "--example-db"
#: Where pytest_configure keeps the run's configuration (with its driver settings); the
#: collection adds the share of a duration budget.
RUN_CONFIG = pytest.StashKey[RunConfig]()
#: ``@pytest.mark.records(scope)``: the item's failures are held to the recorded behaviours of
#: its driver at that scope ("feature": its ``feature`` parameter's records; "machine": the
#: whole-machine records; "scenario": its ``scenario`` parameter's); a matching item xfails
#: strictly unless every failure is recorded.
RECORDS_MARK = "records"
#: The plugin's fixture of saved programs: items that use it run first.
CORPUS_FIXTURE = "corpus_program"
BUDGET_NAMES = ("quick", "standard", "deep")


def _budget(text: str) -> str:
    from conformance.timebudget import budget_arg

    return budget_arg(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unionspec", "unionspec conformance")
    group.addoption(
        DRIVER_OPTION,
        action="append",
        default=[],
        metavar="NAME",
        help="driver under test (repeatable; default: reference)",
    )
    group.addoption(
        BUDGET_OPTION,
        default="quick",
        type=_budget,
        help="how much the state machines explore: quick (default), standard, deep, or a "
        "duration (10m, 1h) spread over the machine items",
    )
    group.addoption(
        DRIVER_CMD_OPTION,
        default=None,
        metavar="TEMPLATE",
        help="command template of the generic fuse driver, e.g. "
        "'fuse-overlayfs -o lowerdir={lowerdir},upperdir={upperdir},workdir={workdir}"
        "{options} {mountpoint}'",
    )
    group.addoption(
        PROFILE_OPTION,
        default=None,
        metavar="PATH",
        help="driver profile (TOML) for the FUSE drivers; replaces a preset's profile",
    )
    group.addoption(
        EXPECTATIONS_OPTION,
        default=None,
        metavar="PATH",
        help="known divergences of installed driver versions (TOML; default: "
        "conformance/records/expectations.toml)",
    )
    group.addoption(
        TIMEOUT_OPTION,
        default=None,
        type=float,
        metavar="SECONDS",
        help="seconds one driver request may take before the driver is hung (default: 30)",
    )
    group.addoption(
        ENGINE_OPTION,
        action="append",
        default=[],
        metavar="NAME",
        help="container engine under test (repeatable; default: reference): " + ", ".join(ENGINES),
    )
    group.addoption(
        CORPUS_OPTION,
        default=None,
        metavar="DIR",
        help="regression corpus: replayed first (test_corpus items), new divergences are "
        "saved there (default: .unionspec/corpus under the rootdir)",
    )
    group.addoption(
        EXAMPLE_DB_OPTION,
        default=None,
        metavar="DIR",
        help="a Hypothesis example database shared with other runs, joined to the local "
        "one: every run replays every run's failures first (default: $UNIONSPEC_EXAMPLE_DB)",
    )
    group.addoption(
        KERNEL_IMAGE_OPTION,
        action="append",
        default=[],
        metavar="PATH",
        help="run the kernel driver in a VM booted on this kernel (vmlinuz or an unpacked "
        "Debian kernel package; repeatable): driver kernel@<release> instead of kernel",
    )
    group.addoption(
        KERNEL_MODULES_OPTION,
        default=None,
        metavar="DIR",
        help="the modules of a --kernel-image given as a vmlinuz",
    )
    group.addoption(
        REQUIRE_OPTION,
        action="store_true",
        default=bool(os.environ.get("CI")),
        help="fail, not skip, when a driver cannot run here (default on when $CI is set)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from adapters import registry
    from conformance.budgets import register_budgets
    from conformance.certify.interrupt import terminate_as_interrupt

    terminate_as_interrupt()
    config.addinivalue_line(
        "markers", f"{RECORDS_MARK}(scope): failures held to the driver's recorded behaviours "
        "at scope feature, machine or scenario (expectations.toml)",
    )
    register_budgets(config.rootpath, config.getoption(EXAMPLE_DB_OPTION))
    # The run's configuration, built once here (in each xdist worker from the same
    # options) and passed explicitly: the fixtures below make drivers with its settings.
    try:
        settings = DriverSettings(
            config.getoption(DRIVER_CMD_OPTION),
            config.getoption(PROFILE_OPTION),
            config.getoption(TIMEOUT_OPTION),
            _kernel_images(config),
        )
    except SettingsError as problem:
        raise pytest.UsageError(f"{TIMEOUT_OPTION}: {problem}") from None
    try:
        registry.check(config.getoption(DRIVER_OPTION), settings)
    except registry.UnknownDriver as problem:
        raise pytest.UsageError(str(problem)) from None
    for name in config.getoption(ENGINE_OPTION):
        if name not in ENGINES:
            raise pytest.UsageError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
    from conformance.records import expectations

    path = config.getoption(EXPECTATIONS_OPTION)
    try:
        expectations.reload(path)
    except expectations.ExpectationError as problem:
        raise pytest.UsageError(str(problem)) from None
    config.stash[RUN_CONFIG] = RunConfig(
        expectations_path=path, observe_machine=_observer(config), driver_settings=settings
    )


def _observer(config: pytest.Config) -> Any:
    """``--hypothesis-show-statistics``: each rare state an example reaches becomes a
    Hypothesis event (conformance.generation.coverage.observed); None without it."""
    if not config.getoption("hypothesis_show_statistics", False):
        return None
    from conformance.generation import coverage

    return coverage.observed


def _kernel_images(config: pytest.Config) -> tuple[KernelImage, ...]:
    """``--kernel-image``: the kernels to boot, each a driver ``kernel@<release>`` of the
    run's settings (adapters.vm)."""
    from adapters.vm.image import ImageError, find_all

    images = config.getoption(KERNEL_IMAGE_OPTION)
    modules = config.getoption(KERNEL_MODULES_OPTION)
    if modules and len(images) != 1:
        raise pytest.UsageError(f"{KERNEL_MODULES_OPTION} goes with one {KERNEL_IMAGE_OPTION}")
    try:
        return find_all(images, modules)
    except (ImageError, OSError) as problem:
        raise pytest.UsageError(f"{KERNEL_IMAGE_OPTION}: {problem}") from None


def driver_names(config: pytest.Config) -> list[str]:
    """The drivers of the run: ``--driver`` (default reference), ``kernel`` replaced by the
    ``--kernel-image`` kernels when there are any."""
    names = config.getoption(DRIVER_OPTION) or ["reference"]
    kernels = [image.label for image in driver_settings_of(config).kernel_images]
    if kernels:
        names = [name for name in names if name != "kernel"] + kernels
    return names


def run_config_of(config: pytest.Config) -> RunConfig:
    """The run's configuration (built by pytest_configure, its budget share by the
    collection)."""
    return config.stash.get(RUN_CONFIG, RunConfig())


def driver_settings_of(config: pytest.Config) -> DriverSettings:
    """The run's driver settings (built by pytest_configure)."""
    return run_config_of(config).driver_settings


@pytest.fixture(scope="session")
def run_config(request: pytest.FixtureRequest) -> RunConfig:
    """The run's configuration (``--expectations``, the share of a duration ``--budget``,
    ``--hypothesis-show-statistics``, the driver settings): what ``run_machine``,
    ``run_scenario`` and the records' readers take."""
    return run_config_of(request.config)


@pytest.fixture(scope="session")
def driver_settings(request: pytest.FixtureRequest) -> DriverSettings:
    """The run's driver settings (``--driver-cmd``, ``--profile``, ``--driver-timeout``,
    ``--kernel-image``)."""
    return driver_settings_of(request.config)


def corpus_dir(config: pytest.Config) -> Path:
    """The user's corpus directory (``--corpus``, default ``.unionspec/corpus``)."""
    chosen = config.getoption(CORPUS_OPTION)
    return Path(chosen) if chosen else config.rootpath / ".unionspec" / "corpus"


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected: the items that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the items of a known divergence xfail(strict=True) (conformance.records.expectations),
    and run the corpus replays (``test_corpus``) before anything generates. Under a
    duration budget, each machine item gets an equal share of it (conformance.timebudget;
    under xdist the workers share the items, so the run takes the duration divided by
    their number)."""
    import attrs

    from conformance import timebudget
    from conformance.records import expectations

    duration = timebudget.seconds(config.getoption(BUDGET_OPTION))
    machines = [
        item
        for item in items
        if {"conformance_settings", "feature_settings"} & set(getattr(item, "fixturenames", ()))
    ]
    share = None if duration is None else duration / max(1, len(machines))
    run_config = attrs.evolve(run_config_of(config), seconds_per_run=share)
    config.stash[RUN_CONFIG] = run_config

    # the corpus's programs replay before anything is generated
    items.sort(key=lambda item: CORPUS_FIXTURE not in getattr(item, "fixturenames", ()))
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        mark = item.get_closest_marker(RECORDS_MARK)
        if mark is None or "driver" not in params or "options" not in params:
            continue
        scope = mark.args[0] if mark.args else "machine"
        label = params["options"].label
        if scope == "feature":
            found = expectations.matching(
                params["driver"], params["feature"].id, label, run_config
            )
        elif scope == "machine":
            found = expectations.matching(params["driver"], "", label, run_config)
        elif scope == "scenario":
            found = expectations.matching_scenario(
                params["driver"], params["scenario"].id, label, run_config
            )
        else:
            raise pytest.UsageError(f"{item.nodeid}: records scope {scope!r} is not one of "
                                    "feature, machine, scenario")
        if found:
            from conformance.records.behaviours import RecordedBehaviours

            reason = f"known divergence: {expectations.describe(found)}"
            item.add_marker(
                pytest.mark.xfail(strict=True, reason=reason, raises=RecordedBehaviours)
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Save the failing examples of an unexpected divergence in the corpus (a known one,
    recorded behaviours only, has its reproducer in conformance/records/expectations.toml)."""
    yield
    if call.when != "call" or call.excinfo is None:
        return
    from conformance.records import corpus, expectations
    from conformance.records.behaviours import RecordedBehaviours

    failed = call.excinfo.value
    if isinstance(failed, RecordedBehaviours):
        return
    from conformance.records.failure import failures_of

    for failure in failures_of(failed):
        if failure.driver.startswith(("fault:", "imitation")):
            continue  # the project's own seeded faults and imitations
        version = expectations.installed_version(
            failure.driver, driver_settings_of(item.config)
        )
        with contextlib.suppress(OSError):
            corpus.save(corpus.from_failure(failure, version), corpus_dir(item.config))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        chosen = metafunc.config.getoption(ENGINE_OPTION) or ["reference"]
        cases = [(name, profile) for name in chosen for profile in ENGINES[name]]
        # One engine (one dockerd) per session and worker: every test starts afresh from
        # start_image, which removes every container and volume.
        ids = [f"{n}:{p}" for n, p in cases]
        metafunc.parametrize("engine", cases, indirect=True, ids=ids, scope="session")
    if "corpus_program" in metafunc.fixturenames:
        from conformance.records import corpus

        try:
            programs = corpus.load([corpus.PROJECT_CORPUS, corpus_dir(metafunc.config)])
        except corpus.CorpusError as problem:
            raise pytest.UsageError(str(problem)) from None
        metafunc.parametrize(
            "corpus_program", programs, ids=[program.name for program in programs]
        )
    if "driver" in metafunc.fixturenames:
        names = driver_names(metafunc.config)
        metafunc.parametrize("driver", names, indirect=True, ids=names)


def _cannot_run(request: pytest.FixtureRequest, message: str) -> NoReturn:
    """Skip with the reason, or fail when drivers are required (a skip in CI hides a gap)."""
    if request.config.getoption(REQUIRE_OPTION):
        pytest.fail(message + f" ({REQUIRE_OPTION} is on)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[Any]:
    from adapters import registry
    from adapters.base import DriverUnavailable

    name = request.param
    try:
        instance = registry.make(name, driver_settings_of(request.config))
    except DriverUnavailable as reason:
        _cannot_run(request, f"driver {name!r} cannot run here: {reason}")
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A container engine (adapters.engines.base.EngineDriver) under one profile."""
    from adapters.base import DriverUnavailable
    from adapters.engines import registry as engine_registry

    name, profile = request.param
    try:
        instance = engine_registry.make(name, profile)
    except DriverUnavailable as reason:
        _cannot_run(request, f"engine {name!r} cannot run here: {reason}")
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def conformance_settings(request: pytest.FixtureRequest) -> Any:
    from conformance.budgets import budget_settings

    return budget_settings(request.config.getoption(BUDGET_OPTION))


@pytest.fixture
def feature_settings(request: pytest.FixtureRequest) -> Any:
    from conformance.budgets import feature_budget_settings

    return feature_budget_settings(request.config.getoption(BUDGET_OPTION))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """--hypothesis-show-statistics for the suite's items: they run their state machine's
    @given test inside a plain test, which Hypothesis's plugin does not collect from; its
    statistics (with the rare states reached as events, conformance.generation.coverage) are kept on
    the item for that plugin to print."""
    statistics = item.config.getoption("hypothesis_show_statistics", False)
    if not statistics or getattr(item.obj, "is_hypothesis_test", False):  # type: ignore[attr-defined]
        yield
        return
    from hypothesis.statistics import collector, describe_statistics

    def note_statistics(stats: Any) -> None:
        stats["nodeid"] = item.nodeid
        text = describe_statistics(stats)
        earlier = getattr(item, "hypothesis_statistics", "")
        item.hypothesis_statistics = f"{earlier}\n{text}" if earlier else text  # type: ignore[attr-defined]

    with collector.with_value(note_statistics):
        yield
