"""Docker (Debian docker.io) and Podman, each started by the suite inside its sandbox.

The driver side of :mod:`adapters.sandbox.engine_executor`: each engine action is one CLI call
made by the executor (inside the private mount and PID namespaces); its refusal message is
mapped to a :class:`reference.container.Why` code there. Never the system daemon: dockerd
gets its own ``--data-root``, ``--exec-root``, pidfile and socket on the executor's
private tmpfs, ``--bridge=none --iptables=false --ip-masq=false``; podman its own
``--root``/``--runroot``, runc, the cgroupfs manager and the file events backend; every
container runs with ``--network none``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from adapters.base import DriverFailure, DriverUnavailable
from adapters.drivers.kernel import KernelDriver
from adapters.sandbox.namespace import SandboxedDriver
from reference import ops
from reference.container import (
    Action,
    BindMount,
    ContainerSpec,
    Refused,
    TmpfsMount,
    VolumeMount,
)
from reference.engines import PROFILES
from reference.layer import StackSpec
from reference.outcome import Ok, Outcome
from reference.view import View

#: engine -> the programs it needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "docker": ("/usr/sbin/dockerd", "/usr/bin/docker", "/usr/bin/containerd", "/usr/sbin/runc"),
    "podman": ("/usr/bin/podman", "/usr/sbin/runc", "/usr/bin/conmon"),
}


class CliEngine(SandboxedDriver):
    """A real engine driven by its CLI inside the sandbox (see the module doc)."""

    engine = ""
    executor_module = "adapters.sandbox.engine_executor"

    def __init__(self, timeout: float = 120.0) -> None:
        super().__init__(timeout)
        self.name = self.engine
        self.profile = PROFILES[self.engine]
        try:
            self.version: str = self._call("engine", self.engine, timeout=120)
        except DriverFailure as exc:
            self.close()
            raise DriverUnavailable(str(exc)) from None
        self.containers: set[str] = set()
        #: The model's names of anonymous volumes -> the engine's.
        self.anonymous: dict[str, str] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = KernelDriver.unavailable_reason()
        if reason is not None:
            return reason
        missing = [p for p in NEEDS[cls.engine] if not os.path.exists(p)]
        if missing or shutil.which("busybox", path="/bin") is None:
            return f"{cls.engine} needs {', '.join(missing or ['/bin/busybox'])}"
        return None

    def start_image(self, image: StackSpec, volumes: tuple[str, ...] = ()) -> None:
        self._call("image", image, volumes)
        self.anonymous = {}
        self.containers = set()

    def _refused(self, failure: str | None) -> Action:
        return Refused(failure) if failure else Ok(None)

    def make_host_dir(self, name: str) -> None:
        self._call("make", "host", name, 0o755)

    def host_run(self, name: str, op: ops.Op) -> Outcome:
        return self._call("run", "host", name, op)

    def host_view(self, name: str) -> View:
        return View(self._call("view", "host", name), {})

    def volume_view(self, name: str) -> View:
        return View(self._call("view", "volume", self._volume_name(name)), {})

    def _volume_name(self, name: str) -> str:
        """The engine's name of the model's volume ``name``: an anonymous one's from
        :meth:`_name_anonymous`; a named one gets a prefix (Docker wants at least two
        characters)."""
        return self.anonymous.get(name, _v(name))

    def _name_anonymous(self, name: str) -> None:
        """Give the anonymous volumes a new container got (``inspect``: Mounts of type
        volume whose name is none of ours) the model's names for them
        (ContainerWorld.anonymous_name: ``<container>.<target>``, then ``.2``, ...)."""
        for target, real in self._call("volume_mounts", _c(name)):
            if real.startswith("us-") or real in self.anonymous.values():
                continue
            base = f"{name}.{target}"
            candidates = (base, *(f"{base}.{i}" for i in range(2, len(self.anonymous) + 3)))
            self.anonymous[next(n for n in candidates if n not in self.anonymous)] = real

    def _forget_removed(self) -> None:
        """Drop the anonymous volumes the engine no longer has (``rm -v``)."""
        existing = set(self._call("volume_names"))
        self.anonymous = {k: v for k, v in self.anonymous.items() if v in existing}

    def image_view(self) -> View:
        return View(self._call("view", "image", ""), {})

    def create_volume(self, name: str) -> Action:
        return self._refused(self._call("cli", "volume", "create", _v(name)))

    def remove_volume(self, name: str) -> Action:
        outcome = self._refused(self._call("cli", "volume", "rm", self._volume_name(name)))
        if outcome == Ok(None):
            self.anonymous.pop(name, None)
        return outcome

    def create(self, name: str, spec: ContainerSpec) -> Action:
        mounts = [self._mount(m) for m in spec.mounts]
        sources = [_c(v.container) + (f":{v.mode}" if v.mode else "") for v in spec.volumes_from]
        image = _i(spec.image) if spec.image else "unionspec-test:latest"
        outcome = self._refused(self._call("create", _c(name), mounts, sources, image))
        if outcome == Ok(None):
            self._name_anonymous(name)
        return outcome

    @staticmethod
    def _mount(mount: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"target": mount.target, "read_only": mount.read_only}
        if isinstance(mount, VolumeMount):
            volume = _v(mount.volume) if mount.volume else None
            spec.update(kind="volume", volume=volume, nocopy=mount.nocopy)
        elif isinstance(mount, BindMount):
            spec.update(kind="bind", source=mount.source, short_syntax=mount.short_syntax)
        elif isinstance(mount, TmpfsMount):
            spec.update(kind="tmpfs", size=mount.size, mode=mount.mode)
        return spec

    def start(self, name: str) -> Action:
        return self._refused(self._call("cli", "start", _c(name)))

    def stop(self, name: str) -> Action:
        return self._refused(self._call("cli", "stop", "-t", "0", _c(name)))

    def remove(self, name: str, *, volumes: bool = False) -> Action:
        args = ["rm", "-v", _c(name)] if volumes else ["rm", _c(name)]
        outcome = self._refused(self._call("cli", *args))
        if outcome == Ok(None) and volumes:
            self._forget_removed()
        return outcome

    def run(self, name: str, op: ops.Op) -> Outcome:
        return self._call("run", "container", _c(name), op)

    def view(self, name: str) -> View:
        return View(self._call("view", "container", _c(name)), {})

    def diff(self, name: str) -> dict[str, str]:
        return self._call("diff", _c(name))

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        return self._refused(self._call("cp_in", _c(name), path, data))

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        found = self._call("cp_out", _c(name), path)
        return Refused(found) if isinstance(found, str) else found

    def commit(self, name: str, image: str) -> tuple[tuple[str, Any], ...]:
        return self._call("commit", _c(name), _i(image))


def _c(name: str) -> str:
    return f"us-{name}"


def _i(name: str) -> str:
    return f"unionspec-{name}:latest"


def _v(name: str) -> str:
    return f"us-{name}"


class DockerEngine(CliEngine):
    engine = "docker"


class PodmanEngine(CliEngine):
    engine = "podman"
