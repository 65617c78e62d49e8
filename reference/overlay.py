"""The overlay engine: the reference semantics of an overlay mount, applied to operations.

Each operation is one ``_op_<rule>`` method (its rule name in ``ops.KINDS``) that first
checks (raising FsError with the errnos the rules allow, before any change) and then
applies its effect to the upper layer, as the kernel writes it. Sources in the
docstrings: "doc" is overlayfs.rst, "obs X" a row of ../shared/notes/overlayfs-semantics.md
observed on this kernel, "vfs" fs/namei.c.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from reference import ops, privileges, upperfs
from reference.layer import (
    Inode,
    Kind,
    LayerSpec,
    StackSpec,
    build,
    dir_nlink,
    entry_at,
    link_counts,
    walk,
)
from reference.lookup import Found, Node, lookup_child
from reference.options import Options
from reference.outcome import Allowed, AlsoAllowed, Err, Ok, Outcome
from reference.paths import FsError, Resolved, resolve
from reference.permissions import (
    MAY_READ,
    MAY_WRITE,
    chmod_mode,
    may_chown,
    may_create,
    may_delete,
    may_link,
    may_set_times,
    may_write_user_xattr,
    new_owner,
    require,
)
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
        #: Data-only lower layers (doc "Data-only lower layers"): never in the merged view,
        #: only the data of metacopy stubs redirected into them.
        self.data_layers: list[Inode] = []
        if options.data_only:
            self.data_layers = [self.lowers.pop()]
            self._resolve_stubs()
        self.upper: Inode | None = None if options.read_only else build(LayerSpec())
        #: index=on: lower hardlink (by lower identity) -> its upper copy, kept in
        #: workdir/index (doc "Sharing and copying layers"; obs H.index=on.*).
        self.index: dict[int, Inode] = {}
        #: index=on: the union nlink of an indexed inode, trusted.overlay.nlink (obs H.index=on.3).
        self.index_nlink: dict[int, int] = {}
        self.lower_nlink: dict[int, int] = {}
        for root in self.lowers:
            self.lower_nlink.update(link_counts(root))
        #: Open descriptors by handle (ops.Open), None once closed (issue 18).
        self.handles: list[Handle | None] = []
        #: The upper copy of each non-directory copied up, by its overlay inode before
        #: copy-up (:meth:`vfs_inode`): what a descriptor opened before it reads.
        self.copies: dict[tuple[str, object], Inode] = {}
        #: Who runs the operation being applied (ops.CALLERS; set by :meth:`step`, root
        #: between steps).
        self.caller: ops.Caller = ops.ROOT
        #: Each operation kind's rule: the method ``_op_<rule>`` (ops.KINDS).
        self._handlers: dict[type, Callable[..., object]] = {
            cls: getattr(self, f"_op_{kind.rule}") for cls, kind in ops.KINDS.items()
        }

    def _resolve_stubs(self) -> None:
        """Give each metacopy stub of the lowest regular lower layer the data of the file
        its absolute redirect names in the data-only layers (namei.c
        ovl_lookup_data_layers: the first data-only layer that has it). Observed on 6.18
        (docs/mount-validation.md, obs DO.7): read gives the data file's bytes, stat the
        stub's metadata and size; a stub in a higher lower layer is refused (EPERM) unless
        metacopy=on, so none is generated there."""
        for _, stub in walk(self.lowers[-1]):
            if stub.kind is Kind.FILE and stub.metacopy and stub.redirect:
                for layer in self.data_layers:
                    target = entry_at(layer, stub.redirect.strip("/"))
                    if target is not None and target.kind is Kind.FILE:
                        stub.data = target.data
                        break

    # --- the public face ------------------------------------------------------------------

    def apply(self, op: ops.Op) -> Allowed:
        """Apply ``op``; the outcomes it may have. On an error nothing has changed, except
        where a rule documents what the kernel writes before it fails."""
        return self.step(op)[1]

    def step(self, op: ops.Op) -> tuple[Outcome, Allowed]:
        """Apply ``op``; Linux's outcome and every outcome the rules allow."""
        self.caller = ops.CALLERS[op.caller]
        try:
            value = self._handlers[type(op)](op)
        except FsError as failure:
            return Err(failure.names[0]), frozenset(Err(name) for name in failure.names)
        finally:
            self.caller = ops.ROOT  # whoever looks at the model between steps sees it all
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
                if self._st_ino_stable(node):
                    inodes[node.path] = self._st_ino(node)
                if node.is_dir:
                    pending.append(node)
        return View(entries=entries, inodes=inodes)

    def images(self) -> tuple[LayerImage | None, tuple[LayerImage, ...]]:
        layers = (*self.lowers, *self.data_layers)
        return self.upper_image(), tuple(image(root) for root in layers)

    def upper_replaced(self) -> None:
        """The upper layer was replaced by a driver's (reference/rebuild.py): a variant
        drops what it kept about the old one's paths."""

    def upper_image(self) -> LayerImage | None:
        """The upper layer as the kernel writes it (None when read-only)."""
        return image(self.upper) if self.upper is not None else None

    # --- lookup ---------------------------------------------------------------------------

    def root(self) -> Node:
        return Node("", None, self.upper, list(self.lowers), list(range(len(self.lowers))))

    def _child(self, parent: Node, name: str) -> Found:
        return lookup_child(parent, name, self.lowers)

    def resolve(self, path: str, *, follow: bool) -> Resolved:
        search = None if self.caller.root else self._search
        return resolve(self.root(), path, self._child, follow=follow, search=search)

    # --- permissions (issue 18; reference.permissions) ------------------------------------

    def _search(self, directory: Node) -> None:
        """may_lookup: search permission on each directory a path walks through."""
        require(self.caller, self.meta(directory), 1)

    def _require(self, node: Node, mask: int) -> None:
        """The caller's access to the overlay inode (ovl_permission's first step, on the
        top object's metadata; the mounter's second step never refuses root)."""
        require(self.caller, self.meta(node), mask)

    def _may_delete(self, parent: Node, victim: Node) -> None:
        may_delete(self.caller, self.meta(parent), self.meta(victim))

    def _may_create(self, parent: Node) -> None:
        may_create(self.caller, self.meta(parent))

    def _owned(self, parent: Node, inode: Inode) -> Inode:
        """A new object made by the caller: the umask off its mode, its owner
        (permissions.new_owner). Root's umask is 0 and its ids 0: nothing changes."""
        caller = self.caller
        mode = inode.mode if inode.kind is Kind.SYMLINK else inode.mode & ~caller.umask
        inode.uid, inode.gid, inode.mode = new_owner(caller, self.meta(parent), inode.kind, mode)
        return inode

    def _existing(self, path: str, *, follow: bool) -> Node:
        node = self.resolve(path, follow=follow).node
        if node is None:
            raise FsError("ENOENT")
        return node

    def names(self, directory: Node) -> list[str]:
        """readdir: the union of the names of every layer, less whiteouts (doc "readdir")."""
        return [name for name, _ in self.found_children(directory)]

    def not_empty(self, directory: Node) -> bool:
        """rmdir and rename over a directory: ENOTEMPTY when readdir shows a name, or when
        a name's topmost entry is an xattr whiteout. readdir.c ovl_check_empty_dir reads
        the merged directory without the xattr whiteout check (deferred to ovl_iterate,
        ``check_xwhiteout``), so such a whiteout counts as an entry, in a marked directory
        too (obs XW.4: ENOTEMPTY)."""
        if self.names(directory):
            return True
        seen: set[str] = set()
        for layer_dir in [directory.upper, *directory.lowers]:
            if layer_dir is None:
                continue
            for name, entry in layer_dir.entries.items():
                if name not in seen and entry.xattr_whiteout:
                    return True
                seen.add(name)
        return False

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
        below it is listed, and lookup gives ENOENT), plus its unfiltered xattr
        whiteouts (:meth:`_listed_xwhiteouts`)."""
        return [name for name, _ in self._listed(directory)]

    def _listed(self, directory: Node) -> list[tuple[str, Node | None]]:
        """:meth:`_listing` with each name's lookup (None: listed, but lookup finds
        nothing), each name looked up once."""
        if directory.is_merged:
            found = self.found_children(directory)
            extra = self._listed_xwhiteouts(directory, {name for name, _ in found})
            return sorted([*found, *((name, None) for name in extra)], key=lambda p: p[0])
        return [(name, self._child(directory, name).node) for name in sorted(directory.top.entries)]

    def _listed_xwhiteouts(self, directory: Node, found: set[str]) -> list[str]:
        """The xattr whiteouts readdir of a merged directory lists although lookup honours
        them: the first layer holding a name decides (readdir.c ovl_cache_entry_add_rb),
        and an xattr whiteout is recognised only in a lower directory marked
        ``overlay.opaque=x`` (readdir.c ovl_dir_read_merged: ``in_xwhiteouts_dir``; "we
        do not support xwhiteouts on upper", linux-unionfs 2024-01-19). Observed on 6.18
        (obs XW.2): listed from an upper directory, marked or not, and from an unmarked
        lower one; hidden from a marked lower one.

        With xino bits in use (xino=on, layers on several filesystems) every entry's d_ino
        is recomputed by a lookup (readdir.c ovl_calc_d_ino, ovl_cache_update), which marks
        a name lookup does not find as stale: none is listed (obs XW.5)."""
        if self.options.xino and self.options.separate_fs:
            return []
        listed: list[str] = []
        seen = set(found)
        for position, layer_dir in enumerate([directory.upper, *directory.lowers]):
            if layer_dir is None:
                continue
            in_upper = position == 0 and directory.upper is not None
            for name, entry in layer_dir.entries.items():
                if name in seen:
                    continue
                seen.add(name)
                if entry.xattr_whiteout and (in_upper or not layer_dir.xwhiteouts):
                    listed.append(name)
        return listed

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
        # the view holds the content xattrs the executors read through a mount (user.*,
        # trusted.*, security.*: adapters/sandbox/layerdisk.py is_content_xattr); a layer
        # may also carry an escaped trusted.overlay.* one (doc "Nesting"), which the mount
        # shows only to a listxattr that asks for the overlay's own names
        xattrs = (
            tuple(sorted(i for i in meta.xattrs.items() if not i[0].startswith(OVERLAY_XATTRS)))
            if kind in XATTR_KINDS
            else ()
        )
        return EntryView(
            kind=kind.value,
            mode=meta.mode,
            uid=meta.uid,
            gid=meta.gid,
            nlink=self.nlink(node, upper_links),
            data=self._data(node) if kind is Kind.FILE else b"",
            target=meta.target if kind is Kind.SYMLINK else "",
            xattrs=xattrs,
            mtime=meta.mtime,
            ctime=meta.ctime,
        )

    def nlink(self, node: Node, upper_links: dict[int, int] | None = None) -> int:
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

    def _st_ino_stable(self, node: Node) -> bool:
        """Whether st_ino is promised (doc "Inode properties": persistent through the
        origin of a copied-up object). With userxattr a copied-up symlink or FIFO has no
        origin: a user.* xattr cannot be set on it (fs/xattr.c xattr_permission: EPERM),
        so its st_ino is the lower's while the overlay inode stays cached and the upper's
        after a remount or a link (obs UX.1, docs/mount-validation.md): not compared."""
        return not (
            self.options.userxattr
            and node.upper is not None
            and node.kind in (Kind.SYMLINK, Kind.FIFO)
            and self.lower_of(node) is not None
        )

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
        before = self.vfs_inode(node)
        indexed = self._indexed(node)
        if indexed is not None:
            if data and indexed.metacopy:
                self._copy_up_data(indexed)
            parent_upper.entries[node.name] = indexed
            node.upper = indexed
            indexed.touch(mtime=False)  # one link more (copy_up.c ovl_link_up)
            parent_upper.touch(mtime=False)  # ovl_link_up restores the parent's times
            return indexed
        copy = lower.copy_meta()
        copy.origin = lower
        if copy.kind is Kind.FILE and self.options.metacopy and not data:
            copy.metacopy = True
            copy.data = b""
        upperfs.copied_up(copy)
        if self.options.index and not node.is_dir and self.lower_nlink[lower.ident] > 1:
            self.index[lower.ident] = copy
            self.index_nlink[lower.ident] = self.lower_nlink[lower.ident]
        parent_upper.entries[node.name] = copy
        node.upper = copy
        if not copy.is_dir:
            self.copies[before] = copy
        # The copy keeps the lower's mtime (Inode.copy_meta; copy_up.c ovl_set_attr ->
        # ovl_set_timestamps); linking it in changes its parent, whose times copy-up then
        # restores (copy_up.c ovl_copy_up_workdir: "Restore timestamps on parent"), so
        # only the parent's ctime is new.
        parent_upper.touch(mtime=False)
        return copy

    @staticmethod
    def _copy_up_data(upper: Inode) -> None:
        assert upper.origin is not None
        upper.data = upper.origin.data
        upper.metacopy = False
        upperfs.copied_up(upper)
        # trusted.overlay.metacopy removed (ovl_copy_up_meta_inode_data): a new ctime; the
        # data copied into the upper file gives it a new mtime too, the lower's is not put
        # back (found by the kernel run: an open for writing after a metadata-only rename
        # or link; a file with no data has nothing copied)
        upper.touch(mtime=bool(upper.data))

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
        removed = parent_upper.entries.pop(node.name, None)
        if self.lower_positive(node.parent, node.name):
            parent_upper.entries[node.name] = Inode(Kind.WHITEOUT, mode=0)
        parent_upper.touch()  # POSIX unlink()/rmdir(): the parent's mtime and ctime
        shared = self._indexed(node) or removed
        if shared is not None and shared.kind is not Kind.WHITEOUT:
            shared.touch(mtime=False)  # one link less: its ctime (POSIX unlink())

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
        parent_upper.touch()  # POSIX open()/mkdir()/link()...: the parent's mtime and ctime

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
            nlink=self.nlink(node),
        )

    def _op_read(self, op: ops.Read) -> bytes:
        node = self._existing(op.path, follow=True)
        self._require(node, MAY_READ)  # may_open, before read(2) gives EISDIR
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
            self._may_create(resolved.parent)  # lookup_open: may_o_create
            inode = self._owned(resolved.parent, Inode(Kind.FILE, mode=op.mode & 0o7777))
            self._create(resolved, inode)
            created = True
        else:
            if exclusive:
                raise FsError("EEXIST")
            if node.is_dir:
                raise FsError("EISDIR")  # vfs may_open: a directory is never opened to write
            if node.kind is Kind.FIFO:
                self._require(node, MAY_WRITE)  # may_open, before fifo_open
                raise FsError("ENXIO")  # open(2): O_WRONLY|O_NONBLOCK FIFO with no reader
            self.writable()  # may_open: sb_permission's EROFS before the DAC check
            self._require(node, MAY_WRITE)
            inode = self.copy_up(node)  # doc "Copy up": any open for write (obs E2.2/3)
            created = False
        if "O_TRUNC" in flags and not created:
            inode.data = b""
            upperfs.free(inode, 0)
            # do_truncate with ATTR_MTIME | ATTR_CTIME (fs/open.c)
            privileges.written(inode, self.caller)
        if op.data:
            offset = len(inode.data) if "O_APPEND" in flags else op.offset
            padded = inode.data.ljust(offset, b"\0")
            inode.data = padded[:offset] + op.data + padded[offset + len(op.data) :]
            upperfs.allocate(inode, offset, offset + len(op.data))
            privileges.written(inode, self.caller)
        return len(op.data)

    def _op_truncate(self, op: ops.Truncate) -> None:
        node = self._existing(op.path, follow=True)
        if node.is_dir:
            raise FsError("EISDIR")
        if node.kind is not Kind.FILE:
            raise FsError("EINVAL")
        self.writable()
        self._require(node, MAY_WRITE)  # vfs_truncate: after mnt_want_write
        inode = self.copy_up(node)
        times = upperfs.truncate_changes_times(inode, len(inode.data), op.size)
        if op.size <= len(inode.data):
            upperfs.free(inode, op.size)
        inode.data = inode.data[: op.size].ljust(op.size, b"\0")
        privileges.truncated(inode, times=times, caller=self.caller)

    def _op_mkdir(self, op: ops.Mkdir) -> None:
        resolved = self._new_name(op.path)
        self._create(resolved, self._made(resolved, Inode(Kind.DIR, mode=op.mode & 0o1777)))

    def _op_symlink(self, op: ops.Symlink) -> None:
        resolved = self._new_name(op.path)
        inode = Inode(Kind.SYMLINK, mode=0o777, target=op.target)
        self._create(resolved, self._made(resolved, inode))

    def _op_mkfifo(self, op: ops.Mkfifo) -> None:
        resolved = self._new_name(op.path)
        self._create(resolved, self._made(resolved, Inode(Kind.FIFO, mode=op.mode & 0o7777)))

    def _made(self, resolved: Resolved, inode: Inode) -> Inode:
        """vfs_mkdir / vfs_symlink / vfs_mknod: may_create on the parent (EACCES), after
        filename_create's EEXIST and EROFS; then the caller owns the new object."""
        assert resolved.parent is not None
        self._may_create(resolved.parent)
        return self._owned(resolved.parent, inode)

    def _op_rmdir(self, op: ops.Rmdir) -> None:
        resolved = self.resolve(op.path, follow=False)
        self.writable()  # vfs do_rmdir: mnt_want_write before the last lookup
        node = resolved.node
        if resolved.parent is None:
            raise FsError("EBUSY" if node is not None and node.parent is None else "EINVAL")
        if node is None:
            raise FsError("ENOENT")
        self._may_delete(resolved.parent, node)  # may_delete: before its type check
        if not node.is_dir:
            raise FsError("ENOTDIR")
        if self.not_empty(node):
            raise FsError(*NOT_EMPTY)
        self._remove_name(node)

    def _op_unlink(self, op: ops.Unlink) -> None:
        resolved = self.resolve(op.path, follow=False)
        self.writable()  # vfs do_unlinkat: mnt_want_write before the last lookup
        node = resolved.node
        if node is None:
            raise FsError("ENOENT")
        assert resolved.parent is not None
        self._may_delete(resolved.parent, node)  # may_delete: before its type check
        if node.is_dir:
            raise FsError(*UNLINK_DIR)
        self._remove_name(node)

    def _op_link(self, op: ops.Link) -> None:
        source = self._existing(op.src, follow=False)
        resolved = self._new_name(op.dst)
        may_link(self.caller, self.meta(source))  # do_linkat: may_linkat, then vfs_link
        assert resolved.parent is not None
        self._may_create(resolved.parent)
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
        upper.touch(mtime=False)  # POSIX link(): the file's ctime

    def _op_readlink(self, op: ops.Readlink) -> str:
        node = self._existing(op.path, follow=False)
        if node.kind is not Kind.SYMLINK:
            raise FsError("EINVAL")
        return node.top.target

    def _op_chmod(self, op: ops.Chmod) -> None:
        node = self._existing(op.path, follow=True)
        self.writable()
        mode = chmod_mode(self.caller, self.meta(node), op.mode & 0o7777)
        inode = self.copy_up(node, data=False)
        inode.mode = mode
        inode.touch(mtime=False)

    def _op_chown(self, op: ops.Chown) -> None:
        node = self._existing(op.path, follow=True)
        self.writable()
        may_chown(self.caller, self.meta(node), op.uid, op.gid)
        inode = self.copy_up(node, data=False)
        inode.uid, inode.gid = op.uid, op.gid
        privileges.chowned(inode)

    def _xattr_target(self, path: str, name: str, *, write: bool) -> Node:
        """xattr(7): user.* attributes exist only on regular files and directories; on other
        objects a write gives EPERM and a read ENODATA (fs/xattr.c xattr_permission, which
        then checks the caller's write or read permission, after EROFS). trusted.* and
        security.* have no such limit (observed: set on a FIFO) and no permission check:
        trusted.* needs CAP_SYS_ADMIN (else EPERM to write, ENODATA to read), security.* is
        left to the security modules (commoncap cap_inode_setxattr/removexattr: EPERM to
        write without CAP_SYS_ADMIN, or CAP_SETFCAP for security.capability)."""
        node = self._existing(path, follow=True)
        if write:
            self.writable()
        if not name.startswith("user."):
            # security.capability's own check comes later (_op_setxattr, _op_removexattr)
            other = write and name != privileges.CAPABILITY
            if self.caller.uid != 0 and (other or name.startswith("trusted.")):
                raise FsError("EPERM" if write else "ENODATA")
            return node
        if node.kind not in (Kind.FILE, Kind.DIR):
            raise FsError("EPERM" if write else "ENODATA")
        if write:
            may_write_user_xattr(self.caller, self.meta(node))
        else:
            self._require(node, MAY_READ)
        return node

    def _xattr_upper(self, node: Node) -> Inode:
        """xattr.c ovl_xattr_set writes to the inode's upper object: an indexed lower
        hardlink already has one (the index), so its name is not copied up."""
        return self._indexed(node) or self.copy_up(node, data=False)

    def _op_setxattr(self, op: ops.SetXattr) -> None:
        node = self._xattr_target(op.path, op.name, write=True)
        value = privileges.stored_xattr(op.name, op.value)
        if op.name == privileges.CAPABILITY and self.caller.uid != 0:
            # vfs_setxattr -> cap_convert_nscap: a valid header (EINVAL, above), then
            # CAP_SETFCAP (EPERM); an empty value is refused with EINVAL for anyone
            raise FsError("EPERM")
        inode = self._xattr_upper(node)
        inode.xattrs[op.name] = value
        inode.touch(mtime=False)

    def _op_getxattr(self, op: ops.GetXattr) -> bytes:
        node = self._xattr_target(op.path, op.name, write=False)
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
        node = self._xattr_target(op.path, op.name, write=True)
        if op.name == privileges.CAPABILITY and self.caller.uid != 0:
            raise FsError("EPERM")  # commoncap cap_inode_removexattr: CAP_SETFCAP, first
        if op.name not in self.meta(node).xattrs:
            raise FsError("ENODATA")
        inode = self._xattr_upper(node)
        inode.xattrs.pop(op.name, None)  # (gone already under a seeded copy-up fault)
        inode.touch(mtime=False)

    def _op_readdir(self, op: ops.Readdir) -> tuple[str, ...] | AlsoAllowed:
        """The listing (:meth:`_listing`). Linux lists the whiteouts of a directory that is
        not merged (readdir.c ``ovl_iterate``: ``ovl_dir_is_real`` passes the real
        directory through); a driver that leaves those unreachable names out also conforms
        (decision: see :func:`conformance.lockstep.compare.may_be_absent`)."""
        node = self._existing(op.path, follow=True)
        if not node.is_dir:
            raise FsError("ENOTDIR")
        self._require(node, MAY_READ)  # opendir: O_DIRECTORY's ENOTDIR, then may_open
        listing = tuple(self._listing(node))
        reachable = tuple(n for n in listing if self._child(node, n).node is not None)
        return listing if reachable == listing else AlsoAllowed(listing, (reachable,))

    def _op_utimens(self, op: ops.Utimens) -> None:
        """utimensat(2): both UTIME_OMIT changes nothing and succeeds before the path is
        even looked up (fs/utimes.c do_utimes; found by the kernel run: Ok for a missing
        name and on a read-only mount); otherwise the object is copied up, metadata only
        (inode.c ovl_setattr), and gets the mtime asked for ("now": a time the reference
        cannot know), and a new ctime."""
        if op.atime == ops.UTIME_OMIT and op.mtime == ops.UTIME_OMIT:
            return
        node = self._existing(op.path, follow=op.follow)
        self.writable()
        # (fs/utimes.c vfs_utimes: ATTR_TIMES_SET unless both are UTIME_NOW)
        explicit = not (op.atime == ops.UTIME_NOW and op.mtime == ops.UTIME_NOW)
        may_set_times(self.caller, self.meta(node), explicit=explicit)
        inode = self.copy_up(node, data=False)
        inode.touch(mtime=op.mtime == ops.UTIME_NOW)
        if isinstance(op.mtime, int):
            inode.mtime = op.mtime

    def _op_fallocate(self, op: ops.Fallocate) -> None:
        """fallocate(2) on a descriptor opened O_WRONLY|O_NONBLOCK (so a directory gives
        EISDIR and a FIFO ENXIO, as for Write; the open copies up). A length of 0 gives
        EINVAL (fs/open.c vfs_fallocate), after the open's copy-up. Plain: the size grows
        to offset+length, reading zeros; KEEP_SIZE: no visible change; PUNCH_HOLE (with
        KEEP_SIZE): the range inside the file reads zeros. Every success is a modification
        (mm/shmem.c shmem_fallocate -> file_modified: times and privileges, observed)."""
        node = self._existing(op.path, follow=True)
        if node.is_dir:
            raise FsError("EISDIR")
        if node.kind is Kind.FIFO:
            self._require(node, MAY_WRITE)  # may_open, before fifo_open (as Write)
            raise FsError("ENXIO")
        self.writable()  # may_open: sb_permission's EROFS before the DAC check
        self._require(node, MAY_WRITE)
        inode = self.copy_up(node)
        if op.length <= 0:
            raise FsError("EINVAL")
        end = op.offset + op.length
        if op.mode == "PUNCH_HOLE":
            size = len(inode.data)
            hole = b"\0" * max(0, min(end, size) - op.offset)
            inode.data = inode.data[: op.offset] + hole + inode.data[op.offset + len(hole) :]
            upperfs.free(inode, op.offset, end)
        else:
            if op.mode == "":
                inode.data = inode.data.ljust(end, b"\0")
            upperfs.allocate(inode, op.offset, end)
        privileges.written(inode, self.caller)

    def _op_remount(self, op: ops.Remount) -> None:
        """Everything the reference keeps is what the kernel keeps on disk (layers, index,
        trusted.overlay.nlink), so a remount changes nothing that can be observed; the
        open descriptors are closed first (the mount could not be unmounted with them)."""
        self.handles = [None] * len(self.handles)

    # --- open descriptors (issue 18; ops.Open, ReadFd, WriteFd, Close) --------------------

    def _op_open(self, op: ops.Open) -> int:
        """open(2) as a Read or Write opens (may_open: EISDIR for a directory opened to
        write, EROFS, the caller's permission); O_RDWR copies a file up (doc "Copy up": any
        open for write). A FIFO is opened O_PATH (ops.Open): reads and writes give EBADF.
        The descriptor stays on the overlay inode: after a later copy-up it reads the upper
        copy (file.c ovl_real_fdget reopens the real file when the inode was copied up,
        since 4.19; found by hand on 6.18: a read-only descriptor opened before an append
        through another descriptor reads the appended data), and after unlink the data
        it had."""
        node = self._existing(op.path, follow=True)
        if node.kind is Kind.FIFO:  # opened O_PATH (ops.Open): no pipe end, no check
            self.handles.append(Handle(self.vfs_inode(node), self.meta(node), False, True))
            return len(self.handles) - 1
        write = op.access == "O_RDWR"
        if write and node.is_dir:
            raise FsError("EISDIR")
        if write and node.kind is not Kind.FIFO:
            self.writable()
        self._require(node, MAY_READ | (MAY_WRITE if write else 0))
        copy_up = write and node.kind is Kind.FILE
        inode = self.copy_up(node) if copy_up else self.meta(node)
        self.handles.append(Handle(self.vfs_inode(node), inode, write))
        return len(self.handles) - 1

    def _handle(self, number: int) -> Handle:
        """The open descriptor of a handle (EBADF: never opened, or closed)."""
        handle = self.handles[number] if 0 <= number < len(self.handles) else None
        if handle is None:
            raise FsError("EBADF")
        return handle

    def _fd_inode(self, handle: Handle) -> Inode:
        """The object a descriptor reads now: the upper copy of its overlay inode once
        copied up, else what it was opened on."""
        return self.copies.get(handle.key, handle.inode)

    def _op_read_fd(self, op: ops.ReadFd) -> bytes:
        """pread(2): EBADF on an O_PATH descriptor (a FIFO's), EISDIR on a directory."""
        handle = self._handle(op.handle)
        if handle.path_only:
            raise FsError("EBADF")
        inode = self._fd_inode(handle)
        if inode.is_dir:
            raise FsError("EISDIR")
        if inode.metacopy and inode.origin is not None:
            return inode.origin.data
        return inode.data

    def _op_write_fd(self, op: ops.WriteFd) -> int:
        """pwrite(2): EBADF on a descriptor not open for writing (vfs_write), an O_PATH
        one included."""
        handle = self._handle(op.handle)
        inode = self._fd_inode(handle)
        if not handle.write:
            raise FsError("EBADF")
        if not op.data:
            return 0  # nothing written: not even past the end (found by the kernel run)
        padded = inode.data.ljust(op.offset, b"\0")
        inode.data = padded[: op.offset] + op.data + padded[op.offset + len(op.data) :]
        upperfs.allocate(inode, op.offset, op.offset + len(op.data))
        privileges.written(inode)  # as Write: times, the capability (root's descriptors)
        return len(op.data)

    def _op_close(self, op: ops.Close) -> None:
        self._handle(op.handle)
        self.handles[op.handle] = None

    def _op_rename(self, op: ops.Rename) -> None:
        from reference.rename import rename

        rename(self, op)


@attrs.frozen
class Handle:
    """An open descriptor: the overlay inode it was opened on (:meth:`Overlay.vfs_inode`),
    the object it read then, and whether it may write."""

    key: tuple[str, object]
    inode: Inode
    write: bool
    #: opened O_PATH (a FIFO): no read, no write
    path_only: bool = False


#: The kinds whose xattrs the view shows (user.* only on files and directories, trusted.*
#: and security.* on FIFOs too: _xattr_target).
XATTR_KINDS = (Kind.FILE, Kind.DIR, Kind.FIFO)
#: The overlay's own xattr names (markers and escaped names), never content of the view.
OVERLAY_XATTRS = ("trusted.overlay.",)


def image(root: Inode) -> LayerImage:
    """A layer in the abstract on-disk form the adapters decode real layers into."""
    entries: dict[str, DiskEntry] = {}
    names: dict[int, list[str]] = {}
    inodes: dict[str, int] = {}
    for path, inode in walk(root):
        if inode.kind is Kind.WHITEOUT:
            entries[path] = DiskEntry(kind="whiteout", xattr_whiteout=inode.xattr_whiteout)
            continue
        inodes[path] = inode.ident
        entries[path] = DiskEntry(
            kind=inode.kind.value,
            mode=inode.mode,
            uid=inode.uid,
            gid=inode.gid,
            data=None if inode.metacopy else (inode.data if inode.kind is Kind.FILE else b""),
            target=inode.target,
            xattrs=tuple(sorted(inode.xattrs.items())) if inode.kind in XATTR_KINDS else (),
            opaque=inode.opaque,
            redirect=inode.redirect,
            metacopy=inode.metacopy,
            xwhiteouts=inode.xwhiteouts,
        )
        if not inode.is_dir:
            names.setdefault(inode.ident, []).append(path)
    links = frozenset(frozenset(group) for group in names.values() if len(group) > 1)
    return LayerImage(entries=entries, links=links, inodes=inodes)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
