"""The on-disk form of an overlayfs layer: writing an :class:`Inode` tree into a directory
and decoding a directory back into a :class:`LayerImage`.

The markers are those of overlayfs.rst (notes sections 5 and 13), in the overlay's xattr
namespace: ``trusted.overlay.`` by default, ``user.overlay.`` with the ``userxattr`` mount
option (doc "Permission model"; :attr:`DiskFormat.prefix`):

* a whiteout is a character device 0/0, or a zero-size regular file with
  ``overlay.whiteout`` (doc "whiteouts and opaque directories", v6.7+; the kernel never
  writes one, it honours one in any layer);
* a directory marked ``overlay.opaque=y`` is opaque; ``overlay.opaque=x`` marks a directory
  that may hold xattr whiteouts and is *not* opaque (v6.8);
* ``overlay.redirect`` on a redirected directory or a renamed metacopy file, and
  ``overlay.metacopy`` on a metadata-only copy;
* an xattr in the overlay's own namespace that belongs to the object, not to this overlay,
  is *escaped*: ``trusted.overlay.foo`` is stored as ``trusted.overlay.overlay.foo`` (doc
  "Nesting", v6.7+, obs X.3-X.6): that is how the layers of an overlay nest.

Other overlay names the kernel writes (origin, impure, nlink, uuid, upper...) are not part
of the abstract form and are ignored when decoding.

Decoding also understands the forms some FUSE drivers write, when told to by a
:class:`DiskFormat` (the default decodes exactly the kernel's form): ``.wh.<name>`` regular
files as whiteouts of ``<name>`` (the AUFS/OCI form, fuse-overlayfs without whiteout
devices), a ``.wh..wh..opq`` file as the opaque marker of its directory, and driver-private
``user.*`` xattr prefixes (e.g. ``user.fuseoverlayfs.``) that are not part of the layer's
content. Writing always uses the kernel's form.

Both directions are plain functions over a directory path (no mounting), so they work on
any directory; writing needs root for the ``trusted.*`` markers, whiteouts and ownership.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable

import attrs

from adapters.syscalls import kind_of, read_to_end
from reference.layer import (
    DirSpec,
    EntrySpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    Inode,
    Kind,
    SymlinkSpec,
    WhiteoutSpec,
    walk,
)
from reference.view import DiskEntry, LayerImage

#: The overlay's xattr namespace: as root (default), and with ``userxattr``.
TRUSTED = "trusted.overlay."
USER = "user.overlay."
OPAQUE = TRUSTED + "opaque"
REDIRECT = TRUSTED + "redirect"
METACOPY = TRUSTED + "metacopy"
WHITEOUT = TRUSTED + "whiteout"
#: What an escaped name has after the prefix (``trusted.overlay.overlay.foo``).
ESCAPE = "overlay."

#: The prefix of a whiteout file (``.wh.<name>`` hides ``<name>``).
WH_PREFIX = ".wh."
#: The opaque sentinel: this file in a directory makes the directory opaque.
OPAQUE_SENTINEL = ".wh..wh..opq"


@attrs.frozen
class DiskFormat:
    """How a layer directory encodes the overlay markers, beyond the kernel's own form
    (char 0/0 whiteouts and ``trusted.overlay.*`` xattrs are always decoded).

    * ``whiteout_files``: a regular file ``.wh.<name>`` is a whiteout of ``<name>`` (and
      is not listed itself); a real ``<name>`` next to it wins;
    * ``opaque_sentinel``: a regular file ``.wh..wh..opq`` marks its directory opaque (and
      is not listed itself);
    * ``private_xattrs``: prefixes of ``user.*`` xattr names the driver keeps for itself
      (left out of the decoded xattrs);
    * ``prefix``: the overlay's xattr namespace, :data:`TRUSTED` or :data:`USER`
      (``userxattr``); names in it are markers, or escaped names of the object's own.
    """

    whiteout_files: bool = False
    opaque_sentinel: bool = False
    private_xattrs: tuple[str, ...] = ()
    prefix: str = TRUSTED


#: The kernel's form, the default of :func:`read_layer`.
KERNEL_FORMAT = DiskFormat()
#: The kernel's form with ``userxattr``: markers in ``user.overlay.*``.
USERXATTR_FORMAT = DiskFormat(prefix=USER)


def escaped(name: str, prefix: str = TRUSTED) -> str:
    """How an object's own xattr is stored in a layer: a name in the overlay's namespace
    gets one more ``overlay.`` (doc "Nesting"); any other is stored as it is."""
    return prefix + ESCAPE + name[len(prefix) :] if name.startswith(prefix) else name


def unescaped(name: str, prefix: str = TRUSTED) -> str | None:
    """The object's own xattr a stored name is (the inverse of :func:`escaped`), or None
    for a marker of this overlay (a name in its namespace that is not escaped)."""
    if not name.startswith(prefix):
        return name
    rest = name[len(prefix) :]
    return prefix + rest[len(ESCAPE) :] if rest.startswith(ESCAPE) else None


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


# --- writing ------------------------------------------------------------------------------


def write_layer(root: Inode, directory: str, prefix: str = TRUSTED) -> None:
    """Write the layer rooted at ``root`` into ``directory`` (made if missing, else it must
    be empty), its markers in the ``prefix`` namespace. The root inode's metadata goes on
    ``directory`` itself.

    Order matters: owners before modes (chown clears set-id bits), and a directory's mode
    only after its children are written (a 0500 dir could not be filled otherwise, not even
    by root on every filesystem).
    """
    if not os.path.isdir(directory):
        os.mkdir(directory, 0o700)
    _set_dir_markers(root, directory, prefix)
    first_path: dict[int, str] = {}
    dirs: list[tuple[str, Inode]] = []
    for rel, inode in walk(root):
        path = os.path.join(directory, rel)
        if inode.kind is not Kind.DIR and inode.kind is not Kind.WHITEOUT:
            earlier = first_path.get(inode.ident)
            if earlier is not None:
                os.link(earlier, path, follow_symlinks=False)
                continue
            first_path[inode.ident] = path
        _write_entry(inode, path, prefix)
        if inode.kind is Kind.DIR:
            dirs.append((path, inode))
    # Children before parents: deepest paths first; a directory's mtime once its entries
    # are all written.
    for path, inode in reversed(dirs):
        os.chmod(path, inode.mode)
        _set_mtime(inode, path)
    os.chmod(directory, root.mode)
    _set_mtime(root, directory)


def _set_mtime(inode: Inode, path: str) -> None:
    """An exact mtime (and the same atime) where the inode has one (>= 0); a stamp is
    whatever the filesystem gave."""
    if inode.mtime >= 0:
        os.utime(path, ns=(inode.mtime, inode.mtime), follow_symlinks=False)


def _write_entry(inode: Inode, path: str, prefix: str = TRUSTED) -> None:
    match inode.kind:
        case Kind.FILE:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if inode.metacopy:  # a sparse placeholder of the data's size
                    os.ftruncate(fd, len(inode.data))
                view = memoryview(b"" if inode.metacopy else inode.data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.lchown(path, inode.uid, inode.gid)
            os.chmod(path, inode.mode)
            _set_xattrs(inode, path, prefix)
            if inode.redirect is not None:
                os.setxattr(
                    path, prefix + "redirect", inode.redirect.encode(), follow_symlinks=False
                )
            if inode.metacopy:
                os.setxattr(path, prefix + "metacopy", b"", follow_symlinks=False)
            _set_mtime(inode, path)
        case Kind.DIR:
            os.mkdir(path, 0o700)
            _set_dir_markers(inode, path, prefix)
        case Kind.SYMLINK:
            os.symlink(inode.target, path)
            os.lchown(path, inode.uid, inode.gid)
            _set_mtime(inode, path)
        case Kind.FIFO:
            os.mkfifo(path, 0o600)
            os.lchown(path, inode.uid, inode.gid)
            os.chmod(path, inode.mode)
            _set_xattrs(inode, path, prefix)
            _set_mtime(inode, path)
        case Kind.WHITEOUT if inode.xattr_whiteout:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.setxattr(path, prefix + "whiteout", b"", follow_symlinks=False)
        case Kind.WHITEOUT:
            os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        case _:
            raise ValueError(f"cannot write {inode.kind!r} at {path}")


def _set_dir_markers(inode: Inode, path: str, prefix: str = TRUSTED) -> None:
    """Owner, xattrs and overlay markers of a directory (its mode is set later): opaque
    "y", else "x" when it may hold xattr whiteouts."""
    os.lchown(path, inode.uid, inode.gid)
    _set_xattrs(inode, path, prefix)
    if inode.opaque or inode.xwhiteouts:
        os.setxattr(path, prefix + "opaque", b"y" if inode.opaque else b"x", follow_symlinks=False)
    if inode.redirect is not None:
        os.setxattr(path, prefix + "redirect", inode.redirect.encode(), follow_symlinks=False)


def _set_xattrs(inode: Inode, path: str, prefix: str = TRUSTED) -> None:
    for name, value in sorted(inode.xattrs.items()):
        os.setxattr(path, escaped(name, prefix), value, follow_symlinks=False)


# --- decoding -----------------------------------------------------------------------------


def read_all(path: str) -> bytes:
    """The bytes of a regular file, never following a final symlink, never blocking."""
    return read_to_end(os.open(path, _READ_FLAGS))


def user_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    """The user.* xattrs of ``path`` (not following a final symlink), sorted by name; none
    on a filesystem without xattr support (ENOTSUP, e.g. unionfs-fuse)."""
    return _xattrs(path, lambda name: name.startswith("user."))


def _xattrs(path: str, keep: Callable[[str], bool]) -> tuple[tuple[str, bytes], ...]:
    """The xattrs of ``path`` whose names ``keep`` takes, not following a final symlink,
    sorted by name; none where the filesystem has no xattrs (ENOTSUP)."""
    try:
        listed = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise
        return ()
    names = sorted(filter(keep, listed))
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)


#: The xattr namespaces of a layer's content and of the merged view: user.*, and
#: trusted.* and security.* (copied up by copy_up.c ovl_copy_xattr), less the overlay's own
#: trusted.overlay.* (hidden through the mount: xattrs.c ovl_listxattr / ovl_is_private_xattr;
#: markers when decoding a layer) and security-module labels.
CONTENT_XATTRS = ("user.", "trusted.", "security.")
#: Not content: the overlay's own names, and the labels a security module puts on every
#: object of the host (SELinux, AppArmor, Smack, IMA/EVM), which no layer spec holds.
NOT_CONTENT = (
    "trusted.overlay.",
    "security.selinux",
    "security.apparmor",
    "security.SMACK64",
    "security.ima",
    "security.evm",
)


def is_content_xattr(name: str) -> bool:
    """Whether ``name`` is content (:data:`CONTENT_XATTRS`, less :data:`NOT_CONTENT`)."""
    return name.startswith(CONTENT_XATTRS) and not name.startswith(NOT_CONTENT)


def visible_xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    """The content xattrs (:func:`is_content_xattr`) of ``path``, not following a final
    symlink, sorted; none where the filesystem has no xattrs (ENOTSUP)."""
    return _xattrs(path, is_content_xattr)


def _marker(path: str, names: list[str], name: str) -> bytes | None:
    if name not in names:
        return None
    return os.getxattr(path, name, follow_symlinks=False)


def _content_xattrs(path: str, names: list[str], fmt: DiskFormat) -> tuple[tuple[str, bytes], ...]:
    """The object's own xattrs: the content ones (less the driver's private prefixes) and the
    overlay names that are not this overlay's markers: the escaped ones unescaped, and
    with ``userxattr`` the ``trusted.overlay.*`` ones (an ordinary xattr then, obs X.8)."""
    private = fmt.private_xattrs or ("\0",)
    found = []
    for stored in names:
        name = unescaped(stored, fmt.prefix)
        if name is None or name.startswith(private):
            continue
        # content (user.*, trusted.*, security.*: is_content_xattr), and an overlay name that
        # is not this overlay's marker (escaped, or trusted.overlay.* under userxattr)
        if name.startswith(TRUSTED) or is_content_xattr(name):
            found.append((name, os.getxattr(path, stored, follow_symlinks=False)))
    return tuple(sorted(found))


def read_layer(directory: str, fmt: DiskFormat = KERNEL_FORMAT) -> LayerImage:
    """Decode the layer stored in ``directory``: paths relative to it, whiteouts as kind
    "whiteout" (no metadata, no inode), links among non-directories of this tree only.
    ``fmt`` says which non-kernel marker forms to decode too (default: none)."""
    entries: dict[str, DiskEntry] = {}
    by_inode: dict[tuple[int, int], list[str]] = {}
    inodes: dict[str, int] = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        abs_dir = f"{directory}/{rel_dir}" if rel_dir else directory
        for name in sorted(os.listdir(abs_dir)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = f"{abs_dir}/{name}"
            st = os.lstat(path)
            if name.startswith(WH_PREFIX) and stat.S_ISREG(st.st_mode):
                if fmt.opaque_sentinel and name == OPAQUE_SENTINEL:
                    if rel_dir:
                        entries[rel_dir] = attrs.evolve(entries[rel_dir], opaque=True)
                    continue
                hidden = name[len(WH_PREFIX) :]
                if fmt.whiteout_files and hidden and name != OPAQUE_SENTINEL:
                    hidden_rel = f"{rel_dir}/{hidden}" if rel_dir else hidden
                    entries.setdefault(hidden_rel, DiskEntry(kind="whiteout"))
                    continue
            entry = _decode(path, st, fmt)
            entries[rel] = entry
            if entry.kind == "whiteout":
                continue
            inodes[rel] = st.st_ino
            if entry.kind == "dir":
                pending.append(rel)
            else:
                by_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    links = frozenset(frozenset(group) for group in by_inode.values() if len(group) > 1)
    return LayerImage(entries=dict(sorted(entries.items())), links=links, inodes=inodes)


def _decode(path: str, st: os.stat_result, fmt: DiskFormat = KERNEL_FORMAT) -> DiskEntry:
    mode = st.st_mode
    kind = kind_of(mode)
    if kind == "chardev" and st.st_rdev == 0:
        return DiskEntry(kind="whiteout")
    common = {"mode": stat.S_IMODE(mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "symlink":
        return DiskEntry(kind=kind, target=os.readlink(path), **common)
    names = os.listxattr(path, follow_symlinks=False)
    prefix = fmt.prefix
    if kind == "file" and st.st_size == 0 and prefix + "whiteout" in names:
        # util.c ovl_path_check_xwhiteout_xattr: a zero-size regular file (obs XW.3: a
        # FIFO or a file with data is no whiteout)
        return DiskEntry(kind="whiteout", xattr_whiteout=True)
    xattrs = _content_xattrs(path, names, fmt)
    if kind not in ("file", "dir"):
        return DiskEntry(kind=kind, xattrs=xattrs, **common)
    redirect = _marker(path, names, prefix + "redirect")
    redirect_str = os.fsdecode(redirect) if redirect is not None else None
    if kind == "dir":
        opaque = _marker(path, names, prefix + "opaque")
        return DiskEntry(
            kind=kind,
            xattrs=xattrs,
            opaque=opaque == b"y",
            redirect=redirect_str,
            xwhiteouts=opaque == b"x",
            **common,
        )
    metacopy = prefix + "metacopy" in names
    return DiskEntry(
        kind=kind,
        data=None if metacopy else read_all(path),
        xattrs=xattrs,
        redirect=redirect_str,
        metacopy=metacopy,
        **common,
    )


def layer_digest(directory: str) -> bytes:
    """A digest of everything :func:`read_layer` decodes from ``directory``, and more: every
    name, st_mode, owner, st_rdev and st_ino (so hardlinks), every xattr (any namespace, on
    every entry), every symlink target and every regular file's bytes. Equal digests mean
    equal decoded layers, whatever the :class:`DiskFormat`; times and st_nlink are left out
    (reads change atime; :func:`read_layer` decodes neither)."""
    digest = hashlib.blake2b(digest_size=32)
    update = digest.update
    pending = [directory]
    while pending:
        abs_dir = pending.pop()
        names = sorted(os.listdir(abs_dir))
        update(b"%d\0" % len(names))
        for name in names:
            path = f"{abs_dir}/{name}"
            st = os.lstat(path)
            mode = st.st_mode
            update(
                b"%s\0%d %d %d %d %d\0"
                % (os.fsencode(name), mode, st.st_uid, st.st_gid, st.st_rdev, st.st_ino)
            )
            if stat.S_ISLNK(mode):
                update(os.fsencode(os.readlink(path)) + b"\0")
            for xattr in sorted(os.listxattr(path, follow_symlinks=False)):
                value = os.getxattr(path, xattr, follow_symlinks=False)
                update(b"%s\0%d\0%s" % (os.fsencode(xattr), len(value), value))
            if stat.S_ISREG(mode):
                data = read_all(path)
                update(b"%d\0%s" % (len(data), data))
            elif stat.S_ISDIR(mode):
                pending.append(path)
                update(b"%s/\0" % os.fsencode(path[len(directory) :]))
    return digest.digest()


def layer_entries(directory: str) -> tuple[tuple[str, EntrySpec], ...]:
    """A layer directory decoded as ``LayerSpec`` entries sorted by path: a char 0/0 is a
    whiteout, ``trusted.overlay.opaque=y`` an opaque directory, a second name of an inode
    a hardlink to the first in walk order (names sorted, parents first), user xattrs."""
    first: dict[tuple[int, int], str] = {}
    entries: list[tuple[str, EntrySpec]] = []
    for current, dirs, files in os.walk(directory):
        dirs.sort()
        rel_dir = os.path.relpath(current, directory)
        for name in sorted(dirs + files):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            path = os.path.join(directory, rel)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            entry: EntrySpec
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                entry = WhiteoutSpec()
            elif stat.S_ISDIR(st.st_mode):
                opaque = _xattr(path, "trusted.overlay.opaque") == b"y"
                entry = DirSpec(mode, st.st_uid, st.st_gid, user_xattrs(path), opaque)
            elif (st.st_dev, st.st_ino) in first:
                entry = HardlinkSpec(first[(st.st_dev, st.st_ino)])
            elif stat.S_ISREG(st.st_mode):
                first[(st.st_dev, st.st_ino)] = rel
                with open(path, "rb") as f:
                    data = f.read()
                entry = FileSpec(data, mode, st.st_uid, st.st_gid, user_xattrs(path))
            elif stat.S_ISLNK(st.st_mode):
                entry = SymlinkSpec(os.readlink(path))
            else:
                first[(st.st_dev, st.st_ino)] = rel
                entry = FifoSpec(mode)
            entries.append((rel, entry))
    return tuple(sorted(entries))


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None
