"""The pytest plugin: driver selection, skips that say why, and skips that fail in CI."""

from __future__ import annotations

import pytest

GHOST_CONFTEST = """
from adapters import registry

class Ghost:
    name = "ghost"

    @classmethod
    def unavailable_reason(cls):
        return "the ghost driver needs a haunted kernel"

import sys
sys.modules["ghost_driver"] = sys.modules[__name__]
registry.BUILTIN["ghost"] = "ghost_driver:Ghost"
"""

USES_DRIVER = """
def test_uses_driver(driver):
    assert driver.name in ("reference", "ghost")
"""


@pytest.fixture
def ghost(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(GHOST_CONFTEST)
    pytester.makepyfile(USES_DRIVER)
    return pytester


def test_unknown_driver_is_a_usage_error(ghost: pytest.Pytester) -> None:
    result = ghost.runpytest("--driver=nonesuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown driver 'nonesuch'*"])


def test_default_driver_is_the_reference(ghost: pytest.Pytester) -> None:
    result = ghost.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_uses_driver?reference? PASSED*"])


def test_unavailable_driver_is_skipped_with_its_reason(ghost: pytest.Pytester) -> None:
    result = ghost.runpytest("--driver=ghost", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*haunted kernel*"])


def test_unavailable_driver_fails_when_drivers_are_required(ghost: pytest.Pytester) -> None:
    result = ghost.runpytest("--driver=ghost", "--require-drivers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*haunted kernel*--require-drivers is on*"])


def test_ci_environment_requires_drivers(
    ghost: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = ghost.runpytest("--driver=ghost")
    result.assert_outcomes(errors=1)
