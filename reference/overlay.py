"""The overlay engine: the reference semantics of an overlay mount, applied to operations.

Each operation is one ``_op_<rule>`` method (its rule name in ``ops.KINDS``) that first
checks (raising FsError with the errnos the rules allow, before any change) and then
applies its effect to the upper layer, as the kernel writes it. Sources in the
docstrings: "doc" is overlayfs.rst, "obs X" a row of ../shared/notes/overlayfs-semantics.md
observed on this kernel, "vfs" fs/namei.c.
"""

from __future__ import annotations

from collections.abc import Callable

from reference import ops
from reference.layer import Inode, Kind, LayerSpec, StackSpec, build, dir_nlink, link_counts, walk
from reference.lookup import Found, Node, lookup_child
from reference.options import Options
from reference.outcome import Allowed, AlsoAllowed, Err, Ok, Outcome
from reference.paths import FsError, Resolved, resolve
from reference.view import UNREACHABLE, DiskEntry, EntryView, LayerImage, View

#: POSIX rmdir()/rename(): a non-empty directory gives "[EEXIST] or [ENOTEMPTY]"; Linux
#: gives ENOTEMPTY, both conform.
NOT_EMPTY = ("ENOTEMPTY", "EEXIST")
#: POSIX unlink(): a directory gives EPERM; Linux gives EISDIR (unlink(2)); both conform.
UNLINK_DIR = ("EISDIR", "EPERM")


class Overlay:
    """An overlay mount of ``lowers`` (top first) and an upper layer that starts empty."""

    def __init__(self, stack: StackSpec, options: Options) -> None:
        self.options = options
        self.lowers: list[Inode] = [build(spec) for spec in stack.lowers]
        self.upper: Inode | None = None if options.read_only else build(LayerSpec())
        #: index=on: lower hardlink (by lower identity) -> its upper copy, kept in
        #: workdir/index (doc "Sharing and copying layers"; obs H.index=on.*).
        self.index: dict[int, Inode] = {}
        #: index=on: the union nlink of an indexed inode, trusted.overlay.nlink (obs H.index=on.3).
        self.index_nlink: dict[int, int] = {}
        self.lower_nlink: dict[int, int] = {}
        for root in self.lowers:
            self.lower_nlink.update(link_counts(root))
        #: Each operation kind's rule: the method ``_op_<rule>`` (ops.KINDS).
        self._handlers: dict[type, Callable[..., object]] = {
            cls: getattr(self, f"_op_{kind.rule}") for cls, kind in ops.KINDS.items()
        }

    # --- the public face ------------------------------------------------------------------

    def apply(self, op: ops.Op) -> Allowed:
        """Apply ``op``; the outcomes it may have. On an error nothing has changed, except
        where a rule documents what the kernel writes before it fails."""
        return self.step(op)[1]

    def step(self, op: ops.Op) -> tuple[Outcome, Allowed]:
        """Apply ``op``; Linux's outcome and every outcome the rules allow."""
        try:
            value = self._handlers[type(op)](op)
        except FsError as failure:
            return Err(failure.names[0]), frozenset(Err(name) for name in failure.names)
        if isinstance(value, AlsoAllowed):
            return Ok(value.value), frozenset(Ok(v) for v in (value.value, *value.others))
        return Ok(value), frozenset({Ok(value)})

    def view(self) -> View:
        entries: dict[str, EntryView] = {}
        inodes: dict[str, int] = {}
        # st_nlink of every upper object, counted once for the whole view (not per entry)
        upper_links = link_counts(self.upper) if self.upper is not None else {}
        pending = [self.root()]
        while pending:
            directory = pending.pop()
            for name, node in self._listed(directory):
                if node is None:
                    entries[_join(directory.path, name)] = UNREACHABLE
                    continue
                entries[node.path] = self._entry_view(node, upper_links)
                inodes[node.path] = self._st_ino(node)
                if node.is_dir:
                    pending.append(node)
        return View(entries=entries, inodes=inodes)

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        return self.upper_image(), tuple(image(root) for root in self.lowers)

    def upper_image(self) -> LayerImage | None:
        """The upper layer as the kernel writes it (None when read-only)."""
        return image(self.upper) if self.upper is not None else None

    # --- lookup ---------------------------------------------------------------------------

    def root(self) -> Node:
        return Node("", None, self.upper, list(self.lowers), list(range(len(self.lowers))))

    def _child(self, parent: Node, name: str) -> Found:
        return lookup_child(parent, name, self.lowers)

    def resolve(self, path: str, *, follow: bool) -> Resolved:
        return resolve(self.root(), path, self._child, follow=follow)

    def _existing(self, path: str, *, follow: bool) -> Node:
        node = self.resolve(path, follow=follow).node
        if node is None:
            raise FsError("ENOENT")
        return node

    def names(self, directory: Node) -> list[str]:
        """readdir: the union of the names of every layer, less whiteouts (doc "readdir")."""
        return [name for name, _ in self.found_children(directory)]

    def found_children(self, directory: Node) -> list[tuple[str, Node]]:
        """The names of :meth:`_names`, each with the node its lookup found."""
        candidates: set[str] = set()
        for layer_dir in [directory.upper, *directory.lowers]:
            if layer_dir is not None:
                candidates.update(layer_dir.entries)
        found = ((name, self._child(directory, name).node) for name in sorted(candidates))
        return [(name, node) for name, node in found if node is not None]

    def _listing(self, directory: Node) -> list[str]:
        """What readdir returns. A directory that is not merged is read straight from its
        one real directory (readdir.c ovl_iterate, od->is_real), whiteouts included; a
        merged one is the filtered union (observed: a whiteout in a lower dir with nothing
        below it is listed, and lookup gives ENOENT)."""
        if directory.is_merged:
            return self.names(directory)
        return sorted(directory.top.entries)

    def _listed(self, directory: Node) -> list[tuple[str, Node | None]]:
        """:meth:`_listing` with each name's lookup (None: listed, but lookup finds
        nothing), each name looked up once."""
        if directory.is_merged:
            return list(self.found_children(directory))
        return [(name, self._child(directory, name).node) for name in sorted(directory.top.entries)]

    def lower_of(self, node: Node) -> Inode | None:
        """The lower object behind a node: for a copied-up non-directory, the one recorded
        in trusted.overlay.origin (doc "Inode properties"); for a directory, its top lower."""
        if not node.is_dir and node.upper is not None:
            return node.upper.origin
        return node.lower

    def _indexed(self, node: Node) -> Inode | None:
        """index=on: the upper copy shared by every name of a lower hardlink (obs H.index=on.1)."""
        lower = self.lower_of(node)
        if self.options.index and lower is not None and not node.is_dir:
            return self.index.get(lower.ident)
        return None

    def meta(self, node: Node) -> Inode:
        """The object that holds the node's metadata and (unless metacopy) its data."""
        if node.upper is not None:
            return node.upper
        return self._indexed(node) or node.lowers[0]

    def _data(self, node: Node) -> bytes:
        meta = self.meta(node)
        if meta.metacopy and meta.origin is not None:
            return meta.origin.data  # doc "Metadata only copy up": reads come from the lower
        return meta.data

    # --- observation ----------------------------------------------------------------------

    def _entry_view(self, node: Node, upper_links: dict[int, int] | None = None) -> EntryView:
        meta = self.meta(node)
        kind = meta.kind
        xattrs = tuple(sorted(meta.xattrs.items())) if kind in (Kind.FILE, Kind.DIR) else ()
        return EntryView(
            kind=kind.value,
            mode=meta.mode,
            uid=meta.uid,
            gid=meta.gid,
            nlink=self._nlink(node, upper_links),
            data=self._data(node) if kind is Kind.FILE else b"",
            target=meta.target if kind is Kind.SYMLINK else "",
            xattrs=xattrs,
        )

    def _nlink(self, node: Node, upper_links: dict[int, int] | None = None) -> int:
        """st_nlink. A merged directory reports 1 (inode.c ovl_getattr; obs E1.7); others
        report their real directory's count. An indexed inode reports the union count kept in
        trusted.overlay.nlink; other non-dirs their real layer's count (obs H.index=off.2)."""
        if node.is_dir:
            if node.is_merged:
                return 1
            return dir_nlink(node.top)
        lower = self.lower_of(node)
        if self._indexed(node) is not None and lower is not None:
            return self.index_nlink[lower.ident]
        if node.upper is not None:
            assert self.upper is not None
            if upper_links is None:
                upper_links = link_counts(self.upper)
            return upper_links.get(node.upper.ident, 1)
        return self.lower_nlink[node.lowers[0].ident]

    def _st_ino(self, node: Node) -> int:
        """st_ino with all layers on one filesystem (doc "Inode properties"; inode.c
        ovl_getattr): a directory or an object copied up keeps its lower origin's number,
        except a copied-up lower hardlink that is not indexed (its link was broken)."""
        lower = self.lower_of(node)
        if lower is None or node.upper is None:
            return (lower or node.top).ident
        if node.is_dir or self._indexed(node) is not None:
            return lower.ident
        if self.lower_nlink[lower.ident] == 1:
            return lower.ident
        return node.upper.ident

    def vfs_inode(self, node: Node) -> tuple[str, object]:
        """Which names share one overlay inode (inode.c ovl_hash_bylower): rename() between
        two names of one inode does nothing (vfs_rename)."""
        lower = self.lower_of(node)
        if self._indexed(node) is not None and lower is not None:
            return ("index", lower.ident)
        if node.upper is not None:
            return ("upper", node.upper.ident)
        if node.is_dir or lower is None:
            return ("dir", node.path)
        if self.options.read_only or self.options.index or self.lower_nlink[lower.ident] == 1:
            return ("lower", lower.ident)
        return ("name", node.path)  # a lower hardlink that copy-up will break: its own inode

    # --- the upper layer: copy-up, whiteouts ----------------------------------------------

    def writable(self) -> None:
        """doc "Non-standard behavior"; obs RO.1-8: no upper layer, every write is EROFS."""
        if self.upper is None:
            raise FsError("EROFS")

    def copy_up(self, node: Node, *, data: bool = True) -> Inode:
        """Copy ``node`` (and its parents) up; return its upper object (doc "Copy up").

        The whole file is copied once; later writes go to the upper copy. With metacopy=on a
        metadata change copies only metadata (doc "Metadata only copy up"); ``data`` asks
        for the data too. A lower hardlink with index=on is copied to one upper inode that
        every name shares (doc "Sharing and copying layers", index).
        """
        if node.parent is None:
            assert self.upper is not None
            return self.upper
        upper = node.upper
        if upper is not None:
            if data and upper.metacopy:
                self._copy_up_data(upper)
            return upper
        parent_upper = self.copy_up(node.parent)
        existing = parent_upper.entries.get(node.name)
        if existing is not None and existing.kind is not Kind.WHITEOUT:
            # copied up since ``node`` was looked up (through another path to it)
            node.upper = existing
            return self.copy_up(node, data=data)
        lower = node.lowers[0]
        indexed = self._indexed(node)
        if indexed is not None:
            if data and indexed.metacopy:
                self._copy_up_data(indexed)
            parent_upper.entries[node.name] = indexed
            node.upper = indexed
            return indexed
        copy = lower.copy_meta()
        copy.origin = lower
        if copy.kind is Kind.FILE and self.options.metacopy and not data:
            copy.metacopy = True
            copy.data = b""
        if self.options.index and not node.is_dir and self.lower_nlink[lower.ident] > 1:
            self.index[lower.ident] = copy
            self.index_nlink[lower.ident] = self.lower_nlink[lower.ident]
        parent_upper.entries[node.name] = copy
        node.upper = copy
        return copy

    @staticmethod
    def _copy_up_data(upper: Inode) -> None:
        assert upper.origin is not None
        upper.data = upper.origin.data
        upper.metacopy = False

    def lower_positive(self, parent: Node, name: str) -> bool:
        """dir.c ovl_lower_positive: does a lower layer still show ``name``? Then removing
        it must leave a whiteout (doc "whiteouts and opaque directories")."""
        if parent.upper is not None and parent.upper.opaque:
            return False
        probe = Node(parent.name, parent.parent, None, parent.lowers, parent.lower_layers)
        if not parent.lowers:
            return False
        return lookup_child(probe, name, self.lowers).node is not None

    def _remove_name(self, node: Node) -> None:
        """Remove a name from the merged view: delete its upper entry, and leave a whiteout
        where a lower layer still has the name (obs E3.1, E3.13, E3.20)."""
        assert node.parent is not None
        self.drop_index_link(node)
        parent_upper = self.copy_up(node.parent)
        parent_upper.entries.pop(node.name, None)
        if self.lower_positive(node.parent, node.name):
            parent_upper.entries[node.name] = Inode(Kind.WHITEOUT, mode=0)

    def drop_index_link(self, node: Node) -> None:
        """index=on: removing a name of a lower hardlink copies it up first so the index
        keeps the union nlink (dir.c ovl_nlink_start), then counts one link less."""
        lower = self.lower_of(node)
        if not self.options.index or node.is_dir or lower is None:
            return
        if lower.ident not in self.index and self.lower_nlink[lower.ident] > 1:
            self.copy_up(node)
        if lower.ident in self.index:
            self.index_nlink[lower.ident] -= 1

    def _create(self, resolved: Resolved, inode: Inode) -> None:
        """Put a new object at a negative name. A directory made over a whiteout in the
        upper layer is opaque (obs E3.16); other objects simply replace the whiteout.

        A directory made in a merged directory is opaque too when offline changes of the
        lowers are not allowed: "setting opaque here is just an optimization" (dir.c
        ovl_create_upper; found by the kernel run, confirmed in the source)."""
        assert resolved.parent is not None
        parent_upper = self.copy_up(resolved.parent)
        merged_parent = bool(resolved.parent.lowers)
        if inode.is_dir and (
            resolved.found.upper_whiteout
            or (merged_parent and not self.options.allows_offline_changes)
        ):
            inode.opaque = True
        parent_upper.entries[resolved.name] = inode

    def _new_name(self, path: str) -> Resolved:
        """filename_create (vfs): the parent must exist; an existing name gives EEXIST,
        before EROFS; a final symlink is not followed."""
        resolved = self.resolve(path, follow=False)
        if resolved.node is not None:
            raise FsError("EEXIST")
        self.writable()
        return resolved

    # --- operations -----------------------------------------------------------------------

    def _op_stat(self, op: ops.Stat) -> ops.StatResult:
        node = self._existing(op.path, follow=op.follow)
        meta = self.meta(node)
        size = len(self._data(node)) if meta.kind is Kind.FILE else len(meta.target)
        return ops.StatResult(
            kind=meta.kind.value,
            mode=meta.mode,
            uid=meta.uid,
            gid=meta.gid,
            size=size,
            nlink=self._nlink(node),
        )

    def _op_read(self, op: ops.Read) -> bytes:
        node = self._existing(op.path, follow=True)
        if node.is_dir:
            raise FsError("EISDIR")
        return self._data(node) if node.kind is Kind.FILE else b""

    def _op_write(self, op: ops.Write) -> int:
        flags = set(op.flags)
        exclusive = {"O_CREAT", "O_EXCL"} <= flags
        resolved = self.resolve(op.path, follow=not exclusive)
        node = resolved.node
        if node is None:
            if "O_CREAT" not in flags:
                raise FsError("ENOENT")
            if resolved.parent is None:
                raise FsError("EISDIR")
            self.writable()
            inode = Inode(Kind.FILE, mode=op.mode & 0o7777)
            self._create(resolved, inode)
            created = True
        else:
            if exclusive:
                raise FsError("EEXIST")
            if node.is_dir:
                raise FsError("EISDIR")  # vfs may_open: a directory is never opened to write
            if node.kind is Kind.FIFO:
                raise FsError("ENXIO")  # open(2): O_WRONLY|O_NONBLOCK FIFO with no reader
            self.writable()
            inode = self.copy_up(node)  # doc "Copy up": any open for write (obs E2.2/3)
            created = False
        if "O_TRUNC" in flags and not created:
            inode.data = b""
        if op.data:
            offset = len(inode.data) if "O_APPEND" in flags else op.offset
            padded = inode.data.ljust(offset, b"\0")
            inode.data = padded[:offset] + op.data + padded[offset + len(op.data) :]
        return len(op.data)

    def _op_truncate(self, op: ops.Truncate) -> None:
        node = self._existing(op.path, follow=True)
        if node.is_dir:
            raise FsError("EISDIR")
        if node.kind is not Kind.FILE:
            raise FsError("EINVAL")
        self.writable()
        inode = self.copy_up(node)
        inode.data = inode.data[: op.size].ljust(op.size, b"\0")

    def _op_mkdir(self, op: ops.Mkdir) -> None:
        resolved = self._new_name(op.path)
        self._create(resolved, Inode(Kind.DIR, mode=op.mode & 0o1777))

    def _op_symlink(self, op: ops.Symlink) -> None:
        resolved = self._new_name(op.path)
        self._create(resolved, Inode(Kind.SYMLINK, mode=0o777, target=op.target))

    def _op_mkfifo(self, op: ops.Mkfifo) -> None:
        resolved = self._new_name(op.path)
        self._create(resolved, Inode(Kind.FIFO, mode=op.mode & 0o7777))

    def _op_rmdir(self, op: ops.Rmdir) -> None:
        resolved = self.resolve(op.path, follow=False)
        self.writable()  # vfs do_rmdir: mnt_want_write before the last lookup
        node = resolved.node
        if resolved.parent is None:
            raise FsError("EBUSY" if node is not None and node.parent is None else "EINVAL")
        if node is None:
            raise FsError("ENOENT")
        if not node.is_dir:
            raise FsError("ENOTDIR")
        if self.names(node):
            raise FsError(*NOT_EMPTY)
        self._remove_name(node)

    def _op_unlink(self, op: ops.Unlink) -> None:
        resolved = self.resolve(op.path, follow=False)
        self.writable()  # vfs do_unlinkat: mnt_want_write before the last lookup
        node = resolved.node
        if node is None:
            raise FsError("ENOENT")
        if node.is_dir:
            raise FsError(*UNLINK_DIR)
        self._remove_name(node)

    def _op_link(self, op: ops.Link) -> None:
        source = self._existing(op.src, follow=False)
        resolved = self._new_name(op.dst)
        if source.is_dir:
            raise FsError("EPERM")  # link(2): hard links to directories are not allowed
        # obs E2.9: the source is copied up (metadata only with metacopy=on), the link joins
        # it; a metacopy source records where its data is (dir.c ovl_set_link_redirect).
        upper = self.copy_up(source, data=False)
        assert resolved.parent is not None
        self.copy_up(resolved.parent)  # ovl_link: the new parent too, before the redirect
        if upper.metacopy and not (upper.redirect or "").startswith("/"):
            from reference.rename import checked_redirect

            upper.redirect = checked_redirect(source)  # EXDEV past redirect_max, copied up
        lower = self.lower_of(source)
        if self._indexed(source) is not None and lower is not None:
            self.index_nlink[lower.ident] += 1
        self._create(resolved, upper)

    def _op_readlink(self, op: ops.Readlink) -> str:
        node = self._existing(op.path, follow=False)
        if node.kind is not Kind.SYMLINK:
            raise FsError("EINVAL")
        return node.top.target

    def _op_chmod(self, op: ops.Chmod) -> None:
        node = self._existing(op.path, follow=True)
        self.writable()
        self.copy_up(node, data=False).mode = op.mode & 0o7777

    def _op_chown(self, op: ops.Chown) -> None:
        node = self._existing(op.path, follow=True)
        self.writable()
        inode = self.copy_up(node, data=False)
        inode.uid, inode.gid = op.uid, op.gid

    def _xattr_target(self, path: str, *, write: bool) -> Node:
        """xattr(7): user.* attributes exist only on regular files and directories; on other
        objects a write gives EPERM and a read ENODATA (fs/xattr.c xattr_permission)."""
        node = self._existing(path, follow=True)
        if write:
            self.writable()
        if node.kind not in (Kind.FILE, Kind.DIR):
            raise FsError("EPERM" if write else "ENODATA")
        return node

    def _xattr_upper(self, node: Node) -> Inode:
        """xattr.c ovl_xattr_set writes to the inode's upper object: an indexed lower
        hardlink already has one (the index), so its name is not copied up."""
        return self._indexed(node) or self.copy_up(node, data=False)

    def _op_setxattr(self, op: ops.SetXattr) -> None:
        node = self._xattr_target(op.path, write=True)
        self._xattr_upper(node).xattrs[op.name] = op.value

    def _op_getxattr(self, op: ops.GetXattr) -> bytes:
        node = self._xattr_target(op.path, write=False)
        try:
            return self.meta(node).xattrs[op.name]
        except KeyError:
            raise FsError("ENODATA") from None

    def _op_listxattr(self, op: ops.ListXattr) -> tuple[str, ...]:
        node = self._existing(op.path, follow=True)
        return tuple(sorted(n for n in self.meta(node).xattrs if n.startswith("user.")))

    def _op_removexattr(self, op: ops.RemoveXattr) -> None:
        """xattrs.c ovl_xattr_set: removing a missing attribute of a lower object gives
        ENODATA without copying it up."""
        node = self._xattr_target(op.path, write=True)
        if op.name not in self.meta(node).xattrs:
            raise FsError("ENODATA")
        del self._xattr_upper(node).xattrs[op.name]

    def _op_readdir(self, op: ops.Readdir) -> tuple[str, ...] | AlsoAllowed:
        """The listing (:meth:`_listing`). Linux lists the whiteouts of a directory that is
        not merged (readdir.c ``ovl_iterate``: ``ovl_dir_is_real`` passes the real
        directory through); a driver that leaves those unreachable names out also conforms
        (decision: see :func:`conformance.lockstep.compare.may_be_absent`)."""
        node = self._existing(op.path, follow=True)
        if not node.is_dir:
            raise FsError("ENOTDIR")
        listing = tuple(self._listing(node))
        reachable = tuple(n for n in listing if self._child(node, n).node is not None)
        return listing if reachable == listing else AlsoAllowed(listing, (reachable,))

    def _op_remount(self, op: ops.Remount) -> None:
        """Everything the reference keeps is what the kernel keeps on disk (layers, index,
        trusted.overlay.nlink), so a remount changes nothing that can be observed."""

    def _op_rename(self, op: ops.Rename) -> None:
        from reference.rename import rename

        rename(self, op)


def image(root: Inode) -> LayerImage:
    """A layer in the abstract on-disk form the adapters decode real layers into."""
    entries: dict[str, DiskEntry] = {}
    names: dict[int, list[str]] = {}
    inodes: dict[str, int] = {}
    for path, inode in walk(root):
        if inode.kind is Kind.WHITEOUT:
            entries[path] = DiskEntry(kind="whiteout")
            continue
        inodes[path] = inode.ident
        entries[path] = DiskEntry(
            kind=inode.kind.value,
            mode=inode.mode,
            uid=inode.uid,
            gid=inode.gid,
            data=None if inode.metacopy else (inode.data if inode.kind is Kind.FILE else b""),
            target=inode.target,
            xattrs=tuple(sorted(inode.xattrs.items()))
            if inode.kind in (Kind.FILE, Kind.DIR)
            else (),
            opaque=inode.opaque,
            redirect=inode.redirect,
            metacopy=inode.metacopy,
        )
        if not inode.is_dir:
            names.setdefault(inode.ident, []).append(path)
    links = frozenset(frozenset(group) for group in names.values() if len(group) > 1)
    return LayerImage(entries=entries, links=links, inodes=inodes)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
