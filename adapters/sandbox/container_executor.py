"""The executor of the kernel-mounts engine: ``python -m adapters.sandbox.container_executor <fd>``.

Started by :class:`adapters.engines.kernel_mounts.KernelMountsEngine` exactly as the overlay
executor is (a private mount namespace, a private tmpfs over ``/tmp``: adapters.sandbox.executor
``setup``), it builds containers from real kernel objects under ``/tmp/unionspec``:

- ``image/l<i>``: the image layers; ``imageview``: a read-only overlay of them;
- ``volumes/<name>``, ``hosts/<name>``: volume data directories and host directories;
- ``containers/<name>/{upper,work,merged}``: the container root, an overlay of the image
  with its writable layer, and on it (while running) the container's mounts: a bind
  mount of the volume or host directory (``MS_BIND|MS_REC``, then ``MS_REMOUNT|MS_RDONLY``
  for read-only), or a tmpfs (``size=``, ``mode=``) - as runc makes them.

Operations run inside a chroot of the container's merged root (or of a volume or host
directory), so no generated path can resolve outside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from adapters.sandbox import layerdiff
from adapters.sandbox.executor import (
    BASE,
    HANDLERS,
    merged_view,
    mount,
    run_executor,
    serve,
    umount,
)
from adapters.sandbox.layerdiff import OPAQUE
from adapters.sandbox.layerdisk import kind_of, layer_entries, user_xattrs, write_layer
from reference import ops
from reference.layer import HardlinkSpec, StackSpec, build
from reference.outcome import Ok, err_from_oserror

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000

IMAGE = f"{BASE}/image"
IMAGE_VIEW = f"{BASE}/imageview"


def directory(kind: str, name: str) -> str:
    """Where a volume, host directory or container lives (an anonymous volume's model
    name ``<container>.<target>`` may hold a ``/``: a nested target)."""
    return f"{BASE}/{kind}s/{name.replace('/', '%')}"


def copy_tree(source: str, into: str, *, xattrs: bool = True) -> None:
    """Copy the tree below ``source`` into the existing directory ``into``: owner, mode,
    user xattrs and bytes per entry, hardlinks kept (what continuity fs.CopyDir and
    runc's tmpcopyup do). Never follows a symlink."""
    links: dict[tuple[int, int], str] = {}
    for current, dirs, files in os.walk(source):
        rel = os.path.relpath(current, source)
        target_dir = into if rel == "." else os.path.join(into, rel)
        for name in sorted(dirs + files):
            src = os.path.join(current, name)
            dst = os.path.join(target_dir, name)
            st = os.lstat(src)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and key in links:
                os.link(links[key], dst)
                continue
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(dst)
            elif stat.S_ISREG(st.st_mode):
                with open(src, "rb") as f, open(dst, "wb") as g:
                    shutil.copyfileobj(f, g)
                links[key] = dst
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
                continue
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst)
            else:
                continue
            take_meta(src, dst, xattrs=xattrs)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]


def take_meta(src: str, dst: str, *, xattrs: bool = True) -> None:
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    if xattrs and kind_of(st.st_mode) in ("file", "dir"):
        for name, value in user_xattrs(src):
            os.setxattr(dst, name, value, follow_symlinks=False)


def tar_order_links(entries: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """A hardlink group led by its first name in the order a layer tar is written (a
    depth-first walk, names sorted: ``e/f2`` before ``f``; moby and containers/storage
    walk so), not layer_entries' directory-by-directory one."""
    found = dict(entries)
    groups: dict[str, list[str]] = {}
    for path, entry in entries:
        if isinstance(entry, HardlinkSpec):
            groups.setdefault(entry.to, [entry.to]).append(path)
    for members in groups.values():
        leader = min(members, key=lambda p: p.split("/"))
        if leader != members[0]:
            found[leader] = found[members[0]]
            for path in members:
                if path != leader:
                    found[path] = HardlinkSpec(leader)
    return tuple(sorted(found.items()))


def mkdir_parents(root: str, target: str) -> None:
    """Make the missing directories of ``target`` below ``root``, 0755 (runc
    MkdirAllInRoot); through the mounts made so far."""
    parts = target.split("/")
    for depth in range(1, len(parts) + 1):
        path = os.path.join(root, *parts[:depth])
        if not os.path.lexists(path):
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)


class ContainerExecutor:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        self.layers = 0
        #: container -> its mounted root overlay and the mounts on it (in mount order)
        self.mounted: dict[str, list[str]] = {}
        #: committed image -> its layer directories (top first); container -> its image's
        self.images: dict[str, list[str]] = {}
        self.lowers_of: dict[str, list[str]] = {}

    # --- the chroot -----------------------------------------------------------------------

    def inside(self, where: str, func: Callable[[], Any]) -> Any:
        os.chroot(where)
        os.chdir("/")
        try:
            return func()
        finally:
            os.fchdir(self.real_root)
            os.chroot(".")

    # --- requests -------------------------------------------------------------------------

    def do_image(self, stack: StackSpec) -> None:
        """Forget everything; write ``stack`` and mount a read-only view of it."""
        self.unmount_all()
        shutil.rmtree(BASE, ignore_errors=True)
        for kind in ("", "/volumes", "/hosts", "/containers", "/image"):
            os.mkdir(BASE + kind, 0o755)
        for i, spec in enumerate(stack.lowers):
            write_layer(build(spec), f"{IMAGE}/l{i}")
        self.layers = len(stack.lowers)
        self.images, self.lowers_of = {}, {}
        os.mkdir(IMAGE_VIEW, 0o755)
        mount("overlay", IMAGE_VIEW, "overlay", MS_RDONLY, f"lowerdir={self.lowerdir()}")
        self.mounted["\0image"] = [IMAGE_VIEW]

    def lowerdir(self, container: str | None = None) -> str:
        """Top layer first; an overlay needs two lowers without an upper."""
        return ":".join(self.lowers(container))

    def lowers(self, container: str | None = None) -> list[str]:
        if container in self.lowers_of:
            return self.lowers_of[container]
        return [f"{IMAGE}/l{i}" for i in range(self.layers)]

    def do_commit(self, name: str, image: str, keep_xattrs: bool) -> tuple[Any, ...]:
        """``commit``: the container's upper directory, copied as it is (whiteouts,
        opaque markers, hardlinks: ``cp -a``), becomes the top layer of ``image``;
        the overlay's own xattrs but the opaque marker are dropped, user xattrs too
        unless ``keep_xattrs``. Returns the layer decoded (layerdisk.layer_entries)."""
        layer = f"{IMAGE}/c-{image}"
        shutil.rmtree(layer, ignore_errors=True)
        self.mount_root(name)  # a container never mounted has no upper directory yet
        subprocess.run(
            ["cp", "-a", f"{directory('container', name)}/upper", layer],
            check=True,
            capture_output=True,
        )
        for current, dirs, files in os.walk(layer):
            for entry in [current, *(os.path.join(current, n) for n in dirs + files)]:
                for key in os.listxattr(entry, follow_symlinks=False):
                    user = key.startswith("user.")
                    if (user and not keep_xattrs) or (not user and key != OPAQUE):
                        os.removexattr(entry, key, follow_symlinks=False)
        self.images[image] = [layer, *self.lowers(name)]
        return tar_order_links(layer_entries(layer))

    def cp_place(self, name: str, where: str) -> tuple[str, Callable[[], None]]:
        """The directory ``where`` names for a cp (volume:<v>, host:<h>, ``running``: the
        container's root with its mounts, ``root``: its root without them, a
        non-recursive bind) and how to let it go."""
        kind, _, which = where.partition(":")
        if kind in ("volume", "host"):
            return directory(kind, which), lambda: None
        self.mount_root(name)
        if kind == "running":
            return self.root_of(name), lambda: None
        side = f"{directory('container', name)}/cpview"
        with contextlib.suppress(FileExistsError):
            os.mkdir(side, 0o755)
        mount(self.root_of(name), side, "", MS_BIND, None)
        return side, lambda: umount(side)

    def do_cp_in(self, name: str, where: str, path: str, data: bytes) -> str | None:
        """Replace the name (unlink, then a new file 0600 written, then 0644 root) as the
        engines' extraction does; "no-space" when the data does not fit (what fitted
        stays), "read-only" when the unlink or the create meets a read-only mount."""
        place, done = self.cp_place(name, where)
        try:
            target = os.path.join(place, path)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise
                return "read-only"
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                left = memoryview(data)
                while left:
                    left = left[os.write(fd, left) :]
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return "no-space"
            finally:
                os.close(fd)
            os.chown(target, 0, 0)
            os.chmod(target, 0o644)
            return None
        finally:
            done()

    def do_cp_out(self, name: str, where: str, path: str) -> bytes:
        place, done = self.cp_place(name, where)
        try:
            with open(os.path.join(place, path), "rb") as f:
                return f.read()
        finally:
            done()

    def do_cp_mounts(self, name: str, mounts: list[dict[str, Any]]) -> str | None:
        """What docker's cp does first: mount the volumes and binds (``mounts``, a parent
        first) on the container root seen without its mounts, each missing mount point
        made 0755 with its parents (moby daemon/volumes_unix.go mountVolumes,
        CreateIfNotExists), then unmount them. "not-a-directory" or "read-only" when a
        mount point cannot be made (what was made before stays)."""
        place, done = self.cp_place(name, "root")
        made: list[str] = []
        try:
            for spec in mounts:
                path = f"{place}/{spec['target']}"
                try:
                    if not os.path.lexists(path):
                        mkdir_parents(place, spec["target"])
                    elif not stat.S_ISDIR(os.lstat(path).st_mode):
                        return "not-a-directory"
                except OSError as exc:
                    refused = {errno.EROFS: "read-only", errno.ENOTDIR: "not-a-directory"}
                    if exc.errno not in refused:
                        raise
                    return refused[exc.errno]
                mount(spec["source"], path, "", MS_BIND | MS_REC, None)
                made.append(path)
                if spec["read_only"]:
                    mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            return None
        finally:
            for path in reversed(made):
                umount(path)
            done()

    def do_image_of(self, name: str, image: str) -> None:
        self.lowers_of[name] = self.images[image]

    def do_make(self, kind: str, name: str, mode: int) -> None:
        path = directory(kind, name)
        os.mkdir(path, mode)
        os.chmod(path, mode)

    def do_rmtree(self, kind: str, name: str) -> None:
        shutil.rmtree(directory(kind, name))

    def root_of(self, name: str) -> str:
        return f"{directory('container', name)}/merged"

    def mount_root(self, name: str) -> None:
        if name in self.mounted:
            return
        base = directory("container", name)
        for part in ("", "/upper", "/work", "/merged"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(base + part, 0o755)
        options = (
            f"lowerdir={self.lowerdir(name)},upperdir={base}/upper,workdir={base}/work,"
            "redirect_dir=off,index=off,metacopy=off,nfs_export=off,xino=off"
        )
        mount("overlay", f"{base}/merged", "overlay", 0, options)
        self.mounted[name] = [f"{base}/merged"]

    def unmount(self, name: str) -> None:
        """Unmount what ``name`` mounted, wherever a rename moved it to: every mount at or
        below its first mount point (the container root), deepest first."""
        targets = self.mounted.pop(name, [])
        if not targets:
            return
        top = targets[0]
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        below = [p for p in points if p == top or p.startswith(f"{top}/")]
        for target in sorted(set(below), key=lambda p: -p.count("/")):
            umount(target)

    def unmount_all(self) -> None:
        for name in list(self.mounted):
            self.unmount(name)

    def do_populate(self, container: str, target: str, volume: str, copy: bool, meta: bool) -> None:
        """Copy the container root's ``target`` into the volume (``copy``) and/or give the
        volume root its owner and mode (``meta``; 0:0 when the target is no directory)."""
        self.mount_root(container)
        source = f"{self.root_of(container)}/{target}"
        into = directory("volume", volume)
        is_dir = os.path.isdir(source) and not os.path.islink(source)
        if copy and is_dir:
            copy_tree(source, into)
        if meta:
            if is_dir:
                st = os.lstat(source)
                os.chown(into, st.st_uid, st.st_gid)
                os.chmod(into, stat.S_IMODE(st.st_mode))
            else:
                os.chown(into, 0, 0)

    def do_start(self, name: str, mounts: list[dict[str, Any]]) -> str | None:
        """Mount the root and the mount table in the order given, as runc does
        (rootfs_linux.go mountToRootfs); a target that is not a directory fails the start:
        the value is "not-a-directory" and nothing stays mounted (the mount points made
        before stay)."""
        self.mount_root(name)
        root = self.root_of(name)
        try:
            for spec in mounts:
                path = f"{root}/{spec['target']}"
                try:
                    before = os.lstat(path)
                except FileNotFoundError:
                    before = None
                    mkdir_parents(root, spec["target"])
                if before is not None and not stat.S_ISDIR(before.st_mode):
                    raise NotADirectoryError(path)
                if spec["kind"] == "tmpfs":
                    self.mount_tmpfs(name, path, spec, before)
                else:
                    mount(spec["source"], path, "", MS_BIND | MS_REC, None)
                    self.mounted[name].append(path)
                    if spec["read_only"]:
                        mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            for spec in mounts:
                if spec["kind"] == "tmpfs" and spec["read_only"]:
                    self.remount_tmpfs_read_only(f"{root}/{spec['target']}", spec)
        except NotADirectoryError:
            self.unmount(name)
            return "not-a-directory"
        except OSError as exc:
            refused = {errno.ENOSPC: "no-space", errno.EROFS: "read-only"}.get(exc.errno or 0)
            if refused is None:
                raise
            self.unmount(name)
            return refused  # a tmpfs copy-up larger than its size; a mkdir in a ro mount
        return None

    def mount_tmpfs(self, name: str, path: str, spec: dict[str, Any], before: Any) -> None:
        data = [f"mode={spec['mode']:o}"] if spec["mode"] is not None else []
        if spec["size"]:
            data.append(f"size={spec['size']}")
        staging = None
        if spec["copy_up"] and before is not None:
            staging = f"{BASE}/staging"
            shutil.rmtree(staging, ignore_errors=True)
            os.mkdir(staging)
            copy_tree(path, staging)
        mount("tmpfs", path, "tmpfs", 0, ",".join(data) or None)
        self.mounted[name].append(path)
        if spec["fixed_mode"] is not None:
            os.chmod(path, spec["fixed_mode"])
        elif before is not None:
            os.chmod(path, stat.S_IMODE(before.st_mode))  # runc: chmod to the target's mode
        if staging is not None:
            copy_tree(staging, path, xattrs=spec["copy_xattrs"])
            shutil.rmtree(staging)

    def remount_tmpfs_read_only(self, path: str, spec: dict[str, Any]) -> None:
        """runc finalizeRootfs: a read-only tmpfs is remounted so after every mount (it
        stays writable while the mounts below it make their mount points)."""
        data = [f"mode={spec['mode']:o}"] if spec["mode"] is not None else []
        if spec["size"]:
            data.append(f"size={spec['size']}")
        mount("", path, "", MS_REMOUNT | MS_RDONLY, ",".join(data) or None)

    def do_diff(self, name: str, rule: str) -> dict[str, str]:
        """What the engine's ``diff`` algorithm (reference/diff.py DiffRule) finds in the
        container's real layers: ``native`` walks the upper directory; ``naive`` compares
        the image view with the container root seen without its mounts (a non-recursive
        bind of it, as moby mounts the layer alone)."""
        base = directory("container", name)
        if rule == "native":
            return layerdiff.native(f"{base}/upper", self.lowers(name))
        self.mount_root(name)
        side = f"{base}/diffview"
        with contextlib.suppress(FileExistsError):
            os.mkdir(side, 0o755)
        mount(self.root_of(name), side, "", MS_BIND, None)
        try:
            return self.with_image_view(name, lambda view: layerdiff.naive(view, side, set()))
        finally:
            umount(side)

    def with_image_view(self, name: str, func: Callable[[str], Any]) -> Any:
        """``func`` of a read-only view of container ``name``'s image."""
        if name not in self.lowers_of:
            return func(IMAGE_VIEW)
        view = f"{directory('container', name)}/imageview"
        with contextlib.suppress(FileExistsError):
            os.mkdir(view, 0o755)
        mount("overlay", view, "overlay", MS_RDONLY, f"lowerdir={self.lowerdir(name)}")
        try:
            return func(view)
        finally:
            umount(view)

    def do_run(self, where: str, op: ops.Op) -> Any:
        handler = HANDLERS[type(op)]

        def call() -> Any:
            try:
                return Ok(handler(op))
            except OSError as exc:
                return err_from_oserror(exc)

        return self.inside(where, call)

    def where(self, kind: str, name: str) -> str:
        if kind == "container":
            return self.root_of(name)
        if kind == "image":
            return IMAGE_VIEW
        return directory(kind, name)

    def handle(self, request: tuple[Any, ...]) -> Any:
        match request:
            case ("image", stack):
                return self.do_image(stack)
            case ("make", kind, name, mode):
                return self.do_make(kind, name, mode)
            case ("rmtree", kind, name):
                return self.do_rmtree(kind, name)
            case ("populate", container, target, volume, copy, meta):
                return self.do_populate(container, target, volume, copy, meta)
            case ("commit", name, image, keep_xattrs):
                return self.do_commit(name, image, keep_xattrs)
            case ("cp_in", name, where, path, data):
                return self.do_cp_in(name, where, path, data)
            case ("cp_out", name, where, path):
                return self.do_cp_out(name, where, path)
            case ("cp_mounts", name, mounts):
                return self.do_cp_mounts(name, mounts)
            case ("image_of", name, image):
                return self.do_image_of(name, image)
            case ("diff", name, rule):
                return self.do_diff(name, rule)
            case ("start", name, mounts):
                return self.do_start(name, mounts)
            case ("stop", name):
                return self.unmount(name)
            case ("remove", name):
                self.unmount(name)
                self.lowers_of.pop(name, None)
                return shutil.rmtree(directory("container", name), ignore_errors=True)
            case ("run", kind, name, op):
                return self.do_run(self.where(kind, name), op)
            case ("view", kind, name):
                view = self.inside(self.where(kind, name), merged_view)
                return view.entries
            case ("ping",):
                return os.getpid()
            case ("close",):
                return self.unmount_all()
        raise ValueError(f"unknown request {request!r:.200}")

    def serve(self) -> None:
        serve(self.conn, self.handle)

    def shutdown(self) -> None:
        """Leave nothing mounted (the end of :func:`run_executor`, whatever happened)."""
        with contextlib.suppress(Exception):
            self.unmount_all()


def main(argv: list[str]) -> int:
    return run_executor(argv, ContainerExecutor)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
