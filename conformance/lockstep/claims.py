"""What a driver claims: its declared capabilities (adapters.base.Capabilities, from its
profile for a FUSE driver); a driver without claims of its own claims all.

A cell the profile does not claim is reported as unclaimed, never as passing; an upper
layer the profile says cannot be decoded is not compared (the merged view, its persistence
across remount and the untouched lowers still are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import Driver
from reference.options import Options

if TYPE_CHECKING:
    from conformance.features import Feature

#: The rules of the machine that need user.* xattrs through the mount.
XATTR_RULES = frozenset({"setxattr", "getxattr", "listxattr", "removexattr"})


def unclaimed_reason(
    driver: Driver, options: Options, feature: Feature | None = None
) -> str | None:
    """Why the cell (a feature of it, when given) is not claimed by the driver's profile."""
    claims = driver.capabilities
    if claims.options is not None and options.label not in claims.options:
        return f"{options.label} is not claimed by the {claims.claimed_by} profile"
    if feature is not None and feature.id == "xattrs" and not claims.xattrs:
        return f"xattrs are not claimed by the {claims.claimed_by} profile (xattrs = false)"
    return None


def claims_xattrs(driver: Driver) -> bool:
    """Whether the profile claims user.* xattrs. A profile with ``xattrs = false`` gets no
    xattr operations in any feature, and the view's xattrs are not compared (they cannot
    be seen through such a mount)."""
    return driver.capabilities.xattrs


def compares_upper(driver: Driver) -> bool:
    return driver.capabilities.upper_decodable
