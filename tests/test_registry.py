"""The registry builds drivers with the run's request timeout (``--driver-timeout``),
given explicitly as part of its DriverSettings; an unknown driver is refused in one place."""

from __future__ import annotations

import pytest

from adapters import registry
from adapters.base import DriverUnavailable
from adapters.settings import DriverSettings, SettingsError


def test_the_configured_timeout_reaches_a_sandboxed_driver() -> None:
    try:
        driver = registry.make("kernel", DriverSettings(timeout=2.5))
    except DriverUnavailable as reason:
        pytest.skip(str(reason))
    try:
        assert driver.timeout == 2.5
    finally:
        driver.close()


def test_a_factory_without_a_timeout_is_built_as_it_is() -> None:
    driver = registry.make("reference", DriverSettings(timeout=2.5))
    assert driver.name == "reference"
    driver.close()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_timeout_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(SettingsError, match="positive"):
        DriverSettings(timeout=bad)


def test_settings_are_bound_to_the_class_not_kept_in_the_module() -> None:
    given = DriverSettings(driver_cmd="no-such-fuse-driver {lowerdir} {mountpoint}")
    assert registry.factory("fuse", given).settings == given
    assert registry.factory("fuse").settings == DriverSettings()
    assert not hasattr(registry, "DRIVER_CMD") and not hasattr(registry, "configure")


def test_an_unknown_driver_is_refused_with_the_known_ones() -> None:
    with pytest.raises(registry.UnknownDriver, match=r"unknown driver 'nope' .*reference"):
        registry.check(["reference", "nope"])


def test_check_and_factory_refuse_an_unknown_driver_alike() -> None:
    with pytest.raises(registry.UnknownDriver) as checked:
        registry.check(["nope"])
    with pytest.raises(registry.UnknownDriver) as made:
        registry.factory("nope")
    assert str(made.value) == str(checked.value)
