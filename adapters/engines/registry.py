"""Container engines by name, and the engine profiles (reference/engines.py) each runs under.

``reference`` (the container model itself) and ``kernel-mounts`` (real kernel mounts, the
engine's decisions taken from the profile) run under every profile; a real engine runs
under its own profile only. Used by the pytest plugin (``--engine``) and by ``certify``.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from typing import TYPE_CHECKING

from adapters.base import DriverUnavailable

if TYPE_CHECKING:
    from adapters.engines.base import EngineDriver

#: Engine name -> the profiles (reference/engines.py PROFILES) it is checked under.
ENGINES: dict[str, tuple[str, ...]] = {
    "reference": ("docker", "podman", "kubernetes"),
    "kernel-mounts": ("docker", "podman", "kubernetes"),
    "docker": ("docker",),
    "podman": ("podman",),
}

#: The command whose ``--version`` names a real engine's version.
VERSION_COMMANDS: dict[str, list[str]] = {
    "docker": ["dockerd", "--version"],
    "podman": ["podman", "--version"],
}


def unavailable_reason(name: str) -> str | None:
    """Why engine ``name`` cannot run here, or None."""
    if name == "reference":
        return None
    if name == "kernel-mounts":
        from adapters.engines.kernel_mounts import KernelMountsEngine

        return KernelMountsEngine.unavailable_reason()
    from adapters.engines.real import DockerEngine, PodmanEngine

    return {"docker": DockerEngine, "podman": PodmanEngine}[name].unavailable_reason()


def make(name: str, profile: str) -> EngineDriver:
    """Engine ``name`` under ``profile``; DriverUnavailable (with the reason) when it
    cannot run here."""
    reason = unavailable_reason(name)
    if reason is not None:
        raise DriverUnavailable(reason)
    if name == "reference":
        from adapters.engines.base import ReferenceEngine

        return ReferenceEngine(profile)
    if name == "kernel-mounts":
        from adapters.engines.kernel_mounts import KernelMountsEngine

        return KernelMountsEngine(profile)
    from adapters.engines.real import DockerEngine, PodmanEngine

    return {"docker": DockerEngine, "podman": PodmanEngine}[name]()


def version(name: str) -> str | None:
    """The engine's version: a real engine's ``--version`` line, the kernel's release for
    kernel-mounts, None for the model (or an engine that is not installed)."""
    if name == "kernel-mounts":
        return f"Linux {platform.release()}"
    command = VERSION_COMMANDS.get(name)
    if command is None or shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None
