"""The kernel driver on another kernel: ``kernel@<release>`` (``--kernel-image PATH``).

The same executor as :class:`adapters.drivers.kernel.KernelDriver`, started inside the run's VM
booted on that kernel (:mod:`adapters.vm.machine`); the rest of the suite (reference,
comparison, reports) stays on the host. Every request's timeout is scaled by the VM's
slowdown (software emulation: :data:`adapters.vm.machine.TCG_SCALE`).
"""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import sys
from typing import Any, ClassVar

from adapters.base import DriverUnavailable
from adapters.drivers.kernel import KernelDriver
from adapters.vm import machine
from adapters.vm.image import KernelImage
from reference.kernel_features import BY_NAME, disagreements, expected


class VmKernelDriver(KernelDriver):
    """Kernel overlayfs in a VM; subclasses made by :func:`driver_for` fix the image."""

    image: ClassVar[KernelImage]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"a VM needs Linux (this is {sys.platform})"
        if shutil.which(machine.QEMU) is None:
            return f"{machine.QEMU} is not installed (apt-get install qemu-system-x86)"
        return None

    @classmethod
    def installed_version(cls) -> str:
        return cls.image.release

    @classmethod
    def about(cls) -> dict[str, Any]:
        """What a report records of the driver (registry.about): the kernel the VM boots,
        not the host's."""
        return {"version": cls.installed_version(), "kernel_image": cls.vm_info()}

    @classmethod
    def vm_info(cls) -> dict[str, object]:
        """What a report records of this kernel: its image, and the VM once booted."""
        info: dict[str, object] = {"image": str(cls.image.vmlinuz), "release": cls.image.release}
        vm = machine.running(cls.image)
        if vm is not None:
            info |= {"accel": vm.accel, "boot_seconds": round(vm.boot_seconds, 1)}
            info["features"] = {
                name: {"observed": has, "expected": expected(name, vm.release)}
                for name, has in sorted(vm.features.items())
                if name in BY_NAME
            }
            info["feature_disagreements"] = disagreements(vm.release, vm.features)
        return info

    def __init__(self, timeout: float = 30.0) -> None:
        try:
            self.vm = machine.shared(self.image)
        except (machine.VMError, OSError) as exc:
            raise DriverUnavailable(str(exc)) from None
        super().__init__(timeout=timeout * self.vm.scale)

    def _spawn(
        self, ours: socket.socket, theirs: socket.socket
    ) -> tuple[subprocess.Popen[bytes], socket.socket]:
        ours.close()
        local, session = self.vm.open_session()
        return session, local  # type: ignore[return-value]


@functools.cache
def driver_for(image: KernelImage) -> type[VmKernelDriver]:
    """The driver class of one kernel, named ``kernel@<release>`` (one class per image: the
    registry binds it to the run's settings, ``with_settings``, which caches by class)."""
    return type(
        f"KernelDriver_{image.release}", (VmKernelDriver,), {"image": image, "name": image.label}
    )
