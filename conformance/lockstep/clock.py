"""A section clock: where a run's wall time goes (used by the benchmark)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs


@attrs.define
class Clock:
    seconds: dict[str, float] = attrs.field(factory=dict)
    counts: dict[str, int] = attrs.field(factory=dict)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.counts[name] = self.counts.get(name, 0) + 1
