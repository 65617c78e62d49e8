"""The interface of a container engine under test, and the reference engine behind it.

An engine driver runs one image (``start_image``) and then the same actions as
:class:`reference.container.ContainerWorld`: volumes, host directories, containers and
operations inside running containers. Engine actions return ``Ok(None)`` or
:class:`reference.container.Refused`; operations return an Ok/Err outcome.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from reference import ops
from reference.container import Action, ContainerSpec, ContainerWorld, Refused
from reference.engines import PROFILES, EngineProfile
from reference.layer import StackSpec
from reference.outcome import Outcome
from reference.view import View


@runtime_checkable
class EngineDriver(Protocol):
    name: str
    #: The profile of :mod:`reference.engines` this engine is held to.
    profile: EngineProfile

    def start_image(self, image: StackSpec, volumes: tuple[str, ...] = ()) -> None:
        """Forget every container, volume and host directory; use ``image`` (declaring
        ``VOLUME`` at ``volumes``) from now on."""

    def make_host_dir(self, name: str) -> None: ...
    def host_run(self, name: str, op: ops.Op) -> Outcome: ...
    def host_view(self, name: str) -> View: ...
    def volume_view(self, name: str) -> View: ...
    def create_volume(self, name: str) -> Action: ...
    def remove_volume(self, name: str) -> Action: ...
    def create(self, name: str, spec: ContainerSpec) -> Action: ...
    def start(self, name: str) -> Action: ...
    def stop(self, name: str) -> Action: ...
    def remove(self, name: str, *, volumes: bool = False) -> Action: ...
    def run(self, name: str, op: ops.Op) -> Outcome: ...
    def view(self, name: str) -> View: ...
    def diff(self, name: str) -> dict[str, str]:
        """``diff`` of a container (running or not): path -> "A", "C" or "D"."""

    def commit(self, name: str, image: str) -> tuple[tuple[str, Any], ...] | Refused:
        """``commit`` container ``name`` as image ``image``: its top layer's entries
        (reference.layer EntrySpec, sorted by path; OCI whiteouts decoded)."""

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        """``cp`` a host file holding ``data`` to ``path`` in the container."""

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        """``cp`` the file at ``path`` out of the container: its bytes."""

    def image_view(self) -> View:
        """The image's content as stored by the engine (must never change)."""

    def close(self) -> None: ...


class ReferenceEngine:
    """The model itself as an engine (no root needed): its profile's rules exactly."""

    def __init__(self, profile: str = "docker") -> None:
        self.profile = PROFILES[profile]
        self.name = f"reference-{profile}"
        self.world: ContainerWorld | None = None

    def start_image(self, image: StackSpec, volumes: tuple[str, ...] = ()) -> None:
        self.world = ContainerWorld(self.profile, image, volumes)

    @property
    def _w(self) -> ContainerWorld:
        assert self.world is not None, "start_image first"
        return self.world

    def make_host_dir(self, name: str) -> None:
        self._w.make_host_dir(name)

    def host_run(self, name: str, op: ops.Op) -> Outcome:
        return _linux(self._w.host_run(name, op))

    def host_view(self, name: str) -> View:
        return self._w.host_view(name)

    def volume_view(self, name: str) -> View:
        return self._w.volume_view(name)

    def create_volume(self, name: str) -> Action:
        return self._w.create_volume(name)

    def remove_volume(self, name: str) -> Action:
        return self._w.remove_volume(name)

    def create(self, name: str, spec: ContainerSpec) -> Action:
        return self._w.create(name, spec)

    def start(self, name: str) -> Action:
        return self._w.start(name)

    def stop(self, name: str) -> Action:
        return self._w.stop(name)

    def remove(self, name: str, *, volumes: bool = False) -> Action:
        return self._w.remove(name, volumes=volumes)

    def run(self, name: str, op: ops.Op) -> Outcome:
        return _linux(self._w.run(name, op))

    def view(self, name: str) -> View:
        return self._w.view(name)

    def diff(self, name: str) -> dict[str, str]:
        return self._w.diff(name)

    def commit(self, name: str, image: str) -> tuple[tuple[str, Any], ...] | Refused:
        return self._w.commit(name, image)

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        return self._w.cp_in(name, path, data)

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        return self._w.cp_out(name, path)

    def image_view(self) -> View:
        from reference.options import Options
        from reference.overlay import Overlay

        return Overlay(self._w.image, Options(read_only=True)).view()

    def close(self) -> None:
        self.world = None


def _linux(allowed: frozenset[Outcome]) -> Outcome:
    """One outcome of an allowed set: Linux's choice where the set names one first
    (sets here are EISDIR/EPERM for unlink of a directory: Linux gives EISDIR)."""
    ordered = sorted(allowed, key=lambda o: (getattr(o, "name", "") == "EPERM", repr(o)))
    return ordered[0]
