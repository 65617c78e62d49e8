#!/usr/bin/env python3
"""unionspec reproducer: __TITLE__

Standalone (Python 3 standard library only; run as root). It builds the layers of a
minimal failing program on a tmpfs in a private mount namespace (and a private PID
namespace, so no driver process outlives it), mounts them with the driver it was written
for (or --kernel / --fuse-cmd TEMPLATE), runs the steps, and prints what the reference
(the executable specification) allows next to what the driver does.

Exit status: 1 while the divergence reproduces, 0 once it is gone, 2 when it cannot run
(not root, the driver does not mount).

Divergence as the suite found it:
__DIVERGENCE__
"""

import argparse
import contextlib
import errno
import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

# The confined root (adapters/sandbox/confine.py: libc and its prototypes, mount flags, mount(2),
# pivot_root into a root holding only the system directories) and the operations' system
# calls (adapters/syscalls.py: the same calls the suite's executor makes), each embedded
# here verbatim.
from adapters.sandbox.confine import (  # __CONFINE__
    CLONE_NEWNS,
    CLONE_NEWPID,
    MNT_DETACH,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_PDEATHSIG,
    check,
    driver_paths,
    enter,
    host_source,
    libc,
    mount,
    stage,
)
from adapters.syscalls import MAX_READ, close_handles, invoke, kind_of  # __SYSCALLS__

DATA: dict = {}  # __DATA__

BASE = "/tmp/unionspec"
MNT = BASE + "/mnt"
UPPER = BASE + "/upper"
WORK = BASE + "/work"


def err_name(exc):
    return errno.errorcode.get(exc.errno or 0, f"E{exc.errno}")


def describe(outcome):
    if outcome[0] == "err":
        return f"{outcome[1]} ({os.strerror(getattr(errno, outcome[1], 0))})"
    value = outcome[1]
    if isinstance(value, dict):  # a stat: the fields of StatResult
        return "StatResult(kind=%r, mode=%s, uid=%d, gid=%d, size=%d, nlink=%d)" % (
            value["kind"], oct(value["mode"]), value["uid"], value["gid"], value["size"],
            value["nlink"])
    return repr(value)


# --- the layers ---------------------------------------------------------------------------


def write_layer(directory, entries, prefix):
    """The kernel's on-disk form: 0/0 character-device whiteouts (or zero-size files with
    the overlay.whiteout xattr, their parent marked opaque=x), the overlay's xattrs under
    ``prefix`` (an object's own name there escaped: prefix + "overlay." + rest), metacopy
    stubs as sparse files; owners before modes, a directory's mode after its children."""
    if not os.path.isdir(directory):
        os.mkdir(directory, 0o700)
    dirs = []

    def escape(name):
        return prefix + "overlay." + name[len(prefix):] if name.startswith(prefix) else name

    for entry in entries:
        path, kind, mode, uid, gid, data, target, xattrs, opaque, link_to, markers, mtime = entry
        full = os.path.join(directory, path)
        if link_to is not None:
            os.link(os.path.join(directory, link_to), full, follow_symlinks=False)
            continue
        if kind == "file":
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            if markers["metacopy"]:
                os.ftruncate(fd, len(data))
            else:
                os.write(fd, data)
            os.close(fd)
        elif kind == "dir":
            os.mkdir(full, 0o700)
            dirs.append((full, mode, mtime))
        elif kind == "symlink":
            os.symlink(target, full)
        elif kind == "fifo":
            os.mkfifo(full, 0o600)
        elif kind == "whiteout" and markers["xattr_whiteout"]:
            os.close(os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.setxattr(full, prefix + "whiteout", b"", follow_symlinks=False)
            if markers["parent_x"]:
                os.setxattr(os.path.dirname(full), prefix + "opaque", b"x")
            continue
        elif kind == "whiteout":
            os.mknod(full, stat.S_IFCHR, os.makedev(0, 0))
            continue
        os.lchown(full, uid, gid)
        if kind not in ("symlink", "dir"):  # a directory's mode comes after its children
            os.chmod(full, mode)
        for name, value in xattrs:
            os.setxattr(full, escape(name), value, follow_symlinks=False)
        if opaque:
            os.setxattr(full, prefix + "opaque", b"y", follow_symlinks=False)
        if markers["redirect"] is not None:
            os.setxattr(full, prefix + "redirect", markers["redirect"].encode(),
                        follow_symlinks=False)
        if markers["metacopy"]:
            os.setxattr(full, prefix + "metacopy", b"", follow_symlinks=False)
        if mtime is not None and kind != "dir":
            os.utime(full, ns=(mtime, mtime), follow_symlinks=False)
    for full, mode, mtime in reversed(dirs):
        os.chmod(full, mode)
        if mtime is not None:  # once its entries are written
            os.utime(full, ns=(mtime, mtime), follow_symlinks=False)
    os.chmod(directory, 0o755)


def read_file(path, follow=False):
    """The whole file; a symlink is followed only when asked (the Read operation)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_READ:  # endless data: EFBIG, as the suite's executor says
                raise OSError(errno.EFBIG, "more than %d bytes" % MAX_READ)
            chunks.append(chunk)
    finally:
        os.close(fd)


#: The content xattrs (adapters/sandbox/layerdisk.py CONTENT_XATTRS, NOT_CONTENT).
CONTENT_XATTRS = ("user.", "trusted.", "security.")
NOT_CONTENT = ("trusted.overlay.", "security.selinux", "security.apparmor", "security.SMACK64",
               "security.ima", "security.evm")


def is_content_xattr(name):
    return name.startswith(CONTENT_XATTRS) and not name.startswith(NOT_CONTENT)


def user_xattrs(path, private=()):
    """The content xattrs (user.*, trusted.* and security.*, not the overlay's own
    trusted.overlay.* nor security-module labels: adapters/sandbox/layerdisk.py
    is_content_xattr)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        return ()
    names = sorted(n for n in names if is_content_xattr(n)
                   and not n.startswith(tuple(private) or ("\0",)))
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)


def content_xattrs(path, names, prefix, private):
    """The object's own xattrs as adapters/sandbox/layerdisk.py decodes them: the content ones
    (user.*, trusted.*, security.*, less the driver's private prefixes) and overlay names
    that are no marker, escaped ones unescaped."""
    found = []
    for stored in names:
        name = stored
        if stored.startswith(prefix):
            rest = stored[len(prefix):]
            if not rest.startswith("overlay."):
                continue  # a marker of this overlay
            name = prefix + rest[len("overlay."):]
        if name.startswith(tuple(private) or ("\0",)):
            continue
        if name.startswith("trusted.overlay.") or is_content_xattr(name):
            found.append((name, os.getxattr(path, stored, follow_symlinks=False)))
    return tuple(sorted(found))


def read_layer(directory, fmt):
    """A layer decoded as the suite decodes it (adapters/sandbox/layerdisk.py read_layer)."""
    prefix = DATA["prefix"]
    entries, by_inode, inodes, pending = {}, {}, {}, [""]
    while pending:
        rel_dir = pending.pop()
        abs_dir = os.path.join(directory, rel_dir) if rel_dir else directory
        for name in sorted(os.listdir(abs_dir)):
            rel = rel_dir + "/" + name if rel_dir else name
            path = os.path.join(abs_dir, name)
            st = os.lstat(path)
            if name.startswith(".wh.") and stat.S_ISREG(st.st_mode):
                if fmt["opaque_sentinel"] and name == ".wh..wh..opq":
                    if rel_dir:
                        entries[rel_dir]["opaque"] = True
                    continue
                hidden = name[4:]
                if fmt["whiteout_files"] and hidden and name != ".wh..wh..opq":
                    entries.setdefault(rel_dir + "/" + hidden if rel_dir else hidden,
                                       {"kind": "whiteout"})
                    continue
            kind = kind_of(st.st_mode)
            if kind == "chardev" and st.st_rdev == 0:
                entries[rel] = {"kind": "whiteout"}
                continue
            names = os.listxattr(path, follow_symlinks=False) if kind in ("file", "dir") else []
            if kind == "file" and st.st_size == 0 and prefix + "whiteout" in names:
                entries[rel] = {"kind": "whiteout", "xattr_whiteout": True}
                continue
            entry = {"kind": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                     "gid": st.st_gid, "data": b"", "target": "", "xattrs": (),
                     "opaque": False, "redirect": None, "metacopy": False,
                     "xattr_whiteout": False, "xwhiteouts": False}
            if kind == "symlink":
                entry["target"] = os.readlink(path)
            if kind == "fifo":
                entry["xattrs"] = user_xattrs(path, fmt["private_xattrs"])
            if kind in ("file", "dir"):
                entry["xattrs"] = content_xattrs(path, names, prefix, fmt["private_xattrs"])
                if prefix + "redirect" in names:
                    entry["redirect"] = os.fsdecode(
                        os.getxattr(path, prefix + "redirect", follow_symlinks=False))
                if kind == "dir":
                    marker = os.getxattr(path, prefix + "opaque", follow_symlinks=False) if (
                        prefix + "opaque" in names) else None
                    entry["opaque"] = marker == b"y"
                    entry["xwhiteouts"] = marker == b"x"
                else:
                    entry["metacopy"] = prefix + "metacopy" in names
                    entry["data"] = None if entry["metacopy"] else read_file(path)
            entries[rel] = entry
            inodes[rel] = st.st_ino
            if kind == "dir":
                pending.append(rel)
            else:
                by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    links = sorted(sorted(g) for g in by_inode.values() if len(g) > 1)
    return entries, links, inodes


# --- mounting -----------------------------------------------------------------------------


def overlay_options(lowers, options):
    if options["data_only"]:  # the bottom layer is data-only
        parts = ["lowerdir=" + ":".join(lowers[:-1]) + "::" + lowers[-1]]
    else:
        parts = ["lowerdir=" + ":".join(lowers)]
    if not options["read_only"]:
        parts += ["upperdir=" + UPPER, "workdir=" + WORK]
    onoff = {True: "on", False: "off"}
    parts += ["redirect_dir=" + options["redirect_dir_value"], "index=" + onoff[options["index"]],
              "metacopy=" + onoff[options["metacopy"]], "nfs_export=off",
              "xino=" + onoff[options["xino"]]]
    if options["userxattr"]:
        parts.append("userxattr")
    return ",".join(parts)


def fuse_mounted():
    with open("/proc/self/mountinfo") as f:
        found = False
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == MNT:
                found = fields[fields.index("-") + 1].startswith("fuse")
    return found


def mounted_anything():
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4:5] == [MNT] for line in f)


def driver_files(how, host_tmp):
    """(source, path) of the driver's own files to show read-only in the confined root:
    the directory of its program and of this Python unless system directories
    (adapters/sandbox/confine.py driver_paths); under /tmp, which this script's tmpfs hides,
    reached through ``host_tmp``, a descriptor of /tmp opened before."""
    programs = []
    for words in (how["argv"], how.get("ro_argv") or []) if how["kind"] == "fuse" else ():
        found = shutil.which(words[0]) if words else None
        if found:
            programs.append(os.path.abspath(found))
    paths = driver_paths(programs, [os.path.normpath(sys.base_prefix)])
    return [(host_source(path, host_tmp), path) for path in paths]


def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


class Mounter:
    def __init__(self, how, options, lowers):
        self.how, self.options, self.lowers = how, options, lowers
        self.command = ""

    def start(self):
        if self.how["kind"] == "kernel":
            data = overlay_options(self.lowers, self.options)
            self.command = f"mount -t overlay overlay -o {data} {MNT}"
            mount("overlay", MNT, "overlay", 0, data)
            return
        words = self.how["ro_argv"] if self.options["read_only"] else self.how["argv"]
        if not words:
            raise RuntimeError("the driver has no read-only command")
        onoff = {True: "on", False: "off"}
        rendered = ",redirect_dir={},index={}".format(onoff[self.options["redirect_dir"]],
                                                  onoff[self.options["index"]])
        if self.options["metacopy"]:
            rendered += ",metacopy=on"
        values = {"lowerdir": ":".join(self.lowers), "upperdir": UPPER, "workdir": WORK,
                  "mountpoint": MNT, "options": rendered}
        argv = [word.format_map(values) for word in words]
        self.command = " ".join(shlex.quote(w) for w in argv)
        with open(BASE + "/driver-stderr", "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    env=dict(os.environ, **self.how.get("env", {})),
                                    start_new_session=True)
        deadline = time.monotonic() + 15
        while not fuse_mounted():
            if proc.poll() not in (None, 0) or time.monotonic() > deadline:
                with open(BASE + "/driver-stderr", "rb") as f:
                    tail = f.read().decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError("{} did not mount (status {}): {}".format(
                    argv[0], proc.poll(), tail[0] if tail else "(no stderr)"))
            time.sleep(0.01)

    def stop(self):
        if self.how["kind"] == "fuse":
            tool = shutil.which("fusermount3") or shutil.which("fusermount")
            if tool and fuse_mounted():
                subprocess.run([tool, "-u", MNT], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10, check=False)
        while mounted_anything():
            check(libc.umount2(MNT.encode(), MNT_DETACH), "umount " + MNT)
        if self.how["kind"] == "fuse":
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and others_alive():
                reap()
                time.sleep(0.02)
            try:
                os.kill(-1, signal.SIGKILL)  # PID 1 of our PID namespace: only ours
            except ProcessLookupError:
                pass
            reap()


def others_alive():
    """Whether any process but this one (PID 1) lives in our PID namespace."""
    mine = os.readlink("/proc/self/ns/pid")
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != mine:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                        return True
            except (OSError, IndexError):
                continue
    return False


# --- operations, inside a chroot of the mount ---------------------------------------------


class Chroot:
    """Operations resolve inside the mount: no path or symlink can leave it."""

    def __init__(self):
        self.real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self):
        os.chroot(MNT)
        os.chdir("/")

    def __exit__(self, *exc):
        os.fchdir(self.real_root)
        os.chroot(".")


def masked(outcome):
    if DATA["ignore_nlink"] and outcome[0] == "ok" and isinstance(outcome[1], dict):
        return ("ok", {**outcome[1], "nlink": 0})
    return outcome


# --- observations -------------------------------------------------------------------------


def view_entry(path):
    """The merged view's entry at ``path`` as the suite records it (inside the chroot)."""
    if path.endswith("/"):  # a directory the suite could not list
        try:
            os.listdir("/" + path.rstrip("/"))
        except OSError as exc:
            return {"kind": "readdir gives " + err_name(exc)}
        return None
    parent, _, name = ("/" + path).rpartition("/")
    try:
        listed = name in os.listdir(parent or "/")
    except OSError:
        listed = False
    try:
        st = os.lstat("/" + path)
    except FileNotFoundError:
        # as reference.view.UNREACHABLE: listed, lookup finds nothing, no other field
        unreachable = {"kind": "unreachable", "mode": 0, "uid": 0, "gid": 0, "nlink": 0}
        return unreachable if listed else None
    except OSError as exc:
        return {"kind": "lstat gives " + err_name(exc)}
    kind = kind_of(st.st_mode)
    entry = {"kind": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
             "gid": st.st_gid, "nlink": st.st_nlink, "data": b"", "target": "", "xattrs": (),
             "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}
    try:
        if kind == "file":
            entry["data"] = read_file("/" + path)
        if kind == "symlink":
            entry["target"] = os.readlink("/" + path)
        if kind in ("file", "dir", "fifo"):
            entry["xattrs"] = user_xattrs("/" + path)
    except OSError as exc:
        return {"kind": "reading it gives " + err_name(exc)}
    entry["st_ino"] = st.st_ino
    return entry


#: Times are relations (conformance/lockstep/compare.py TimeMap), checked by time_ok.
TIME_FIELDS = ("mtime", "ctime")


def time_ok(expected, actual, before):
    """A time check of the suite: an exact time, or a relation to the time before the
    last step ("changed", "unchanged (N)", "not before N")."""
    if isinstance(expected, int) or actual is None:
        return actual == expected
    if expected == "changed":
        return before is not None and actual != before
    if expected.startswith("unchanged"):
        return actual == before
    return before is not None and actual >= before


def same_entry(expected, actual, fields):
    if expected is None or actual is None:
        return expected is None and actual is None
    if expected.get("kind") == "unreachable":
        return actual.get("kind") == "unreachable"
    names = [k for k in expected if (fields is None or k in fields or k == "kind")
             and k not in TIME_FIELDS]
    return all(actual.get(k) == expected[k] for k in names)


def inode_problems(identities, numbers):
    """The suite's st_ino rule (conformance/lockstep/compare.py InodeMap): within an observation
    two paths share an identity exactly when they share a number; an identity keeps its
    number across observations."""
    problems, known = [], {}
    for when, (expected, actual) in enumerate(zip(identities, numbers, strict=False)):
        by_identity, by_number = {}, {}
        for path in sorted(set(expected) & set(actual)):
            identity, number = expected[path], actual[path]
            seen = by_identity.setdefault(identity, (path, number))
            if seen[1] != number:
                problems.append("observation %d: %s: expected the same inode as %s, got "
                                "a different one" % (when, path, seen[0]))
            other = by_number.setdefault(number, (path, identity))
            if other[1] != identity:
                problems.append("observation %d: %s: expected an inode of its own, got "
                                "%s's" % (when, path, other[0]))
            before = known.get(identity)
            if before is not None and before != number:
                problems.append("observation %d: %s: expected its inode number unchanged, "
                                "it changed" % (when, path))
            known[identity] = number
    return problems


def observe_inodes(chroot, upper_dir):
    """st_ino of every path the reference names, in the view and in the upper layer."""
    view_numbers, upper_numbers = {}, {}
    paths = set()
    for expected_view, _ in DATA["identities"]:
        paths |= set(expected_view)
    with chroot:
        for path in paths:
            with contextlib.suppress(OSError):
                view_numbers[path] = os.lstat("/" + path).st_ino
    if upper_dir is not None:
        for path in {p for _, upper in DATA["identities"] for p in upper}:
            with contextlib.suppress(OSError):
                upper_numbers[path] = os.lstat(os.path.join(upper_dir, path)).st_ino
    return view_numbers, upper_numbers


def check_observation(chroot, lowers, before=None):
    """The checks of the last observation (``before``: the view's entries before the last
    step, for the time relations); the number of differences."""
    differences = 0
    layers = {}
    # the time before the last step of each relation, where a name showed it
    same_time = {}
    for item in DATA["checks"]:
        earlier = (before or {}).get(item["path"])
        if item["field"] in TIME_FIELDS and earlier is not None:
            same_time.setdefault((item["field"], str(item["expected"])), earlier[item["field"]])
    for item in DATA["checks"]:
        where, path, field, expected = item["where"], item["path"], item["field"], item["expected"]
        if field == "st_ino":
            continue
        if where == "view":
            with chroot:
                actual_entry = view_entry(path)
            label = path or "/"
            if field == "exists":
                ok = same_entry(expected, actual_entry, DATA["fields"])
                actual = actual_entry
            elif field in TIME_FIELDS:
                actual = None if actual_entry is None else actual_entry.get(field)
                earlier = (before or {}).get(path)
                earlier = None if earlier is None else earlier.get(field)
                if "was_at" in item:  # "unchanged": where its object was (a rename moves it)
                    shown = [(before or {}).get(old) for old in item["was_at"]]
                    earlier = next((e[field] for e in shown if e and field in e), None)
                if earlier is None:  # a new name of a time seen at another name
                    earlier = same_time.get((field, str(expected)))
                ok = time_ok(expected, actual, earlier)
            else:
                actual = None if actual_entry is None else actual_entry.get(field)
                ok = actual == expected
        else:
            directory = UPPER if where == "upper" else lowers[int(where[5:])]
            if directory not in layers:
                layers[directory] = read_layer(directory, DATA["disk_format"]) if (
                    os.path.isdir(directory)) else None
            decoded = layers[directory]
            label = f"{where}:{path}"
            if decoded is None:
                ok, actual = expected is None, None
            elif field == "hardlinks":
                actual = decoded[1]
                ok = actual == expected
            elif field == "exists":
                actual = decoded[0].get(path)
                ok = (expected is None) == (actual is None) and (
                    expected is None or expected.get("kind") == actual.get("kind"))
            else:
                entry = decoded[0].get(path)
                actual = None if entry is None else entry.get(field)
                ok = actual == expected
        if not ok:
            differences += 1
        print("  {} {}: expected {}, got {}{}".format(label, field, show(expected), show(actual),
                                                 "" if ok else "   <-- differs"))
    return differences


def show(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v!r}" for k, v in value.items() if k != "st_ino") + "}"
    return repr(value)


# --- the run ------------------------------------------------------------------------------


def run(how):
    options = DATA["options"]
    os.umask(0)
    # Closed once the driver's files are staged: this process is PID 1 of the PID namespace
    # whose proc the driver sees, and /proc/1/fd/<it> would be the host's /tmp.
    host_tmp = os.open("/tmp", os.O_PATH | os.O_DIRECTORY)
    shown = driver_files(how, host_tmp)
    mount("unionspec-repro", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=256m")
    os.mkdir(BASE, 0o755)
    lowers = [BASE + "/l%d" % i for i in range(len(DATA["lowers"]))]
    for directory, entries in zip(lowers, DATA["lowers"], strict=False):
        if options["separate_fs"]:  # each lower layer on a tmpfs of its own
            os.mkdir(directory, 0o700)
            mount("unionspec-repro", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m")
        write_layer(directory, entries, DATA["prefix"])
    if not options["read_only"]:
        os.mkdir(UPPER, 0o755)
        os.mkdir(WORK, 0o755)
    os.mkdir(MNT, 0o755)
    # From here on this process (PID 1 of its PID namespace) and the driver it starts live
    # in a root holding only the system directories (read-only), /dev/fuse, /dev/null, a
    # read-only proc of this PID namespace and the layers: a symlink in a layer that a FUSE
    # driver follows cannot reach the host's files.
    os.mkdir("/tmp/unionspec-root", 0o700)
    # Staged (bound) here first: a mount reached through host_tmp belongs to this mount
    # namespace, and enter() binds only from its own copy of it (EINVAL otherwise).
    visible = []
    for number, (source, path) in enumerate(shown):
        stage(source, "/tmp/unionspec-stage/driver%d" % number)
        visible.append(("/tmp/unionspec-stage/driver%d" % number, path))
    os.close(host_tmp)
    own_fs = tuple(lowers) if options["separate_fs"] else ()  # bound too: a bind is not recursive
    enter("/tmp/unionspec-root", writable=(BASE, *own_fs), visible=visible, proc=True)
    mounter = Mounter(how, options, lowers)
    try:
        mounter.start()
    except (OSError, RuntimeError) as exc:
        print(f"cannot mount: {exc}")
        return 2
    print("mounted: " + mounter.command)
    chroot = Chroot()
    differences = 0
    numbers = []
    try:
        if DATA["identities"]:
            numbers.append(observe_inodes(chroot, None if options["read_only"] else UPPER))
        before = {}
        for number, step in enumerate(DATA["steps"], 1):
            if number == len(DATA["steps"]):
                with chroot:
                    before = {path: view_entry(path) for item in DATA["checks"]
                              if item["field"] in TIME_FIELDS
                              for path in (item["path"], *item.get("was_at", ()))}
            name, args = step["op"]
            if name == "remount":
                close_handles()
                mounter.stop()
                mounter.start()
                actual = ("ok", None)
            else:
                try:
                    with chroot:
                        actual = ("ok", invoke(name, args))
                except OSError as exc:
                    actual = ("err", err_name(exc))
            allowed = [tuple(o) for o in step["allowed"]]
            ok = masked(actual) in [masked(o) for o in allowed]
            differences += not ok
            print("step %d: %s" % (number, step["text"]))
            print("  expected: " + " or ".join(describe(o) for o in allowed))
            print("  actual:   {}{}".format(describe(actual), "" if ok else "   <-- differs"))
            if DATA["identities"] and len(numbers) < len(DATA["identities"]):
                numbers.append(observe_inodes(chroot, None if options["read_only"] else UPPER))
        if DATA["checks"]:
            print("after step %d:" % len(DATA["steps"]))
            differences += check_observation(chroot, lowers, before)
        if any(item["field"] == "st_ino" for item in DATA["checks"]):
            for side, label in ((0, "view"), (1, "upper")):
                wanted = [ids[side] for ids in DATA["identities"]]
                for problem in inode_problems(wanted, [n[side] for n in numbers]):
                    differences += 1
                    print(f"  {label} st_ino: {problem}   <-- differs")
    finally:
        close_handles()
        mounter.stop()
    if differences:
        print("REPRODUCES: %d difference(s) from the reference" % differences)
        return 1
    print("GONE: the driver now does what the reference allows")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--kernel", action="store_true", help="mount with kernel overlayfs")
    parser.add_argument("--fuse-cmd", metavar="TEMPLATE",
                        help="a FUSE driver's command template ({lowerdir} {upperdir} "
                             "{workdir} {mountpoint} {options})")
    parser.add_argument("--fuse-ro-cmd", metavar="TEMPLATE", help="its read-only form")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before the driver counts as hung (default 60)")
    args = parser.parse_args()
    how = dict(DATA["mount"])
    if args.kernel:
        how = {"kind": "kernel"}
    elif args.fuse_cmd:
        ro = shlex.split(args.fuse_ro_cmd) if args.fuse_ro_cmd else None
        how = {"kind": "fuse", "argv": shlex.split(args.fuse_cmd), "ro_argv": ro, "env": {}}
    if os.geteuid() != 0:
        print("this reproducer needs root (mount namespaces, overlay markers)", file=sys.stderr)
        return 2
    print("unionspec reproducer: {} [{}]{}, written for {}".format(
        DATA["driver"], DATA["options"]["label"],
        " feature " + DATA["feature"] if DATA["feature"] else "", DATA["written_for"]))
    sys.stdout.flush()
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    child = os.fork()
    if child == 0:  # PID 1 of a new PID namespace: every driver process dies with it
        code = 2
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0)
            code = run(how)
        except Exception as exc:
            print(f"error: {type(exc).__name__}: {exc}")
        finally:
            sys.stdout.flush()
            os._exit(code)
    deadline = time.monotonic() + args.timeout
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            print(f"REPRODUCES: no answer within {args.timeout} s (the driver hung)")
            return 1
        select.select([], [], [], 0.05)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
