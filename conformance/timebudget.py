"""Time budgets: ``--budget 10m`` explores until the time is spent, spread over the cells.

A budget is a name (quick, standard, deep: conformance.budgets) or a duration such as
``90s``, ``10m``, ``1h30m``. Under a duration every lockstep run (one cell of certify, one
machine item of the pytest plugin) gets an equal share of it (the run's
``seconds_per_run``, conformance.run_config, computed by certify and by the plugin) and
runs the standard budget's Hypothesis test again and again, each round from another seed,
until its share is spent. A round is not cut short,
so a run takes at least one round, and the last round may end past the share.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

NAMES = ("quick", "standard", "deep")
#: The settings profile a duration uses for each round.
ROUND_PROFILE = "standard"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(budget: str) -> float | None:
    """The duration of ``budget`` in seconds, None for a budget name; ValueError for
    anything else."""
    if budget in NAMES:
        return None
    found = _DURATION.match(budget)
    if not budget or found is None or not any(found.groups()):
        raise ValueError(
            f"invalid choice: {budget!r} (a budget is {', '.join(NAMES)} or a duration "
            "like 90s, 10m, 1h30m)"
        )
    hours, minutes, secs = (int(part or 0) for part in found.groups())
    total = hours * 3600 + minutes * 60 + secs
    if total <= 0:
        raise ValueError(f"invalid choice: {budget!r} (a budget's duration must be over 0s)")
    return float(total)


def named_budget(budget: str) -> str:
    """The settings profile of ``budget``: its own name, or the one a duration's rounds use."""
    return budget if budget in NAMES else ROUND_PROFILE


def budget_arg(text: str) -> str:
    """argparse ``type``: a budget name or a duration, else a one-line usage error."""
    import argparse

    try:
        seconds(text)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    return text


def explore(run_round: Callable[[int], None], budget_seconds: float) -> int:
    """Call ``run_round(0)``, ``run_round(1)``, ... until ``budget_seconds`` have passed
    (at least once); the number of rounds run. A round that fails ends it (its error
    propagates)."""
    end = time.monotonic() + budget_seconds
    rounds = 0
    while True:
        run_round(rounds)
        rounds += 1
        if time.monotonic() >= end:
            return rounds
