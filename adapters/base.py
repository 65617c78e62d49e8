"""The one small interface every driver implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from reference.layer import StackSpec
from reference.ops import Op
from reference.options import Options
from reference.outcome import Outcome
from reference.view import LayerImage, View


class DriverUnavailable(Exception):
    """The driver cannot run on this machine; the message says why (reported as a skip)."""


class DriverFailure(Exception):
    """The driver broke (mount refused, hung, crashed); the message names what and where."""


class DriverHung(DriverFailure):
    """The driver did not answer within the configured time."""


@runtime_checkable
class Driver(Protocol):
    """An overlay implementation under test.

    The life of a driver: ``mount`` a stack of layers (any number of times: each example
    mounts fresh layers), ``run`` operations, ``view`` the merged tree and ``images`` of the
    layers on disk after each step, and finally ``close``, which must leave no mount and no
    process behind.
    """

    name: str

    def mount(self, stack: StackSpec, options: Options) -> None:
        """Write the lower layers, an empty upper (unless read-only) and mount them."""

    def run(self, op: Op) -> Outcome:
        """Execute one operation; an OSError becomes ``Err(<errno name>)``."""

    def view(self) -> View:
        """The merged view as seen through the mount."""

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        """The upper layer (None when read-only) and the lower layers, decoded from disk."""

    def close(self) -> None:
        """Unmount everything and end every process this driver started."""
