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

    def __attrs_post_init__(self) -> None:
        # overlayfs.rst "Metadata only copy up": metacopy needs redirect_dir=on (EINVAL otherwise).
        if self.metacopy and not self.redirect_dir:
            raise ValueError("metacopy=on requires redirect_dir=on (the kernel refuses it)")

    @property
    def allows_offline_changes(self) -> bool:
        """overlayfs.h ovl_allow_offline_changes: only without the "new features"
        (index, metacopy, redirect_dir=on, xino=on; we always mount xino=off) may the lower
        layers change offline (doc "Changes to underlying filesystems")."""
        return not (self.index or self.metacopy or self.redirect_dir)

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
            f"redirect_dir={'on' if self.redirect_dir else 'off'}",
            f"index={'on' if self.index else 'off'}",
        ]
        if self.metacopy:
            parts.append("metacopy=on")
        return ",".join(parts)


#: The option matrix every driver is run under.
MATRIX: tuple[Options, ...] = (
    Options(redirect_dir=False, index=False),
    Options(redirect_dir=True, index=False),
    Options(redirect_dir=False, index=True),
    Options(redirect_dir=True, index=True),
    Options(redirect_dir=True, index=False, metacopy=True),
    Options(read_only=True),
)
