"""Container mounts in lockstep: an engine driver against the container model.

:class:`Lockstep` performs every action on the model (:class:`ContainerWorld` with the
engine's profile) and on the driver, checks the outcome is one the model allows, and then
compares everything observable: what each running container sees, what each volume and
host directory holds, and that the image is unchanged. The named scenarios
(:data:`SCENARIOS`, from the seed document) and the state machine
(:func:`container_machine`) are both programs over a Lockstep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import currently_in_test_context, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters.engines.base import EngineDriver
from conformance.errors import Diverges
from conformance.lockstep.compare import Divergence, compare_entries, render
from reference import ops
from reference.container import (
    Action,
    BindMount,
    ContainerFs,
    ContainerSpec,
    ContainerWorld,
    Mount,
    Refused,
    Status,
    TmpfsMount,
    VolumeMount,
    VolumesFrom,
    Why,
)
from reference.engines import EngineProfile, ImageVolumes, Populate
from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec, WhiteoutSpec
from reference.options import Options
from reference.outcome import Allowed, Err, Ok, Outcome, describe
from reference.overlay import Overlay
from reference.view import View


class ContainerDiverged(Diverges):
    """The engine did something its profile does not allow."""


#: The image every container program runs on: two layers, the top one whiting out an
#: image file, so that a copy must come from the merged view (obs §1.1). "a" has an owner
#: and mode of its own (obs §1.2: copied to the volume root), "e" is an empty directory,
#: "f" a file (a mount over it is refused), "n" is missing, "v" is declared ``VOLUME``
#: (:data:`IMAGE_VOLUMES`).
IMAGE = StackSpec(
    (
        LayerSpec((("b/w", FileSpec(b"top-w")), ("b/z", WhiteoutSpec()))),
        LayerSpec(
            (
                ("a", DirSpec(mode=0o750, uid=1000, gid=1001)),
                ("a/x", FileSpec(b"image-x", uid=5, gid=6, xattrs=(("user.k", b"v"),))),
                ("a/d", DirSpec(mode=0o700)),
                ("a/d/y", FileSpec(b"image-y", mode=0o600)),
                ("b", DirSpec()),
                ("b/z", FileSpec(b"hidden")),
                ("e", DirSpec(mode=0o711)),
                ("f", FileSpec(b"a file")),
                ("v", DirSpec(mode=0o750, uid=3, gid=4)),
                ("v/data", FileSpec(b"image-v")),
            )
        ),
    )
)
#: The targets the image declares ``VOLUME`` at (its config's Volumes).
IMAGE_VOLUMES = ("v",)
TARGETS = ("a", "b", "e", "f", "n", "v")


def _note(text: str) -> None:
    if currently_in_test_context():
        note(text)


@attrs.define
class Lockstep:
    """The model and the driver side by side; every method is one action on both."""

    driver: EngineDriver
    image: StackSpec = IMAGE
    volumes: tuple[str, ...] = IMAGE_VOLUMES
    #: The profile the model follows (None: the driver's own).
    profile: EngineProfile | None = None
    model: ContainerWorld = attrs.field(init=False)
    program: list[str] = attrs.field(factory=list)
    image_view: View | None = None

    def __attrs_post_init__(self) -> None:
        profile = self.profile or self.driver.profile
        self.model = ContainerWorld(profile, self.image, self.volumes)
        self.driver.start_image(self.image, self.volumes)
        self.image_view = Overlay(self.image, Options(read_only=True)).view()

    # --- actions --------------------------------------------------------------------------

    def _action(self, what: str, mine: Action, theirs: Action) -> Action:
        self.program.append(what)
        _note(f"{what} -> {theirs!r}")
        if mine != theirs:
            raise ContainerDiverged(
                f"{what}: {self.driver.name} gave {theirs!r}, the {self.model.profile.name} "
                f"profile gives {mine!r}\nprogram:\n  " + "\n  ".join(self.program)
            )
        self.check()
        return theirs

    def _op(self, what: str, allowed: Allowed, actual: Outcome) -> Outcome:
        self.program.append(what)
        _note(f"{what} -> {describe(actual)}")
        if actual not in allowed:
            raise ContainerDiverged(
                f"{what}: {self.driver.name} gave {describe(actual)}, the model allows "
                + " or ".join(sorted(describe(o) for o in allowed))
                + "\nprogram:\n  "
                + "\n  ".join(self.program)
            )
        self.check()
        return actual

    def make_host_dir(self, name: str) -> None:
        self.model.make_host_dir(name)
        self.driver.make_host_dir(name)
        self.program.append(f"make_host_dir({name!r})")
        self.check()

    def host_run(self, name: str, op: ops.Op) -> Outcome:
        return self._op(
            f"host_run({name!r}, {op!r})",
            self.model.host_run(name, op),
            self.driver.host_run(name, op),
        )

    def run(self, name: str, op: ops.Op) -> Outcome:
        return self._op(
            f"run({name!r}, {op!r})", self.model.run(name, op), self.driver.run(name, op)
        )

    def create_volume(self, name: str) -> Action:
        what = f"create_volume({name!r})"
        return self._action(what, self.model.create_volume(name), self.driver.create_volume(name))

    def remove_volume(self, name: str) -> Action:
        what = f"remove_volume({name!r})"
        return self._action(what, self.model.remove_volume(name), self.driver.remove_volume(name))

    def create(self, name: str, spec: ContainerSpec) -> Action:
        what = f"create({name!r}, {spec!r})"
        return self._action(what, self.model.create(name, spec), self.driver.create(name, spec))

    def start(self, name: str) -> Action:
        """``start``: the engine's answer must be one the profile allows, and the model
        follows the order the engine took (:meth:`ContainerWorld.starts`: where the
        order among mounts of one depth is not fixed, a failed start has several
        answers, and for one answer several sets of mount points left): the first world
        with the engine's answer whose state the engine shows."""
        what = f"start({name!r})"
        theirs = self.driver.start(name)
        choices = self.model.starts(name)
        worlds = [world for action, world in choices if action == theirs]
        if not worlds:
            mine = " or ".join(sorted({repr(action) for action, _ in choices}))
            self.model = choices[0][1]
            self.program.append(what)
            raise ContainerDiverged(
                f"{what}: {self.driver.name} gave {theirs!r}, the {self.model.profile.name} "
                f"profile gives {mine}\nprogram:\n  " + "\n  ".join(self.program)
            )
        first_found: list[Divergence] | None = None
        for world in worlds:
            self.model = world
            found = self.differences()
            if not found:
                break
            first_found = found if first_found is None else first_found
        else:
            self.model = worlds[0]
        if len(choices) > 1:
            _note(f"{what}: {len(choices)} outcomes allowed, the engine's is followed")
        self.program.append(what)
        _note(f"{what} -> {theirs!r}")
        if found:
            assert first_found is not None
            raise ContainerDiverged(
                render(first_found) + "\nprogram:\n  " + "\n  ".join(self.program)
            )
        return theirs

    def stop(self, name: str) -> Action:
        return self._action(f"stop({name!r})", self.model.stop(name), self.driver.stop(name))

    def commit(self, name: str, image: str) -> None:
        """``commit``: the engine's layer tar, decoded, must be the model's."""
        what = f"commit({name!r}, {image!r})"
        self.program.append(what)
        mine, theirs = self.model.commit(name, image), self.driver.commit(name, image)
        _note(f"{what} -> {theirs!r}")
        if mine != theirs:
            found = (
                [Divergence(what, "outcome", mine, theirs)]
                if isinstance(mine, Refused) or isinstance(theirs, Refused)
                else compare_layers(what, mine, theirs)
            )
            raise ContainerDiverged(render(found) + "\nprogram:\n  " + "\n  ".join(self.program))
        self.check()

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        what = f"cp_in({name!r}, {path!r}, {data!r})"
        mine = self.model.cp_in(name, path, data)
        return self._action(what, mine, self.driver.cp_in(name, path, data))

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        what = f"cp_out({name!r}, {path!r})"
        mine, theirs = self.model.cp_out(name, path), self.driver.cp_out(name, path)
        self.program.append(what)
        _note(f"{what} -> {theirs!r}")
        if mine != theirs:
            raise ContainerDiverged(
                f"{what}: {self.driver.name} gave {theirs!r}, the model {mine!r}\nprogram:\n  "
                + "\n  ".join(self.program)
            )
        return theirs

    def remove(self, name: str, *, volumes: bool = False) -> Action:
        what = f"remove({name!r}, volumes={volumes})"
        mine = self.model.remove(name, volumes=volumes)
        return self._action(what, mine, self.driver.remove(name, volumes=volumes))

    # --- observation ----------------------------------------------------------------------

    def check(self) -> None:
        """Every running container's view, every volume, every host directory, the image."""
        found = self.differences()
        if found:
            raise ContainerDiverged(render(found) + "\nprogram:\n  " + "\n  ".join(self.program))

    def differences(self) -> list[Divergence]:
        """What :meth:`check` compares, each difference."""
        found: list[Divergence] = []
        for name, container in sorted(self.model.containers.items()):
            if container.status is Status.RUNNING:
                found += compare_entries(
                    f"container {name}:/",
                    self.model.view(name).entries,
                    self.driver.view(name).entries,
                )
        for name in sorted(self.model.containers):
            found += compare_diffs(name, self.model.diff(name), self.driver.diff(name))
        for name in sorted(self.model.volumes):
            try:
                theirs = self.driver.volume_view(name).entries
            except KeyError:  # a reference engine without that volume
                found.append(Divergence(f"volume {name}", "exists", True, False))
                continue
            found += compare_entries(
                f"volume {name}:", self.model.volume_view(name).entries, theirs
            )
        for name in sorted(self.model.hosts):
            try:
                theirs = self.driver.host_view(name).entries
            except KeyError:  # a reference engine without that host directory
                found.append(Divergence(f"host {name}", "exists", True, False))
                continue
            found += compare_entries(f"host {name}:", self.model.host_view(name).entries, theirs)
        assert self.image_view is not None
        found += compare_entries(
            "image:", self.image_view.entries, self.driver.image_view().entries
        )
        return found


def compare_diffs(name: str, mine: dict[str, str], theirs: dict[str, str]) -> list[Divergence]:
    """Each path where the engine's ``diff`` (A/C/D, "-": not listed) differs from the
    model's."""
    return [
        Divergence(f"diff {name}:{path}", "change", mine.get(path, "-"), theirs.get(path, "-"))
        for path in sorted(mine.keys() | theirs.keys())
        if mine.get(path) != theirs.get(path)
    ]


def compare_layers(where: str, mine: Any, theirs: Any) -> list[Divergence]:
    """Each path of a committed layer whose entry differs ("-": absent)."""
    a, b = dict(mine), dict(theirs)
    return [
        Divergence(f"{where}:{path}", "entry", a.get(path, "-"), b.get(path, "-"))
        for path in sorted(a.keys() | b.keys())
        if a.get(path) != b.get(path)
    ]


# --- named scenarios --------------------------------------------------------------------------


@attrs.frozen
class ContainerScenario:
    id: str
    title: str
    source: str
    program: Callable[[Lockstep], None]
    #: The profiles it applies to (None: every profile).
    profiles: tuple[str, ...] | None = None


def _expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise ContainerDiverged(f"{what}: expected {expected!r}, got {actual!r}")


def _entries(view: View) -> dict[str, object]:
    return {path: (e.kind, e.data) for path, e in view.entries.items()}


def _prepopulated(run: Lockstep) -> None:
    """Docker and Podman fill the volume (Podman at start); Kubernetes never does."""
    run.create_volume("v")
    run.create("c", ContainerSpec((VolumeMount("a", "v"),)))
    run.start("c")
    held = run.driver.volume_view("v").entries
    if run.model.profile.populate is Populate.NEVER:
        _expect(held, {}, "volume v stays empty")
        return
    _expect(held["x"].data, b"image-x", "volume v holds a/x")
    _expect(run.driver.view("c").entries["a"].mode, 0o750, "volume root takes a's mode")


def _non_empty_shadows(run: Lockstep) -> None:
    run.make_host_dir("h")
    run.create_volume("v")
    run.create("seed", ContainerSpec((BindMount("n", "h"), VolumeMount("e", "v"))))
    run.start("seed")
    run.run("seed", ops.Write("e/mine", b"volume data", flags=("O_CREAT",)))
    run.stop("seed")
    run.create("c", ContainerSpec((VolumeMount("a", "v"),)))
    run.start("c")
    seen = _entries(run.driver.view("c"))
    _expect("a/x" in seen, False, "a non-empty volume hides the image's a/x")
    _expect(seen.get("a/mine"), ("file", b"volume data"), "the volume's own file")


def _bind_shadows(run: Lockstep) -> None:
    run.make_host_dir("h")
    run.host_run("h", ops.Write("host-file", b"from host", flags=("O_CREAT",)))
    run.create("c", ContainerSpec((BindMount("a", "h"),)))
    run.start("c")
    _expect("a/x" in run.driver.view("c").entries, False, "the bind hides the image's a/x")
    _expect(set(run.driver.host_view("h").entries), {"host-file"}, "nothing copied to the host")
    run.host_run("h", ops.Write("later", b"live", flags=("O_CREAT",)))
    run.stop("c")
    run.remove("c")
    run.create("plain", ContainerSpec())
    run.start("plain")
    _expect(run.driver.view("plain").entries["a/x"].data, b"image-x", "the image's a/x is back")


def _survives_removal(run: Lockstep) -> None:
    run.create("c", ContainerSpec((VolumeMount("n", "v"),)))
    run.start("c")
    run.run("c", ops.Write("n/kept", b"data", flags=("O_CREAT",)))
    run.stop("c")
    run.remove("c", volumes=True)
    _expect(run.driver.volume_view("v").entries["kept"].data, b"data", "named volume kept")
    run.create("d", ContainerSpec((VolumeMount("n", "v"),)))
    run.start("d")
    _expect(run.driver.view("d").entries["n/kept"].data, b"data", "the next container sees it")


def _tmpfs_vanishes(run: Lockstep) -> None:
    run.create("c", ContainerSpec((TmpfsMount("n"),)))
    run.start("c")
    run.run("c", ops.Write("n/secret", b"in memory", flags=("O_CREAT",)))
    run.stop("c")
    run.start("c")
    _expect("n/secret" in run.driver.view("c").entries, False, "tmpfs is empty again")


def _tmpfs_size(run: Lockstep) -> None:
    run.create("c", ContainerSpec((TmpfsMount("n", size=4096),)))
    run.start("c")
    run.run("c", ops.Write("n/one", b"1" * 3000, flags=("O_CREAT",)))
    second = run.run("c", ops.Write("n/two", b"2" * 10, flags=("O_CREAT",)))
    _expect(second, Err("ENOSPC"), "a second page does not fit")


def _read_only(run: Lockstep) -> None:
    run.make_host_dir("h")
    run.create_volume("v")
    run.create(
        "c",
        ContainerSpec(
            (
                VolumeMount("a", "v", read_only=True),
                BindMount("n", "h", read_only=True),
                TmpfsMount("e", read_only=True),
            )
        ),
    )
    run.start("c")
    for path in ("a/new", "n/new", "e/new"):
        _expect(run.run("c", ops.Write(path, b"x", flags=("O_CREAT",))), Err("EROFS"), path)
    _expect(run.run("c", ops.Unlink("a/x")), Err("EROFS"), "unlink in a read-only volume")


def _refilled(run: Lockstep) -> None:
    """Docker fills an emptied volume again at the next create; Podman copies once."""
    run.create("c", ContainerSpec((VolumeMount("a", "v"),)))
    run.start("c")
    run.run("c", ops.Unlink("a/x"))
    run.run("c", ops.Unlink("a/d/y"))
    run.run("c", ops.Rmdir("a/d"))
    run.stop("c")
    run.create("d", ContainerSpec((VolumeMount("a", "v"),)))
    run.start("d")
    refills = run.model.profile.populate is Populate.AT_CREATE_IF_EMPTY
    _expect("a/x" in run.driver.view("d").entries, refills, "a/x copied again")


def _nocopy(run: Lockstep) -> None:
    run.create("c", ContainerSpec((VolumeMount("a", "v", nocopy=True),)))
    run.start("c")
    _expect(run.driver.volume_view("v").entries, {}, "nocopy: the volume stays empty")


def _tmpfs_copy(run: Lockstep) -> None:
    run.create("c", ContainerSpec((TmpfsMount("a"),)))
    run.start("c")
    copies = run.model.profile.tmpfs_copies_image
    _expect("a/x" in run.driver.view("c").entries, copies, "tmpfs holds a copy of a/x")


def _bad_specs(run: Lockstep) -> None:
    def refused(action: Action, why: Why) -> None:
        _expect(action, Refused(why.value), why.value)

    refused(run.create("c", ContainerSpec((BindMount("a", "missing"),))), Why.BIND_SOURCE_MISSING)
    dup = ContainerSpec((VolumeMount("a", "v"), TmpfsMount("a")))
    refused(run.create("c", dup), Why.DUPLICATE_MOUNT_POINT)
    run.create("src", ContainerSpec((VolumeMount("a", "v"),)))
    nocopy = ContainerSpec(volumes_from=(VolumesFrom("src", "nocopy"),))
    refused(run.create("c", nocopy), Why.INVALID_MODE)
    over_file = run.create("c", ContainerSpec((VolumeMount("f", "w"),)))
    if over_file == Ok(None):
        refused(run.start("c"), Why.NOT_A_DIRECTORY)
    else:
        refused(over_file, Why.NOT_A_DIRECTORY)
    refused(run.remove_volume("v"), Why.VOLUME_IN_USE)


#: A program that leaves every kind of trace in the writable layer: a copy-up with no
#: visible change, a user xattr, a new file with a hardlink and a symlink, a removed image
#: file, a directory removed and made again, a chown.
LAYER_TRACES: tuple[ops.Op, ...] = (
    ops.Chmod("f", 0o644),
    ops.SetXattr("a/x", "user.t", b"1"),
    ops.Write("e/new", b"n", flags=("O_CREAT",)),
    ops.Link("e/new", "e/hl"),
    ops.Symlink("/a/x", "e/sl"),
    ops.Unlink("b/w"),
    ops.Unlink("a/d/y"),
    ops.Rmdir("a/d"),
    ops.Mkdir("a/d", 0o700),
    ops.Write("a/d/q", b"q", flags=("O_CREAT",)),
    ops.Chown("e", 7, 8),
)


def _writable_layer(run: Lockstep) -> None:
    """diff after each trace (Lockstep.check), then commit: the layer tar decoded."""
    run.create("c", ContainerSpec())
    run.start("c")
    for op in LAYER_TRACES:
        run.run("c", op)
    run.stop("c")
    run.commit("c", "one")


def _from_committed(run: Lockstep) -> None:
    """The committed layer is a lower layer of the new image, whiteouts and opaque
    directories included; the container it came from and the new one are independent."""
    run.create("c", ContainerSpec())
    run.start("c")
    for op in LAYER_TRACES:
        run.run("c", op)
    run.commit("c", "one")
    run.create("d", ContainerSpec(image="one"))
    run.start("d")
    seen = run.driver.view("d").entries
    _expect(("b/w" in seen, "a/d/y" in seen, seen["a/d/q"].data), (False, False, b"q"), "d")
    run.run("d", ops.Write("a/d/q", b"from d", flags=("O_CREAT", "O_TRUNC")))
    run.run("d", ops.Unlink("e/new"))
    _expect(run.driver.view("c").entries["a/d/q"].data, b"q", "c does not see d's write")


def _image_stack(run: Lockstep) -> None:
    """The seed's imageA/imageB: B adds a layer on A; two containers from each; a write in
    one is seen by no other container and by no image."""
    run.create("base", ContainerSpec())
    run.start("base")
    run.run("base", ops.Mkdir("app", 0o755))
    run.run("base", ops.Write("app/hello.sh", b"echo hello\n", flags=("O_CREAT",)))
    run.run("base", ops.Write("app/hello.py", b"print('hello')\n", flags=("O_CREAT",)))
    run.stop("base")
    run.commit("base", "imagea")
    run.create("b", ContainerSpec(image="imagea"))
    run.start("b")
    run.run("b", ops.Chmod("app/hello.sh", 0o755))
    run.run("b", ops.Unlink("app/hello.py"))
    run.stop("b")
    run.commit("b", "imageb")
    for name, image in (("a1", "imagea"), ("a2", "imagea"), ("b1", "imageb"), ("b2", "imageb")):
        run.create(name, ContainerSpec(image=image))
        run.start(name)
    run.run("a1", ops.Write("app/hello.sh", b"a1\n", flags=("O_CREAT", "O_TRUNC")))
    run.run("b1", ops.Write("app/hello.py", b"b1\n", flags=("O_CREAT",)))
    for name, data in (("a2", b"echo hello\n"), ("b1", b"echo hello\n")):
        _expect(run.driver.view(name).entries["app/hello.sh"].data, data, f"{name} hello.sh")
    _expect("app/hello.py" in run.driver.view("b2").entries, False, "b2 has no hello.py")


SCENARIOS: tuple[ContainerScenario, ...] = (
    ContainerScenario(
        "empty-volume-prepopulated",
        "a new empty volume at a populated image path is filled from the image",
        "seed: 关于volums与Bind mounts使用说明 1; moby create_unix.go populateVolume",
        _prepopulated,
    ),
    ContainerScenario(
        "non-empty-volume-shadows",
        "a non-empty volume hides the image path and is not touched",
        "seed: 关于volums与Bind mounts使用说明 2; moby copyExistingContents",
        _non_empty_shadows,
    ),
    ContainerScenario(
        "bind-shadows-no-copy",
        "a bind mount hides the image path without copying; the image is back without it",
        "seed: 关于volums与Bind mounts使用说明 2; moby#39410",
        _bind_shadows,
    ),
    ContainerScenario(
        "volume-survives-container",
        "data in a named volume survives the container's removal (rm -v)",
        "seed: volums 管理volume (删除容器后volume并未受影响)",
        _survives_removal,
    ),
    ContainerScenario(
        "tmpfs-vanishes",
        "tmpfs data is gone when the container stops",
        "seed: tmpfs (数据存储于内存中, 不持久化)",
        _tmpfs_vanishes,
    ),
    ContainerScenario(
        "tmpfs-size-enospc",
        "a tmpfs with size= refuses a page beyond it with ENOSPC",
        "docker tmpfs-size (obs §1.4); mm/shmem.c",
        _tmpfs_size,
    ),
    ContainerScenario(
        "read-only-erofs",
        "read-only volumes, binds and tmpfs refuse writes with EROFS",
        "seed: volume指定为只读方式; obs §1.4",
        _read_only,
    ),
    ContainerScenario(
        "emptied-volume-refill",
        "an emptied volume: Docker refills it at the next create, Podman never again",
        "obs §1.2 (Docker), §2 (Podman NeedsCopyUp)",
        _refilled,
    ),
    ContainerScenario(
        "nocopy-stays-empty",
        "nocopy: the volume is not populated (Podman still takes the root's owner/mode)",
        "obs §1.2, §2",
        _nocopy,
    ),
    ContainerScenario(
        "tmpfs-copy-up",
        "a tmpfs over an image directory: empty on Docker, a copy on Podman (tmpcopyup)",
        "obs §1.4, §2",
        _tmpfs_copy,
    ),
    ContainerScenario(
        "bad-specs-refused",
        "missing bind source, duplicate target, nocopy with volumes-from, volume over a file,"
        " removing a volume in use",
        "obs §1.2-1.4, §2",
        _bad_specs,
    ),
)


def _cp(run: Lockstep) -> None:
    """cp into and out of a running and a stopped container: into a volume, a bind, the
    writable layer (over an image file too), and a tmpfs target (engines differ)."""
    run.make_host_dir("h")
    run.create("c", ContainerSpec((VolumeMount("n", "v"), BindMount("a", "h"), TmpfsMount("e"))))
    run.start("c")
    for path in ("n/in-vol", "a/in-bind", "b/in-root", "f", "e/in-tmpfs"):
        run.cp_in("c", path, b"running " + path.encode())
    _expect(run.cp_in("c", "missing/x", b"x"), Refused(Why.NO_SUCH_PATH.value), "missing/x")
    for path in ("n/in-vol", "b/in-root", "f", "a/x"):
        run.cp_out("c", path)
    run.stop("c")
    for path in ("n/in-vol2", "a/in-bind2", "b/in-root2", "e/in-tmpfs2"):
        run.cp_in("c", path, b"stopped " + path.encode())
    for path in ("n/in-vol2", "b/in-root2", "e/in-tmpfs2"):
        run.cp_out("c", path)
    run.start("c")
    _expect(run.driver.volume_view("v").entries["in-vol2"].data, b"stopped n/in-vol2", "vol")


def _cp_read_only(run: Lockstep) -> None:
    """cp into read-only mounts (a volume, a bind, a tmpfs), running and stopped: docker
    refuses by its mount table; podman's write gets EROFS while it runs, and goes into the
    volume, the host directory or the writable layer when it is stopped."""
    run.make_host_dir("h")
    run.create(
        "c",
        ContainerSpec(
            (
                VolumeMount("a", "r", read_only=True),
                BindMount("n", "h", read_only=True),
                TmpfsMount("e", read_only=True),
            )
        ),
    )
    run.start("c")
    for path in ("a/new", "a/x", "n/new", "e/new"):
        _expect(run.cp_in("c", path, b"q"), Refused(Why.READ_ONLY.value), path)
    run.stop("c")
    for path in ("a/new2", "n/new2", "e/new2"):
        run.cp_in("c", path, b"stopped")
    run.start("c")


def _cp_mount_points(run: Lockstep) -> None:
    """A cp of a container never started, and of a running one with a volume under a
    tmpfs: docker's cp makes the missing mount points of its volumes in the writable
    layer first (in a read-only volume: the cp fails after the ones before); podman's
    makes none."""
    run.create("c", ContainerSpec((VolumeMount("x/y", "w"), VolumeMount("n/s", "r"))))
    run.cp_in("c", "b/new", b"q")
    run.create(
        "d", ContainerSpec((VolumeMount("x/y", "w", read_only=True), VolumeMount("x/y/z", "r")))
    )
    run.cp_out("d", "b/w")
    run.create("e", ContainerSpec((TmpfsMount("e"), VolumeMount("e/q/s", "w"))))
    run.start("e")
    run.cp_in("e", "e/q/s/in-volume", b"q")
    run.run("e", ops.Stat("e/q/s/in-volume", follow=False))


def _volumes_from_reference(run: Lockstep) -> None:
    """A container given a volume by ``--volumes-from``, its source removed: podman's
    holds the volume from create on; docker's only from its first start or cp, so the
    volume can go and the holder's start and cp fail until one of that name is made."""
    run.create("c2", ContainerSpec((VolumeMount("a", "r"),)))
    run.create("c1", ContainerSpec(volumes_from=(VolumesFrom("c2", "ro"),)))
    run.create("c3", ContainerSpec(volumes_from=(VolumesFrom("c2"),)))
    run.cp_out("c3", "b/w")
    run.remove("c2")
    run.remove_volume("r")  # c3's cp took its reference
    run.remove("c3")
    run.remove_volume("r")
    run.create("c4", ContainerSpec(volumes_from=(VolumesFrom("c1"),)))  # r stays removed
    run.start("c1")
    run.cp_in("c1", "b/new", b"q")
    run.create_volume("r")
    run.start("c1")
    run.run("c1", ops.Readdir("a"))


def _image_volume(run: Lockstep) -> None:
    """The image declares ``VOLUME /v``: each container gets an anonymous volume there,
    filled from the image; what a container writes there is in no commit; a mount of
    its own at the target replaces it; ``rm -v`` removes it."""
    anonymous = run.model.profile.image_volumes is ImageVolumes.ANONYMOUS
    run.create("c", ContainerSpec())
    run.start("c")
    run.run("c", ops.Write("v/new", b"in the volume", flags=("O_CREAT",)))
    if anonymous:
        _expect(set(run.driver.volume_view("c.v").entries), {"data", "new"}, "c's volume")
    run.stop("c")
    run.commit("c", "one")
    run.create("d", ContainerSpec(image="one"))
    run.start("d")
    seen = run.driver.view("d").entries
    _expect(("v/data" in seen, "v/new" in seen), (True, not anonymous), "d's /v")
    run.create("e", ContainerSpec((VolumeMount("v", "w", nocopy=True),)))
    run.start("e")
    _expect("v/data" in run.driver.view("e").entries, False, "e's own volume at /v")
    run.remove("c", volumes=True)
    _expect("c.v" in run.model.volumes, False, "rm -v removes the image volume")


def _nested(run: Lockstep) -> None:
    """Mounts inside mounts and below the top level: mounted parent first whatever the
    order given; a missing mount point is made in what holds it (a host directory, a
    volume, the writable layer with its parents); a rename carries a mount along; a
    mount point missing in a read-only volume fails the start, in a read-only tmpfs it
    is made (the tmpfs turns read-only after the last mount)."""
    run.make_host_dir("h")
    run.create(
        "c",
        ContainerSpec(
            (
                TmpfsMount("a/t"),
                BindMount("n", "h"),
                VolumeMount("n/s", "w"),
                VolumeMount("a", "x"),
                VolumeMount("a/d", "y"),
                TmpfsMount("e/q/s"),
            )
        ),
    )
    run.start("c")
    _expect(set(run.driver.host_view("h").entries), {"s"}, "the mount point made in h")
    run.run("c", ops.Write("n/s/f", b"in w", flags=("O_CREAT",)))
    _expect(run.run("c", ops.Rename("a/d", "a/dd")), Err("EBUSY"), "a nested mount point")
    run.run("c", ops.Rename("e/q", "e/r"))
    run.run("c", ops.Write("e/r/s/z", b"in the moved tmpfs", flags=("O_CREAT",)))
    run.stop("c")
    run.start("c")
    run.create_volume("ro")
    run.create("r", ContainerSpec((VolumeMount("n", "ro", read_only=True), TmpfsMount("n/s"))))
    _expect(run.start("r"), Refused(Why.READ_ONLY.value), "mkdir in a read-only mount")
    run.create("t", ContainerSpec((TmpfsMount("e", read_only=True), VolumeMount("e/k", "k"))))
    _expect(run.start("t"), Ok(None), "a read-only tmpfs is read-only only once started")
    _expect(run.run("t", ops.Mkdir("e/m", 0o755)), Err("EROFS"), "then it is")
    run.run("t", ops.Write("e/k/f", b"in k", flags=("O_CREAT",)))


def _failed_start_order(run: Lockstep) -> None:
    """Starts that fail on two mounts of one depth: the answer and the mount points left
    are those of an order the profile allows (docker: volumes and binds, then tmpfs;
    podman: any), and nothing deeper than the failure is made."""
    run.create_volume("w")
    run.create("c", ContainerSpec((TmpfsMount("f"), VolumeMount("n", "v"), TmpfsMount("e/q/s"))))
    _expect(run.start("c"), Refused(Why.NOT_A_DIRECTORY.value), "a tmpfs over the file f")
    run.create(
        "d", ContainerSpec((VolumeMount("f", "w", nocopy=True), TmpfsMount("a", size=4096)))
    )
    run.start("d")


def _links_and_sizes(run: Lockstep) -> None:
    """Symlinks made in a container lead through the mounts (an absolute target from the
    container's root into a volume; ``..`` out of a directory; a loop is ELOOP); a
    hardlink and a FIFO are objects of the writable layer; truncates go to any size, and a
    size-limited tmpfs counts only the pages written (a truncate up is a hole)."""
    run.create("c", ContainerSpec((VolumeMount("a", "w"), TmpfsMount("n", size=8192))))
    run.start("c")
    run.run("c", ops.Symlink("/a/x", "l"))
    run.run("c", ops.Write("l", b"through the link", flags=("O_TRUNC",)))
    run.run("c", ops.Symlink("../a", "e/up"))
    run.run("c", ops.Stat("e/up/x", follow=True))
    run.run("c", ops.Symlink("loop", "e/loop"))
    _expect(run.run("c", ops.Stat("e/loop", follow=True)), Err("ELOOP"), "a symlink loop")
    run.run("c", ops.Link("f", "e/f2"))
    run.run("c", ops.Mkfifo("e/p", 0o644))
    run.run("c", ops.Truncate("f", 5000))
    run.run("c", ops.Write("n/big", b"1", flags=("O_CREAT",)))
    run.run("c", ops.Truncate("n/big", 10000))
    written = run.run("c", ops.Write("n/other", b"o" * 8192, flags=("O_CREAT",)))
    _expect(written, Ok(4096), "one page left beside a sparse file")
    run.run("c", ops.Truncate("n/big", 0))
    run.run("c", ops.Write("n/other", b"o" * 8192, flags=("O_TRUNC",)))
    run.stop("c")
    run.commit("c", "linked")


SCENARIOS += (
    ContainerScenario(
        "links-and-sizes",
        "symlinks lead through the mounts, hardlinks and FIFOs in the writable layer,"
        " truncates to any size, holes cost a size-limited tmpfs nothing",
        "vfs path_lookupat (MAXSYMLINKS 40); mm/shmem.c shmem_setattr",
        _links_and_sizes,
    ),
    ContainerScenario(
        "cp-read-only",
        "cp into read-only mounts: refused while running; when stopped docker still refuses,"
        " podman writes",
        "moby daemon/archive.go checkIfPathIsInAVolume; podman copier; by hand",
        _cp_read_only,
        profiles=("docker", "podman"),  # kubernetes: cp not observed
    ),
    ContainerScenario(
        "cp-mount-points",
        "cp makes the missing mount points of the volumes and binds in the writable layer"
        " on docker (under a tmpfs, in a container never started), none on podman",
        "moby daemon/archive.go, volumes_unix.go mountVolumes (CreateIfNotExists); by hand",
        _cp_mount_points,
        profiles=("docker", "podman"),  # kubernetes: cp not observed
    ),
    ContainerScenario(
        "volumes-from-reference",
        "a --volumes-from holder keeps the volume from create on (podman) or from its first"
        " start or cp (docker: removed before, its start fails until it is made again)",
        "moby daemon/volumes.go registerMountPoints, lazyInitializeVolume; by hand",
        _volumes_from_reference,
        profiles=("docker", "podman"),  # kubernetes: no --volumes-from
    ),
    ContainerScenario(
        "failed-start-order",
        "a start failing on two mounts of one depth: the answer and the mount points left"
        " are those of an order the engine allows, nothing deeper is made",
        "moby volumes_unix.go setupMounts, libpod sortMounts (sort.Sort over maps); by hand",
        _failed_start_order,
    ),
    ContainerScenario(
        "nested-mounts",
        "mounts inside binds and volumes and below the top level: parents first, mount"
        " points made where they are, moved by a rename, refused in a read-only volume,"
        " made in a read-only tmpfs",
        "moby oci_linux.go sort.Sort(mounts); runc MkdirAllInRoot, finalizeRootfs; by hand",
        _nested,
    ),
    ContainerScenario(
        "image-volume-anonymous",
        "an image VOLUME is an anonymous volume per container, filled from the image, in no"
        " commit, replaced by a mount at its target, removed by rm -v",
        "seed: 关于volums与Bind mounts使用说明 (匿名卷); moby create_unix.go; observed by hand",
        _image_volume,
    ),
    ContainerScenario(
        "cp-in-and-out",
        "cp into and out of running and stopped containers: volumes and binds get the file,"
        " the rest goes to the writable layer",
        "seed: tmpfs (docker cp ... :/app/); obs: cp observed by hand",
        _cp,
    ),
    ContainerScenario(
        "writable-layer-diff-commit",
        "diff lists a container's changes, commit saves its writable layer with whiteouts"
        " and opaque directories",
        "seed: 存储驱动 可写入层 (only changed files are copied up); image-spec layer.md",
        _writable_layer,
    ),
    ContainerScenario(
        "committed-image-starts-containers",
        "a committed container is an image: its layer (whiteouts and all) under new"
        " containers, each independent",
        "seed: 可写入层; obs §4",
        _from_committed,
    ),
    ContainerScenario(
        "image-from-image",
        "imageB adds a layer on imageA; containers from each see their image; writes stay"
        " in their own writable layer",
        "seed: 存储驱动 (imageA/imageB, 镜像B与镜像A相同的层级指向同一系统存储地址)",
        _image_stack,
    ),
)


def run_scenario(driver: EngineDriver, scenario: ContainerScenario) -> None:
    run = Lockstep(driver)
    scenario.program(run)


# --- the state machine ------------------------------------------------------------------------

CONTAINERS = ("c1", "c2")
VOLUMES = ("v1", "v2")
IMAGES = ("i1", "i2")
HOSTS = ("h1", "h2")
NAMES = ("a", "b", "e", "f", "n", "x", "y", "d", "w", "l")
#: Symlink targets: relative (a sibling, the parent's, itself: a loop), absolute (into
#: the image, a mount, a nested mount), dangling. No ``..`` after a name (the model
#: resolves ``..`` lexically, which is the kernel's answer only right after a directory).
SYMLINK_TARGETS = (
    *("x", "d", "l", "../a", "../n/s"),
    *("/a", "/a/x", "/n", "/v/data", "/e/q/s", "missing"),
)
#: Truncate sizes: to zero, within the first page, to a page, past it (a hole).
SIZES = (0, 1, 7, 3000, 4096, 5000, 9000)
#: Mount targets: "f" (an image file, refused) and "v" (a mount there replaces the image
#: volume) drawn less often than the directories; below the top level an image directory
#: ("a/d"), and mount points inside other mounts or made with their parents ("n/s" in a
#: bind or volume at "n", "v/s" in the image volume, "e/q/s").
MOUNT_TARGETS = ("a", "b", "e", "n", "a", "b", "e", "n", "f", "v", "a/d", "n/s", "v/s", "e/q/s")


#: The image's own paths: operations on them copy up, white out, make opaque.
IMAGE_PATHS = ("a", "a/x", "a/d", "a/d/y", "b", "b/w", "e", "f", "v/data")
IMAGE_FILES = tuple(p for p in IMAGE_PATHS if p in ("a/x", "a/d/y", "b/w", "f", "v/data"))


def _paths(targets: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Paths inside a container: below its own mount targets, or the image's own paths
    (its writable layer), or anywhere."""
    top = st.sampled_from(TARGETS)
    if targets:
        top = st.one_of(st.sampled_from(targets), st.sampled_from(targets), top)
    inner = st.lists(st.sampled_from(NAMES), min_size=0, max_size=2)
    anywhere = st.builds(lambda t, rest: "/".join([t, *rest]), top, inner)
    return st.one_of(anywhere, st.sampled_from(IMAGE_PATHS))


def _inner_paths() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(NAMES), min_size=1, max_size=2).map("/".join)


DATA = st.sampled_from([b"", b"q", b"data-" * 20, b"L" * 3000, b"M" * 5000])
WRITE_FLAGS = st.sampled_from(
    [("O_CREAT",), ("O_CREAT", "O_TRUNC"), ("O_CREAT", "O_APPEND"), ("O_CREAT", "O_EXCL"), ()]
)


def _domains(paths: st.SearchStrategy[str]) -> dict[str, st.SearchStrategy[Any]]:
    """What each field domain of ``ops.KINDS`` is drawn from inside a container: its paths,
    larger data, whole-file writes, a single xattr."""
    modes = st.sampled_from([0o755, 0o700, 0o644])
    ids = st.sampled_from([0, 7])
    return {
        "path": paths,
        "dir_path": paths,
        "follow": st.booleans(),
        "target": st.sampled_from(SYMLINK_TARGETS),
        "data": DATA,
        "offset": st.just(0),
        "size": st.sampled_from(SIZES),
        "open_flags": WRITE_FLAGS,
        "file_mode": st.just(0o644),
        "mode": modes,
        "dir_mode": modes,
        "uid": ids,
        "gid": st.sampled_from([0, 8]),
        "xattr_name": st.sampled_from(["user.t", "user.k"]),
        "xattr_value": st.sampled_from([b"1", b"22"]),
        "rename_flags": st.just(""),
    }


def _ops(paths: st.SearchStrategy[str]) -> st.SearchStrategy[ops.Op]:
    """The kinds of ``ops.KINDS`` declared for containers."""
    domains = _domains(paths)
    return st.one_of(
        [
            st.builds(kind.cls, *[domains[domain] for domain in kind.draws])
            for kind in ops.KINDS.values()
            if kind.containers
        ]
    )


def _mount(target: str) -> st.SearchStrategy[Mount]:
    flag = st.booleans()
    return st.one_of(
        # nocopy only on named volumes: podman 4.3 cannot express an anonymous nocopy one
        # ("-v name:/dst:nocopy" only; "--mount ...,nocopy" is "invalid mount option")
        st.builds(VolumeMount, st.just(target), st.sampled_from(VOLUMES), flag, flag),
        st.builds(VolumeMount, st.just(target), st.none(), flag),
        st.builds(BindMount, st.just(target), st.sampled_from([*HOSTS, "h3"]), flag, flag),
        st.builds(
            TmpfsMount,
            st.just(target),
            st.sampled_from([None, 4096, 8192]),
            st.sampled_from([None, 0o700]),
            flag,
        ),
    )


@st.composite
def container_specs(draw: st.DrawFn) -> ContainerSpec:
    """0-3 mounts at distinct targets, a volume at most once; or volumes-from."""
    if draw(st.integers(0, 5)) == 0:
        source = draw(st.sampled_from(CONTAINERS))
        return ContainerSpec(volumes_from=(VolumesFrom(source, draw(st.sampled_from(["", "ro"]))),))
    targets = draw(st.lists(st.sampled_from(MOUNT_TARGETS), max_size=3, unique=True))
    mounts = [draw(_mount(t)) for t in targets]
    named = [m.volume for m in mounts if isinstance(m, VolumeMount) and m.volume]
    if len(named) != len(set(named)):
        mounts = [m for m in mounts if not isinstance(m, VolumeMount)]
    return ContainerSpec(tuple(mounts))


class ContainerMachine(RuleBasedStateMachine):
    """Containers, volumes and host directories on ``driver``, in lockstep with the model."""

    driver: EngineDriver

    def __init__(self) -> None:
        super().__init__()
        self.run: Lockstep | None = None

    @initialize()
    def fresh(self) -> None:
        self.run = Lockstep(type(self).driver)

    @property
    def lock(self) -> Lockstep:
        assert self.run is not None
        return self.run

    def running(self) -> list[str]:
        containers = self.lock.model.containers
        return [n for n in CONTAINERS if n in containers and containers[n].status is Status.RUNNING]

    @precondition(lambda self: len(self.lock.model.hosts) < len(HOSTS))
    @rule(name=st.sampled_from(HOSTS))
    def make_host_dir(self, name: str) -> None:
        if name not in self.lock.model.hosts:
            self.lock.make_host_dir(name)

    @precondition(lambda self: bool(self.lock.model.hosts))
    @rule(name=st.sampled_from(HOSTS), op=_ops(_inner_paths()))
    def host_op(self, name: str, op: ops.Op) -> None:
        if name in self.lock.model.hosts:
            self.lock.host_run(name, op)

    @precondition(lambda self: not set(VOLUMES) <= set(self.lock.model.volumes))
    @rule(name=st.sampled_from(VOLUMES))
    def create_volume(self, name: str) -> None:
        self.lock.create_volume(name)

    @precondition(lambda self: bool(self.lock.model.volumes))
    @rule(data=st.data())
    def remove_volume(self, data: st.DataObject) -> None:
        self.lock.remove_volume(data.draw(st.sampled_from(sorted(self.lock.model.volumes))))

    def _from_image(self, spec: ContainerSpec, data: st.DataObject) -> ContainerSpec:
        """The spec on the world's image or on one committed so far; a ``--volumes-from``
        of a container that exists when one does (drawn blind, 6 in 7 named none)."""
        existing = sorted(self.lock.model.containers)
        if spec.volumes_from and existing:
            container = data.draw(st.sampled_from(existing))
            source = attrs.evolve(spec.volumes_from[0], container=container)
            spec = attrs.evolve(spec, volumes_from=(source,))
        images = sorted(self.lock.model.images)
        if not images:
            return spec
        return attrs.evolve(spec, image=data.draw(st.sampled_from([None, *images])))

    @precondition(lambda self: len(self.lock.model.containers) < len(CONTAINERS))
    @rule(name=st.sampled_from(CONTAINERS), spec=container_specs(), data=st.data())
    def create(self, name: str, spec: ContainerSpec, data: st.DataObject) -> None:
        """``create``; half the time a cp into the new container right after (docker's cp
        makes the mount points a start has not made yet: drawn together, a cp rarely
        came between a create and a start)."""
        if name not in self.lock.model.containers:
            created = self.lock.create(name, self._from_image(spec, data))
            if created == Ok(None) and data.draw(st.booleans()):
                found = self._cp_target(data, name)
                if found is not None:
                    self.lock.cp_in(found[0], found[1], b"q")

    @precondition(
        lambda self: len(self.lock.model.containers) == 1
        and any(
            r.volume is not None and not r.from_image
            for c in self.lock.model.containers.values()
            for r in c.table
        )
    )
    @rule(data=st.data())
    def hand_volumes_over(self, data: st.DataObject) -> None:
        """The one container, which has a volume mount, hands its volumes to a new one
        (``--volumes-from``); it goes (with ``rm -v`` half the time), then one of the
        volumes the holder names is removed, and half the time the holder starts: whether
        the holder holds them yet decides (docker takes a mount's volumes at the holder's
        first start or cp). Drawn together: the steps in a row were too rare among the
        others to find a holder that holds too early."""
        model = self.lock.model
        (source,) = model.containers
        holder = next(name for name in CONTAINERS if name != source)
        mode = data.draw(st.sampled_from(["", "ro"]))
        spec = ContainerSpec(volumes_from=(VolumesFrom(source, mode),))
        if self.lock.create(holder, spec) != Ok(None):
            return
        self.lock.stop(source)
        self.lock.remove(source, volumes=data.draw(st.booleans()))
        table = model.containers[holder].table
        handed = {r.volume for r in table if r.volume in model.volumes}
        # a mount's volume rather than an image VOLUME's (that one is held at create)
        named = sorted(handed - {r.volume for r in table if r.from_image}) or sorted(handed)
        if named:
            self.lock.remove_volume(data.draw(st.sampled_from(named)))
        if data.draw(st.booleans()):
            self.lock.start(holder)  # are the volumes it names still there?

    @precondition(lambda self: len(self.lock.model.containers) < len(CONTAINERS))
    @rule(name=st.sampled_from(CONTAINERS), spec=container_specs(), data=st.data())
    def create_and_start(self, name: str, spec: ContainerSpec, data: st.DataObject) -> None:
        """``run -d``: create, then start when the create succeeded."""
        spec = self._from_image(spec, data)
        created = name not in self.lock.model.containers and self.lock.create(name, spec)
        if created == Ok(None):
            self.lock.start(name)

    @precondition(
        lambda self: bool(self.lock.model.containers)
        and not set(IMAGES) <= set(self.lock.model.images)
    )
    @rule(name=st.sampled_from(CONTAINERS), image=st.sampled_from(IMAGES))
    def commit(self, name: str, image: str) -> None:
        """``commit`` to a new image name (a name is committed once: the model's
        containers find their image by name)."""
        if name in self.lock.model.containers and image not in self.lock.model.images:
            self.lock.commit(name, image)

    @precondition(lambda self: bool(self.lock.model.containers))
    @rule(name=st.sampled_from(CONTAINERS))
    def start(self, name: str) -> None:
        if name in self.lock.model.containers:
            self.lock.start(name)

    @precondition(lambda self: bool(self.lock.model.containers))
    @rule(name=st.sampled_from(CONTAINERS))
    def stop(self, name: str) -> None:
        if name in self.lock.model.containers:
            self.lock.stop(name)

    @precondition(lambda self: bool(self.lock.model.containers))
    @rule(name=st.sampled_from(CONTAINERS), volumes=st.booleans())
    def remove(self, name: str, volumes: bool) -> None:
        if name in self.lock.model.containers:
            self.lock.remove(name, volumes=volumes)

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def container_op(self, data: st.DataObject) -> None:
        self._container_op(data)

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def another_container_op(self, data: st.DataObject) -> None:
        """The same as container_op: operations are most of a program."""
        self._container_op(data)

    def _container_op(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.running()))
        targets = tuple(r.mount.target for r in self.lock.model.containers[name].table)
        self.lock.run(name, data.draw(_ops(_paths(targets))))

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def remove_image_file(self, data: st.DataObject) -> None:
        """``rm`` of an image file in a running container, where no mount covers it: a
        whiteout in the writable layer, which ``diff`` lists and ``commit`` must carry;
        half the time the container is committed right after (drawn on their own: among
        every operation kind and path, a program reached a commit after a removed image
        file too rarely to find a commit that drops whiteouts)."""
        name = data.draw(st.sampled_from(self.running()))
        fs = ContainerFs(self.lock.model.containers[name].root, self.lock.model.mounts_of(name))
        files = [p for p in IMAGE_FILES if fs.locate(p)[0] is None] or list(IMAGE_FILES)
        self.lock.run(name, ops.Unlink(data.draw(st.sampled_from(files))))
        free = [i for i in IMAGES if i not in self.lock.model.images]
        if free and data.draw(st.booleans()):  # and commit it, half the time
            self.lock.commit(name, free[0])

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def through_symlink(self, data: st.DataObject) -> None:
        """A symlink made in a running container, then an operation through it (drawn on
        its own: a later operation rarely drew the link's path among all the others)."""
        name = data.draw(st.sampled_from(self.running()))
        link = data.draw(st.sampled_from(["l", "e/l", "n/l", "a/l"]))
        mounted = [f"/{r.mount.target}" for r in self.lock.model.containers[name].table]
        target = data.draw(st.sampled_from([*SYMLINK_TARGETS, *mounted, *mounted]))
        self.lock.run(name, ops.Symlink(target, link))
        through = st.sampled_from([link, f"{link}/x", f"{link}/d", f"{link}/s/x", f"{link}/new"])
        self.lock.run(name, data.draw(_ops(through)))

    def _cp_target(
        self, data: st.DataObject, name: str | None = None
    ) -> tuple[str, str, bool] | None:
        """A container (started or not: docker's cp makes the missing mount points) and
        a path ``cp`` may take there: its parent a directory, itself a file or nothing,
        no symlink on the way (the engines' other answers - into a directory, through a
        symlink - are not modelled). Read-only mounts are fair game
        (``cp_checks_read_only``). A container naming a removed volume (a
        ``--volumes-from`` holder that took no reference) gets any path and True: the cp
        fails before it looks at the path. ``name``: that container."""
        model = self.lock.model
        existing = [n for n in CONTAINERS if n in model.containers]
        if not existing:
            return None
        if name is None:
            name = data.draw(st.sampled_from(existing))
        table = model.containers[name].table
        targets = tuple(r.mount.target for r in table)
        path = data.draw(_paths(targets))
        if any(isinstance(r.mount, VolumeMount) and r.volume not in model.volumes for r in table):
            return name, path, True
        fs = model.cp_fs(name)
        parent = path.rpartition("/")[0]
        kinds = [first_kind(fs, parent) if parent else "dir", first_kind(fs, path)]
        if kinds[0] != "dir" or kinds[1] not in (None, "file"):
            return None
        if fs.resolve(path, follow=True) != path:
            return None  # a symlink on the way: the engines resolve it their own way
        return name, path, False

    @precondition(lambda self: bool(self.lock.model.containers))
    @rule(data=st.data(), content=DATA)
    def cp_in(self, data: st.DataObject, content: bytes) -> None:
        found = self._cp_target(data)
        if found is not None:
            self.lock.cp_in(found[0], found[1], content)

    @precondition(lambda self: bool(self.lock.model.containers))
    @rule(data=st.data())
    def cp_out(self, data: st.DataObject) -> None:
        found = self._cp_target(data)
        if found is None:
            return
        name, path, gone = found
        if gone or first_kind(self.lock.model.cp_fs(name), path) == "file":
            self.lock.cp_out(name, path)

    @invariant()
    def nothing_else(self) -> None:
        pass  # every action checks everything after it (Lockstep.check)


def first_kind(fs: Any, path: str) -> str | None:
    """The kind of what ``path`` names in a container tree (lstat), or None."""
    found = next(iter(fs.apply(ops.Stat(path, follow=False))))
    return found.value.kind if isinstance(found, Ok) else None


def run_container_machine(driver: EngineDriver, config: settings) -> None:
    machine = type("ContainerMachineFor", (ContainerMachine,), {"driver": driver})
    run_state_machine_as_test(machine, settings=config)


__all__ = [
    "SCENARIOS",
    "ContainerDiverged",
    "ContainerMachine",
    "ContainerScenario",
    "Lockstep",
    "Refused",
    "container_specs",
    "run_container_machine",
    "run_scenario",
]
