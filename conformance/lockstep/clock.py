"""A section clock: where a run's wall time goes (used by the benchmark)."""

from __future__ import annotations

import time

import attrs


@attrs.define
class Clock:
    seconds: dict[str, float] = attrs.field(factory=dict)
    counts: dict[str, int] = attrs.field(factory=dict)

    def section(self, name: str) -> _Section:
        """A context that adds its wall time to ``name`` (a plain object, not a generator
        context manager: the benchmark times several sections in every step)."""
        return _Section(self, name)


class _Section:
    __slots__ = ("clock", "name", "started")

    def __init__(self, clock: Clock, name: str) -> None:
        self.clock, self.name = clock, name
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        seconds, counts, name = self.clock.seconds, self.clock.counts, self.name
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - self.started
        counts[name] = counts.get(name, 0) + 1
