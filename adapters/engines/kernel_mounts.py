"""The kernel-mounts engine: containers made of real kernel mounts, engine rules from a
profile.

What the kernel decides is real: the container root is a kernel overlay of the image
layers; volumes and host directories are real directories bind-mounted onto it (read-only
by a bind remount), tmpfs mounts are real tmpfs with ``size=`` and ``mode=``; so shadowing,
EROFS, ENOSPC, EXDEV across mounts, EBUSY of mount points, and a target that is not a
directory are the kernel's answers. What an engine decides (whether and when to copy image
content into a volume, who owns a volume root) follows the profile's rules, taken from
the model (:class:`reference.container.ContainerWorld`) step by step; the copy itself is
made from the real overlay, so what is copied (a whited-out file must not be) is real too.

It runs everything in the sandboxed executor :mod:`adapters.sandbox.container_executor` (a
private mount namespace and a private tmpfs; every mount goes when the executor does).
"""

from __future__ import annotations

from typing import Any

from adapters.drivers.kernel import KernelDriver
from adapters.sandbox.container_executor import directory
from adapters.sandbox.namespace import SandboxedDriver
from reference import ops
from reference.container import (
    Action,
    BindMount,
    ContainerSpec,
    ContainerWorld,
    Refused,
    TmpfsMount,
    VolumeMount,
    Why,
    cp_mount_order,
    start_order,
)
from reference.engines import PROFILES
from reference.layer import StackSpec
from reference.outcome import Ok, Outcome
from reference.view import View


class KernelMountsEngine(SandboxedDriver):
    """Real kernel mounts under the rules of ``profile`` (default docker)."""

    name = "kernel-mounts"
    executor_module = "adapters.sandbox.container_executor"

    def __init__(self, profile: str = "docker", timeout: float = 30.0) -> None:
        super().__init__(timeout)
        self.profile = PROFILES[profile]
        self.model: ContainerWorld | None = None
        #: Host directories made on disk (the model may make some itself: ``-v`` binds).
        self.hosts_made: set[str] = set()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return KernelDriver.unavailable_reason()

    @property
    def _m(self) -> ContainerWorld:
        assert self.model is not None, "start_image first"
        return self.model

    def start_image(self, image: StackSpec, volumes: tuple[str, ...] = ()) -> None:
        self.model = ContainerWorld(self.profile, image, volumes)
        self.hosts_made = set()
        self._call("image", image)

    # --- the host -------------------------------------------------------------------------

    def make_host_dir(self, name: str) -> None:
        self._m.make_host_dir(name)
        self.hosts_made.add(name)
        self._call("make", "host", name, 0o755)

    def host_run(self, name: str, op: ops.Op) -> Outcome:
        self._m.host_run(name, op)
        return self._call("run", "host", name, op)

    def host_view(self, name: str) -> View:
        return View(self._call("view", "host", name), {})

    def volume_view(self, name: str) -> View:
        return View(self._call("view", "volume", name), {})

    def image_view(self) -> View:
        return View(self._call("view", "image", ""), {})

    # --- volumes --------------------------------------------------------------------------

    def create_volume(self, name: str) -> Action:
        new = name not in self._m.volumes
        outcome = self._m.create_volume(name)
        if outcome == Ok(None) and new:
            self._call("make", "volume", name, self.profile.new_volume_mode)
        return outcome

    def remove_volume(self, name: str) -> Action:
        outcome = self._m.remove_volume(name)
        if outcome == Ok(None):
            self._call("rmtree", "volume", name)
        return outcome

    # --- containers -----------------------------------------------------------------------

    def _volume_states(self) -> dict[str, tuple[int, bool, bool, tuple[int, int, int]]]:
        return {
            name: (
                v.copies,
                v.needs_copy_up,
                v.needs_chown,
                (v.root.uid, v.root.gid, v.root.mode),
            )
            for name, v in self._m.volumes.items()
        }

    def _mirror_hosts(self) -> None:
        """Make on disk the host directories the model made (``-v`` bind sources)."""
        for name in self._m.hosts:
            if name not in self.hosts_made:
                self.hosts_made.add(name)
                self._call("make", "host", name, 0o755)

    def _mirror(self, container: str, before: dict[str, Any]) -> None:
        """Make on disk what the engine rules just did in the model: new volumes and host
        directories, copies into volumes, volume roots given an owner."""
        model = self._m
        self._mirror_hosts()
        for name in model.volumes:
            if name not in before:
                self._call("make", "volume", name, self.profile.new_volume_mode)
        table = model.containers[container].table
        states = self._volume_states()
        for entry in table:
            if entry.volume not in states or not isinstance(entry.mount, VolumeMount):
                continue  # (a handed-over volume removed before the holder took it)
            now = states[entry.volume]
            was = before.get(entry.volume, (0, True, True, (0, 0, self.profile.new_volume_mode)))
            copied = now[0] != was[0]
            meta = now[3] != was[3] or (was[2] and not now[2])
            if copied or meta:
                self._call("populate", container, entry.mount.target, entry.volume, copied, meta)

    def create(self, name: str, spec: ContainerSpec) -> Action:
        before = self._volume_states()
        table = self._m.table_for(name, spec)
        outcome = self._m.create(name, spec)
        if outcome == Ok(None):
            if spec.image is not None:
                self._call("image_of", name, spec.image)
            self._mirror(name, before)
        elif table is not None and self._volume_states() != before:
            self._mirror_refused(name, spec, table, before)
        return outcome

    def _mirror_refused(self, name: str, spec: ContainerSpec, table: Any, before: Any) -> None:
        """A refused create that filled volumes first (docker: the volumes listed before
        a volume over an image file): the copies are made from a scratch container of
        the same image, removed after."""
        scratch = f"{name}.refused"
        if spec.image is not None:
            self._call("image_of", scratch, spec.image)
        now = self._volume_states()
        for entry in table:
            if entry.volume not in now or entry.volume not in before:
                continue
            copied = now[entry.volume][0] != before[entry.volume][0]
            meta = now[entry.volume][3] != before[entry.volume][3]
            if copied or meta:
                self._call("populate", scratch, entry.mount.target, entry.volume, copied, meta)
        self._call("remove", scratch)

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        """Where the file goes (the volume, the host directory, the tmpfs of a running
        container, or the root under its mounts) is the profile's rule, taken from the
        model; the write is real. A cp that does not check the mount table writes into
        a running container's read-only mount through its mount namespace (the kernel's
        EROFS)."""
        model = self._m
        if name not in model.containers:
            return model.cp_in(name, path, data)
        writes = model.containers[name].status.value == "running" and (
            not self.profile.cp_checks_read_only
        )
        outcome = model.cp_in(name, path, data)
        refused = self._cp_mounts(name, outcome)
        if refused is not None:
            return refused
        target, inner = model.cp_fs(name).locate(path)  # the mounts stay where they were
        entry = model.mount_at(name, target) if target is not None else None
        if outcome == Refused(Why.READ_ONLY.value) and writes:  # the kernel's EROFS
            refused = self._call("cp_in", name, "running", path, data)
            return Ok(None) if refused is None else Refused(refused)
        if outcome not in (Ok(None), Refused(Why.NO_SPACE.value)):
            return outcome
        if entry is None:
            where = ("root", path)
        elif isinstance(entry.mount, VolumeMount):
            where = (f"volume:{entry.volume}", inner)
        elif isinstance(entry.mount, BindMount):
            where = (f"host:{entry.mount.source}", inner)
        else:
            where = ("running", path)
        refused = self._call("cp_in", name, *where, data)
        return Ok(None) if refused is None else Refused(refused)

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        """Read through the same routing (the model's answer on a refusal)."""
        outcome = self._m.cp_out(name, path)
        refused = self._cp_mounts(name, outcome)
        if refused is not None:
            return refused
        if isinstance(outcome, Refused):
            return outcome
        fs = self._m.cp_fs(name)
        target, inner = fs.locate(path)
        entry = self._m.mount_at(name, target) if target is not None else None
        if entry is None:
            return self._call("cp_out", name, "root", path)
        if isinstance(entry.mount, VolumeMount):
            return self._call("cp_out", name, f"volume:{entry.volume}", inner)
        if isinstance(entry.mount, BindMount):
            return self._call("cp_out", name, f"host:{entry.mount.source}", inner)
        return self._call("cp_out", name, "running", path)

    def _cp_mounts(self, name: str, outcome: object) -> Refused | None:
        """The mounts a cp makes first on the profiles whose cp does
        (``cp_makes_mount_points``), for real: the real refusal, or the model's when the
        volume references failed (nothing is mounted then)."""
        no_volume = Refused(Why.NO_SUCH_VOLUME.value)
        if outcome == no_volume:
            return no_volume
        if not self.profile.cp_makes_mount_points or name not in self._m.containers:
            return None
        table = self._m.containers[name].table
        mounts = [self._mount_spec(entry) for entry in cp_mount_order(table)]
        self._mirror_hosts()
        failure = self._call("cp_mounts", name, mounts)
        return Refused(failure) if failure else None

    def commit(self, name: str, image: str) -> tuple[tuple[str, Any], ...] | Refused:
        """The real upper directory becomes the image's top layer (the engine rule of
        which xattrs survive from the profile); the model follows along."""
        outcome = self._m.commit(name, image)
        if isinstance(outcome, Refused):
            return outcome
        return self._call("commit", name, image, self.profile.commit_keeps_xattrs)

    def start(self, name: str) -> Action:
        model = self._m
        if name not in model.containers:
            return model.start(name)
        before = self._volume_states()
        was_running = model.containers[name].status.value == "running"
        expected = model.start(name)
        if was_running or expected == Refused(Why.NO_SUCH_VOLUME.value):
            return expected  # a volume reference failed: nothing was done
        self._mirror(name, before)
        container = model.containers[name]
        order = start_order(container.table, self.profile)  # as ContainerWorld.start
        mounts = [self._mount_spec(entry) for entry in order]
        failure = self._call("start", name, mounts)
        return Refused(failure) if failure else Ok(None)

    def _mount_spec(self, entry: Any) -> dict[str, Any]:
        mount = entry.mount
        spec: dict[str, Any] = {"target": mount.target, "read_only": mount.read_only}
        if isinstance(mount, TmpfsMount):
            copy_up = self.profile.tmpfs_copies_image if mount.copy_up is None else mount.copy_up
            spec.update(
                kind="tmpfs",
                size=mount.size,
                mode=mount.mode,
                copy_up=copy_up,
                fixed_mode=self.profile.tmpfs_root_mode,
                copy_xattrs=self.profile.tmpfs_copy_keeps_xattrs,
            )
        elif isinstance(mount, BindMount):
            spec.update(kind="bind", source=f"/tmp/unionspec/hosts/{mount.source}")
        else:
            spec.update(kind="bind", source=directory("volume", entry.volume))
        return spec

    def stop(self, name: str) -> Action:
        outcome = self._m.stop(name)
        if outcome == Ok(None):
            self._call("stop", name)
        return outcome

    def remove(self, name: str, *, volumes: bool = False) -> Action:
        before = set(self._m.volumes)
        outcome = self._m.remove(name, volumes=volumes)
        if outcome == Ok(None):
            self._call("remove", name)
            for gone in before - set(self._m.volumes):
                self._call("rmtree", "volume", gone)
        return outcome

    def run(self, name: str, op: ops.Op) -> Outcome:
        """The kernel's answer; the model follows along, so that the engine rules it
        applies later (is this volume empty?) see the same content."""
        self._m.run(name, op)
        return self._call("run", "container", name, op)

    def view(self, name: str) -> View:
        return View(self._call("view", "container", name), {})

    def diff(self, name: str) -> dict[str, str]:
        """The profile's diff algorithm run over the container's real layers."""
        return self._call("diff", name, self.profile.diff_rule.value)
