"""Swarm testing: each example enables a random subset of operation and object kinds.

With every kind always enabled, a program of 30 steps spreads over 20 operation kinds and
rarely does three related things in a row; with a subset, long runs of related operations
(rmdir, mkdir, rename on the same names) happen (Groce et al., "Swarm Testing", ISSTA
2012; Hypothesis's stateful runner does the same with its feature flags).

The first choice is how much to leave out (none, a quarter, a half, three quarters of the
kinds); each kind is then one "leave it out?" choice. Every choice shrinks towards
"enabled", so a shrunk counterexample does not depend on the swarm.
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


def draw_swarm(data: ConjectureData, rules: tuple[str, ...]) -> Swarm:
    p = LEAVE_OUT[data.draw_integer(0, len(LEAVE_OUT) - 1)]
    if p == 0.0:
        return Swarm(rules)
    enabled = tuple(rule for rule in rules if not data.draw_boolean(p))
    # object kinds are left out half as often: a layer of plain files and dirs is dull
    without = frozenset(kind for kind in OBJECT_KINDS if data.draw_boolean(p / 2))
    return Swarm(enabled or rules, without)
