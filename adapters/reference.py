"""The reference engine as a driver: in process, no root, no mounts.

It runs the harness end to end anywhere, and it is the driver third parties can compare
their own adapters' plumbing against.
"""

from __future__ import annotations

from reference.layer import StackSpec
from reference.ops import Op
from reference.options import Options
from reference.outcome import Outcome
from reference.overlay import Overlay
from reference.view import LayerImage, View


class ReferenceDriver:
    name = "reference"

    def __init__(self) -> None:
        self._overlay: Overlay | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def mount(self, stack: StackSpec, options: Options) -> None:
        self._overlay = Overlay(stack, options)

    def run(self, op: Op) -> Outcome:
        # Where several outcomes are allowed, answer the one Linux gives.
        return self._mounted().step(op)[0]

    def view(self) -> View:
        return self._mounted().view()

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        return self._mounted().images()

    def close(self) -> None:
        self._overlay = None

    def _mounted(self) -> Overlay:
        if self._overlay is None:
            raise RuntimeError("the reference driver is not mounted")
        return self._overlay
