"""The one small interface every driver implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from reference.layer import StackSpec
from reference.ops import Op
from reference.options import Options
from reference.outcome import Outcome
from reference.view import LayerImage, View


class AdapterError(Exception):
    """Every error of the adapters package."""


class DriverUnavailable(AdapterError):
    """The driver cannot run on this machine; the message says why (reported as a skip)."""


class DriverFailure(AdapterError):
    """The driver broke (mount refused, hung, crashed); the message names what and where."""


class DriverHung(DriverFailure):
    """The driver did not answer within the configured time."""


@attrs.frozen
class Capabilities:
    """What a driver declares about itself, read (never probed) by the claims, the state
    machine, layer interchange and the reports. The defaults are a kernel-like mount that
    claims everything; a FUSE driver's come from its profile
    (adapters/drivers/driver_profile.py)."""

    #: The engine itself, in process: no mount, no layers on disk (the reference).
    in_process: bool = False
    #: The reader other drivers' layers are checked with in layer interchange (the kernel:
    #: its own form is the one every other is held to).
    interchange_reader: bool = False
    #: A sandboxed mount: ``mounter_settings()`` says how it mounts (a reproducer mounts the
    #: same way).
    mounts: bool = False
    #: ``run_and_observe(op)``: the operation and the observation after it in one round trip.
    one_round_trip: bool = False
    #: The option sets (``Options.label``) claimed; None: every one.
    options: tuple[str, ...] | None = None
    #: Who makes the claims, for messages (a profile's name).
    claimed_by: str = ""
    #: user.* xattrs can be set and seen through the mount.
    xattrs: bool = True
    #: Callers other than root are claimed (reference.ops.CALLERS; issue 18).
    permissions: bool = True

    #: mtime and ctime follow the kernel's rules (conformance.lockstep.compare.TimeMap) and
    #: utimensat works: the times feature and the whole machine compare them.
    times: bool = True
    #: The upper layer's markers can be decoded (else only the view is compared).
    upper_decodable: bool = True
    #: The upper layer is written in the kernel's form (chardev whiteouts, opaque xattr).
    kernel_form: bool = True
    #: How the upper marks whiteouts and opaque directories, for messages.
    upper_form: str = "whiteout chardev, opaque xattr"


@runtime_checkable
class Driver(Protocol):
    """An overlay implementation under test.

    The life of a driver: ``mount`` a stack of layers (any number of times: each example
    mounts fresh layers), ``run`` operations, ``view`` the merged tree and ``images`` of the
    layers on disk after each step, and finally ``close``, which must leave no mount and no
    process behind.
    """

    name: str
    #: What the driver declares (a class attribute, or set by ``__init__`` from a profile).
    capabilities: Capabilities

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
