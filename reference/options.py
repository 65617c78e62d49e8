"""Overlay feature options of one mount (kernel doc: Documentation/filesystems/overlayfs.rst)."""

from __future__ import annotations

import attrs


@attrs.frozen
class Options:
    """The options under test, always passed explicitly to the driver.

    Module defaults differ between kernel builds (this kernel: redirect_dir=N, index=N,
    metacopy=N), so no rule may depend on a default.
    """

    redirect_dir: bool = False
    index: bool = False
    metacopy: bool = False
    #: No upper layer: the mount is read-only and every write gives EROFS.
    read_only: bool = False
    #: ``userxattr``: the overlay's xattrs are ``user.overlay.*`` (doc "Permission model",
    #: v5.11, what rootless podman mounts in a user namespace); mounted with
    #: ``redirect_dir=nofollow``, the only redirect_dir it takes (below).
    userxattr: bool = False
    #: A layer form, not a mount option: the lower layers hold whiteouts in the xattr form
    #: too (``overlay.whiteout`` on a zero-size file, parent ``overlay.opaque=x``, v6.7+).
    xwhiteouts: bool = False
    #: The bottom lower layer is data-only (``lowerdir=l0:l1::l2``, doc "Data-only lower
    #: layers", v6.5): its names are not in the merged view; the lowest other lower layer
    #: may hold metacopy stubs whose absolute redirect names a file there.
    data_only: bool = False
    #: ``xino=on`` (doc "Inode properties"): st_ino of a lower object keeps its number with
    #: the layer's fsid in the high bits, so numbers stay unique across filesystems.
    xino: bool = False
    #: A layer shape: each lower layer on a filesystem of its own (a tmpfs), the upper on
    #: another one.
    separate_fs: bool = False

    def __attrs_post_init__(self) -> None:
        # overlayfs.rst "Metadata only copy up": metacopy needs redirect_dir=on (EINVAL otherwise).
        if self.metacopy and not self.redirect_dir:
            raise ValueError("metacopy=on requires redirect_dir=on (the kernel refuses it)")
        # params.c ovl_fs_params_verify: userxattr refuses redirect_dir=on and follow (and
        # off, which redirect_always_follow=Y makes follow) and metacopy=on: EINVAL (obs
        # M.18, M.19; checked on 6.18, docs/mount-validation.md)
        if self.userxattr and (self.redirect_dir or self.metacopy):
            raise ValueError("userxattr takes neither redirect_dir=on nor metacopy=on (EINVAL)")

    @property
    def redirect_dir_value(self) -> str:
        """The ``redirect_dir=`` this option set mounts with: on, off, or nofollow with
        userxattr (obs M.18: userxattr with off gives EINVAL on this kernel)."""
        if self.redirect_dir:
            return "on"
        return "nofollow" if self.userxattr else "off"

    @property
    def allows_offline_changes(self) -> bool:
        """overlayfs.h ovl_allow_offline_changes: only without the "new features"
        (index, metacopy, redirect_dir=on, xino=on) may the lower layers change offline
        (doc "Changes to underlying filesystems")."""
        return not (self.index or self.metacopy or self.redirect_dir or self.xino)

    @property
    def test_id(self) -> str:
        """The label in a form pytest's ``-k`` accepts: ``redirect_dir-on+index-off``."""
        return self.label.replace("=", "-").replace(",", "+")

    @property
    def label(self) -> str:
        """A short stable id, used in test ids and reports."""
        if self.read_only:
            return "ro"
        parts = [
            f"redirect_dir={self.redirect_dir_value}",
            f"index={'on' if self.index else 'off'}",
        ]
        if self.metacopy:
            parts.append("metacopy=on")
        if self.userxattr:
            parts.append("userxattr")
        if self.xwhiteouts:
            parts.append("xwhiteouts")
        if self.data_only:
            parts.append("data-only")
        if self.xino:
            parts.append("xino=on")
        if self.separate_fs:
            parts.append("separate-fs")
        return ",".join(parts)


#: The option matrix every driver is run under.
MATRIX: tuple[Options, ...] = (
    Options(redirect_dir=False, index=False),
    Options(redirect_dir=True, index=False),
    Options(redirect_dir=False, index=True),
    Options(redirect_dir=True, index=True),
    Options(redirect_dir=True, index=False, metacopy=True),
    Options(read_only=True),
    Options(userxattr=True),
    Options(xwhiteouts=True),
    Options(data_only=True),
    Options(redirect_dir=True, metacopy=True, data_only=True),
    Options(xino=True, separate_fs=True),
)
