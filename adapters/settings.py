"""A run's driver settings: one frozen value, built once (by ``certify`` from its options,
by the pytest plugin from its own) and passed explicitly to :mod:`adapters.registry`,
which binds it into the driver classes it hands out (``with_settings``), also in workers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs

from adapters.base import AdapterError
from adapters.vm.image import KernelImage


class SettingsError(AdapterError, ValueError):
    """A setting that cannot be used; the message is one line naming the option."""


def _resolved(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


#: The longest driver timeout accepted (a week): more is a mistake, and ``inf`` or 1e20
#: cannot be a socket timeout (SO_SNDTIMEO) at all.
MAX_TIMEOUT = 7 * 24 * 3600.0


def _positive(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not 0 < value <= MAX_TIMEOUT:
        raise SettingsError(
            f"the driver timeout must be a positive number of seconds, at most "
            f"{MAX_TIMEOUT:g}, not {value}"
        )


@attrs.frozen
class DriverSettings:
    """``driver_cmd``: the command template of the generic ``fuse`` driver
    (``--driver-cmd``). ``driver_profile``: a driver profile file (TOML,
    adapters/drivers/driver_profile.py) replacing a FUSE preset's own (``--profile``). ``timeout``:
    seconds a driver request may take before the driver is hung (``--driver-timeout``;
    None: each driver's own default, 30 s for the sandboxed drivers). ``kernel_images``:
    the kernels to boot in a VM (``--kernel-image``, found by
    :func:`adapters.vm.image.find_all`), each a driver ``kernel@<release>``."""

    driver_cmd: str | None = attrs.field(default=None, converter=lambda cmd: cmd or None)
    driver_profile: str | None = attrs.field(default=None, converter=_resolved)
    timeout: float | None = attrs.field(default=None, validator=_positive)
    kernel_images: tuple[KernelImage, ...] = attrs.field(default=(), converter=tuple)


#: No setting given.
DEFAULT = DriverSettings()

_C = TypeVar("_C", bound="Configurable")


class Configurable:
    """A driver class that reads the run's :class:`DriverSettings` from ``settings`` (its
    class methods, such as ``unavailable_reason``, too): the registry hands out the class
    bound to the run's settings."""

    settings: ClassVar[DriverSettings] = DEFAULT

    @classmethod
    def with_settings(cls: type[_C], settings: DriverSettings) -> type[_C]:
        """This class bound to ``settings`` (the class itself for the defaults)."""
        if settings == cls.settings:
            return cls
        return _bound(cls, settings)


@functools.cache
def _bound(cls: type, settings: DriverSettings) -> type:
    return type(
        cls.__name__,
        (cls,),
        {"settings": settings, "__module__": cls.__module__, "__qualname__": cls.__qualname__},
    )
