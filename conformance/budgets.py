"""Budgets: how much each run explores, as Hypothesis settings (registered as settings
"profiles", Hypothesis's word; this project says "budget").

``quick`` is for CI and for every commit; ``standard`` and ``deep`` explore more. All
keep failing examples in ``.hypothesis/examples`` so the next run replays them first.

A shared directory (``--example-db DIR``, or ``$UNIONSPEC_EXAMPLE_DB``: storage several
machines see, or a CI artifact downloaded before the run and uploaded after) is joined to
the local one with Hypothesis's ``MultiplexedDatabase``: a failure is saved in both, and
every run replays what any run saved in either, before generating anything. The keys are
the cell's (:func:`conformance.lockstep.machine.lockstep_test`) and the test function's source, so
machines running the same version of the suite share them.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    MultiplexedDatabase,
)

from conformance.timebudget import named_budget

BUDGETS: dict[str, dict[str, object]] = {
    "quick": {"max_examples": 25, "stateful_step_count": 25},
    "standard": {"max_examples": 100, "stateful_step_count": 40},
    "deep": {"max_examples": 1000, "stateful_step_count": 60},
}

#: Per feature (conformance.features): a focused machine needs fewer examples, and there are
#: twelve of them per option set.
FEATURE_BUDGETS: dict[str, dict[str, object]] = {
    "quick": {"max_examples": 6, "stateful_step_count": 15},
    "standard": {"max_examples": 40, "stateful_step_count": 30},
    "deep": {"max_examples": 300, "stateful_step_count": 60},
}


#: The container machine (conformance.containers.machine) of ``certify``: a real engine's step costs
#: its CLI round trips (docs/performance.md, "Containers").
CONTAINER_BUDGETS: dict[str, dict[str, object]] = {
    "quick": {"max_examples": 8, "stateful_step_count": 20},
    "standard": {"max_examples": 40, "stateful_step_count": 30},
    "deep": {"max_examples": 300, "stateful_step_count": 40},
}


#: The shared example database's directory when ``--example-db`` is not given.
EXAMPLE_DB_ENV = "UNIONSPEC_EXAMPLE_DB"


def example_database(root: Path, shared: str | os.PathLike[str] | None = None) -> ExampleDatabase:
    """``root/.hypothesis/examples``, joined with the shared directory (``shared``, else
    ``$UNIONSPEC_EXAMPLE_DB``) when there is one (module doc)."""
    local = DirectoryBasedExampleDatabase(str(root / ".hypothesis" / "examples"))
    shared = shared or os.environ.get(EXAMPLE_DB_ENV)
    if not shared:
        return local
    return MultiplexedDatabase(local, DirectoryBasedExampleDatabase(os.fspath(shared)))


def register_budgets(root: Path, shared: str | os.PathLike[str] | None = None) -> None:
    """The ``unionspec-*`` profiles, failures kept in :func:`example_database`."""
    database = example_database(root, shared)
    profiles = {name: values for name, values in BUDGETS.items()}
    profiles.update({f"{name}-feature": values for name, values in FEATURE_BUDGETS.items()})
    profiles.update(
        {f"{name}-container": values for name, values in CONTAINER_BUDGETS.items()}
    )
    for name, values in profiles.items():
        settings.register_profile(
            f"unionspec-{name}",
            deadline=None,
            database=database,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            **values,
        )


def budget_settings(budget: str) -> settings:
    """The settings of the whole machine under ``budget`` (a duration: the settings of each
    of its rounds, conformance.timebudget)."""
    return settings.get_profile(f"unionspec-{named_budget(budget)}")


def feature_budget_settings(budget: str) -> settings:
    """The settings of one feature's machine under ``budget``."""
    return settings.get_profile(f"unionspec-{named_budget(budget)}-feature")


def container_budget_settings(budget: str) -> settings:
    """The settings of the container machine under ``budget``."""
    return settings.get_profile(f"unionspec-{named_budget(budget)}-container")
