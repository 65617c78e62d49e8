"""A failing example as data: what the reports, the reproducers and the corpus are made of.

A :class:`Failure` is the program Hypothesis shrank (it replays the minimal example last,
so the exception raised by that run carries it): the layers (a ``StackSpec``), the option
set, each operation with the outcomes the reference allowed and the one the driver gave,
and the divergence (its text, and the differences of the last observation as
:class:`conformance.lockstep.compare.Divergence` records). The encoding of the stack and of the
operations is their ``repr`` (valid Python), decoded by
:func:`conformance.records.programs.parse_repr`, the same as in ``expectations.toml``.
"""

from __future__ import annotations

from typing import Any

import attrs

from conformance.lockstep.compare import Divergence
from conformance.verdicts import DIVERGES
from reference import ops
from reference.layer import StackSpec
from reference.options import Options
from reference.outcome import Outcome, describe


@attrs.frozen
class TracedStep:
    """One operation of a failing program: what the reference allowed and what the driver
    gave (``actual`` None: the driver hung or crashed on it)."""

    op: ops.Op
    allowed: tuple[Outcome, ...]
    actual: Outcome | None

    @property
    def agrees(self) -> bool | None:
        return None if self.actual is None else self.actual in self.allowed

    def as_json(self) -> dict[str, Any]:
        return {
            "op": repr(self.op),
            "allowed": [describe(o) for o in self.allowed],
            "actual": None if self.actual is None else describe(self.actual),
        }


@attrs.frozen
class Failure:
    """The minimal failing example of one driver under one option set (and feature)."""

    driver: str
    options: Options
    #: The feature id ("" for the whole machine).
    feature: str
    stack: StackSpec
    steps: tuple[TracedStep, ...]
    #: The divergence as the suite reports it (one or more lines).
    divergence: str
    #: The differences of the last observation (empty: an operation's outcome differed).
    found: tuple[Divergence, ...] = ()
    #: The view fields compared (None: all; conformance.features).
    fields: frozenset[str] | None = None
    #: How the driver's executor mounts: ("kernel", {}) or ("fuse", settings); None for a
    #: driver that is not a sandboxed mount (the reference, an in-process driver).
    mounter: tuple[str, dict[str, Any]] | None = None
    #: Per observation (after the mount, after each step): the reference's inode identities
    #: of the view and of the upper layer (for the st_ino renaming check of a reproducer).
    identities: tuple[tuple[dict[str, int], dict[str, int]], ...] = ()
    #: DIVERGES, HUNG or CRASHED (conformance.verdicts).
    kind: str = DIVERGES

    @property
    def ops(self) -> tuple[ops.Op, ...]:
        return tuple(step.op for step in self.steps)

    def render(self) -> str:
        """The program as the suite prints one (mount line, then one line per step)."""
        lines = [f"mount {self.stack!r} with {self.options.label}"]
        lines += [step_text(n, step.as_json()) for n, step in enumerate(self.steps, 1)]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stack": repr(self.stack),
            "options": self.options.label,
            "feature": self.feature,
            "steps": [step.as_json() for step in self.steps],
            "divergence": self.divergence,
            "differences": [
                {"where": d.where, "field": d.field, "expected": repr(d.expected),
                 "actual": repr(d.actual)}
                for d in self.found
            ],
        }


# --- a step as the reports show it (its JSON form, TracedStep.as_json) -----------------


def differs(step: dict[str, Any]) -> bool:
    """Whether the driver's outcome is not one the reference allows (no answer: differs)."""
    return step["actual"] not in step["allowed"]


def actual_text(step: dict[str, Any]) -> str:
    """What the driver gave: its outcome, or ``(no answer)`` (it hung or crashed)."""
    return "(no answer)" if step["actual"] is None else step["actual"]


def allowed_text(step: dict[str, Any]) -> str:
    """The outcomes the reference allows, ``A or B``."""
    return " or ".join(step["allowed"])


def step_text(number: int, step: dict[str, Any]) -> str:
    """``N. op -> actual (reference: allowed)``, marked ``<-- differs`` where it does (the
    console, report.md and the failure text print steps so)."""
    mark = "   <-- differs" if differs(step) else ""
    return f"{number}. {step['op']} -> {actual_text(step)} (reference: {allowed_text(step)}){mark}"


def exception_text(exc: BaseException) -> str:
    """An exception as a verdict's detail: ``Type: message`` and its notes (Hypothesis
    adds the falsifying example as notes)."""
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes]).strip()


def failures_of(exc: BaseException) -> tuple[Failure, ...]:
    """The failing examples an exception carries (none: it carries no structured data)."""
    return tuple(getattr(exc, "failures", ()) or ())
