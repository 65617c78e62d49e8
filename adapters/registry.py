"""Drivers by name: the built-in ones and those registered by third parties.

A third-party driver is a class (or factory) registered in the ``unionspec.drivers``
entry-point group; it implements :class:`adapters.base.Driver` and may define a classmethod
``unavailable_reason() -> str | None`` to say why it cannot run on this machine.

The run's settings (``--driver-cmd``, ``--profile``, ``--driver-timeout``,
``--kernel-image``) are one frozen :class:`adapters.settings.DriverSettings`, passed to each
function here: a built-in driver class gets it bound (``with_settings``); the timeout is
passed to every factory that takes a ``timeout`` keyword; each of its kernel images is a
driver ``kernel@<release>`` (adapters.vm.driver). Nothing here is written at run time.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from adapters.base import AdapterError, Driver, DriverUnavailable
from adapters.settings import DEFAULT, Configurable, DriverSettings

ENTRY_POINT_GROUP = "unionspec.drivers"

#: Built-in drivers: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "reference": "adapters.drivers.reference:ReferenceDriver",
    "kernel": "adapters.drivers.kernel:KernelDriver",
    "fuse-overlayfs": "adapters.drivers.fuse:FuseOverlayfsDriver",
    "unionfs-fuse": "adapters.drivers.fuse:UnionfsFuseDriver",
    "fuse": "adapters.drivers.fuse:GenericFuseDriver",
}


def kernel_drivers(settings: DriverSettings = DEFAULT) -> dict[str, Callable[..., Driver]]:
    """The kernels of ``settings.kernel_images`` (``--kernel-image``): ``kernel@<release>``
    -> its driver class (adapters.vm.driver)."""
    if not settings.kernel_images:
        return {}
    from adapters.vm.driver import driver_for

    return {image.label: driver_for(image) for image in settings.kernel_images}


class UnknownDriver(AdapterError):
    pass


def check(chosen: Iterable[str], settings: DriverSettings = DEFAULT) -> None:
    """Every name is a known driver under ``settings`` (before a run starts;
    :func:`factory` refuses an unknown one with the same message, :func:`unknown`)."""
    known = names(settings)
    for name in chosen:
        if name not in known:
            raise unknown(name, known)


def unknown(name: str, known: list[str] | None = None) -> UnknownDriver:
    """The refusal of an unknown driver ``name``, naming the known ones."""
    known = names() if known is None else known
    return UnknownDriver(f"unknown driver {name!r} (known: {', '.join(known)})")


def names(settings: DriverSettings = DEFAULT) -> list[str]:
    """Every driver name known here, built in first, then the kernels of ``settings``."""
    extra = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    kernels = kernel_drivers(settings)
    return [*BUILTIN, *kernels, *(name for name in extra if name not in BUILTIN)]


def factory(name: str, settings: DriverSettings = DEFAULT) -> Callable[..., Driver]:
    """The class (or factory) of driver ``name``; a built-in class bound to ``settings``."""
    kernels = kernel_drivers(settings)
    if name in kernels:
        return _bound(kernels[name], settings)
    if name in BUILTIN:
        module, _, attribute = BUILTIN[name].partition(":")
        return _bound(getattr(importlib.import_module(module), attribute), settings)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _bound(ep.load(), settings)
    raise unknown(name, names(settings))


def _bound(build: Callable[..., Driver], settings: DriverSettings) -> Callable[..., Driver]:
    """``build`` bound to the run's settings when it declares it reads them (a
    :class:`adapters.settings.Configurable`, as every built-in driver is)."""
    if isinstance(build, type) and issubclass(build, Configurable):
        return build.with_settings(settings)
    return build


def unavailable_reason(name: str, settings: DriverSettings = DEFAULT) -> str | None:
    """Why ``name`` cannot run here, or None when it can."""
    probe = getattr(factory(name, settings), "unavailable_reason", None)
    return probe() if probe is not None else None


def installed_version(name: str, settings: DriverSettings = DEFAULT) -> str | None:
    """The installed version of driver ``name`` as its profile's ``version_command`` prints
    it (a driver class may declare ``installed_version()``; None: it does not)."""
    probe = getattr(factory(name, settings), "installed_version", None)
    return probe() if probe is not None else None


def about(name: str, settings: DriverSettings = DEFAULT) -> dict[str, Any]:
    """What a report records of driver ``name``: ``version``, ``command``,
    ``options_claimed`` and ``profile`` as its class declares them (``about()``, optional
    for third-party drivers: the one place that asks)."""
    declared = getattr(factory(name, settings), "about", None)
    return dict(declared()) if declared is not None else {}


def make(name: str, settings: DriverSettings = DEFAULT) -> Driver:
    """A driver ``name`` made with the run's ``settings``."""
    reason = unavailable_reason(name, settings)
    if reason is not None:
        raise DriverUnavailable(reason)
    build = factory(name, settings)
    if settings.timeout is not None and _takes_timeout(build):
        return build(timeout=settings.timeout)
    return build()


def _takes_timeout(build: Callable[..., Driver]) -> bool:
    try:
        return "timeout" in inspect.signature(build).parameters
    except (TypeError, ValueError):
        return False
