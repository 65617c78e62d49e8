"""The registry builds drivers with the configured request timeout (``--driver-timeout``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters import registry
from adapters.base import DriverUnavailable


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    registry.configure()


def test_the_configured_timeout_reaches_a_sandboxed_driver() -> None:
    registry.configure(timeout=2.5)
    try:
        driver = registry.make("kernel")
    except DriverUnavailable as reason:
        pytest.skip(str(reason))
    try:
        assert driver.timeout == 2.5
    finally:
        driver.close()


def test_a_factory_without_a_timeout_is_built_as_it_is() -> None:
    registry.configure(timeout=2.5)
    driver = registry.make("reference")
    assert driver.name == "reference"
    driver.close()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_timeout_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        registry.configure(timeout=bad)
