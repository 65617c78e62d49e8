"""Swarm testing: each example enables a random subset of operation and object kinds.

With every kind always enabled, a program of 30 steps spreads over 20 operation kinds and
rarely does three related things in a row; with a subset, long runs of related operations
(rmdir, mkdir, rename on the same names) happen (Groce et al., "Swarm Testing", ISSTA
2012; Hypothesis's stateful runner does the same with its feature flags).

The first choice is how much to leave out (none, a quarter, a half, three quarters of the
kinds). The kinds are then decided a few at a time: one choice below 256 (where
Hypothesis draws integers uniformly) holds a base-4 digit per operation kind, or a base-8
digit per object kind, and a kind is left out when its digit is among the top ones (one,
two or three of the four, by the first choice). One choice per kind cost more than the
rest of the example's setup (a choice costs about as much to draw whatever its range).
Every choice shrinks towards 0, "enabled", so a shrunk counterexample does not depend on
the swarm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from hypothesis.internal.conjecture.data import ConjectureData

#: Probability of leaving each kind out, by the first choice (index 0: none left out).
LEAVE_OUT = (0.0, 0.25, 0.5, 0.75)
#: Object kinds a layer may leave out (conformance.generation.strategies.Layers ``without``).
OBJECT_KINDS = ("symlink", "fifo", "hardlink", "whiteout", "opaque")


@attrs.frozen
class Swarm:
    """The operation kinds (rule names) this example draws from, and the object kinds its
    layers leave out."""

    rules: tuple[str, ...]
    without: frozenset[str] = frozenset()


#: Operation kinds decided by one choice (base-4 digits), and object kinds (base-8 digits).
RULES_PER_CHOICE = 4
OBJECTS_PER_CHOICE = 2


def draw_swarm(data: ConjectureData, rules: tuple[str, ...]) -> Swarm:
    level = data.draw_integer(0, len(LEAVE_OUT) - 1)
    if level == 0:
        return Swarm(rules)
    # LEAVE_OUT[level] of the base-4 digits leave a rule out: the top ``level`` ones
    left = _digits(data, len(rules), 4, RULES_PER_CHOICE)
    enabled = tuple(rule for rule, digit in zip(rules, left, strict=True) if digit < 4 - level)
    # object kinds are left out half as often: a layer of plain files and dirs is dull
    kinds = _digits(data, len(OBJECT_KINDS), 8, OBJECTS_PER_CHOICE)
    without = frozenset(
        kind for kind, digit in zip(OBJECT_KINDS, kinds, strict=True) if digit >= 8 - level
    )
    return Swarm(enabled or rules, without)


def _digits(data: ConjectureData, count: int, base: int, per_choice: int) -> list[int]:
    """``count`` digits in ``base``, ``per_choice`` of them from each choice."""
    digits: list[int] = []
    while len(digits) < count:
        n = min(per_choice, count - len(digits))
        value = data.draw_integer(0, base**n - 1)
        digits.extend((value // base**i) % base for i in range(n))
    return digits
