"""The unionspec pytest plugin: wires options to drivers and Hypothesis settings.

Options (group "unionspec"):

- ``--driver NAME`` (repeatable): the drivers to run the conformance tests against
  (default: ``reference``). Names come from :mod:`adapters.registry`.
- ``--budget quick|standard|deep``: how many examples the state machines explore.
- ``--driver-cmd TEMPLATE``: the command template of the generic ``fuse`` driver
  (see :mod:`adapters.fuse`);
- ``--profile PATH``: a driver profile (TOML, :mod:`adapters.profile`) for the FUSE
  drivers; it replaces a preset's own profile;
- ``--driver-timeout SECONDS``: how long one request to a driver may take before its
  verdict is "hung at step N" (default: the driver's own, 30 s for the sandboxed drivers);
- ``--require-drivers``: a driver that cannot run here fails instead of skipping; on by
  default when the ``CI`` environment variable is set, since a skip in CI hides a gap;
- ``--engine NAME`` (repeatable): the container engines of tests/test_container_engines.py
  (default ``reference``; ``kernel-mounts``, ``docker``, ``podman``), each under the
  profiles of :data:`ENGINES`;
- ``--expectations PATH``: the known divergences of installed driver versions
  (:mod:`conformance.expectations`; default ``conformance/expectations.toml``). The
  ``test_feature`` and ``test_state_machine`` items of a matching driver, version, feature
  and option set are marked ``xfail(strict=True)``.

A SIGTERM ends the run as Ctrl-C does (:mod:`conformance.interrupt`): drivers are
closed and pytest reports what ran.

Fixtures: ``driver`` (one per ``--driver``, closed after the test) and
``conformance_settings`` (the Hypothesis settings of the chosen budget) and
``feature_settings`` (those of one feature's machine, :mod:`conformance.features`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

DRIVER_OPTION = "--driver"
BUDGET_OPTION = "--budget"
REQUIRE_OPTION = "--require-drivers"
DRIVER_CMD_OPTION = "--driver-cmd"
PROFILE_OPTION = "--profile"
EXPECTATIONS_OPTION = "--expectations"
ENGINE_OPTION = "--engine"
#: Container engines (tests/test_container_engines.py): name -> the profiles it runs under.
ENGINES: dict[str, tuple[str, ...]] = {
    "reference": ("docker", "podman", "kubernetes"),
    "kernel-mounts": ("docker", "podman", "kubernetes"),
    "docker": ("docker",),
    "podman": ("podman",),
}
TIMEOUT_OPTION = "--driver-timeout"
BUDGET_NAMES = ("quick", "standard", "deep")


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
        choices=BUDGET_NAMES,
        help="how much the state machines explore (default: quick)",
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
        "conformance/expectations.toml)",
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
        REQUIRE_OPTION,
        action="store_true",
        default=bool(os.environ.get("CI")),
        help="fail, not skip, when a driver cannot run here (default on when $CI is set)",
    )


def pytest_configure(config: pytest.Config) -> None:
    from adapters import registry
    from conformance.interrupt import terminate_as_interrupt
    from conformance.settings import register_profiles

    terminate_as_interrupt()
    register_profiles(config.rootpath)
    try:
        registry.configure(
            driver_cmd=config.getoption(DRIVER_CMD_OPTION),
            profile=config.getoption(PROFILE_OPTION),
            timeout=config.getoption(TIMEOUT_OPTION),
        )
    except ValueError as problem:
        raise pytest.UsageError(f"{TIMEOUT_OPTION}: {problem}") from None
    known = registry.names()
    for name in config.getoption(DRIVER_OPTION):
        if name not in known:
            raise pytest.UsageError(f"unknown driver {name!r} (known: {', '.join(known)})")
    for name in config.getoption(ENGINE_OPTION):
        if name not in ENGINES:
            raise pytest.UsageError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")
    from conformance import expectations

    try:
        expectations.configure(config.getoption(EXPECTATIONS_OPTION))
    except expectations.ExpectationError as problem:
        raise pytest.UsageError(str(problem)) from None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the items of a known divergence xfail(strict=True) (conformance.expectations)."""
    from conformance import expectations

    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "driver" not in params or "options" not in params:
            continue
        name = getattr(item, "originalname", item.name)
        label = params["options"].label
        if name == "test_feature":
            found = expectations.matching(params["driver"], params["feature"].id, label)
        elif name == "test_state_machine":
            found = expectations.matching(params["driver"], "", label)
        elif name == "test_scenario":
            found = expectations.matching_scenario(params["driver"], params["scenario"].id, label)
        else:
            continue
        if found:
            reason = f"known divergence: {expectations.describe(found)}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        chosen = metafunc.config.getoption(ENGINE_OPTION) or ["reference"]
        cases = [(name, profile) for name in chosen for profile in ENGINES[name]]
        metafunc.parametrize("engine", cases, indirect=True, ids=[f"{n}:{p}" for n, p in cases])
    if "driver" in metafunc.fixturenames:
        names = metafunc.config.getoption(DRIVER_OPTION) or ["reference"]
        metafunc.parametrize("driver", names, indirect=True, ids=names)


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[Any]:
    from adapters import registry
    from adapters.base import DriverUnavailable

    name = request.param
    try:
        instance = registry.make(name)
    except DriverUnavailable as reason:
        message = f"driver {name!r} cannot run here: {reason}"
        if request.config.getoption(REQUIRE_OPTION):
            pytest.fail(message + f" ({REQUIRE_OPTION} is on)", pytrace=False)
        pytest.skip(message)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A container engine (adapters.containers_base.EngineDriver) under one profile."""
    from adapters.base import DriverUnavailable

    name, profile = request.param
    try:
        if name == "reference":
            from adapters.containers_base import ReferenceEngine

            instance: Any = ReferenceEngine(profile)
        elif name == "kernel-mounts":
            from adapters.kernel_mounts import KernelMountsEngine

            instance = KernelMountsEngine(profile)
        else:
            from adapters.real_engines import DockerEngine, PodmanEngine

            engine_class = {"docker": DockerEngine, "podman": PodmanEngine}[name]
            reason = engine_class.unavailable_reason()
            if reason is not None:
                raise DriverUnavailable(reason)
            instance = engine_class()
    except DriverUnavailable as reason:
        message = f"engine {name!r} cannot run here: {reason}"
        if request.config.getoption(REQUIRE_OPTION):
            pytest.fail(message + f" ({REQUIRE_OPTION} is on)", pytrace=False)
        pytest.skip(message)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def conformance_settings(request: pytest.FixtureRequest) -> Any:
    from conformance.settings import profile

    return profile(request.config.getoption(BUDGET_OPTION))


@pytest.fixture
def feature_settings(request: pytest.FixtureRequest) -> Any:
    from conformance.settings import feature_profile

    return feature_profile(request.config.getoption(BUDGET_OPTION))
