"""The sandboxed executor of every sandboxed driver: ``python -m adapters.sandbox.executor <fd>``.

Started by :class:`adapters.sandbox.namespace.SandboxedDriver` (the kernel and FUSE drivers) in a
private mount namespace (the driver's ``preexec_fn`` unshares it and makes every mount
private), it serves requests over the connection on ``fd``. Everything it mounts lives only
in that namespace: a tmpfs over ``/tmp`` (so nothing is ever written on the host), the
layers under ``/tmp/unionspec`` and the overlay on ``/tmp/unionspec/mnt``. All of it goes
away when this process dies.

How the overlay is mounted is pluggable (a *mounter*): :class:`KernelMount` (``mount(2)``
of overlayfs, the default) or :class:`adapters.sandbox.fusemount.FuseMount` (run a FUSE driver's
command), chosen by a ``("configure", kind, settings)`` request before the first mount.

Operations run inside a chroot of the mount, so no path or symlink (absolute ones and
``..`` chains included) can resolve outside it.

Requests are tuples, replies ``("ok", value)`` or ``("error", "one line")``:

* ``("configure", "kernel" | "fuse", settings)``: choose the mounter;
* ``("mount", StackSpec, Options)``: write the layers and mount them (replacing any mount);
* ``("run", op)``: one operation; the value is an Ok or Err outcome;
* ``("view",)``: the merged view; ``("images",)``: the upper and lower layers decoded;
* ``("observe",)``: both in one round trip, ``(view, upper, lowers, kept)`` (view first):
  ``lowers`` is None when the lower directories are byte for byte
  (:func:`adapters.sandbox.layerdisk.layer_digest`) the lowers of the last reply with ``kept``
  true of this mount; the first decoded lowers of a mount are sent with ``kept`` true;
* ``("step", op)``: ``("run", op)`` and ``("observe",)`` in one round trip,
  ``(outcome, observation)``;
* in an observation, the view and the upper are :data:`UNCHANGED` when they are equal
  (every entry, byte and inode number) to the ones of the last observation sent since
  the mount: the driver side keeps those (half the steps change nothing: an operation
  that only looks, or one that fails), and they are neither pickled nor compared again;
* ``("close",)``: unmount and exit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from adapters import syscalls
from adapters.base import AdapterError
from adapters.sandbox.confine import MS_BIND, MS_NODEV, MS_NOSUID, mount
from adapters.sandbox.layerdisk import (
    KERNEL_FORMAT,
    TRUSTED,
    USER,
    USERXATTR_FORMAT,
    DiskFormat,
    kind_of,
    layer_digest,
    read_all,
    read_layer,
    visible_xattrs,
    write_layer,
)
from adapters.sandbox.lowerwatch import LowerWatch
from adapters.sandbox.mounting import BASE, MNT, UPPER, WORK, umount
from adapters.sandbox.upperwatch import UpperWatch
from reference import ops
from reference.layer import Inode, LayerSpec, StackSpec, build, walk
from reference.mounting import MountSpec
from reference.options import Options
from reference.outcome import Ok, err_from_oserror
from reference.view import UNREACHABLE, EntryView, View, times_of

#: In a VM: the directory bind-mounted over /tmp instead of a tmpfs (adapters.vm.guest).
SCRATCH_DIR = "UNIONSPEC_SCRATCH_DIR"
#: In an observation: equal to the same part of the last observation sent (module doc).
UNCHANGED = "unchanged"
#: The errnos of a FUSE mount whose connection is gone: ENOTCONN for a request made after
#: the daemon died, ECONNABORTED for one in flight when it did (fs/fuse/dev.c
#: fuse_abort_conn ends pending requests with -ECONNABORTED).
CONNECTION_GONE = frozenset({errno.ENOTCONN, errno.ECONNABORTED})


def unmount_lower_filesystems() -> None:
    """Unmount the lower layers' own tmpfs mounts (the ``separate_fs`` axis), if any."""
    if not os.path.isdir(BASE):
        return
    for name in os.listdir(BASE):
        path = f"{BASE}/{name}"
        if name.startswith("l") and os.path.ismount(path):
            umount(path)


def lower_dirs(n_lowers: int) -> list[str]:
    """The lower directories of a stack of ``n_lowers`` layers, top first."""
    return [f"{BASE}/l{i}" for i in range(n_lowers)]


def overlay_options(lowers: list[str], options: Options) -> str:
    """The full option string: every feature passed explicitly, never a module default."""
    if options.data_only:  # the bottom layer is data-only (doc "Data-only lower layers")
        parts = [f"lowerdir={':'.join(lowers[:-1])}::{lowers[-1]}"]
    else:
        parts = [f"lowerdir={':'.join(lowers)}"]
    if not options.read_only:
        parts += [f"upperdir={UPPER}", f"workdir={WORK}"]
    onoff = {True: "on", False: "off"}
    parts += [
        f"redirect_dir={options.redirect_dir_value}",
        f"index={onoff[options.index]}",
        f"metacopy={onoff[options.metacopy]}",
        "nfs_export=off",
        f"xino={'on' if options.xino else 'off'}",
    ]
    if options.userxattr:
        parts.append("userxattr")
    return ",".join(parts)


def marker_prefix(options: Options) -> str:
    """The namespace the layers' markers are written in (adapters.sandbox.layerdisk)."""
    return USER if options.userxattr else TRUSTED


class KernelMount:
    """The kernel mounter: overlayfs with ``mount(2)``, every option explicit."""

    kind = "kernel"
    disk_format: DiskFormat = KERNEL_FORMAT

    def __init__(self) -> None:
        self.options_string = ""

    def start(self, lowers: list[str], options: Options) -> None:
        self.options_string = overlay_options(lowers, options)
        self.disk_format = USERXATTR_FORMAT if options.userxattr else KERNEL_FORMAT
        mount("overlay", MNT, "overlay", 0, self.options_string)

    def restart(self) -> None:
        mount("overlay", MNT, "overlay", 0, self.options_string)

    def stop(self) -> None:
        umount(MNT)

    def crashed(self, what: str, errname: str = "ENOTCONN") -> str | None:
        """Why the mount is dead after ``what`` failed with ENOTCONN (None: it is not)."""
        return None

    def close(self) -> None:
        pass


# --- operations (run inside the chroot; paths are absolute within the mount) ----------------


def _handler(kind: ops.Kind) -> Callable[[Any], Any]:
    """Run ``kind``'s system call (adapters.syscalls) with an operation's fields, as its
    caller (``syscalls.invoke``: a forked child with the caller's credentials unless it is
    root); a plain result (a stat's fields) is built as the kind's result class."""
    rule, names, result = kind.rule, [f.name for f in ops.own_fields(kind.cls)], kind.result

    def handle(op: ops.Op) -> Any:
        args: dict[str, Any] = {name: getattr(op, name) for name in names}
        args["caller"] = ops.CALLERS[op.caller].creds
        value = syscalls.invoke(rule, args)
        return value if result is None else result(**value)

    return handle


#: Each operation kind's call, by class (Remount is the mounter's: no call).
HANDLERS: dict[type, Callable[[Any], Any]] = {
    cls: _handler(kind) for cls, kind in ops.KINDS.items() if kind.rule in syscalls.CALLS
}


def unreadable(exc: OSError, what: str) -> EntryView:
    """What the view records where the driver answers an observation with an error (not
    ENOTCONN: that is a crash): an entry of its own kind, so the comparison reports it as
    a divergence with the errno instead of the observation failing."""
    if exc.errno in CONNECTION_GONE:
        raise exc
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return EntryView(kind=f"{what} gives {name}", mode=0, uid=0, gid=0, nlink=0)


def components(text: str) -> set[str]:
    """The names a path (or a symlink target) holds."""
    return {part for part in text.split("/") if part}


def names_of(stack: StackSpec) -> set[str]:
    """Every name the stack's layers hold: their paths, and their symlinks' targets (a
    write through a symlink creates its target's name)."""
    found: set[str] = set()
    for spec in stack.lowers:
        for path, entry in spec.entries:
            found |= components(path) | components(getattr(entry, "target", "") or "")
    return found


def op_names(op: ops.Op) -> set[str]:
    """Every name an operation's paths (and a symlink's target) hold."""
    found: set[str] = set()
    for field in ("path", "src", "dst", "target"):
        value = getattr(op, field, None)
        if isinstance(value, str):
            found |= components(value)
    return found


def foreign(st: os.stat_result) -> EntryView:
    """A name neither the layers nor any operation made: recorded (a divergence) but not
    read or entered (its data could be anything the driver exposes; see merged_view)."""
    return EntryView(
        kind=f"foreign {kind_of(st.st_mode)}",
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        nlink=st.st_nlink,
    )


def merged_view(known: set[str] | None = None) -> View:
    """Walk the merged tree from ``/`` (we are inside the chroot), never following links.
    A name readdir lists but lstat does not find is recorded as UNREACHABLE, with no inode.
    A directory that cannot be listed is recorded as ``<dir>/`` (``/`` for the root) with
    the errno (:func:`unreadable`); so is an entry whose lstat, data or xattrs fail.

    With ``known`` (the names the layers and the operations hold), any other name is
    recorded as :func:`foreign` without reading its data or entering it: a driver that
    follows a lower layer's symlink when it merges directories (unionfs-fuse) can show a
    tree outside its branches, even the host's ``/``, and reading that would be neither
    bounded nor harmless (``/proc/kmsg`` reads are destructive)."""
    entries: dict[str, EntryView] = {}
    inodes: dict[str, int] = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            names = sorted(os.listdir("/" + rel_dir))
        except OSError as exc:
            entries[rel_dir + "/"] = unreadable(exc, "readdir")
            continue
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = "/" + rel
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                # listed by readdir, not found by lookup (a whiteout in an unmerged dir)
                entries[rel] = UNREACHABLE
                continue
            except OSError as exc:
                entries[rel] = unreadable(exc, "lstat")
                continue
            if known is not None and name not in known:
                entries[rel] = foreign(st)
                continue
            kind = kind_of(st.st_mode)
            try:
                entries[rel] = EntryView(
                    kind=kind,
                    mode=stat.S_IMODE(st.st_mode),
                    uid=st.st_uid,
                    gid=st.st_gid,
                    nlink=st.st_nlink,
                    data=read_all(path) if kind == "file" else b"",
                    target=os.readlink(path) if kind == "symlink" else "",
                    xattrs=visible_xattrs(path) if kind in ("file", "dir", "fifo") else (),
                    mtime=st.st_mtime_ns,
                    ctime=st.st_ctime_ns,
                )
            except OSError as exc:
                entries[rel] = unreadable(exc, "reading it")
                continue
            inodes[rel] = st.st_ino
            if kind == "dir":
                pending.append(rel)
    return View(entries=entries, inodes=inodes)


class Executor:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        self.mounted = False
        self.mounter: Any = KernelMount()
        self.stack: StackSpec | None = None
        self.options: Options | None = None
        #: The names the layers and the operations so far hold (see merged_view).
        self.known: set[str] = set()
        #: The digest of the lower directories when the first observe of this mount
        #: decoded and sent them (None: not sent yet).
        self.lowers_sent: bytes | None = None
        #: Reports changes to the lowers, so a quiet step needs no digest of them.
        self.lower_watch = LowerWatch()
        #: The view and the upper of the last observation sent since the mount.
        self.view_sent: View | None = None
        self.upper_sent: Any = None
        #: Reports changes to the upper, so a step that changed nothing on it needs no
        #: decoding of it (adapters.sandbox.upperwatch).
        self.upper_watch = UpperWatch()

    # --- the chroot -----------------------------------------------------------------------

    def enter(self) -> None:
        os.chroot(MNT)
        os.chdir("/")

    def leave(self) -> None:
        os.fchdir(self.real_root)
        os.chroot(".")

    def inside(self, func: Callable[[], Any]) -> Any:
        if not self.mounted:
            raise RuntimeError("no overlay is mounted")
        self.enter()
        try:
            return func()
        finally:
            self.leave()

    # --- requests -------------------------------------------------------------------------

    def do_mount(self, stack: StackSpec, options: Options, upper: Inode | None = None) -> None:
        """Write the layers and mount them. ``upper``: an upper layer to start from (written
        in the kernel's form) instead of an empty one; read-only, it becomes the top lower
        (layers stacked as a container image is)."""
        self.unmount()
        syscalls.close_handles(forget=True)  # a new mount numbers its handles from 0
        self.stack = self.options = None
        unmount_lower_filesystems()
        shutil.rmtree(BASE, ignore_errors=True)
        os.mkdir(BASE, 0o755)
        prefix = marker_prefix(options)
        for i, spec in enumerate(stack.lowers):
            if options.separate_fs:  # each lower layer on a tmpfs of its own
                os.mkdir(f"{BASE}/l{i}", 0o700)
                mount("tmpfs", f"{BASE}/l{i}", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m")
            write_layer(build(spec), f"{BASE}/l{i}", prefix)
        lowers = lower_dirs(len(stack.lowers))
        self.lower_watch.watch(lowers)
        if not options.read_only or upper is not None:
            write_layer(upper if upper is not None else build(LayerSpec()), UPPER, prefix)
            os.mkdir(WORK, 0o755)
        if options.read_only and upper is not None:
            lowers.insert(0, UPPER)
        os.mkdir(MNT, 0o755)
        self.mounter.start(lowers, options)
        self.mounted = True
        self.stack, self.options = stack, options
        self.known = names_of(stack)
        if upper is not None:
            for path, inode in walk(upper):
                self.known |= components(path) | components(inode.target)

    def do_switch(self, kind: str, settings: dict[str, Any], options: Options) -> None:
        """Layer interchange: unmount, and mount the same layers with another mounter and a
        fresh work directory; read-only, the upper becomes the top lower."""
        if self.stack is None or self.options is None or self.options.read_only:
            raise RuntimeError("switch needs a read-write mount to hand over")
        self.unmount()
        self.do_configure(kind, settings)
        shutil.rmtree(WORK, ignore_errors=True)
        os.mkdir(WORK, 0o755)
        lowers = lower_dirs(len(self.stack.lowers))
        if options.read_only:
            lowers.insert(0, UPPER)
        self.options = options
        self.mounter.start(lowers, options)
        self.mounted = True

    def do_configure(self, kind: str, settings: dict[str, Any]) -> None:
        if self.mounted:
            raise RuntimeError("cannot change the mounter while mounted")
        self.mounter.close()
        if kind == "kernel":
            self.mounter = KernelMount()
        elif kind == "fuse":
            from adapters.sandbox.fusemount import FuseMount

            self.mounter = FuseMount(**settings)
        else:
            raise ValueError(f"unknown mounter {kind!r}")

    def unmount(self) -> None:
        self.lowers_sent = self.view_sent = self.upper_sent = None
        self.upper_watch.start()
        syscalls.close_handles()  # a mount with open files is busy
        if self.mounted:
            self.mounted = False
            self.mounter.stop()

    def remount(self) -> None:
        sent = self.lowers_sent
        self.unmount()
        self.mounter.restart()
        self.mounted = True
        self.lowers_sent = sent  # the same layers, mounted again

    def check_crash(self, what: str, err: int | None = errno.ENOTCONN) -> None:
        """After ENOTCONN or ECONNABORTED (``err``): if the mount is dead, clean it up and
        raise (a crashed driver)."""
        why = self.mounter.crashed(what, errno.errorcode.get(err or 0, "ENOTCONN"))
        if why is not None:
            with contextlib.suppress(Exception):
                self.unmount()
            raise DriverCrashed(why)

    def do_run(self, op: ops.Op) -> Any:
        self.known |= op_names(op)
        if isinstance(op, ops.Remount):
            self.remount()
            return Ok(None)
        handler = HANDLERS[type(op)]
        if not self.mounted:
            raise RuntimeError("no overlay is mounted")
        try:
            self.enter()
        except OSError as exc:
            if exc.errno in CONNECTION_GONE:
                self.check_crash(repr(op), exc.errno)
            raise
        try:
            try:
                value = handler(op)
            except OSError as exc:
                failure: OSError | None = exc
            else:
                failure = None
        finally:
            self.leave()
        if failure is None:
            return Ok(value)
        if failure.errno in CONNECTION_GONE:
            self.check_crash(repr(op), failure.errno)
        return err_from_oserror(failure)

    def do_view(self) -> View:
        try:
            return self.inside(lambda: merged_view(self.known))
        except OSError as exc:
            if exc.errno in CONNECTION_GONE:
                self.check_crash("view", exc.errno)
            raise

    def do_images(self) -> Any:
        if self.stack is None or self.options is None:
            raise RuntimeError("no overlay is mounted")
        fmt = self.mounter.disk_format
        upper = None if self.options.read_only else read_layer(UPPER, fmt)
        lowers = tuple(read_layer(f"{BASE}/l{i}", fmt) for i in range(len(self.stack.lowers)))
        return upper, lowers

    def do_observe(self) -> tuple[View, Any, Any, bool]:
        """The view, the upper decoded, and the lowers: decoded the first time after a
        mount (and kept by the driver), afterwards None while their digest (every byte,
        metadata and xattr) is the one of that first time, decoded as soon as it is not.
        The digest is skipped while inotify reports nothing (adapters.sandbox.lowerwatch)."""
        view: Any = self.do_view()
        if self.stack is None or self.options is None:
            raise RuntimeError("no overlay is mounted")
        fmt = self.mounter.disk_format
        upper = None if self.options.read_only else self._upper(fmt)
        if (
            self.view_sent is not None
            and view == self.view_sent
            and times_of(view.entries) == times_of(self.view_sent.entries)
        ):
            view = UNCHANGED
        else:
            self.view_sent = view
        if self.upper_sent is not None and (upper is UNCHANGED or upper == self.upper_sent):
            upper = UNCHANGED
        else:
            self.upper_sent = upper
        dirs = lower_dirs(len(self.stack.lowers))
        if self.lowers_sent is None:
            self.lower_watch.baseline()
        elif self.lower_watch.quiet():
            return view, upper, None, False  # nothing reported since the baseline
        digest = b"".join(map(layer_digest, dirs))
        if digest == self.lowers_sent:
            return view, upper, None, False
        lowers = tuple(read_layer(directory, fmt) for directory in dirs)
        if self.lowers_sent is None and digest == b"".join(map(layer_digest, dirs)):
            self.lowers_sent = digest  # unchanged while decoding: the driver keeps these
            return view, upper, lowers, True
        return view, upper, lowers, False

    def _upper(self, fmt: DiskFormat) -> Any:
        """The upper decoded, or :data:`UNCHANGED` when inotify reported nothing on it
        since it was decoded last, into ``upper_sent`` (adapters.sandbox.upperwatch)."""
        watch = self.upper_watch
        if self.upper_sent is not None and watch.quiet():
            return UNCHANGED
        watch.before_decoding()
        upper = read_layer(UPPER, fmt)
        whiteouts = [path for path, entry in upper.entries.items() if entry.kind == "whiteout"]
        watch.decoded(UPPER, upper.inodes, whiteouts)
        return upper

    def handle(self, request: tuple[Any, ...]) -> Any:
        match request:
            case ("run", op):
                return self.do_run(op)
            case ("step", op):
                return self.do_run(op), self.do_observe()
            case ("mount", stack, options):
                return self.do_mount(stack, options)
            case ("mount", stack, options, upper):
                return self.do_mount(stack, options, upper)
            case ("switch", kind, settings, options):
                return self.do_switch(kind, settings, options)
            case ("unmount",):
                return self.unmount()
            case ("view",):
                return self.do_view()
            case ("configure", kind, settings):
                return self.do_configure(kind, settings)
            case ("daemon_pids",):
                return self.mounter.daemon_pids() if self.mounter.kind == "fuse" else []
            case ("images",):
                return self.do_images()
            case ("observe",):
                return self.do_observe()
            case ("try_mount", spec):
                return try_mount(spec)
            case ("ping",):
                return os.getpid()
            case ("close",):
                try:
                    self.unmount()
                finally:
                    self.mounter.close()
                return None
        raise ValueError(f"unknown request {request!r:.200}")

    def serve(self) -> None:
        serve(self.conn, self.handle)

    def shutdown(self) -> None:
        """Leave nothing mounted (the end of :func:`run_executor`, whatever happened)."""
        with contextlib.suppress(Exception):
            self.unmount()
        with contextlib.suppress(Exception):
            self.mounter.close()
        self.lower_watch.close()
        self.upper_watch.close()


#: Where :func:`try_mount` builds its layers (inside the executor's private /tmp).
TRY_ROOT = "/tmp/unionspec-try"


def try_mount(spec: MountSpec) -> str:
    """Mount validation (reference/mounting.py): make the spec's directories and files
    below a fresh directory (its ``other_fs`` ones on a second tmpfs), mount overlayfs
    with its option string, and say ``"ok"`` or the errno name; nothing stays mounted."""
    shutil.rmtree(TRY_ROOT, ignore_errors=True)
    os.mkdir(TRY_ROOT, 0o700)
    other = f"{TRY_ROOT}/o"
    os.mkdir(other)
    mount("tmpfs", other, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
    try:
        for path in (*spec.dirs, *spec.other_fs):
            os.makedirs(f"{TRY_ROOT}/{path}", exist_ok=True)
        for path in spec.files:
            os.makedirs(os.path.dirname(f"{TRY_ROOT}/{path}"), exist_ok=True)
            os.close(os.open(f"{TRY_ROOT}/{path}", os.O_WRONLY | os.O_CREAT, 0o644))
        target = f"{TRY_ROOT}/mnt"
        os.mkdir(target)
        try:
            mount("overlay", target, "overlay", 0, spec.option_string(TRY_ROOT))
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc.errno))
        umount(target)
        return "ok"
    finally:
        umount(other)
        shutil.rmtree(TRY_ROOT, ignore_errors=True)


class DriverCrashed(AdapterError, RuntimeError):
    """The mounted driver died under an operation (ENOTCONN)."""


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    if isinstance(exc, OSError) and exc.errno is not None:
        text += f" [{errno.errorcode.get(exc.errno, exc.errno)}]"
    where = traceback.extract_tb(exc.__traceback__)
    if where:
        last = where[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno})"
    return text


def _own_mount_namespace() -> bool:
    """True when this process is in a mount namespace of its own (not its parent's)."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


#: The private tmpfs over /tmp of a layer executor (issue 17): bounded (the programs are:
#: conformance.records.program_check), no device files opened on it, no setuid.
TMPFS = (MS_NOSUID | MS_NODEV, "mode=0755,size=256m")


def setup(tmpfs: tuple[int, str] = TMPFS) -> None:
    """Private tmpfs over /tmp (``tmpfs``: its mount flags and options), after checking
    that it cannot be seen by the host."""
    if not _own_mount_namespace():
        raise RuntimeError("not in a private mount namespace; refusing to mount anything")
    os.umask(0)
    # The project may itself live under /tmp (CI clones there): load every module the
    # executor can need before the private tmpfs hides that directory.
    import adapters.sandbox.fusemount

    # How a FUSE driver's own files under the host's /tmp are shown to it: a descriptor
    # of the host's /tmp opened before the private tmpfs hides it (adapters.sandbox.fusemount).
    adapters.sandbox.fusemount.HOST_TMP = os.open("/tmp", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    scratch = os.environ.get(SCRATCH_DIR)
    if scratch:  # in a VM (adapters.vm.guest): a directory of a disk with user xattrs
        mount(scratch, "/tmp", "", MS_BIND, None)
    else:
        mount("unionspec", "/tmp", "tmpfs", *tmpfs)
    os.mkdir(BASE, 0o755)


def serve(conn: Connection, handle: Callable[[Any], Any]) -> None:
    """Answer requests until ``("close",)`` or the end of the connection: each reply is
    ``("ok", value)`` or ``("error", one line)``, so the driver side never sees a
    traceback and the executor never dies of a bad request."""
    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        try:
            reply: tuple[str, Any] = ("ok", handle(request))
        except Exception as exc:
            reply = ("error", _one_line(exc))
        conn.send(reply)
        if request == ("close",):
            break


class Serving(Protocol):
    def serve(self) -> None: ...

    def shutdown(self) -> None: ...


def run_executor(
    argv: list[str], make: Callable[[Connection], Serving], tmpfs: tuple[int, str] = TMPFS
) -> int:
    """An executor process's life: the private tmpfs (:func:`setup`), ``make`` the
    executor, say "ok" with this PID (or the one-line error), serve, and shut down."""
    conn = Connection(int(argv[1]))
    try:
        setup(tmpfs)
        executor = make(conn)
    except Exception as exc:
        conn.send(("error", _one_line(exc)))
        return 1
    conn.send(("ok", os.getpid()))
    try:
        executor.serve()
    finally:
        with contextlib.suppress(Exception):
            executor.shutdown()
    return 0


def main(argv: list[str]) -> int:
    return run_executor(argv, Executor)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
