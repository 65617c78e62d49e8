"""The Linux kernel overlayfs driver.

The executor machinery (a private mount namespace, ops in a chroot of the mount, timeouts)
lives in :mod:`adapters.sandbox.namespace` and :mod:`adapters.sandbox.executor`, shared with the
FUSE
drivers; the kernel driver adds its availability checks, and its executor mounts overlayfs
with ``mount(2)``, every option passed explicitly (``redirect_dir``, ``index``,
``metacopy``, ``nfs_export=off``, ``xino=off``; never module defaults).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from typing import Any

import attrs

from adapters.sandbox.namespace import CLOSE_GRACE, PROJECT_ROOT, START_TIMEOUT, SandboxedDriver
from reference.mounting import MountSpec

__all__ = ["CLOSE_GRACE", "PROJECT_ROOT", "START_TIMEOUT", "KernelDriver"]

CAP_SYS_ADMIN = 21

_modprobe_tried = False


def _overlay_registered() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


class KernelDriver(SandboxedDriver):
    """Linux overlayfs, mounted in a private mount namespace by a sandboxed executor."""

    name = "kernel"
    capabilities = attrs.evolve(SandboxedDriver.capabilities, interchange_reader=True)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why the driver cannot run here, or None when it can."""
        global _modprobe_tried
        if not sys.platform.startswith("linux"):
            return f"overlayfs needs Linux (this is {sys.platform})"
        if os.geteuid() != 0:
            return f"the kernel driver needs root (euid is {os.geteuid()})"
        if not _has_cap_sys_admin():
            return "the kernel driver needs CAP_SYS_ADMIN to mount (not in CapEff)"
        if not _overlay_registered() and not _modprobe_tried:
            _modprobe_tried = True
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["modprobe", "overlay"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=30,
                    check=False,
                )
        if not _overlay_registered():
            return "overlay is not in /proc/filesystems (modprobe overlay did not help)"
        return None

    @classmethod
    def about(cls) -> dict[str, Any]:
        """What a report records of the driver (registry.about): the running kernel."""
        return {"version": platform.release()}

    def __enter__(self) -> KernelDriver:
        return self

    def try_mount(self, spec: MountSpec) -> str:
        """Mount validation: ``"ok"`` or the errno name of mounting ``spec`` in the
        executor's namespace (adapters.sandbox.executor.try_mount; nothing stays mounted)."""
        return self._call("try_mount", spec, timeout=self._mount_timeout())


def redirect_always_follow() -> bool:
    """The overlay module parameter the mount-validation rules depend on (Y unless the
    kernel was built or loaded otherwise)."""
    try:
        with open("/sys/module/overlay/parameters/redirect_always_follow") as f:
            return f.read().strip() == "Y"
    except OSError:
        return True
