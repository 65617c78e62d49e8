"""The container model: an image, a volume store, host directories, and containers whose
root is an overlay of the image plus a mount table of volumes, binds and tmpfs.

What differs between engines is data (:mod:`reference.engines`); this module reads it.
Sources: "obs" = ../shared/notes/container-volumes.md (docker.io 20.10.24, podman 4.3.1
on this machine), engine source files as named, vfs = fs/namei.c.

Scope, chosen so that every rule can be checked against real engines:

- mount targets are relative paths (``"a"``, ``"a/d"``, ``"n/s"``); a mount below another
  is mounted after it (both engines sort mounts by the number of path components), its
  missing mount point made inside whatever holds it by then (the parent mount: a volume,
  a host directory), and a rename of a directory holding a mount point carries the mount
  along until the next start;
- a volume appears at most once in one container's table;
- operations inside containers have plain relative paths (no symlinks, no ``..``), which
  resolve lexically into the mount that holds them;
- times are not modelled (the views carry no times).

Volumes, host directories and tmpfs mounts are plain trees (:func:`plain_fs`: the overlay
engine with no lower layers behaves as a plain POSIX filesystem, read-only as one with the
tree as its only lower). Engine actions return ``Ok(None)`` or :class:`Refused`.
"""

from __future__ import annotations

import copy
import enum
import itertools
from collections.abc import Iterator

import attrs

from reference import ops
from reference.commit import committed_layer
from reference.diff import diff
from reference.engines import EngineProfile, ImageVolumes, MountOrder, Populate, RootMeta
from reference.errors import SpecError
from reference.layer import (
    EntrySpec,
    Inode,
    Kind,
    LayerSpec,
    StackSpec,
    dir_nlink,
    entry_at,
    link_counts,
    new_dir,
    walk,
)
from reference.options import Options
from reference.outcome import Allowed, Err, Ok, Outcome
from reference.overlay import Overlay
from reference.paths import FsError
from reference.view import EntryView, View

#: tmpfs accounts file data in pages (mm/shmem.c shmem_inode_acct_blocks).
PAGE = 4096
#: POSIX unlink(): a directory gives EPERM; Linux gives EISDIR (unlink(2)); both conform.
UNLINK_DIR = frozenset({Err("EISDIR"), Err("EPERM")})


# --- mount tables as data -------------------------------------------------------------------


@attrs.frozen
class VolumeMount:
    """``-v name:/target`` (``volume=None``: an anonymous volume, ``-v /target``)."""

    target: str
    volume: str | None = None
    read_only: bool = False
    nocopy: bool = False


@attrs.frozen
class BindMount:
    """A host directory at ``target``. ``short_syntax``: ``-v /src:/target`` (Docker creates
    a missing source); otherwise ``--mount type=bind`` (a missing source is refused)."""

    target: str
    source: str
    read_only: bool = False
    short_syntax: bool = False


@attrs.frozen
class TmpfsMount:
    """``--mount type=tmpfs``; ``size`` in bytes (None: unlimited), ``mode`` the root's
    mode, ``copy_up`` None for the engine's default (Podman tmpcopyup, Docker none)."""

    target: str
    size: int | None = None
    mode: int | None = attrs.field(default=None, repr=lambda m: "None" if m is None else oct(m))
    read_only: bool = False
    copy_up: bool | None = None


Mount = VolumeMount | BindMount | TmpfsMount


@attrs.frozen
class VolumesFrom:
    """``--volumes-from container[:mode]``; mode "", "ro", "rw" (or "nocopy", refused)."""

    container: str
    mode: str = ""


@attrs.frozen
class ContainerSpec:
    mounts: tuple[Mount, ...] = ()
    volumes_from: tuple[VolumesFrom, ...] = ()
    #: The image it starts from: None for the world's image, else a committed one's name.
    image: str | None = None


@attrs.frozen
class Refused:
    """An engine refused an action: ``code`` names why (the adapters map each engine's
    message to one of :class:`Why`)."""

    code: str


class Why(enum.Enum):
    DUPLICATE_MOUNT_POINT = "duplicate-mount-point"
    BIND_SOURCE_MISSING = "bind-source-missing"
    NOT_A_DIRECTORY = "not-a-directory"
    INVALID_MODE = "invalid-mode"
    NO_SUCH_CONTAINER = "no-such-container"
    NO_SUCH_VOLUME = "no-such-volume"
    VOLUME_IN_USE = "volume-in-use"
    VOLUME_EXISTS = "volume-exists"
    CONTAINER_RUNNING = "container-running"
    NOT_RUNNING = "not-running"
    NO_SPACE = "no-space"
    NO_SUCH_IMAGE = "no-such-image"
    NO_SUCH_PATH = "no-such-path"
    INVALID_MOUNT = "invalid-mount"
    READ_ONLY = "read-only"


class EngineError(SpecError):
    def __init__(self, why: Why) -> None:
        super().__init__(why.value)
        self.why = why


Action = Ok | Refused


# --- plain filesystems ------------------------------------------------------------------------


def plain_fs(root: Inode, *, read_only: bool = False) -> Overlay:
    """A plain filesystem over the tree ``root``: the overlay engine with no lower layer
    (``root`` as its upper), or read-only with ``root`` as its only lower (every write
    EROFS, in the vfs order the overlay engine already follows: EEXIST before EROFS, ...).
    Built per call: the tree is shared with other mounts and the host."""
    fs = Overlay(StackSpec(()), Options(read_only=read_only))
    if read_only:
        fs.lowers = [root]
        fs.lower_nlink = link_counts(root)
    else:
        fs.upper = root
    return fs


def root_entry(root: Inode) -> EntryView:
    """The EntryView of a plain tree's root directory (a mount point as seen inside)."""
    return EntryView(
        kind="dir",
        mode=root.mode,
        uid=root.uid,
        gid=root.gid,
        nlink=dir_nlink(root),
        xattrs=tuple(sorted(root.xattrs.items())),
    )


def tree_view(root: Inode) -> View:
    """What the host sees in a plain tree (a volume's data directory, a host directory)."""
    return plain_fs(root).view()


def copy_tree(source: Overlay, path: str, into: Inode, *, xattrs: bool = True) -> None:
    """Copy what ``source`` shows below ``path`` into the directory ``into``: owner, mode,
    xattrs and bytes per entry (continuity fs/copy.go copyDirectory; runc tmpcopyup).
    Hardlinks of the source stay hardlinks (continuity getLinkSource)."""
    seen: dict[int, Inode] = {}
    view = source.view()
    prefix = f"{path}/" if path else ""
    for rel, entry in sorted(view.entries.items()):
        if not rel.startswith(prefix) or entry.kind == "unreachable":
            continue
        *parents, name = rel[len(prefix) :].split("/")
        parent = into
        for part in parents:
            parent = parent.entries[part]
        ident = view.inodes[rel]
        if entry.kind != "dir" and ident in seen:
            parent.entries[name] = seen[ident]
            continue
        inode = Inode(
            Kind(entry.kind),
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            xattrs=dict(entry.xattrs) if xattrs else {},
            data=entry.data,
            target=entry.target,
        )
        seen[ident] = inode
        parent.entries[name] = inode


def take_root_meta(source: EntryView, root: Inode) -> None:
    root.uid, root.gid, root.mode = source.uid, source.gid, source.mode


# --- state ------------------------------------------------------------------------------------


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


@attrs.define
class Volume:
    name: str
    root: Inode
    anonymous: bool = False
    #: Podman's NeedsCopyUp / NeedsChown, set when the volume is created (libpod
    #: volume_internal.go), cleared by the first copy / the first start.
    needs_copy_up: bool = True
    needs_chown: bool = True
    #: How many times image content was copied into it (what a driver mirrors).
    copies: int = 0


@attrs.define
class Tmpfs:
    """A mounted tmpfs: its tree and its page limit (None: unlimited)."""

    root: Inode
    limit: int | None
    #: File -> the pages allocated to it, once a write or truncate set them (before:
    #: every page of its data, as a copy writes them).
    allocated: dict[int, set[int]] = attrs.field(factory=dict)

    def pages_of_file(self, inode: Inode) -> set[int]:
        return self.allocated.get(inode.ident, set(range(pages(inode.data))))

    def used(self) -> int:
        return sum(len(self.pages_of_file(inode)) for _, inode in _unique_files(self.root))

    def pages_at(self, fs: Overlay, path: str) -> set[int] | None:
        upper = _file_at(fs, path)
        return None if upper is None else self.pages_of_file(upper)

    def keep(self, fs: Overlay, path: str, allocated: set[int]) -> None:
        upper = _file_at(fs, path)
        if upper is not None:
            self.allocated[upper.ident] = allocated


def _file_at(fs: Overlay, path: str) -> Inode | None:
    """The file ``path`` names in a plain tree (None: none, or a missing directory)."""
    try:
        node = fs.resolve(path, follow=True).node
    except FsError:
        return None
    upper = node.upper if node is not None else None
    return upper if upper is not None and upper.kind is Kind.FILE else None


@attrs.frozen
class Resolved:
    """One entry of a container's mount table with its volume name fixed (anonymous
    volumes get theirs at create); ``populate`` is False for volumes-from mounts whose
    engine does not populate them."""

    mount: Mount
    volume: str | None = None
    populate: bool = True
    #: An anonymous volume of this container's own (``rm -v`` removes it).
    anonymous: bool = False
    #: The container holds the volume (``volume rm`` refuses it): from create on, or,
    #: for a ``--volumes-from`` mount of a volume the source was given by a mount (not
    #: by its image) on a profile without ``volumes_from_referenced_at_create``, from
    #: its first start or cp.
    referenced: bool = True
    #: An image ``VOLUME``'s (its own, or carried by ``--volumes-from``).
    from_image: bool = False


@attrs.define
class Container:
    name: str
    spec: ContainerSpec
    root: Overlay
    table: tuple[Resolved, ...]
    status: Status = Status.CREATED
    #: While running: target -> tmpfs of this run.
    tmpfs: dict[str, Tmpfs] = attrs.field(factory=dict)
    #: Upper objects of the root whose mtime changed (reference/diff.py ``fresh``).
    touched: set[int] = attrs.field(factory=set)
    #: While running: mount target -> where the mount is now (a rename of a directory
    #: holding its mount point moved it: vfs moves the dentry, the mount stays on it).
    placed: dict[str, str] = attrs.field(factory=dict)
    #: How many mounts of its order the last start mounted (all: it succeeded).
    reached: int = 0


def pages(data: bytes) -> int:
    """Pages a file's data occupies when every byte was written."""
    return pages_of(len(data))


def pages_of(size: int) -> int:
    return -(-size // PAGE)


def _unique_files(root: Inode) -> Iterator[tuple[str, Inode]]:
    seen: set[int] = set()
    for path, inode in walk(root):
        if inode.kind is Kind.FILE and inode.ident not in seen:
            seen.add(inode.ident)
            yield path, inode


# --- the model --------------------------------------------------------------------------------


class ContainerWorld:
    """One engine (``profile``), one image, its volumes, the host's directories and its
    containers. Names of containers, volumes and host directories are chosen by the caller
    (anonymous volumes: ``<container>.<target>``)."""

    def __init__(
        self, profile: EngineProfile, image: StackSpec, volumes: tuple[str, ...] = ()
    ) -> None:
        self.profile = profile
        self.image = image
        #: The targets the image declares ``VOLUME`` at (a committed image keeps them:
        #: both engines copy the config's Volumes, observed with ``image inspect``).
        self.image_volumes = volumes
        self.volumes: dict[str, Volume] = {}
        self.hosts: dict[str, Inode] = {}
        self.containers: dict[str, Container] = {}
        #: Committed images: name -> the stack (the committed layer on top).
        self.images: dict[str, StackSpec] = {}
        #: Committed images: name -> the targets it declares ``VOLUME`` at.
        self.declared: dict[str, tuple[str, ...]] = {}
        self._image_views: dict[StackSpec, View] = {}

    # --- the host -------------------------------------------------------------------------

    def make_host_dir(self, name: str) -> None:
        self.hosts[name] = new_dir()

    def host_run(self, name: str, op: ops.Op) -> Allowed:
        """An operation by root on the host inside host directory ``name``."""
        return plain_fs(self.hosts[name]).apply(op)

    def host_view(self, name: str) -> View:
        return tree_view(self.hosts[name])

    def volume_view(self, name: str) -> View:
        """A volume's data directory as the host sees it."""
        return tree_view(self.volumes[name].root)

    # --- volumes --------------------------------------------------------------------------

    def create_volume(self, name: str) -> Action:
        if name in self.volumes:
            return (
                Ok(None) if self.profile.volume_create_existing_ok else _refused(Why.VOLUME_EXISTS)
            )
        self._new_volume(name, anonymous=False)
        return Ok(None)

    def _new_volume(self, name: str, *, anonymous: bool) -> Volume:
        volume = Volume(name, new_dir(self.profile.new_volume_mode), anonymous=anonymous)
        self.volumes[name] = volume
        return volume

    def remove_volume(self, name: str) -> Action:
        """``volume rm``: refused while any container (running or not) references it."""
        if name not in self.volumes:
            return _refused(Why.NO_SUCH_VOLUME)
        if self._users(name):
            return _refused(Why.VOLUME_IN_USE)
        del self.volumes[name]
        return Ok(None)

    def _users(self, volume: str) -> list[str]:
        return [
            c.name
            for c in self.containers.values()
            if any(r.volume == volume and r.referenced for r in c.table)
        ]

    def _take_references(self, container: Container) -> None:
        """A start or cp takes the references the container does not hold yet
        (:attr:`EngineProfile.volumes_from_referenced_at_create`); a volume removed
        meanwhile fails it, nothing done ("get <v>: no such volume"). With several such
        volumes and one missing, docker takes the others' in map order; the model takes
        none."""
        waiting = [e for e in container.table if not e.referenced and e.volume is not None]
        if any(entry.volume not in self.volumes for entry in waiting):
            raise EngineError(Why.NO_SUCH_VOLUME)
        container.table = tuple(attrs.evolve(entry, referenced=True) for entry in container.table)

    def _cp_mount_points(self, container: Container) -> None:
        """Before a cp, mount the volumes and binds (not the tmpfs mounts) at their
        targets on the root, a parent before what is in it, making each missing mount
        point as a start does (:func:`_mount_point`; a read-only one is read-only), when
        the profile's cp does (:attr:`EngineProfile.cp_makes_mount_points`)."""
        if not self.profile.cp_makes_mount_points:
            return
        self._make_bind_sources(container)  # by hand: cp made a missing -v source
        mounted: dict[str, tuple[Inode, bool, Tmpfs | None]] = {}
        for entry in cp_mount_order(container.table):
            _mount_point(container, ContainerFs(container.root, mounted), entry.mount.target)
            mounted[entry.mount.target] = (
                self._tree(container, entry),
                entry.mount.read_only,
                None,
            )

    # --- containers -----------------------------------------------------------------------

    def create(self, name: str, spec: ContainerSpec) -> Action:
        try:
            self._create(name, spec)
        except EngineError as failure:
            return Refused(failure.why.value)
        return Ok(None)

    def _create(self, name: str, spec: ContainerSpec) -> None:
        table = self._resolve_table(name, spec)
        if spec.image is not None and spec.image not in self.images:
            raise EngineError(Why.NO_SUCH_IMAGE)
        root = Overlay(self.stack_of(spec), Options())
        if self.profile.populate_refuses_file_target:
            for index, entry in enumerate(table):
                populating = self._would_populate(entry, root)
                if populating and _kind_at(root, entry.mount.target) != "dir":
                    self._populate_before_refusal(Container(name, spec, root, table), index)
                    raise EngineError(Why.NOT_A_DIRECTORY)
        for entry in table:
            # (a handed-over volume docker does not hold yet is not looked up: a removed
            # one stays removed; found by the docker machine)
            if entry.volume is not None and entry.referenced and entry.volume not in self.volumes:
                anonymous = isinstance(entry.mount, VolumeMount) and entry.mount.volume is None
                self._new_volume(entry.volume, anonymous=anonymous)
        container = Container(name, spec, root, table)
        self.containers[name] = container
        if self.profile.populate is Populate.AT_CREATE_IF_EMPTY:
            for entry in table:
                if self._would_populate(entry, root):
                    self._copy_into_volume(container, entry)

    def table_for(self, name: str, spec: ContainerSpec) -> tuple[Resolved, ...] | None:
        """The mount table ``create(name, spec)`` would give (None: the spec is refused
        before there is one)."""
        try:
            return self._resolve_table(name, spec)
        except EngineError:
            return None

    def _resolve_table(self, name: str, spec: ContainerSpec) -> tuple[Resolved, ...]:
        """The mount table: own mounts, then volumes-from mounts at targets not taken
        (moby daemon/volumes.go registerMountPoints: own mounts win), then an anonymous
        volume at each target the image declares ``VOLUME`` at and nothing took (moby
        daemon/create_unix.go createContainerOSSpecificSettings: IsDestinationMounted;
        podman pkg/specgen/generate/storage.go: an image volume under a user mount is
        skipped); they are populated as any anonymous volume (observed: both engines
        listed one anonymous volume after ``create``, filled from the image, taking the
        image directory's owner and mode, removed by ``rm -v``, and ``--volumes-from``
        carried it). Duplicate own targets are refused (both engines: "Duplicate mount
        point")."""
        self._validate(spec)
        targets = [m.target for m in spec.mounts]
        table = [
            Resolved(m)
            if not isinstance(m, VolumeMount)
            else Resolved(m, m.volume)
            if m.volume is not None
            else Resolved(m, self.anonymous_name(name, m.target), anonymous=True)
            for m in spec.mounts
        ]
        for source in spec.volumes_from:
            if source.mode not in ("", "ro", "rw"):
                raise EngineError(Why.INVALID_MODE)  # obs §1.2: "invalid mode: nocopy"
            other = self.containers.get(source.container)
            if other is None:
                raise EngineError(Why.NO_SUCH_CONTAINER)
            for entry in other.table:
                mount = entry.mount
                if isinstance(mount, TmpfsMount) and self.profile.volumes_from_tmpfs_refused:
                    raise EngineError(Why.NO_SUCH_VOLUME)
                if isinstance(mount, TmpfsMount) or mount.target in targets:
                    continue  # tmpfs is never shared (obs §1.4)
                if source.mode:
                    mount = attrs.evolve(mount, read_only=source.mode == "ro")
                if isinstance(mount, VolumeMount):
                    # the source's nocopy comes along (podman 4.3.1, reproduced by hand:
                    # --volumes-from a nocopy mount of a never-started container does not
                    # copy, of a plain one does) - unless a mode is given, which replaces
                    # the volume's options (podman pkg/specgen/generate/storage.go
                    # getVolumesFrom: namedVol.Options = options; found by certify:
                    # --volumes-from c1:ro of a nocopy volume copied the image into it)
                    nocopy = mount.nocopy and not source.mode
                    mount = attrs.evolve(mount, volume=entry.volume, nocopy=nocopy)
                table.append(
                    Resolved(
                        mount,
                        entry.volume,
                        populate=self.profile.volumes_from_populates,
                        referenced=self.profile.volumes_from_referenced_at_create
                        or entry.from_image
                        or entry.volume is None,
                        from_image=entry.from_image,
                    )
                )
                targets.append(mount.target)
        if self.profile.image_volumes is ImageVolumes.ANONYMOUS:
            declared = self.declared.get(spec.image or "", self.image_volumes)
            for target in declared:
                if target not in targets:
                    volume = self.anonymous_name(name, target)
                    table.append(
                        Resolved(VolumeMount(target), volume, anonymous=True, from_image=True)
                    )
        return tuple(table)

    def anonymous_name(self, container: str, target: str) -> str:
        """The model's name of a new anonymous volume: ``<container>.<target>``, then
        ``.2``, ``.3``, ... while an earlier one of that name is still there (a removed
        container's, kept by ``rm`` without ``-v``) or a container still names it (a
        ``--volumes-from`` mount of a removed volume)."""
        base = f"{container}.{target}"
        held = {entry.volume for c in self.containers.values() for entry in c.table}
        taken = self.volumes.keys() | held
        return next(
            n for n in (base, *(f"{base}.{i}" for i in range(2, len(taken) + 3))) if n not in taken
        )

    def _validate(self, spec: ContainerSpec) -> None:
        """Each mount is parsed and validated, then checked against the targets before it,
        in moby's order (daemon/volumes.go registerMountPoints: ``-v`` binds, then
        ``--mount``s; validate.go: a missing bind source, a read-only anonymous volume);
        the first error is the answer (found by the state machine on docker 20.10.24)."""
        seen: set[str] = set()
        ordered = sorted(
            spec.mounts, key=lambda m: 0 if isinstance(m, BindMount) and m.short_syntax else 1
        )
        for mount in ordered:
            if isinstance(mount, BindMount) and mount.source not in self.hosts:
                creates = mount.short_syntax and self.profile.bind_short_syntax_creates_source
                if not creates:
                    raise EngineError(Why.BIND_SOURCE_MISSING)
            anonymous = isinstance(mount, VolumeMount) and mount.volume is None
            if anonymous and mount.read_only and self.profile.anonymous_read_only_refused:
                raise EngineError(Why.INVALID_MOUNT)
            if mount.target in seen:
                raise EngineError(Why.DUPLICATE_MOUNT_POINT)
            seen.add(mount.target)

    def _populate_before_refusal(self, container: Container, failing: int) -> None:
        """Docker copies the image into the existing volumes mounted before the file
        target in the mount list, then refuses (by hand, docker 20.10: ``--mount
        type=volume,src=v1,dst=/a --mount type=volume,dst=/f`` failed "source .../f is not
        directory" with v1 holding the image's /a, 2 of 2; with the two mounts swapped
        v1 stayed empty)."""
        if self.profile.populate is not Populate.AT_CREATE_IF_EMPTY:
            return
        for entry in container.table[:failing]:
            if entry.volume in self.volumes and self._would_populate(entry, container.root):
                self._copy_into_volume(container, entry)

    def _would_populate(self, entry: Resolved, root: Overlay) -> bool:
        """Docker's rule (create_unix.go populateVolume, copyExistingContents): a volume
        mount without nocopy whose volume is empty and whose image path exists."""
        mount = entry.mount
        if not isinstance(mount, VolumeMount) or mount.nocopy or not entry.populate:
            return False
        volume = self.volumes.get(entry.volume or "")
        if volume is not None and volume.root.entries:
            return False
        return _kind_at(root, mount.target) is not None

    def _copy_into_volume(self, container: Container, entry: Resolved) -> None:
        assert entry.volume is not None
        volume = self.volumes[entry.volume]
        target = entry.mount.target
        if _kind_at(container.root, target) != "dir":
            return
        copy_tree(container.root, target, volume.root)
        volume.copies += 1
        if self.profile.root_meta is RootMeta.WITH_COPY:
            take_root_meta(_entry_at(container.root, target), volume.root)

    def start(self, name: str) -> Action:
        """``start`` mounting in the profile's usual order (:func:`start_order`)."""
        container = self.containers.get(name)
        if container is None:
            return _refused(Why.NO_SUCH_CONTAINER)
        return self._start_in(container, start_order(container.table, self.profile))

    def starts(self, name: str) -> tuple[tuple[Action, ContainerWorld], ...]:
        """Every answer a ``start`` may give and the world after each, the usual order's
        first (this world, changed); the others are copies. The engines' order among the
        mounts of one depth is not fixed (:class:`reference.engines.MountOrder`); it
        matters only when a start fails: which failing mount comes first, and which
        mount points the mounts before it made. A start that succeeds in one order
        succeeds the same way in every order (mounts of one depth are neither inside one
        another nor the parents of one another), so only a failed start is tried in the
        profile's other orders; orders that mount the same set before the same failure
        are one outcome."""
        container = self.containers.get(name)
        if container is None or container.status is Status.RUNNING:
            return ((self.start(name), self),)
        orders = start_orders(container.table, self.profile)
        if len(orders) == 1:
            return ((self._start_in(container, orders[0]), self),)
        pristine = copy.deepcopy(self)
        usual = self._start_in(container, orders[0])
        if usual == Ok(None):
            return ((usual, self),)
        found: list[tuple[Action, ContainerWorld]] = [(usual, self)]
        seen = {(usual, _reached(orders[0], container))}
        for order in orders[1:]:
            world = copy.deepcopy(pristine)
            other = world.containers[name]
            action = world._start_in(other, order)
            key = (action, _reached(order, other))
            if key not in seen:
                seen.add(key)
                found.append((action, world))
        return tuple(found)

    def _start_in(self, container: Container, order: list[Resolved]) -> Action:
        if container.status is Status.RUNNING:
            return Ok(None)
        try:
            self._start(container, order)
        except EngineError as failure:
            return Refused(failure.why.value)
        container.status = Status.RUNNING
        return Ok(None)

    def _start(self, container: Container, order: list[Resolved]) -> None:
        """Engine work first (bind sources, Podman's chown and copy-up: libpod mountStorage
        runs before the runtime), then the runtime's mounts in ``order`` (runc
        mountToRootfs: a target that is not a directory fails the start, a missing one is
        made 0755 with its parents where it is, a tmpfs is mounted fresh for this run;
        what was made before a failure stays). First the volume references it does not
        hold yet (:meth:`_take_references`). A read-only tmpfs is writable until every
        mount is made (runc rootfs_linux.go mountPropagate: "Delay mounting the filesystem
        read-only if we need to do further operations on it", remounted in
        finalizeRootfs; found by the machine on docker 20.10: a volume at ``a/d`` under a
        read-only tmpfs at ``a`` started)."""
        self._take_references(container)
        root = container.root
        self._make_bind_sources(container)
        if self.profile.root_meta is RootMeta.FIRST_START or (
            self.profile.populate is Populate.ONCE_AT_FIRST_START
        ):
            for entry in container.table:
                if isinstance(entry.mount, VolumeMount):
                    self._podman_volume_setup(container, entry)
        container.tmpfs = {}
        container.placed = {}
        container.reached = 0
        mounted: dict[str, tuple[Inode, bool, Tmpfs | None]] = {}
        for entry in order:
            target = entry.mount.target
            fs = ContainerFs(root, mounted)
            existed = _mount_point(container, fs, target)
            tmpfs = None
            if isinstance(entry.mount, TmpfsMount):
                tmpfs = self._new_tmpfs(fs, entry.mount, existed)
                container.tmpfs[target] = tmpfs
            read_only = start_read_only(entry.mount)
            mounted[target] = (self._tree(container, entry), read_only, tmpfs)
            container.reached += 1
        container.placed = {target: target for target in mounted}

    def _make_bind_sources(self, container: Container) -> None:
        """A missing bind source (``-v`` short syntax) is made 0755 (moby
        volume/mounts/mounts.go Setup: MkdirAllAndChown)."""
        for entry in container.table:
            mount = entry.mount
            if isinstance(mount, BindMount) and mount.source not in self.hosts:
                self.make_host_dir(mount.source)

    def _podman_volume_setup(self, container: Container, entry: Resolved) -> None:
        """libpod mountNamedVolume: chown the root to the image directory once
        (fixVolumePermissionsUnlocked, NeedsChown; also with nocopy), and copy up once
        (NeedsCopyUp): only when the image path is a non-empty directory and the volume
        is empty; otherwise the flag stays set for a later start."""
        assert isinstance(entry.mount, VolumeMount) and entry.volume is not None
        volume = self.volumes[entry.volume]
        image_dir = _entry_at(container.root, entry.mount.target)
        if volume.needs_chown and self.profile.root_meta is RootMeta.FIRST_START:
            volume.needs_chown = False
            volume.root.uid = volume.root.gid = 0
            if image_dir is not None and image_dir.kind == "dir":
                take_root_meta(image_dir, volume.root)
        if (
            self.profile.populate is Populate.ONCE_AT_FIRST_START
            and entry.populate
            and volume.needs_copy_up
            and not entry.mount.nocopy
            and image_dir is not None
            and image_dir.kind == "dir"
            and _children(container.root, entry.mount.target)
            and not volume.root.entries
        ):
            volume.needs_copy_up = False
            volume.copies += 1
            copy_tree(container.root, entry.mount.target, volume.root)

    def _tree(self, container: Container, entry: Resolved) -> Inode:
        """The tree mounted for ``entry`` (a tmpfs's is in ``container.tmpfs``; a ``-v``
        source not made yet is the empty directory it will be)."""
        mount = entry.mount
        if isinstance(mount, VolumeMount):
            assert entry.volume is not None
            return self.volumes[entry.volume].root
        if isinstance(mount, BindMount):
            found = self.hosts.get(mount.source)
            return found if found is not None else new_dir(0o755)
        return container.tmpfs[mount.target].root

    def _new_tmpfs(self, fs: ContainerFs, mount: TmpfsMount, existed: EntryView | None) -> Tmpfs:
        """A fresh tmpfs. Root mode: ``mode=``, then runc's chmod to an existing target's
        mode (rootfs_linux.go, which runs after the mount and so wins), else tmpfs's 1777;
        the profile may fix it (k8s). Owner root. Copy-up per profile or ``copy_up``."""
        root = new_dir(0o1777 if mount.mode is None else mount.mode)
        if self.profile.tmpfs_root_mode is not None:
            root.mode = self.profile.tmpfs_root_mode
        elif existed is not None:
            root.mode = existed.mode
        copy_up = self.profile.tmpfs_copies_image if mount.copy_up is None else mount.copy_up
        if copy_up and existed is not None:
            keep = self.profile.tmpfs_copy_keeps_xattrs
            home, inner = fs.locate(mount.target)
            copy_tree(fs.fs(home), inner, root, xattrs=keep)
        limit = None if not mount.size else -(-mount.size // PAGE)
        tmpfs = Tmpfs(root, limit)
        if limit is not None and tmpfs.used() > limit:
            # runc tmpcopyup copies into the mounted tmpfs: ENOSPC fails the start
            raise EngineError(Why.NO_SPACE)
        return tmpfs

    def stop(self, name: str) -> Action:
        container = self.containers.get(name)
        if container is None:
            return _refused(Why.NO_SUCH_CONTAINER)
        if container.status is Status.RUNNING:
            container.status = Status.EXITED
            container.tmpfs = {}  # the tmpfs mounts go with the run (obs §1.4)
            container.placed = {}
        return Ok(None)

    def remove(self, name: str, *, volumes: bool = False) -> Action:
        """``rm [-v]``: refused while running; ``-v`` removes the anonymous volumes the
        container holds, its own and those it got by ``--volumes-from``, that no other
        container holds (moby daemon/mounts.go removeMountPoints: every mount point with
        a volume whose spec names none, in-use ones ignored; libpod removeContainer: every
        anonymous named volume not in use). By hand (docker 20.10.24, podman 4.3.1,
        docs/containers.md): ``rm -v`` of a ``--volumes-from`` holder removed the source's
        anonymous volumes; on docker not one the holder did not hold yet."""
        container = self.containers.get(name)
        if container is None:
            return _refused(Why.NO_SUCH_CONTAINER)
        if container.status is Status.RUNNING:
            return _refused(Why.CONTAINER_RUNNING)
        del self.containers[name]
        if volumes:
            for entry in container.table:
                mount = entry.mount
                volume = self.volumes.get(entry.volume or "")
                if (
                    isinstance(mount, VolumeMount)
                    and volume is not None
                    and volume.anonymous
                    and entry.referenced
                    and not self._users(volume.name)
                ):
                    del self.volumes[volume.name]
        return Ok(None)

    # --- inside a running container -------------------------------------------------------

    def mounts_of(
        self, name: str, *, running: bool = True, placed: bool = True
    ) -> dict[str, tuple[Inode, bool, Tmpfs | None]]:
        """Where each mount is (``placed``: where renames moved it, else its target) ->
        (tree, read-only, tmpfs state) of a running container (not ``running``: its
        volumes and binds only, at their targets)."""
        container = self.containers[name]
        found: dict[str, tuple[Inode, bool, Tmpfs | None]] = {}
        for entry in container.table:
            mount = entry.mount
            if not running and isinstance(mount, TmpfsMount):
                continue
            where = container.placed.get(mount.target, mount.target) if placed else mount.target
            tmpfs = container.tmpfs[mount.target] if isinstance(mount, TmpfsMount) else None
            found[where] = (self._tree(container, entry), mount.read_only, tmpfs)
        return found

    def mount_at(self, name: str, where: str) -> Resolved | None:
        """The table entry of the mount at ``where`` (a key of :meth:`mounts_of`)."""
        container = self.containers[name]
        for entry in container.table:
            if container.placed.get(entry.mount.target, entry.mount.target) == where:
                return entry
        return None

    def run(self, name: str, op: ops.Op) -> Allowed:
        """An operation inside running container ``name``."""
        container = self.containers[name]
        if container.status is not Status.RUNNING:
            raise ValueError(f"container {name} is not running")
        fs = ContainerFs(container.root, self.mounts_of(name))
        before = container.root.view()
        moved = fs.resolved(op)
        if isinstance(moved, Err):
            return frozenset({moved})
        allowed = fs.apply_resolved(moved)
        if any(isinstance(o, Ok) for o in allowed):
            _touch(container, fs, moved, before)
            if isinstance(moved, ops.Rename):
                _move_mounts(container, moved.src.strip("/"), moved.dst.strip("/"))
        return allowed

    def diff(self, name: str) -> dict[str, str]:
        """``diff`` of container ``name`` (running or not): path -> A/C/D
        (reference/diff.py, the profile's rule)."""
        container = self.containers[name]
        root = container.root
        assert root.upper is not None
        image = self.image_view(self.stack_of(container.spec))
        return diff(
            self.profile.diff_rule, image, root.view(), root.upper, root.lowers, container.touched
        )

    def cp_fs(self, name: str) -> ContainerFs:
        """The tree ``cp`` works in: the root with the volumes and binds (running or
        not), and the tmpfs mounts when the profile's cp sees them and it runs. A
        stopped container's volumes and binds are writable to a cp that does not check
        the mount table (podman mounts them itself)."""
        container = self.containers[name]
        running = container.status is Status.RUNNING
        # podman's cp works in the container's mount namespace (where renames moved the
        # mounts); docker's mounts the volumes and binds afresh at their targets
        inside = running and self.profile.cp_sees_tmpfs
        mounts = {
            target: found
            if running or self.profile.cp_checks_read_only
            else (found[0], False, found[2])
            for target, found in self.mounts_of(name, running=running, placed=inside).items()
            if found[2] is None or inside
        }
        return ContainerFs(container.root, mounts)

    def _cp_prepare(self, name: str) -> Refused | None:
        """What a cp does before it looks at its path (moby daemon/archive.go: the
        volumes are mounted first): take the volume references, make the mount points;
        the refusal if that fails (what was made before stays)."""
        container = self.containers[name]
        try:
            self._take_references(container)
            self._cp_mount_points(container)
        except EngineError as failure:
            return Refused(failure.why.value)
        return None

    def cp_in(self, name: str, path: str, data: bytes) -> Action:
        """``cp`` of a host file (mode 0644) to ``path``: the name is replaced (the tar
        extraction removes an existing non-directory first: moby pkg/archive
        createTarFile, observed a new file), owned by root. The file is made 0600 and
        written before its mode and owner are set (podman's buildah copier creates it
        0600); a write that does not fit (a tmpfs with ``size`` that podman's cp sees)
        fails the copy "no space left on device" and leaves what fitted, mode 0600 (by
        hand, podman 4.3.1: 5000 bytes into an empty size=4096 tmpfs left 4096 bytes,
        a second copy an empty file). Into a read-only mount: refused before anything
        (``cp_checks_read_only``: the directory extracted into at or below a read-only
        mount's target), or at the first write that gets EROFS."""
        if name not in self.containers:
            return _refused(Why.NO_SUCH_CONTAINER)
        prepared = self._cp_prepare(name)
        if prepared is not None:
            return prepared
        fs = self.cp_fs(name)
        parent = path.rpartition("/")[0]
        if parent and not isinstance(first(fs.apply(ops.Stat(parent, follow=True))), Ok):
            return _refused(Why.NO_SUCH_PATH)
        container = self.containers[name]
        if self.profile.cp_checks_read_only and any(
            entry.mount.read_only and _within(parent, entry.mount.target)
            for entry in container.table
        ):
            return _refused(Why.READ_ONLY)
        before = container.root.view()
        steps = (
            ops.Unlink(path),
            ops.Write(path, data, flags=("O_CREAT", "O_EXCL"), mode=0o600),
            ops.Chmod(path, 0o644),
            ops.Chown(path, 0, 0),
        )
        for step in steps:
            outcome = fs.apply(step)
            if any(isinstance(o, Ok) for o in outcome):
                _touch(container, fs, step, before)
            got = first(outcome)
            if got == Err("EROFS"):
                return _refused(Why.READ_ONLY)
            if not isinstance(step, ops.Write):
                continue
            if got == Err("ENOSPC") or (isinstance(got, Ok) and got.value < len(data)):
                return _refused(Why.NO_SPACE)
        return Ok(None)

    def cp_out(self, name: str, path: str) -> bytes | Refused:
        """``cp`` of the file at ``path`` out of the container: its bytes."""
        if name not in self.containers:
            return _refused(Why.NO_SUCH_CONTAINER)
        prepared = self._cp_prepare(name)
        if prepared is not None:
            return prepared
        found = first(self.cp_fs(name).apply(ops.Read(path)))
        return found.value if isinstance(found, Ok) else _refused(Why.NO_SUCH_PATH)

    def stack_of(self, spec: ContainerSpec) -> StackSpec:
        return self.image if spec.image is None else self.images[spec.image]

    def image_view(self, stack: StackSpec) -> View:
        if stack not in self._image_views:
            self._image_views[stack] = Overlay(stack, Options(read_only=True)).view()
        return self._image_views[stack]

    def commit(self, name: str, image: str) -> tuple[tuple[str, EntrySpec], ...] | Refused:
        """``commit``: the container's writable layer becomes the top layer of image
        ``image`` (reference/commit.py); the layer as the engine saves it."""
        container = self.containers.get(name)
        if container is None:
            return _refused(Why.NO_SUCH_CONTAINER)
        assert container.root.upper is not None
        layer = committed_layer(container.root.upper, keep_xattrs=self.profile.commit_keeps_xattrs)
        stack = self.stack_of(container.spec)
        self.images[image] = StackSpec((LayerSpec(layer), *stack.lowers))
        declared = self.declared.get(container.spec.image or "", self.image_volumes)
        if self.profile.commit_declares_anonymous_volumes:
            own = [e.mount.target for e in container.table if e.anonymous]
            declared = (*declared, *(t for t in own if t not in declared))
        self.declared[image] = declared
        return layer

    def view(self, name: str) -> View:
        """What running container ``name`` sees (no inode identities: each mount is its own
        filesystem, so st_ino is not comparable across them)."""
        container = self.containers[name]
        return ContainerFs(container.root, self.mounts_of(name)).view()


def start_read_only(mount: Mount) -> bool:
    """Whether ``mount`` is read-only while a start makes the mounts below it: a volume or
    bind at once (runc remounts the bind read-only right after it), a tmpfs not until
    every mount is made (runc mountPropagate, finalizeRootfs)."""
    return mount.read_only and not isinstance(mount, TmpfsMount)


def cp_mount_order(table: tuple[Resolved, ...]) -> list[Resolved]:
    """What a cp that makes mount points mounts, in order: the volumes and binds, a parent
    before what is in it (moby volumes_unix.go setupMounts sorts by depth)."""
    plain = [entry for entry in table if not isinstance(entry.mount, TmpfsMount)]
    return sorted(plain, key=lambda entry: entry.mount.target.count("/"))


def start_order(table: tuple[Resolved, ...], profile: EngineProfile) -> list[Resolved]:
    """The order a start mounts the table in most often: by the number of path
    components, a parent before what is mounted in it (moby daemon/oci_linux.go
    ``sort.Sort(mounts)``, libpod sortMounts; observed: ``--mount type=tmpfs,dst=/a/t``
    listed before a volume at ``/a`` was mounted on it); within a depth docker's tmpfs
    mounts after its volumes and binds, podman's volumes after its tmpfs and binds, each
    group in table order (:class:`reference.engines.MountOrder`)."""
    last = _LAST.get(profile.mount_order)
    order = sorted(table, key=lambda entry: last is not None and isinstance(entry.mount, last))
    order.sort(key=lambda entry: entry.mount.target.count("/"))
    return order


#: The kind of mount each order puts last within a depth, most often.
_LAST: dict[MountOrder, type] = {
    MountOrder.VOLUMES_THEN_TMPFS: TmpfsMount,
    MountOrder.ANY: VolumeMount,
}


def start_orders(table: tuple[Resolved, ...], profile: EngineProfile) -> list[list[Resolved]]:
    """Every order the profile lets a start mount the table in, :func:`start_order`'s
    first: the depths in turn, and within a depth every permutation the profile allows
    (``ANY``: all of them; ``VOLUMES_THEN_TMPFS``: the volumes and binds in any order,
    then the tmpfs mounts in any order; ``TABLE``: the usual order only)."""
    usual = start_order(table, profile)
    if profile.mount_order is MountOrder.TABLE:
        return [usual]
    choices: list[list[tuple[Resolved, ...]]] = []
    for _, group in itertools.groupby(usual, key=lambda entry: entry.mount.target.count("/")):
        members = list(group)
        if profile.mount_order is MountOrder.ANY:
            choices.append(list(itertools.permutations(members)))
            continue
        plain = [e for e in members if not isinstance(e.mount, TmpfsMount)]
        tmpfs = [e for e in members if isinstance(e.mount, TmpfsMount)]
        choices.append(
            [
                (*a, *b)
                for a, b in itertools.product(
                    itertools.permutations(plain), itertools.permutations(tmpfs)
                )
            ]
        )
    return [[entry for part in parts for entry in part] for parts in itertools.product(*choices)]


def _reached(order: list[Resolved], container: Container) -> tuple[object, ...]:
    """What a start in ``order`` did: the targets it mounted and the one it failed at."""
    before = frozenset(e.mount.target for e in order[: container.reached])
    failed = order[container.reached].mount.target if container.reached < len(order) else None
    return (before, failed)


def _mount_point(container: Container, fs: ContainerFs, target: str) -> EntryView | None:
    """What is at ``target`` before the runtime mounts there (None: nothing); a missing
    mount point is made 0755 with its missing parents, in whatever holds it (runc
    rootfs_linux.go MkdirAllInRoot; observed: ``dst=/e/q/s`` made ``A /e/q`` and ``A
    /e/q/s``; a missing one in a read-only mount fails the start: "mkdir ...: read-only
    file system"; through a file: "not a directory")."""
    found = first(fs.apply(ops.Stat(target, follow=False)))
    if isinstance(found, Ok):
        if found.value.kind != "dir":
            raise EngineError(Why.NOT_A_DIRECTORY)
        home, inner = fs.locate(target)
        return _entry_at(fs.fs(home), inner) if inner else root_entry(fs.mounts[home][0])
    parts = target.split("/")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        if isinstance(first(fs.apply(ops.Stat(path, follow=False))), Ok):
            continue
        before = container.root.view()
        made = first(fs.apply(ops.Mkdir(path, 0o755)))
        if made == Err("EROFS"):
            raise EngineError(Why.READ_ONLY)
        if isinstance(made, Err):
            raise EngineError(Why.NOT_A_DIRECTORY)
        _touch(container, fs, ops.Mkdir(path, 0o755), before)
    return None


def _move_mounts(container: Container, src: str, dst: str) -> None:
    """A rename of a directory holding mount points carries them along."""
    if src == dst:
        return
    for target, where in container.placed.items():
        if where.startswith(f"{src}/"):
            container.placed[target] = dst + where[len(src) :]


def _touch(container: Container, fs: ContainerFs, op: ops.Op, before: View) -> None:
    """Record which upper objects of the root got a new mtime from ``op`` (it succeeded):
    a file written with data, opened with O_TRUNC, or truncated to a new size (a
    truncate to the same size keeps it: shmem_setattr, ext4_setattr); a directory whose
    names changed (a copy-up into it keeps its times: ovl_copy_up_one restores the
    parent's). Objects made in the container are fresh anyway (diff.fresh)."""
    root = container.root
    assert root.upper is not None
    path = getattr(op, "path", None)
    if isinstance(path, str) and fs.locate(path)[0] is None:
        grows = isinstance(op, ops.Write) and (op.data or "O_TRUNC" in op.flags)
        resized = isinstance(op, ops.Truncate) and _size_before(before, root, path) != op.size
        if grows or resized:
            node = root.resolve(path, follow=True).node
            if node is not None and node.upper is not None:
                container.touched.add(node.upper.ident)
    after = root.view().entries
    # a rename sets both parents' mtime even when no name changes in one of them (over an
    # existing name, RENAME_EXCHANGE): shmem_rename2/shmem_exchange, ext4_rename; nothing
    # when source and target are one inode (vfs_rename returns early). Observed: podman
    # 4.3.1 diff lists C /a/d after mv /b/w /a/d/y.
    if (
        isinstance(op, ops.Rename)
        and not any(fs.locate(p)[0] for p in (op.src, op.dst))
        and any(before.entries.get(p) != after.get(p) for p in (op.src, op.dst))
    ):
        for parent in {op.src.rpartition("/")[0], op.dst.rpartition("/")[0]} - {""}:
            upper = entry_at(root.upper, parent)
            if upper is not None:
                container.touched.add(upper.ident)
    listing_before = _listings(before.entries)
    for directory, names in _listings(after).items():
        if listing_before.get(directory) != names:
            upper = entry_at(root.upper, directory)
            if upper is not None:
                container.touched.add(upper.ident)


def _size_before(before: View, root: Overlay, path: str) -> int | None:
    node = root.resolve(path, follow=True).node
    entry = before.entries.get(node.path) if node is not None else None
    return len(entry.data) if entry is not None else None


def _listings(entries: dict[str, EntryView]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {"": set()}
    for path, entry in entries.items():
        parent, _, name = path.rpartition("/")
        found.setdefault(parent, set()).add(name)
        if entry.kind == "dir":
            found.setdefault(path, set())
    return {k: frozenset(v) for k, v in found.items()}


def _within(path: str, target: str) -> bool:
    """``path`` is ``target`` or below it (moby volume.HasResource)."""
    return path == target or path.startswith(f"{target}/")


def _refused(why: Why) -> Refused:
    return Refused(why.value)


def _entry_at(fs: Overlay, path: str) -> EntryView | None:
    return fs.view().entries.get(path)


def _kind_at(fs: Overlay, path: str) -> str | None:
    entry = _entry_at(fs, path)
    return None if entry is None else entry.kind


def _children(fs: Overlay, path: str) -> bool:
    listing = fs.apply(ops.Readdir(path))
    return any(isinstance(o, Ok) and o.value for o in listing)


class ContainerFs:
    """The filesystem tree a container's processes see: the root overlay with each mount's
    tree at its target (nested ones on the trees they are in). Paths resolve lexically
    (no symlinks are generated)."""

    def __init__(self, root: Overlay, mounts: dict[str, tuple[Inode, bool, Tmpfs | None]]) -> None:
        self.root = root
        self.mounts = mounts

    def locate(self, path: str, *, own: bool = True) -> tuple[str | None, str]:
        """(the innermost mount holding ``path``, or None for the root overlay; the path
        inside it). A mount point is its own mount's root (``own``) or, not ``own``, a
        name in the mount it sits in (where rename, link and unlink look for it)."""
        clean = path.strip("/")
        holding = [t for t in self.mounts if (own and clean == t) or clean.startswith(f"{t}/")]
        best = max(holding, key=len, default=None)
        if best is None:
            return None, path
        return best, clean[len(best) + 1 :]

    def fs(self, target: str | None) -> Overlay:
        if target is None:
            return self.root
        tree, read_only, _ = self.mounts[target]
        return plain_fs(tree, read_only=read_only)

    def resolve(self, path: str, *, follow: bool) -> str | Err:
        """``path`` with every symlink in it replaced by where it leads, through the
        mounts (the last name only when ``follow``): what path_lookupat walks. An absolute
        target starts again at the container's root, ``..`` goes to the parent (of a
        mount's root too: the mount point's parent); more than 40 links: ELOOP
        (MAXSYMLINKS). A missing or non-directory name is left for the operation."""
        todo = [part for part in path.strip("/").split("/") if part]
        done: list[str] = []
        links = 0
        while todo:
            name = todo.pop(0)
            if name == ".":
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            if not todo and not follow:
                done.append(name)
                break
            home, inner = self.locate("/".join([*done, name]))
            found = first(self.fs(home).apply(ops.Readlink(inner))) if inner else None
            if not isinstance(found, Ok):
                done.append(name)
                continue
            links += 1
            if links > 40:
                return Err("ELOOP")
            if found.value.startswith("/"):
                done = []
            todo = [part for part in found.value.split("/") if part] + todo
        return "/".join(done)

    def resolved(self, op: ops.Op) -> ops.Op | Err:
        """``op`` on the paths :meth:`resolve` finds (see :data:`FOLLOWS_LAST`)."""
        if isinstance(op, ops.Rename | ops.Link):
            src = self.resolve(op.src, follow=False)
            dst = self.resolve(op.dst, follow=False)
            if isinstance(src, Err):
                return src
            if isinstance(dst, Err):
                return dst
            return attrs.evolve(op, src=src, dst=dst)
        path = getattr(op, "path", None)
        if not isinstance(path, str):
            raise TypeError(f"unsupported operation inside a container: {op!r}")
        found = self.resolve(path, follow=follows_last(op))
        return found if isinstance(found, Err) else attrs.evolve(op, path=found)

    def apply(self, op: ops.Op) -> Allowed:
        moved = self.resolved(op)
        if isinstance(moved, Err):
            return frozenset({moved})
        return self.apply_resolved(moved)

    def apply_resolved(self, op: ops.Op) -> Allowed:
        """``op`` whose paths hold no symlink but an unfollowed last name."""
        if isinstance(op, ops.Rename):
            return self._rename(op)
        if isinstance(op, ops.Link):
            return self._link(op)
        path = op.path  # type: ignore[attr-defined]
        target, inner = self.locate(path)
        if target is not None and inner == "":
            # The mount point's own name lives in the mount holding it (vfs: the parent's
            # mount is checked for writes first - do_rmdir, do_unlinkat: mnt_want_write
            # right after filename_parentat -, then the mount point dentry is busy).
            if isinstance(op, ops.Rmdir | ops.Unlink) and self._read_only(path):
                return frozenset({Err("EROFS")})  # found on kernel-mounts: a ro tmpfs
            if isinstance(op, ops.Rmdir):
                return frozenset({Err("EBUSY")})  # vfs_rmdir: is_local_mountpoint
            if isinstance(op, ops.Unlink):
                return UNLINK_DIR  # may_delete: a directory
        moved = attrs.evolve(op, path=inner) if target is not None else op
        tmpfs = self.mounts[target][2] if target is not None else None
        if tmpfs is not None and tmpfs.limit is not None:
            return self._tmpfs_write(self.fs(target), tmpfs, moved)
        return self.fs(target).apply(moved)

    def _tmpfs_write(self, fs: Overlay, tmpfs: Tmpfs, op: ops.Op) -> Allowed:
        """tmpfs with ``size``: a write needing more pages than are free writes what fits,
        page by page, and gives ENOSPC when not even the first page fits (mm/shmem.c
        shmem_write_begin; generic_perform_write returns the bytes written so far). The
        open (O_CREAT, O_TRUNC) has happened by then. Only pages written are allocated: a
        truncate to a larger size leaves a hole (shmem_setattr), one to a smaller size
        frees the pages past the new end (a partial last page stays)."""
        assert tmpfs.limit is not None
        if isinstance(op, ops.Truncate):
            have = tmpfs.pages_at(fs, op.path)
            outcome = fs.apply(op)
            if have is not None and any(isinstance(o, Ok) for o in outcome):
                tmpfs.keep(fs, op.path, {p for p in have if p < pages_of(op.size)})
            return outcome
        if not isinstance(op, ops.Write):
            return fs.apply(op)
        current = first(fs.apply(ops.Stat(op.path, follow=True)))
        if isinstance(current, Ok) and current.value.kind != "file":
            return fs.apply(op)
        old_size = current.value.size if isinstance(current, Ok) else 0
        truncating = "O_TRUNC" in op.flags
        had = tmpfs.pages_at(fs, op.path) or set()
        have = set() if truncating else had
        free = tmpfs.limit - tmpfs.used() + (len(had) if truncating else 0)
        offset = old_size if "O_APPEND" in op.flags and not truncating else op.offset
        end = offset + len(op.data)
        fits = end
        page = offset // PAGE
        written = set()
        while page * PAGE < end:
            if page not in have:
                if free == 0:
                    fits = max(page * PAGE, offset)
                    break
                free -= 1
            written.add(page)
            page += 1
        outcome = fs.apply(attrs.evolve(op, data=op.data[: fits - offset]))
        if all(isinstance(o, Err) for o in outcome):
            return outcome  # the open itself failed (EACCES, ENOENT, ...)
        tmpfs.keep(fs, op.path, have | written)
        if fits == end:
            return outcome
        return frozenset({Ok(fits - offset)}) if fits > offset else frozenset({Err("ENOSPC")})

    def _rename(self, op: ops.Rename) -> Allowed:
        """rename(2) across the container's mounts (vfs do_renameat2, vfs_rename)."""
        src_is_point = op.src.strip("/") in self.mounts
        dst_is_point = op.dst.strip("/") in self.mounts
        # The mount whose tree holds each name (a mount point's name sits in its parent's).
        src_home, src_inner = self.locate(op.src, own=False)
        dst_home, dst_inner = self.locate(op.dst, own=False)
        for home, inner in ((src_home, src_inner), (dst_home, dst_inner)):
            failure = self._parent_failure(home, inner)
            if failure is not None:
                return failure
        if src_home != dst_home:
            return frozenset({Err("EXDEV")})  # do_renameat2: old_path.mnt != new_path.mnt
        if not (src_is_point or dst_is_point):
            return self.fs(src_home).apply(attrs.evolve(op, src=src_inner, dst=dst_inner))
        return self._rename_mount_point(op)

    def _link(self, op: ops.Link) -> Allowed:
        """link(2) inside the container (vfs do_linkat): the old name must exist (looked
        up: a mount point is its mount's root), the new one must not (filename_create),
        then both must be on one mount (EXDEV); a mount's root is a directory (EPERM).
        Found by the machine on kernel-mounts: ``ln a/d a/d/y`` with a volume at a/d."""
        src_home, src = self.locate(op.src)
        dst_home, dst = self.locate(op.dst, own=False)
        found = first(self.fs(src_home).apply(ops.Stat(src, follow=False)))
        if isinstance(found, Err):
            return frozenset({found})
        failure = self._parent_failure(dst_home, dst)
        if failure is not None:
            return failure
        if isinstance(first(self.fs(dst_home).apply(ops.Stat(dst, follow=False))), Ok):
            return frozenset({Err("EEXIST")})
        if dst_home is not None and self.mounts[dst_home][1]:
            return frozenset({Err("EROFS")})  # filename_create: after EEXIST, before EXDEV
        if src_home != dst_home:
            return frozenset({Err("EXDEV")})
        if src_home is not None and src == "":
            return frozenset({Err("EPERM")})  # vfs_link: a directory
        return self.fs(src_home).apply(ops.Link(src, dst))

    def _parent_failure(self, home: str | None, path: str) -> Allowed | None:
        """filename_parentat: the parent of the last name must be a directory."""
        parent = path.strip("/").rpartition("/")[0]
        if not parent:
            return None
        outcome = first(self.fs(home).apply(ops.Stat(parent, follow=True)))
        if isinstance(outcome, Err):
            return frozenset({outcome})
        if outcome.value.kind != "dir":
            return frozenset({Err("ENOTDIR")})
        return None

    def _rename_mount_point(self, op: ops.Rename) -> Allowed:
        """Both names in the root, one of them a mount point: vfs_rename returns 0 for the
        same dentry, may_delete checks types, then a mount point is EBUSY."""
        if self._read_only(op.src):
            return frozenset({Err("EROFS")})  # do_renameat2: mnt_want_write, then lookups
        src = self._kind(op.src)
        dst = self._kind(op.dst)
        if src is None:
            return frozenset({Err("ENOENT")})
        if op.flags:
            raise TypeError("renameat2 flags are not generated for containers")
        if op.src.strip("/") == op.dst.strip("/"):
            return frozenset({Ok(None)})
        if dst is not None and src == "dir" and dst != "dir":
            return frozenset({Err("ENOTDIR")})
        if dst is not None and src != "dir" and dst == "dir":
            return frozenset({Err("EISDIR")})
        return frozenset({Err("EBUSY")})

    def _read_only(self, path: str) -> bool:
        """The mount holding the name ``path`` (a mount point's: the one it sits in) is
        read-only."""
        home, _ = self.locate(path, own=False)
        return home is not None and self.mounts[home][1]

    def _kind(self, path: str) -> str | None:
        target, inner = self.locate(path)
        outcome = next(iter(self.fs(target).apply(ops.Stat(inner, follow=False))))
        return outcome.value.kind if isinstance(outcome, Ok) else None

    def view(self) -> View:
        entries = {
            path: entry
            for path, entry in self.root.view().entries.items()
            if self.locate(path)[0] is None
        }
        for target, (tree, _, _) in self.mounts.items():
            entries[target] = root_entry(tree)
            for path, entry in tree_view(tree).entries.items():
                if self.locate(f"{target}/{path}")[0] == target:
                    entries[f"{target}/{path}"] = entry
        return View(entries=dict(sorted(entries.items())), inodes={})


#: The kinds that follow a symlink at the last name of their path (stat(2) as asked;
#: open without O_NOFOLLOW unless O_CREAT|O_EXCL; truncate, chmod, chown, the xattr
#: calls without the l prefix: adapters/syscalls.py).
FOLLOWS_LAST: tuple[type, ...] = (
    ops.Read,
    ops.Readdir,
    ops.Write,
    ops.Truncate,
    ops.Chmod,
    ops.Chown,
    ops.SetXattr,
    ops.GetXattr,
    ops.ListXattr,
    ops.RemoveXattr,
)


def follows_last(op: ops.Op) -> bool:
    if isinstance(op, ops.Stat):
        return op.follow
    if isinstance(op, ops.Write) and {"O_CREAT", "O_EXCL"} <= set(op.flags):
        return False
    return isinstance(op, FOLLOWS_LAST)


def first(allowed: Allowed) -> Outcome:
    """One outcome of a set (the model's own use, where the set has one element)."""
    return next(iter(allowed))
