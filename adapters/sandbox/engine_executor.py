"""The executor of the real container engines: ``python -m adapters.sandbox.engine_executor <fd>``.

Started like every executor (adapters.sandbox.executor ``setup``: a private mount namespace and a
private tmpfs over ``/tmp``). Before the first engine command it unshares a PID namespace
for its children (the FUSE mounter's *holder*, adapters.sandbox.fusemount ``holder``), so dockerd,
containerd, conmon, runc and every container process live in a PID namespace whose PID 1
dies with this executor: the kernel then kills them all, even when pytest is SIGKILLed.

Everything the engine stores is on the private tmpfs: dockerd's ``--data-root``,
``--exec-root``, pidfile and socket; podman's ``--root`` and ``--runroot``. Host
directories (bind sources) are under ``/tmp/unionspec/hosts``.

Operations inside a container are system calls made here inside a chroot of
``/proc/<pid>/root`` of the container's PID 1 (a static busybox ``sleep``): milliseconds,
no process start, and no generated path can leave the container's root.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from multiprocessing.connection import Connection
from typing import Any

import attrs

from adapters.sandbox.confine import CLONE_NEWNS, MS_RDONLY, libc
from adapters.sandbox.container_executor import ContainerExecutor, directory
from adapters.sandbox.executor import (
    BASE,
    HANDLERS,
    components,
    merged_view,
    mount,
    op_names,
    run_executor,
)
from adapters.sandbox.fusemount import holder
from reference.layer import (
    DirSpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    Inode,
    Kind,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
    build,
    walk,
)
from reference.outcome import Ok, err_from_oserror

IMAGE_TAG = "unionspec-test:latest"
IMAGE_VIEW = f"{BASE}/imageview"
ARCHIVE = f"{BASE}/image.tar"
BUSYBOX = "/bin/busybox"
COMMAND = ["/bin/busybox", "sleep", "1000000"]
#: Names the engine itself puts into every container root (not part of the model's view).
SYSTEM_NAMES = {"bin", "dev", "etc", "proc", "sys", ".dockerenv", "run", ".containerenv"}
MOUNT_PROC = ["/usr/bin/unshare", "--mount", "--mount-proc", "--propagation", "private", "--"]

#: Engine messages -> reference.container.Why codes (first match wins).
REFUSALS: tuple[tuple[str, str], ...] = (
    (r"(?i)duplicate mount (point|destination)", "duplicate-mount-point"),
    (r"(?i)must not set ReadOnly mode when using anonymous volumes", "invalid-mount"),
    (
        r"(?i)bind source path does not exist|statfs .*: no such file or directory",
        "bind-source-missing",
    ),
    (r"(?i)invalid mode|invalid option", "invalid-mode"),
    (r"(?i)no space left on device", "no-space"),
    (r"(?i)not a directory|is not directory", "not-a-directory"),
    # a start making a mount point, a cp (podman: EROFS from its copier; docker: its check)
    (r"(?i)read-only file system|mounted volume is marked read-only", "read-only"),
    (r"(?i)volume is in use|is being used by the following container", "volume-in-use"),
    (r"(?i)no such volume", "no-such-volume"),
    (r"(?i)already exists", "volume-exists"),
    (r"(?i)cannot remove a running container|as it is running", "container-running"),
    (r"(?i)No such container:path|could not be found on container", "no-such-path"),
    (r"(?i)no such container|no container with name", "no-such-container"),
    (r"(?i)no such image|image not known|unable to find image", "no-such-image"),
)


def _setns(fd: int) -> None:
    if libc.setns(fd, CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNS): {os.strerror(err)}")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def refusal(stderr: str) -> str:
    for pattern, code in REFUSALS:
        if re.search(pattern, stderr):
            return code
    return "unknown: " + " ".join(stderr.split())[:300]


def layer_tar(root: Inode) -> bytes:
    """A layer in the OCI changeset form (image-spec layer.md): whiteouts as ``.wh.<name>``,
    opaque directories as ``<dir>/.wh..wh..opq``, xattrs as SCHILY.xattr pax headers."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, inode in walk(root):
            info = tarfile.TarInfo(path)
            info.mtime = 1_000_000_000
            if inode.kind is Kind.WHITEOUT:
                head, _, name = path.rpartition("/")
                info.name = f"{head}/.wh.{name}" if head else f".wh.{name}"
                tar.addfile(info, io.BytesIO(b""))
                continue
            info.mode, info.uid, info.gid = inode.mode, inode.uid, inode.gid
            info.pax_headers = {
                f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                for k, v in inode.xattrs.items()
            }
            data = b""
            if inode.kind is Kind.DIR:
                info.type = tarfile.DIRTYPE
            elif inode.kind is Kind.FILE:
                data = inode.data
                info.size = len(data)
            elif inode.kind is Kind.SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, inode.target
            else:
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data))
            if inode.kind is Kind.DIR and inode.opaque:
                tar.addfile(tarfile.TarInfo(f"{path}/.wh..wh..opq"), io.BytesIO(b""))
    return buffer.getvalue()


def layer_entries(layer: bytes) -> tuple[tuple[str, Any], ...]:
    """A layer tar decoded the OCI way (image-spec layer.md): ``.wh.<name>`` is a whiteout
    of ``name``, ``.wh..wh..opq`` makes its directory opaque; mode, owner, SCHILY.xattr
    pax headers, hardlinks (type 1) as links to their first name. Sorted by path."""
    entries: dict[str, Any] = {}
    opaque: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for info in tar.getmembers():
            path = info.name.removeprefix("./").rstrip("/")
            head, _, name = path.rpartition("/")
            if name == ".wh..wh..opq":
                opaque.add(head)
                continue
            if name.startswith(".wh."):
                entries[f"{head}/{name[4:]}" if head else name[4:]] = WhiteoutSpec()
                continue
            xattrs = tuple(
                sorted(
                    (k.removeprefix("SCHILY.xattr."), v.encode("utf-8", "surrogateescape"))
                    for k, v in info.pax_headers.items()
                    if k.startswith("SCHILY.xattr.")
                )
            )
            mode = info.mode & 0o7777
            if info.isdir():
                entries[path] = DirSpec(mode, info.uid, info.gid, xattrs)
            elif info.islnk():
                entries[path] = HardlinkSpec(info.linkname.removeprefix("./"))
            elif info.issym():
                entries[path] = SymlinkSpec(info.linkname)
            elif info.isfifo():
                entries[path] = FifoSpec(mode)
            else:
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                entries[path] = FileSpec(data, mode, info.uid, info.gid, xattrs)
    for path in opaque:
        entries[path] = attrs.evolve(entries.get(path, DirSpec()), opaque=True)
    return tuple(sorted(entries.items()))


def busybox_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
    return buffer.getvalue()


def write_archive(stack: StackSpec, path: str, volumes: tuple[str, ...] = ()) -> None:
    """A ``docker save`` archive (manifest.json, config, layer tars) of busybox plus
    ``stack`` (its lowers are top first; an archive lists layers bottom first); the
    config declares ``volumes`` (``VOLUME``, image-spec config.md ``Volumes``)."""
    layers = [busybox_tar(), *(layer_tar(build(spec)) for spec in reversed(stack.lowers))]
    digests = [hashlib.sha256(layer).hexdigest() for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": COMMAND, "Volumes": {f"/{v}": {} for v in volumes}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in digests]},
        "history": [{"created_by": "unionspec"} for _ in layers],
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [IMAGE_TAG],
            "Layers": [f"{d}/layer.tar" for d in digests],
        }
    ]
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(config_name, config_bytes)
        for digest, layer in zip(digests, layers, strict=True):
            add(f"{digest}/layer.tar", layer)
        add("manifest.json", json.dumps(manifest).encode())


class EngineExecutor(ContainerExecutor):
    """Drives one engine (``docker`` or ``podman``) by its CLI; see the module doc."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.engine = ""
        #: The engines' ``--cgroup-parent`` (set here: shutdown removes it whenever a start
        #: failed, and an empty name would be the cgroup root).
        self.cgroup_parent = f"unionspec-{os.getpid()}"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.holder_pid = 0
        self.pid_ns = ""
        self.known: set[str] = set()
        #: container -> host PID of its PID 1, while it runs
        self.pids: dict[str, int] = {}
        self.loaded: tuple[StackSpec, tuple[str, ...]] | None = None
        self.own_ns = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        self.ns_holder = 0

    # --- the engine -----------------------------------------------------------------------

    def base(self) -> list[str]:
        if self.engine == "docker":
            return ["/usr/bin/docker", "-H", f"unix://{BASE}/docker/sock"]
        return [
            "/usr/bin/nsenter",
            f"--mount=/proc/{self.ns_holder}/ns/mnt",
            "--",
            "/usr/bin/podman",
            "--root",
            f"{BASE}/podman/root",
            "--runroot",
            f"{BASE}/podman/run",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime",
            "runc",
            "--tmpdir",
            f"{BASE}/podman/tmp",
        ]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.base(), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(),
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.engine} {' '.join(args)}: {result.stderr.strip()}")
        return result

    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": f"{BASE}/home",
            "XDG_RUNTIME_DIR": f"{BASE}/xdg",
            "XDG_CONFIG_HOME": f"{BASE}/home/.config",
            "DOCKER_CONFIG": f"{BASE}/home/.docker",
            "CONTAINERS_CONF": f"{BASE}/containers.conf",
            "TMPDIR": f"{BASE}/tmpdir",
            # a run's marker (tests/test_container_interrupt.py finds its processes by it)
            **{k: v for k, v in os.environ.items() if k == "UNIONSPEC_RUN_MARK"},
        }

    def do_engine(self, engine: str) -> str:
        """Start the engine (dockerd in the PID namespace; podman needs no daemon) and
        return its version."""
        self.engine = engine
        private_host_paths()
        remove_stale_cgroups()
        self.holder_pid, self.pid_ns = holder()
        for part in ("home", "xdg", "tmpdir", f"{engine}", f"{engine}/tmp"):
            os.makedirs(f"{BASE}/{part}", exist_ok=True)
        with open(f"{BASE}/containers.conf", "w") as f:
            f.write('[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\n')
        if engine == "docker":
            log = open(f"{BASE}/docker/log", "wb")  # noqa: SIM115 (the daemon's own stderr)
            # Its own mount namespace with a procfs of our PID namespace: containerd and
            # runc open /proc/<pid> by the PIDs they see. Our tmpfs is shared with it.
            self.daemon = subprocess.Popen(
                [
                    *MOUNT_PROC,
                    "/usr/sbin/dockerd",
                    f"--data-root={BASE}/docker/root",
                    f"--exec-root={BASE}/docker/exec",
                    f"--pidfile={BASE}/docker/pid",
                    f"--host=unix://{BASE}/docker/sock",
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                    "--storage-driver=overlay2",
                    "--userland-proxy=false",
                    f"--cgroup-parent=/{self.cgroup_parent}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env(),
                start_new_session=True,
            )
            deadline = time.monotonic() + 60
            while self.cli("version", "--format", "{{.Server.Version}}", check=False).returncode:
                if self.daemon.poll() is not None or time.monotonic() > deadline:
                    with open(f"{BASE}/docker/log", "rb") as f:
                        tail = f.read()[-600:].decode(errors="replace")
                    raise RuntimeError(f"dockerd did not start: {' '.join(tail.split())}")
                time.sleep(0.1)
            return self.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
        # podman has no daemon: every call enters one mount namespace (held by a sleeping
        # busybox) with a procfs of our PID namespace, where its storage stays mounted.
        self.daemon = subprocess.Popen(
            [*MOUNT_PROC, BUSYBOX, "sleep", "1000000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.ns_holder = self.daemon.pid
        deadline = time.monotonic() + 10
        own = os.readlink("/proc/self/ns/mnt")
        while _readlink(f"/proc/{self.ns_holder}/ns/mnt") in (own, "") or not _readlink(
            f"/proc/{self.ns_holder}/exe"
        ).endswith("busybox"):
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the podman namespace holder did not start")
            time.sleep(0.01)
        return self.cli("version", "--format", "{{.Client.Version}}").stdout.strip()

    def do_image(self, stack: StackSpec, volumes: tuple[str, ...] = ()) -> None:
        """Remove every container and volume, load ``stack`` with its declared
        ``volumes`` (once), reset host dirs."""
        if self.engine:
            ids = self.cli("ps", "-aq").stdout.split()
            if ids:
                self.cli(*self.force_rm(), *ids)
            names = self.cli("volume", "ls", "-q").stdout.split()
            if names:
                self.cli("volume", "rm", "-f", *names)
        shutil.rmtree(f"{BASE}/hosts", ignore_errors=True)
        os.makedirs(f"{BASE}/hosts")
        self.pids.clear()
        self.known = set()
        for spec in stack.lowers:
            for path, entry in spec.entries:
                self.known |= components(path) | components(getattr(entry, "target", "") or "")
        if (stack, volumes) == self.loaded:
            return  # the same image is still loaded and its view mounted
        self.unmount_image()
        write_archive(stack, ARCHIVE, volumes)
        self.cli("load", "-i", ARCHIVE)
        self.loaded = (stack, volumes)
        data = json.loads(self.cli("image", "inspect", IMAGE_TAG).stdout)[0]["GraphDriver"]["Data"]
        lowers = [data["UpperDir"], *data.get("LowerDir", "").split(":")]
        ours = [d for d in lowers if d][: len(stack.lowers)]
        with contextlib.suppress(OSError):
            os.mkdir(IMAGE_VIEW)
        self.unmount_image()
        if len(ours) == 1:
            ours.append(f"{BASE}/emptylower")
            os.makedirs(ours[-1], exist_ok=True)
        mount("overlay", IMAGE_VIEW, "overlay", MS_RDONLY, f"lowerdir={':'.join(ours)}")
        self.mounted["\0image"] = [IMAGE_VIEW]

    def unmount_image(self) -> None:
        self.unmount("\0image")

    def force_rm(self) -> list[str]:
        """``rm -f -v`` without podman's 10 s stop timeout."""
        return ["rm", "-f", "-v"] + (["-t", "0"] if self.engine == "podman" else [])

    def mount_args(self, spec: dict[str, Any]) -> list[str]:
        """``--mount`` in the engine's own syntax: podman 4.3 says "readonly: invalid mount
        option" for a tmpfs and "volume-nocopy: invalid mount option" (it takes ``ro``
        and ``nocopy``; pkg/specgenutil/volumes.go)."""
        kind, target = spec["kind"], "/" + spec["target"]
        podman = self.engine == "podman"
        ro = (",ro" if podman else ",readonly") if spec["read_only"] else ""
        if kind == "volume" and podman and spec["nocopy"]:
            # podman 4.3 takes nocopy only as ``-v name:/dst:nocopy`` (observed)
            options = "nocopy" + (",ro" if spec["read_only"] else "")
            return ["-v", f"{spec['volume']}:{target}:{options}"]
        if kind == "volume":
            src = f"src={spec['volume']}," if spec["volume"] else ""
            nocopy = (",nocopy" if podman else ",volume-nocopy") if spec["nocopy"] else ""
            return ["--mount", f"type=volume,{src}dst={target}{ro}{nocopy}"]
        if kind == "bind":
            source = f"{BASE}/hosts/{spec['source']}"
            if spec["short_syntax"]:
                return ["-v", f"{source}:{target}" + (":ro" if spec["read_only"] else "")]
            return ["--mount", f"type=bind,src={source},dst={target}{ro}"]
        options = f"type=tmpfs,dst={target}{ro}"
        if spec["size"]:
            options += f",tmpfs-size={spec['size']}"
        if spec["mode"] is not None:
            options += f",tmpfs-mode={spec['mode']:o}"
        return ["--mount", options]

    def do_create(
        self, name: str, mounts: list[dict[str, Any]], sources: list[str], image: str = IMAGE_TAG
    ) -> str | None:
        args = ["create", "--pull=never", "--name", name, "--network", "none"]
        if self.engine == "podman":
            args += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
            args += [f"--cgroup-parent=/{self.cgroup_parent}"]
        for spec in mounts:
            args += self.mount_args(spec)
            self.known |= components(spec["target"])
        for source in sources:
            args += ["--volumes-from", source]
        result = self.cli(*args, image, *COMMAND, check=False)
        if result.returncode != 0:
            return refusal(result.stderr)
        return None

    def volume_mounts(self, name: str) -> list[tuple[str, str]]:
        """(target, volume name) of each volume mount of container ``name``."""
        mounts = json.loads(self.cli("inspect", name).stdout)[0].get("Mounts", [])
        return [
            (entry["Destination"].strip("/"), entry["Name"])
            for entry in mounts
            if entry.get("Type") == "volume"
        ]

    def do_engine_cli(self, *args: str) -> str | None:
        self.pids.clear()  # start, stop and rm change a container's PID 1
        result = self.cli(*args, check=False)
        return None if result.returncode == 0 else refusal(result.stderr)

    def container_pid(self, name: str) -> int:
        """The host PID of the container's PID 1 (inspect gives it in our PID namespace)."""
        if name in self.pids:
            return self.pids[name]
        inner = int(self.cli("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
        depth = len(self.nspid(os.getpid()))
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                ids = self.nspid(int(entry))
                if len(ids) > depth and ids[depth] == inner:
                    self.pids[name] = int(entry)
                    return int(entry)
        raise RuntimeError(f"no process for container {name} (pid {inner})")

    @staticmethod
    def nspid(pid: int) -> list[int]:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        return [int(x) for x in line.split()[1:]]
        except OSError:
            pass
        return []

    def volume_dir(self, name: str) -> str:
        root = f"{BASE}/docker/root" if self.engine == "docker" else f"{BASE}/podman/root"
        return f"{root}/volumes/{name}/_data"

    def in_container(self, name: str, func: Any) -> Any:
        """Run ``func`` inside the container's mount namespace (setns(2): root and cwd
        become the container's root), then come back. Only there is a mount point a mount
        point: rmdir of one is EBUSY (vfs is_local_mountpoint looks in the caller's
        namespace; from outside, through /proc/<pid>/root, it gave ENOTEMPTY)."""
        fd = os.open(f"/proc/{self.container_pid(name)}/ns/mnt", os.O_RDONLY)
        try:
            _setns(fd)
            try:
                return func()
            finally:
                _setns(self.own_ns)
                os.fchdir(self.real_root)
        finally:
            os.close(fd)

    def where(self, kind: str, name: str) -> str:
        if kind == "container":
            return f"/proc/{self.container_pid(name)}/root"
        if kind == "volume":
            return self.volume_dir(name)
        if kind == "image":
            return IMAGE_VIEW
        return directory(kind, name)

    @staticmethod
    def call(op: Any) -> Any:
        try:
            return Ok(HANDLERS[type(op)](op))
        except OSError as exc:
            return err_from_oserror(exc)

    def container_view(self, name: str) -> dict[str, Any]:
        entries = self.in_container(name, lambda: merged_view(self.known))
        return {
            path: entry
            for path, entry in entries.entries.items()
            if path.split("/")[0] not in SYSTEM_NAMES
        }

    def do_diff(self, name: str) -> dict[str, str]:
        """``diff``: one ``K /path`` line per change; the names the engine itself makes
        (SYSTEM_NAMES: podman lists ``A /etc``) are left out."""
        changes: dict[str, str] = {}
        for line in self.cli("diff", name).stdout.splitlines():
            kind, _, path = line.partition(" ")
            path = path.strip().lstrip("/")
            if path.split("/")[0] not in SYSTEM_NAMES:
                changes[path] = kind
        return dict(sorted(changes.items()))

    def do_commit(self, name: str, tag: str) -> tuple[tuple[str, Any], ...]:
        """``commit`` the container as image ``tag``, ``save`` it and decode its top
        layer (layer_entries)."""
        self.cli("commit", name, tag)
        archive = f"{BASE}/commit.tar"
        fmt = ["--format", "docker-archive"] if self.engine == "podman" else []
        self.cli("save", *fmt, "-o", archive, tag)
        try:
            with tarfile.open(archive) as outer:
                manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
                config = json.load(outer.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
                entries: tuple[tuple[str, Any], ...] = ()
                # docker 20.10 adds no layer for an empty change set (its history entry
                # is empty_layer; observed: commit of a never-started container)
                if not config["history"][-1].get("empty_layer"):
                    member = outer.extractfile(manifest[0]["Layers"][-1])
                    assert member is not None
                    entries = tuple(
                        (path, entry)
                        for path, entry in layer_entries(member.read())
                        if path.split("/")[0] not in SYSTEM_NAMES
                    )
        finally:
            os.unlink(archive)
        for path, _ in entries:
            self.known |= components(path)
        return entries

    def do_cp_in(self, name: str, path: str, data: bytes) -> str | None:
        """``cp`` a host file (mode 0644, named as the destination) to ``name:/path``."""
        source = f"{BASE}/cpsrc"
        shutil.rmtree(source, ignore_errors=True)
        os.mkdir(source)
        local = f"{source}/{os.path.basename(path)}"
        with open(local, "wb") as f:
            f.write(data)
        os.chmod(local, 0o644)
        self.known |= components(path)
        result = self.cli("cp", local, f"{name}:/{path}", check=False)
        return None if result.returncode == 0 else refusal(result.stderr)

    def do_cp_out(self, name: str, path: str) -> bytes | str:
        """``cp`` ``name:/path`` out to the host: its bytes, or the refusal code."""
        out = f"{BASE}/cpout"
        shutil.rmtree(out, ignore_errors=True)
        os.mkdir(out)
        result = self.cli("cp", f"{name}:/{path}", f"{out}/file", check=False)
        if result.returncode != 0:
            return refusal(result.stderr)
        with open(f"{out}/file", "rb") as f:
            return f.read()

    def handle(self, request: tuple[Any, ...]) -> Any:
        match request:
            case ("engine", engine):
                return self.do_engine(engine)
            case ("image", stack, volumes):
                return self.do_image(stack, volumes)
            case ("make", "host", name, mode):
                return self.do_make("host", name, mode)
            case ("create", name, mounts, sources, image):
                return self.do_create(name, mounts, sources, image)
            case ("cli", *args):
                return self.do_engine_cli(*args)
            case ("cli_out", *args):
                result = self.cli(*args, check=False)
                return result.returncode, result.stdout, result.stderr
            case ("volume_mounts", name):
                return self.volume_mounts(name)
            case ("volume_names",):
                return self.cli("volume", "ls", "-q").stdout.split()
            case ("run", "container", name, op):
                self.known |= op_names(op)
                return self.in_container(name, lambda: self.call(op))
            case ("run", kind, name, op):
                self.known |= op_names(op)
                return self.do_run(self.where(kind, name), op)
            case ("diff", name):
                return self.do_diff(name)
            case ("commit", name, tag):
                return self.do_commit(name, tag)
            case ("cp_in", name, path, data):
                return self.do_cp_in(name, path, data)
            case ("cp_out", name, path):
                return self.do_cp_out(name, path)
            case ("view", "container", name):
                return self.container_view(name)
            case ("close",):
                self.shutdown()
                return None
        return super().handle(request)

    def shutdown(self) -> None:
        """Remove everything, stop dockerd (SIGTERM, then SIGKILL by PID)."""
        with contextlib.suppress(Exception):
            self.unmount_all()
        if self.engine:
            with contextlib.suppress(Exception):
                ids = self.cli("ps", "-aq").stdout.split()
                if ids:
                    self.cli(*self.force_rm(), *ids)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.cgroup_parent:
            remove_cgroups(self.cgroup_parent)


# --- the host paths and cgroups the engines would touch (issue 17, item 5) -------------------

#: Host directories an engine writes whatever its flags say (runc's /run/runc, containerd's
#: shim sockets under /run/containerd, dockerd's /etc/docker/key.json, podman's
#: /var/lib/containers/cache): in the executor's private namespace, /run is a fresh tmpfs
#: (so the host's containerd socket is not there either: dockerd starts its own
#: containerd) and /etc and /var/lib are overlays whose writes land on the private tmpfs.
PRIVATE_RUN = "/run"
COPY_ON_WRITE = ("/etc", "/var/lib")
COW_BASE = "/tmp/unionspec-cow"
CGROUP_ROOT = "/sys/fs/cgroup"


def private_host_paths() -> None:
    """Hide the host's /run and make /etc, /var/lib copy-on-write, in this executor's
    private mount namespace only (once; the engines' own namespaces are copies of it)."""
    if os.path.isdir(COW_BASE):
        return
    mount("unionspec-run", PRIVATE_RUN, "tmpfs", 0, "mode=0755")
    for path in COPY_ON_WRITE:
        upper, work = f"{COW_BASE}{path}/upper", f"{COW_BASE}{path}/work"
        os.makedirs(upper)
        os.makedirs(work)
        mount("overlay", path, "overlay", 0, f"lowerdir={path},upperdir={upper},workdir={work}")


#: The cgroup parent of one engine executor: ``unionspec-<its PID>``.
_OURS = re.compile(r"unionspec-(\d+)")


def _hierarchies() -> list[str]:
    """The cgroup root and every directory in it (a v1 hierarchy, or a v2 cgroup)."""
    return [CGROUP_ROOT, *(f"{CGROUP_ROOT}/{n}" for n in _listdir(CGROUP_ROOT))]


def remove_cgroups(parent: str) -> None:
    """Remove the cgroup ``parent`` (the engines' ``--cgroup-parent``) of every hierarchy
    and everything under it, deepest first; the containers are gone by now (their PID
    namespace died with the daemons). Only a ``unionspec-<PID>`` name: any other (an
    empty one is the cgroup root) would rmdir the host's empty cgroups."""
    if not _OURS.fullmatch(parent):
        raise ValueError(f"{parent!r} is not a unionspec cgroup parent (unionspec-<PID>)")
    for hierarchy in _hierarchies():
        top = f"{hierarchy}/{parent}"
        if not os.path.isdir(top):
            continue
        for where, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.rmdir(where)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while a killed process is still leaving
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)


def remove_stale_cgroups() -> None:
    """Remove the cgroups an engine executor killed by SIGKILL could not remove (only
    ours: named ``unionspec-<PID>`` with that PID gone; rmdir removes empty cgroups only).
    Each stale name once: remove_cgroups covers every hierarchy."""
    stale = {
        name
        for hierarchy in _hierarchies()
        for name in _listdir(hierarchy)
        if (match := _OURS.fullmatch(name)) and not os.path.exists(f"/proc/{match.group(1)}")
    }
    for name in sorted(stale):
        remove_cgroups(name)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def main(argv: list[str]) -> int:
    # the engines keep images and containers there: no size bound, device files allowed
    return run_executor(argv, EngineExecutor, tmpfs=(0, "mode=0755"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
