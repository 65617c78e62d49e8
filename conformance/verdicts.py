"""Verdicts and exit statuses: the words and numbers a run reports, in one place.

A verdict is a :class:`VerdictKind` (a ``str`` enum, so reports and JSON keep the words);
the groups below say what each means for a run.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable


class VerdictKind(enum.StrEnum):
    """The verdict of one cell (driver, feature, option set)."""

    #: The driver did what the reference allows, for every example drawn.
    CONFORMS = "conforms"
    #: The driver did something the reference does not allow.
    DIVERGES = "diverges"
    #: A divergence recorded in conformance/records/expectations.toml for the installed version.
    EXPECTED = "expected-divergence"
    #: The cell cannot run here (a missing driver, a feature not defined for the options).
    SKIPPED = "skipped"
    #: The driver's profile does not claim the cell.
    UNCLAIMED = "unclaimed"
    #: The driver did not answer in time.
    HUNG = "hung"
    #: The driver died or its mount broke.
    CRASHED = "crashed"


CONFORMS, DIVERGES, EXPECTED = VerdictKind.CONFORMS, VerdictKind.DIVERGES, VerdictKind.EXPECTED
SKIPPED, UNCLAIMED = VerdictKind.SKIPPED, VerdictKind.UNCLAIMED
HUNG, CRASHED = VerdictKind.HUNG, VerdictKind.CRASHED

#: Verdicts after which the driver is started afresh.
BROKEN = (HUNG, CRASHED)
#: Verdicts that do not fail a run: reported, not failed.
EXPECTED_OK = (CONFORMS, UNCLAIMED, SKIPPED, EXPECTED)
#: The known verdicts that fail a run (:func:`fails`); their failing examples are saved in
#: the corpus.
FAILING = (DIVERGES, *BROKEN)
#: Verdicts that say nothing is wrong or nothing was checked: no divergence to show (an
#: expected divergence is shown, but does not fail the run).
QUIET = (CONFORMS, UNCLAIMED, SKIPPED)


def fails(verdict: str) -> bool:
    """Whether ``verdict`` fails a run: every verdict but :data:`EXPECTED_OK`, so one this
    version does not know (a newer run's, in a merged report) fails it too. The exit
    status, the console, report.html and junit.xml all ask this."""
    return verdict not in EXPECTED_OK

#: Worst last: a feature's cell is the worst verdict over its option sets.
SEVERITY = {
    CONFORMS: 0,
    UNCLAIMED: 1,
    SKIPPED: 2,
    EXPECTED: 2,
    DIVERGES: 3,
    HUNG: 4,
    CRASHED: 4,
}

def count(verdicts: Iterable[str]) -> dict[str, int]:
    """Verdict -> how many, in the order each first comes (a report's ``summary``)."""
    return dict(Counter(verdicts))


def worst(verdicts: Iterable[str]) -> str:
    """The worst of ``verdicts`` (:data:`SEVERITY`; an unknown one counts as the worst)."""
    return max(verdicts, key=lambda verdict: SEVERITY.get(verdict, max(SEVERITY.values())))


#: The driver part of an engine cell's id: ``engine:<name>`` (conformance.certify.engines).
ENGINE_PREFIX = "engine:"


def is_engine(driver: str) -> bool:
    """Whether ``driver`` (a cell's driver) is a container engine, not an overlay driver."""
    return driver.startswith(ENGINE_PREFIX)


#: Exit statuses of the commands: no failing verdict; a failing one; bad usage or setup.
CONFORMANT, NONCONFORMANT, USAGE_OR_SETUP_ERROR = 0, 1, 2
#: Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130
