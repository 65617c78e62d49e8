"""Container engines as data: what differs between Docker, Podman and a Kubernetes-style
runtime when they mount volumes, binds and tmpfs into a container.

Each field is one rule of :mod:`reference.container`; its comment names the source (engine
source file, or "obs" for ../shared/notes/container-volumes.md, observed with docker.io
20.10.24 and podman 4.3.1 on this machine). The container model never asks "which engine
is this"; it reads these fields.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from reference.diff import DiffRule


class Populate(enum.Enum):
    """When image content at a volume's target is copied into the volume."""

    #: Docker: at every container *create*, into a volume that is empty then (an emptied
    #: volume is filled again by the next new container). moby daemon/create_unix.go
    #: populateVolumes ("only called when the container is created"), container_unix.go
    #: copyExistingContents (any entry in the volume: nothing is copied); obs §1.2.
    AT_CREATE_IF_EMPTY = "at-create-if-empty"
    #: Podman: at a container *start*, once per volume lifetime (NeedsCopyUp, set when the
    #: volume is created, cleared by the first copy). libpod container_internal.go
    #: mountNamedVolume; obs §2 (an emptied volume is not re-populated).
    ONCE_AT_FIRST_START = "once-at-first-start"
    #: Kubernetes: volumes are never pre-populated from the image (kubernetes#13914; obs §3).
    NEVER = "never"


class RootMeta(enum.Enum):
    """When a volume's root directory takes the owner and mode of the image directory."""

    #: Docker: only as part of a copy (continuity fs.CopyDir copyFileInfo of the root);
    #: with nocopy the root stays 0:0 0755 (obs §1.2).
    WITH_COPY = "with-copy"
    #: Podman: at the first start that mounts the volume, copy or not (NeedsChown,
    #: container_internal_common.go fixVolumePermissionsUnlocked; obs §2: a nocopy volume
    #: root became 1000:1001 0750).
    FIRST_START = "first-start"
    NEVER = "never"


class ImageVolumes(enum.Enum):
    """What a container gets at a target its image declares ``VOLUME`` at."""

    #: An anonymous volume, populated like any other (moby daemon/create_unix.go
    #: createContainerOSSpecificSettings; podman ``image_volume_mode = "bind"``, the
    #: containers.conf default, pkg/specgen/generate/storage.go).
    ANONYMOUS = "anonymous"
    #: Nothing: the image's directory in the writable layer (CRI-O's default
    #: ``image_volumes = "mkdir"``, crio.conf(5); the kubelet has no image volumes).
    IGNORED = "ignored"


class MountOrder(enum.Enum):
    """The order a start mounts the mounts of one depth in. Every engine sorts its mount
    list by the number of path components (a parent before what is mounted in it) with
    Go's ``sort.Sort``, which keeps no order among equals, over a list built by ranging
    over Go maps (randomised iteration): among mounts of one depth the order is not fixed.
    The first order the model lists is the one seen most often; the machine takes any
    order the profile allows (:func:`reference.container.start_orders`)."""

    #: Docker 20.10: the volumes and binds of a depth in any order (most often the
    #: table's), then its tmpfs mounts in any order. moby daemon/volumes_unix.go
    #: setupMounts ranges over ``container.MountPoints`` (a map) and sorts by depth;
    #: daemon/oci_linux.go WithMounts appends the tmpfs mounts and sorts again (a list this
    #: short is insertion-sorted, which keeps the tmpfs mounts after). Observed by hand
    #: (docs/containers.md): two volumes at /n and over the file /f left ``A /n`` after
    #: the failed start in some runs and not in others, whichever was listed first; a
    #: tmpfs over /f listed before a volume at /n left ``A /n`` in every run.
    VOLUMES_THEN_TMPFS = "volumes-then-tmpfs"
    #: Podman 4.3.1: any order within a depth, most often the tmpfs and binds (the spec's
    #: mounts) before the volumes (libpod generateSpec adds the named volumes after them;
    #: pkg/specgen/generate/storage.go finalizeMounts builds both lists from maps;
    #: libpod/util.go sortMounts is ``sort.Sort``, unstable on podman's 15-odd mounts;
    #: later podman sorts stably). Observed by hand (docs/containers.md): a volume over
    #: the file /f with a size=4096 tmpfs copy-up at /a gave no-space most of the time,
    #: not-a-directory sometimes; a tmpfs over /f and a volume at /n left ``A /n`` in
    #: some runs.
    ANY = "any"
    #: The table's order within a depth (not observed).
    TABLE = "table"


def rule(default: Any = attrs.NOTHING, *, docker: str, podman: str, kubernetes: str) -> Any:
    """A profile field and, per engine, the source of its value (a source file of the
    engine or runtime, a documentation page, or what this suite observed by hand)."""
    found = {"docker": docker, "podman": podman, "kubernetes": kubernetes}
    return attrs.field(default=default, metadata={"sources": found})


def sources(field: str) -> dict[str, str]:
    """Engine name -> the source of its value of profile field ``field``."""
    return dict(attrs.fields_dict(EngineProfile)[field].metadata["sources"])


@attrs.frozen
class EngineProfile:
    """One engine's rules; each field's ``sources`` (:func:`sources`) name where each
    engine's value comes from."""

    name: str
    populate: Populate = rule(  # noqa: RUF009 (an attrs field with its sources)
        docker=(
            'moby daemon/create_unix.go populateVolumes, container/container_unix.go '
            'copyExistingContents; https://docs.docker.com/storage/volumes/#populate-a-volume-'
            'using-a-container'
        ),
        podman=(
            'libpod/container_internal.go mountNamedVolume (NeedsCopyUp); podman-run(1) --volume '
            'copy'
        ),
        kubernetes="kubernetes/kubernetes#13914 (an emptyDir is never filled from the image)",
    )
    root_meta: RootMeta = rule(  # noqa: RUF009 (an attrs field with its sources)
        docker="continuity fs/copy.go copyFileInfo (the copy's root)",
        podman="libpod/container_internal_common.go fixVolumePermissionsUnlocked (NeedsChown)",
        kubernetes="pkg/volume/emptydir/empty_dir.go (a fresh directory)",
    )
    #: Podman adds tmpcopyup to every tmpfs (pkg/specgen/generate/storage.go); Docker's
    #: tmpfs starts empty (oci_linux.go); obs §1.4, §2.
    tmpfs_copies_image: bool = rule(
        docker=(
            'moby daemon/oci_linux.go (tmpfs mounts without tmpcopyup); '
            'https://docs.docker.com/storage/tmpfs/'
        ),
        podman=(
            'pkg/specgen/generate/storage.go (tmpcopyup added); podman-run(1) --tmpfs notmpcopyup'
        ),
        kubernetes="emptyDir medium Memory (an empty tmpfs)",
    )
    #: The mode of a tmpfs root without ``mode=``: None is runc's rule (rootfs_linux.go
    #: mountToRootfs, tmpfs case: an existing target's mode is chmod-ed onto the tmpfs,
    #: a missing target gives tmpfs's default 1777); an int is a fixed mode (k8s emptyDir
    #: ``defaultPerm`` 0777).
    tmpfs_root_mode: int | None = rule(
        docker=(
            "runc libcontainer/rootfs_linux.go mountToRootfs (tmpfs: chmod to the target's mode)"
        ),
        podman="runc libcontainer/rootfs_linux.go mountToRootfs (the same runtime)",
        kubernetes="pkg/volume/emptydir/empty_dir.go defaultPerm 0777",
    )
    #: A new volume's root directory (moby daemon/volume/local/local.go: 0755;
    #: k8s emptyDir: 0777).
    new_volume_mode: int = rule(
        docker="moby volume/local/local.go Create (MkdirAll 0755)",
        podman="libpod/runtime_volume_common.go newVolume (0755; observed)",
        kubernetes="pkg/volume/emptydir/empty_dir.go defaultPerm 0777",
    )
    #: ``-v /missing:/p`` (short syntax) creates the host directory, 0755 root, at start
    #: (moby daemon/volume/mounts/mounts.go Setup MkdirAllAndChown); Podman refuses it
    #: (obs §2 "statfs ... no such file or directory"). ``--mount type=bind`` with a
    #: missing source is refused by both (moby validate.go; obs §1.3).
    bind_short_syntax_creates_source: bool = rule(
        docker=(
            'moby volume/mounts/mounts.go Setup MkdirAllAndChown; '
            'https://docs.docker.com/storage/bind-mounts/ (-v creates the endpoint)'
        ),
        podman="pkg/specgen/generate (statfs of the source; observed: refused)",
        kubernetes=(
            'https://kubernetes.io/docs/concepts/storage/volumes/#hostpath (DirectoryOrCreate is '
            'opt-in)'
        ),
    )
    #: ``volume create`` of an existing name: Docker returns the existing volume (the
    #: local driver's Create is idempotent); Podman refuses ("volume with name ... already
    #: exists", libpod/runtime_volume_common.go).
    volume_create_existing_ok: bool = rule(
        docker=(
            'moby volume/service/store.go create (an existing name is returned); docker-volume-'
            'create(1)'
        ),
        podman='libpod/runtime_volume_common.go newVolume ("volume with name ... already exists")',
        kubernetes="as docker (no volume create: a PVC apply is idempotent)",
    )
    #: A populating volume over an image *file* is refused at create (docker 20.10:
    #: "source .../merged/afile is not directory", obs §1.2); otherwise the runtime refuses
    #: it at start ("not a directory", runc; obs §2).
    populate_refuses_file_target: bool = rule(
        docker=(
            'moby container/container_unix.go copyExistingContents ("is not directory", observed '
            'at create)'
        ),
        podman='runc libcontainer/rootfs_linux.go ("not a directory" at start)',
        kubernetes="runc libcontainer/rootfs_linux.go (at start)",
    )
    #: ``--volumes-from`` mounts are populated like the container's own: Docker sets
    #: CopyData=false (daemon/volumes.go); Podman adds them as named volumes, whose copy-up
    #: follows NeedsCopyUp (libpod; not observed, see the README section).
    volumes_from_populates: bool = rule(
        docker="moby daemon/volumes.go registerMountPoints (CopyData false for --volumes-from)",
        podman="libpod named volumes, NeedsCopyUp (observed by hand)",
        kubernetes="no --volumes-from (as docker)",
    )
    #: A read-only *anonymous* volume (``--mount type=volume,dst=/p,readonly``) is refused
    #: at create: "invalid mount config for type "volume": must not set ReadOnly mode when
    #: using anonymous volumes" (found by this suite's state machine on docker 20.10.24;
    #: moby daemon/volume/mounts/linux_parser.go validateMountConfigImpl).
    anonymous_read_only_refused: bool = rule(
        False,
        docker="moby volume/mounts/linux_parser.go validateMountConfigImpl",
        podman="pkg/specgenutil/volumes.go (accepted; observed)",
        kubernetes="no anonymous volumes (accepted)",
    )
    #: ``--volumes-from`` a container that has a ``--mount type=tmpfs`` is refused: "get:
    #: no such volume" (found by the state machine on docker 20.10.24, reproduced by hand:
    #: ``create --mount type=tmpfs,dst=/n`` then ``create --volumes-from`` it; the tmpfs
    #: mount point is copied as a volume with no name, daemon/volumes.go). A Docker bug;
    #: modelled as what this version does.
    volumes_from_tmpfs_refused: bool = rule(
        False,
        docker=(
            'moby daemon/volumes.go (a tmpfs copied as a nameless volume; observed "get: no such '
            'volume")'
        ),
        podman="libpod (tmpfs mounts are not carried; observed)",
        kubernetes="no --volumes-from",
    )
    #: A tmpfs copy-up keeps the image's user xattrs: podman 4.3.1 with runc 1.1.5 drops
    #: them (observed by this suite: tmpcopyup of a/x lost user.k; runc's tmpcopyup copies
    #: with a plain file copy, libcontainer/rootfs_linux.go).
    tmpfs_copy_keeps_xattrs: bool = rule(
        True,
        docker="no tmpcopyup (the rule does not apply)",
        podman=(
            'runc libcontainer/rootfs_linux.go tmpcopyup (a plain copy; observed without user '
            'xattrs)'
        ),
        kubernetes="no tmpcopyup",
    )
    #: How ``diff`` finds a container's changes (reference/diff.py): docker 20.10's
    #: overlay2 on this kernel uses moby's naive diff (observed: a copy-up with no visible
    #: change is not listed; daemon/graphdriver/overlay2 useNaiveDiff), podman 4.3 the
    #: upper-directory walk of containers/storage (OverlayChanges; observed: it is).
    diff_rule: DiffRule = rule(  # noqa: RUF009 (an attrs field with its sources)
        DiffRule.NAIVE,
        docker=(
            'moby pkg/archive/changes.go ChangesDirs; daemon/graphdriver/overlay2/overlay.go '
            'useNaiveDiff'
        ),
        podman="containers/storage pkg/archive/changes.go OverlayChanges",
        kubernetes="no diff (docker's rule kept)",
    )
    #: ``commit`` keeps user xattrs in the layer tar: docker 20.10 writes only
    #: security.capability (pkg/archive addTarFile ReadSecurityXattrToTarHeader;
    #: observed: a/x committed without user.k), podman 4.3 all of them (observed).
    commit_keeps_xattrs: bool = rule(
        True,
        docker="moby pkg/archive/archive.go addTarFile ReadSecurityXattrToTarHeader",
        podman="containers/storage pkg/archive/archive.go (every xattr; observed)",
        kubernetes="no commit (podman's rule kept)",
    )
    #: ``cp`` into a *running* container sees its tmpfs mounts: podman joins the
    #: container's mount namespace (observed: the file is in the tmpfs); docker 20.10
    #: mounts the root and the volumes and binds in the daemon's namespace, so the file
    #: lands in the writable layer under the tmpfs (observed: ``A /e/in-tmpfs`` in diff,
    #: not seen in the container). A stopped container's tmpfs is in neither.
    cp_sees_tmpfs: bool = rule(
        False,
        docker=(
            "moby daemon/archive.go (the root and the volumes mounted in the daemon's namespace)"
        ),
        podman="libpod/container_copy_linux.go (joins the container's mount namespace)",
        kubernetes="kubectl cp runs tar in the container (not modelled: docker's rule kept)",
    )
    #: ``commit`` declares the container's own anonymous volumes as the new image's
    #: ``VOLUME``s: podman 4.3.1 (libpod/container_commit.go: the anonymous named volumes
    #: at user-given destinations; by hand: a container with ``--mount
    #: type=volume,dst=/e`` committed to an image whose Config.Volumes is /e and /v, a
    #: named volume's /n not added, and a container from it got an anonymous volume at
    #: /e; found by the machine); docker 20.10 keeps the image's (a ``--mount`` is no
    #: Config.Volumes entry; by hand: /v only).
    commit_declares_anonymous_volumes: bool = rule(
        False,
        docker="moby daemon/commit.go (the container's Config: --mount is not in it); observed",
        podman="libpod/container_commit.go (anonymous named volumes added); observed by hand",
        kubernetes="no commit (docker's rule kept)",
    )
    #: ``cp`` into a read-only mount. Docker checks the directory it extracts into
    #: against every mount point of the table, tmpfs included, running or not (moby
    #: daemon/archive.go checkIfPathIsInAVolume: "mounted volume is marked read-only";
    #: by hand, docker 20.10.24: a read-only volume, bind and tmpfs, running and stopped,
    #: all refused). Podman writes: in a running container the read-only mount answers
    #: EROFS (nothing written), in a stopped one podman mounts the volumes and binds
    #: itself, writable (by hand, podman 4.3.1: a stopped container's read-only volume
    #: and bind got the file, a read-only tmpfs's target got it in the writable layer).
    cp_checks_read_only: bool = rule(
        False,
        docker="moby daemon/archive.go checkIfPathIsInAVolume (MountPoints); observed by hand",
        podman=(
            "libpod/container_copy_linux.go (the copier writes; a stopped container's "
            "volumes mounted by podman); observed by hand"
        ),
        kubernetes="kubectl cp runs tar in the container (the write fails: podman's rule)",
    )
    #: A ``--volumes-from`` mount holds its volume (``volume rm`` and ``rm -v`` refuse it
    #: or leave it) from ``create`` on. Docker copies the source's mount point with its
    #: Source set, so the ``volumes.Get`` that takes a reference is skipped (moby
    #: daemon/volumes.go registerMountPoints); the first start or cp takes it (setupMounts
    #: lazyInitializeVolume), and fails "get <v>: no such volume" if it was removed. By
    #: hand, docker 20.10.24 (docs/containers.md): ``create --volumes-from c2:ro``, ``rm
    #: c2``, ``volume rm`` of c2's volume succeeded, then the holder's start and cp
    #: failed "no such volume"; after a start or a cp of the holder, ``volume rm`` was
    #: refused "volume is in use" (found by the machine). Not an image ``VOLUME``'s:
    #: its mount point has no Source (container.AddMountPointWithVolume), so the holder
    #: takes it at create (by hand: ``volume prune`` kept it, ``rm -v`` of the holder
    #: removed it).
    volumes_from_referenced_at_create: bool = rule(
        True,
        docker=(
            "moby daemon/volumes.go registerMountPoints (no reference when the Source is set), "
            "volumes_unix.go lazyInitializeVolume; observed by hand"
        ),
        podman="libpod (the volume is one of the container's named volumes at create)",
        kubernetes="no --volumes-from",
    )
    #: ``cp`` (in or out) first mounts the container's volumes and binds at their targets
    #: on its root in the daemon's namespace, without its tmpfs mounts, making a missing
    #: mount point and its parents 0755 wherever it is (moby daemon/archive.go ->
    #: volumes_unix.go mountVolumes: CreateIfNotExists), so a mount point under a tmpfs
    #: lands in the writable layer, and a never-started container's in its root. By hand,
    #: docker 20.10.24 (docs/containers.md): a volume at /e/q/s under a tmpfs at /e gave
    #: ``C /e, A /e/q, A /e/q/s`` after a cp (none after the start alone); a volume at
    #: /x/y/z in a read-only volume at /x/y: the cp failed "mkdir .../x/y/z: read-only file
    #: system" leaving ``A /x, A /x/y`` (found by the machine). Podman resolves the path
    #: into the volume without mounting (libpod/container_copy_linux.go).
    cp_makes_mount_points: bool = rule(
        False,
        docker="moby daemon/archive.go, daemon/volumes_unix.go mountVolumes; observed by hand",
        podman="libpod/container_copy_linux.go (joins the namespace, or resolves into the volume)",
        kubernetes="kubectl cp runs tar in the container (nothing mounted)",
    )
    #: The order of the mounts of one depth at start (:class:`MountOrder`): which of two
    #: failing mounts fails a start, and which mount points the mounts before it made
    #: (they stay in the writable layer, a volume or a host directory).
    mount_order: MountOrder = rule(  # noqa: RUF009 (an attrs field with its sources)
        MountOrder.TABLE,
        docker=(
            "moby daemon/volumes_unix.go setupMounts (map, sort.Sort), daemon/oci_linux.go "
            "WithMounts (tmpfs appended); observed by hand"
        ),
        podman=(
            "libpod/util.go sortMounts (sort.Sort), pkg/specgen/generate/storage.go "
            "finalizeMounts (maps), container_internal_linux.go generateSpec (named volumes "
            "last); observed by hand"
        ),
        kubernetes="not observed (the table's order)",
    )
    #: What an image ``VOLUME`` becomes (:class:`ImageVolumes`).
    image_volumes: ImageVolumes = rule(  # noqa: RUF009 (an attrs field with its sources)
        ImageVolumes.ANONYMOUS,
        docker="moby daemon/create_unix.go createContainerOSSpecificSettings",
        podman='containers.conf(5) image_volume_mode = "bind"; pkg/specgen/generate/storage.go',
        kubernetes='crio.conf(5) image_volumes = "mkdir"',
    )


DOCKER = EngineProfile(
    name="docker",
    populate=Populate.AT_CREATE_IF_EMPTY,
    root_meta=RootMeta.WITH_COPY,
    tmpfs_copies_image=False,
    tmpfs_root_mode=None,
    new_volume_mode=0o755,
    bind_short_syntax_creates_source=True,
    volume_create_existing_ok=True,
    populate_refuses_file_target=True,
    volumes_from_populates=False,
    anonymous_read_only_refused=True,
    volumes_from_tmpfs_refused=True,
    commit_keeps_xattrs=False,
    mount_order=MountOrder.VOLUMES_THEN_TMPFS,
    cp_checks_read_only=True,
    volumes_from_referenced_at_create=False,
    cp_makes_mount_points=True,
)

PODMAN = EngineProfile(
    name="podman",
    populate=Populate.ONCE_AT_FIRST_START,
    root_meta=RootMeta.FIRST_START,
    tmpfs_copies_image=True,
    tmpfs_root_mode=None,
    new_volume_mode=0o755,
    bind_short_syntax_creates_source=False,
    volume_create_existing_ok=False,
    populate_refuses_file_target=False,
    volumes_from_populates=True,
    tmpfs_copy_keeps_xattrs=False,
    diff_rule=DiffRule.NATIVE,
    cp_sees_tmpfs=True,
    mount_order=MountOrder.ANY,
    commit_declares_anonymous_volumes=True,
)

KUBERNETES = EngineProfile(
    name="kubernetes",
    populate=Populate.NEVER,
    root_meta=RootMeta.NEVER,
    tmpfs_copies_image=False,
    tmpfs_root_mode=0o777,
    new_volume_mode=0o777,
    bind_short_syntax_creates_source=False,
    volume_create_existing_ok=True,
    populate_refuses_file_target=False,
    volumes_from_populates=False,
    image_volumes=ImageVolumes.IGNORED,
)

PROFILES: dict[str, EngineProfile] = {p.name: p for p in (DOCKER, PODMAN, KUBERNETES)}
