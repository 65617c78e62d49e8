"""Name lookup through the layer stack: the model of ovl_lookup (fs/overlayfs/namei.c).

A :class:`Node` is a name resolved in the merged view: its upper object (if any) and the
lower objects below it. Rules (overlayfs.rst "Upper and Lower", "whiteouts and opaque
directories", "Redirect dir"; kernel namei.c ovl_lookup/ovl_lookup_single):

- the upper layer is searched first, then each lower layer of the *parent's* lower stack,
  top first;
- a whiteout stops the search: the name is negative;
- a non-directory stops the search; only directories merge with directories below them;
- an opaque directory stops the search below it (in a lower layer the opacity of the
  bottom layer does not matter);
- an upper directory with ``redirect`` is looked up in the lowers under the redirect name:
  relative to the parent, or from each lower layer's root when absolute ("/a/b"); an
  absolute walk goes on past an opaque ancestor in that layer but stops the layers below
  (xfstests overlay/057);
- a metacopy upper file takes its data from the lower object it was copied from.
"""

from __future__ import annotations

import attrs

from reference.layer import Inode, Kind


@attrs.define(eq=False)
class Node:
    """One name of the merged view.

    ``lowers`` is the lower directory stack (top first) for a directory, and the single
    lower object for a non-directory that has one. ``lower_layers`` gives the index of the
    lower layer each entry of ``lowers`` came from.
    """

    name: str
    parent: Node | None
    upper: Inode | None
    lowers: list[Inode]
    lower_layers: list[int]

    @property
    def path(self) -> str:
        if self.parent is None:
            return ""
        prefix = self.parent.path
        return f"{prefix}/{self.name}" if prefix else self.name

    @property
    def top(self) -> Inode:
        """The object whose type and metadata the merged view shows."""
        return self.upper if self.upper is not None else self.lowers[0]

    @property
    def kind(self) -> Kind:
        return self.top.kind

    @property
    def is_dir(self) -> bool:
        return self.top.is_dir

    @property
    def lower(self) -> Inode | None:
        return self.lowers[0] if self.lowers else None

    @property
    def is_merged(self) -> bool:
        """OVL_TYPE_MERGE for a directory: an upper dir with lowers, or several lowers."""
        if self.upper is not None:
            return bool(self.lowers)
        return len(self.lowers) > 1

    @property
    def is_pure_upper(self) -> bool:
        return self.upper is not None and not self.lowers


@attrs.frozen
class Found:
    """The result of looking one name up in a directory node."""

    node: Node | None
    #: The upper directory holds a whiteout at this name (a mkdir here makes an opaque dir).
    upper_whiteout: bool = False


def lookup_child(parent: Node, name: str, lower_roots: list[Inode]) -> Found:
    """Look ``name`` up in the directory ``parent``."""
    upper: Inode | None = None
    redirect: str | None = None
    if parent.upper is not None:
        entry = parent.upper.entries.get(name)
        if entry is not None:
            if entry.kind is Kind.WHITEOUT:
                return Found(None, upper_whiteout=True)
            upper = entry
            if entry.is_dir:
                if entry.opaque:
                    return Found(Node(name, parent, upper, [], []))
                redirect = entry.redirect
            elif not entry.metacopy:
                return Found(Node(name, parent, upper, [], []))
            else:
                # metacopy: the data lives in the object it was copied up from.
                origin = entry.origin
                return Found(Node(name, parent, upper, [origin] if origin else [], [0]))

    lowers: list[Inode] = []
    layers: list[int] = []
    if redirect is not None and redirect.startswith("/"):
        # namei.c: an absolute redirect restarts the search at every lower layer's root.
        candidates = [
            (index, _walk_absolute(root, redirect)) for index, root in enumerate(lower_roots)
        ]
    else:
        wanted = redirect if redirect is not None else name
        candidates = [
            (index, (directory.entries.get(wanted), False))
            for directory, index in zip(parent.lowers, parent.lower_layers, strict=True)
        ]
    last_layer = len(lower_roots) - 1
    for index, (this, stop_after) in candidates:
        if this is None:
            if stop_after:
                break
            continue
        if this.kind is Kind.WHITEOUT:
            break
        if not this.is_dir:
            if upper is None and not lowers:
                lowers, layers = [this], [index]
            break
        if upper is not None and not upper.is_dir:
            break
        lowers.append(this)
        layers.append(index)
        if stop_after or (this.opaque and index != last_layer):
            break
    if upper is None and not lowers:
        return Found(None)
    return Found(Node(name, parent, upper, lowers, layers))


def _walk_absolute(root: Inode, path: str) -> tuple[Inode | None, bool]:
    """Walk an absolute redirect in one lower layer: (the object, stop lower layers after)."""
    node: Inode | None = root
    stop = False
    *parents, last = path.strip("/").split("/")
    for part in parents:
        node = node.entries.get(part) if node is not None else None
        if node is None or not node.is_dir:
            return None, stop or node is not None
        if node.opaque:
            stop = True
    if node is None:
        return None, stop
    return node.entries.get(last), stop
