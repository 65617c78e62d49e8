"""A model's upper layer rebuilt from what a driver wrote: resynchronisation after a
recorded difference the engine cannot state as a rule (conformance.records.behaviours).

The lower layers never change (doc "Upper and Lower"), so an overlay's state is its upper
layer (and, with index=on, its index, which is not rebuilt: such a model cannot be
resynchronised). The decoded upper image gives every object, marker and hardlink group;
what the image cannot say is the origin of a copied-up object (trusted.overlay.origin is
not decoded), taken here as the lower object at the same path when it has the same type.
"""

from __future__ import annotations

from reference.errors import SpecError
from reference.layer import Inode, Kind, entry_at
from reference.overlay import Overlay
from reference.view import LayerImage

_KINDS = {kind.value: kind for kind in Kind}


class CannotRebuild(SpecError, ValueError):
    """The model cannot take the driver's state (the message says why)."""


def rebuild_upper(model: Overlay, image: LayerImage) -> None:
    """Replace ``model``'s upper layer with the objects of ``image``."""
    if model.upper is None:
        return  # read-only: nothing but the lowers, which never change
    if model.options.index:
        raise CannotRebuild("index=on: the index is not decoded")
    if any(handle is not None for handle in model.handles):
        raise CannotRebuild("open descriptors: their objects would not be the rebuilt ones")
    old = model.upper
    # the image has no entry for the root: its attributes stay the model's
    root = Inode(
        Kind.DIR, mode=old.mode, uid=old.uid, gid=old.gid, xattrs=dict(old.xattrs),
        opaque=old.opaque, redirect=old.redirect,
    )
    shared: dict[frozenset[str], Inode] = {}
    group_of = {path: group for group in image.links for path in group}
    for path in sorted(image.entries, key=lambda p: (p.count("/"), p)):
        entry = image.entries[path]
        kind = _KINDS.get(entry.kind)
        if kind is None:
            raise CannotRebuild(f"upper {path!r}: a {entry.kind!r} has no model")
        *parents, name = path.split("/")
        parent = root
        for part in parents:
            child = parent.entries.get(part)
            if child is None or not child.is_dir:
                raise CannotRebuild(f"upper {path!r}: its parent is not a directory")
            parent = child
        group = group_of.get(path)
        if group is not None and group in shared:
            parent.entries[name] = shared[group]
            continue
        inode = Inode(
            kind,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            xattrs=dict(entry.xattrs),
            data=entry.data or b"",
            target=entry.target,
            opaque=entry.opaque,
            redirect=entry.redirect,
            metacopy=entry.metacopy,
            xattr_whiteout=entry.xattr_whiteout,
            xwhiteouts=entry.xwhiteouts,
        )
        if kind is not Kind.WHITEOUT and kind is not Kind.DIR:
            inode.origin = _lower_at(model, path, kind)
            if entry.metacopy and inode.origin is None:
                raise CannotRebuild(f"upper {path!r}: a metacopy file without its lower")
        if group is not None:
            shared[group] = inode
        parent.entries[name] = inode
    model.upper = root
    model.upper_replaced()


def _lower_at(model: Overlay, path: str, kind: Kind) -> Inode | None:
    """The top lower object at ``path``, when it is of ``kind`` (the copy's origin)."""
    for root in model.lowers:
        node = entry_at(root, path)
        if node is not None:
            return node if node.kind is kind else None
    return None
