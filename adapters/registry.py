"""Drivers by name: the built-in ones and those registered by third parties.

A third-party driver is a class (or factory) registered in the ``unionspec.drivers``
entry-point group; it implements :class:`adapters.base.Driver` and may define a classmethod
``unavailable_reason() -> str | None`` to say why it cannot run on this machine.

The FUSE drivers read two settings given with :func:`configure` (the pytest plugin passes
``--driver-cmd`` and ``--profile``): the command template of the generic ``fuse`` driver,
and a profile file that replaces a preset's own. A third, ``timeout`` (``--driver-timeout``),
is how long any request to a driver may take before it is "hung"; it is passed to every
factory that takes a ``timeout`` keyword.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from adapters.base import Driver, DriverUnavailable

ENTRY_POINT_GROUP = "unionspec.drivers"

#: Built-in drivers: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "reference": "adapters.reference:ReferenceDriver",
    "kernel": "adapters.kernel:KernelDriver",
    "fuse-overlayfs": "adapters.fuse:FuseOverlayfsDriver",
    "unionfs-fuse": "adapters.fuse:UnionfsFuseDriver",
    "fuse": "adapters.fuse:GenericFuseDriver",
}

#: The command template of the generic ``fuse`` driver (``--driver-cmd``).
DRIVER_CMD: str | None = None
#: A profile file for the FUSE drivers, replacing a preset's (``--profile``).
PROFILE_PATH: str | None = None
#: The longest driver timeout accepted (a week): more is a mistake, and ``inf`` or 1e20
#: cannot be a socket timeout (SO_SNDTIMEO) at all.
MAX_TIMEOUT = 7 * 24 * 3600.0
#: Seconds a driver request may take before the driver is hung (``--driver-timeout``);
#: None: each driver's own default (30 s for the sandboxed drivers).
TIMEOUT: float | None = None


def configure(
    driver_cmd: str | None = None, profile: str | None = None, timeout: float | None = None
) -> None:
    """Set the drivers' settings (None leaves a setting unset)."""
    global DRIVER_CMD, PROFILE_PATH, TIMEOUT
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"the driver timeout must be a positive number of seconds, at most "
            f"{MAX_TIMEOUT:g}, not {timeout}"
        )
    DRIVER_CMD = driver_cmd or None
    PROFILE_PATH = str(Path(profile).resolve()) if profile else None
    TIMEOUT = timeout


#: Kernels given with ``--kernel-image``: ``kernel@<release>`` -> its driver class
#: (adapters.vm.driver), made by :func:`add_kernel_image`.
KERNEL_IMAGES: dict[str, Callable[[], Driver]] = {}


def add_kernel_image(path: str, modules: str | None = None) -> str:
    """Make the kernel at ``path`` a driver, ``kernel@<release>``; its name (a ValueError
    says in one line why ``path`` is no kernel)."""
    from adapters.vm.driver import driver_for
    from adapters.vm.image import find

    image = find(path, modules)
    KERNEL_IMAGES[image.label] = driver_for(image)
    return image.label


class UnknownDriver(Exception):
    pass


def names() -> list[str]:
    """Every driver name known here, built in first."""
    extra = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return [*BUILTIN, *KERNEL_IMAGES, *(name for name in extra if name not in BUILTIN)]


def factory(name: str) -> Callable[[], Driver]:
    if name in KERNEL_IMAGES:
        return KERNEL_IMAGES[name]
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise UnknownDriver(f"unknown driver {name!r} (known: {', '.join(names())})")


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here, or None when it can."""
    probe = getattr(factory(name), "unavailable_reason", None)
    return probe() if probe is not None else None


def make(name: str) -> Driver:
    reason = unavailable_reason(name)
    if reason is not None:
        raise DriverUnavailable(reason)
    build = factory(name)
    if TIMEOUT is not None and _takes_timeout(build):
        return build(timeout=TIMEOUT)
    return build()


def _takes_timeout(build: Callable[..., Driver]) -> bool:
    try:
        return "timeout" in inspect.signature(build).parameters
    except (TypeError, ValueError):
        return False
