"""The reference engine as a driver: in process, no root, no mounts.

It runs the harness end to end anywhere, and it is the driver third parties can compare
their own adapters' plumbing against.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from adapters.base import Capabilities
from adapters.settings import Configurable
from reference.layer import StackSpec
from reference.ops import LOOKS, Op
from reference.options import Options
from reference.outcome import Outcome
from reference.overlay import Overlay
from reference.view import LayerImage, View


class ReferenceDriver(Configurable):
    """The engine, observed as any driver is. Its lower images are computed once a mount
    (the engine never writes a lower), its view and upper image once until an operation
    that does more than look (ops.LOOKS, tests/test_looks.py)."""

    name = "reference"
    capabilities = Capabilities(in_process=True)
    #: The engine a mount makes (a seeded fault's driver replaces it, adapters/faults.py).
    engine: Callable[[StackSpec, Options], Overlay] = Overlay

    def __init__(self) -> None:
        self._overlay: Overlay | None = None
        self._lowers: tuple[LayerImage, ...] | None = None
        self._seen: tuple[View, LayerImage | None] | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def about(cls) -> dict[str, Any]:
        """What a report records of the driver (registry.about)."""
        try:
            return {"version": f"unionspec {version('unionspec')} (the executable specification)"}
        except PackageNotFoundError:
            return {"version": "unionspec (the executable specification, not installed)"}

    def mount(self, stack: StackSpec, options: Options) -> None:
        self._overlay = self.engine(stack, options)
        self._lowers = self._seen = None

    def run(self, op: Op) -> Outcome:
        if type(op) not in LOOKS:
            self._seen = None
        # Where several outcomes are allowed, answer the one Linux gives.
        return self._mounted().step(op)[0]

    def view(self) -> View:
        return self._observed()[0]

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        if self._lowers is None:
            self._lowers = self._mounted().images()[1]
        return self._observed()[1], self._lowers

    def close(self) -> None:
        self._overlay = self._lowers = self._seen = None

    def _observed(self) -> tuple[View, LayerImage | None]:
        if self._seen is None:
            overlay = self._mounted()
            self._seen = overlay.view(), overlay.upper_image()
        return self._seen

    def _mounted(self) -> Overlay:
        if self._overlay is None:
            raise RuntimeError("the reference driver is not mounted")
        return self._overlay
