"""A run's configuration: one frozen value, built once from the options (by ``certify`` and
by the pytest plugin, :func:`conformance.pytest_plugin.run_config_of`) and passed explicitly
to what reads it: ``run_machine``, ``certify_cell``, the records' readers
(:mod:`conformance.records.expectations`), the reports, and certify's workers (in their
task configuration). No module keeps any of it in a global: a run leaves every module as
it found it (tests/test_run_config.py). A caller without options (a test) gets
:data:`DEFAULT_RUN`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from adapters.settings import DEFAULT, DriverSettings


def _path(path: str | Path | None) -> str | None:
    return str(path) if path else None


def _positive(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, not {value}")


@attrs.frozen
class RunConfig:
    """``expectations_path``: the file of recorded behaviours (``--expectations``; None:
    conformance/records/expectations.toml). ``seconds_per_run``: how long each lockstep run
    explores, its share of a duration budget (``--budget 10m`` spread over the cells,
    :mod:`conformance.timebudget`; None: one run of the named budget). ``observe_machine``:
    what each machine class goes through before it runs
    (:func:`conformance.generation.coverage.observed` under ``--hypothesis-show-statistics``,
    each rare state reached an event; None: the class as it is). ``driver_settings``: the
    drivers' settings (:mod:`adapters.settings`)."""

    expectations_path: str | None = attrs.field(default=None, converter=_path)
    seconds_per_run: float | None = attrs.field(default=None, validator=_positive)
    observe_machine: Callable[[type], type] | None = None
    driver_settings: DriverSettings = DEFAULT


#: No option given.
DEFAULT_RUN = RunConfig()
