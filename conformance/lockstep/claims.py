"""What a driver claims: its declared capabilities (adapters.base.Capabilities, from its
profile for a FUSE driver); a driver without claims of its own claims all.

A cell the profile does not claim is reported as unclaimed, never as passing; an upper
layer the profile says cannot be decoded is not compared (the merged view, its persistence
across remount and the untouched lowers still are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import Driver
from reference import ops
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
    if feature is not None and feature.id == "permissions" and not claims.permissions:
        return (
            f"callers other than root are not claimed by the {claims.claimed_by} profile"
            " (permissions = false)"
        )
    if feature is not None and feature.id == "times" and not claims.times:
        return f"times are not claimed by the {claims.claimed_by} profile (times = false)"
    return None


def callers(driver: Driver, feature: Feature | None) -> tuple[str, ...]:
    """Who the operations of a cell run as: every caller of ``reference.ops.CALLERS`` in
    the permissions feature and the whole machine when the driver claims them, else
    root only (what every other feature checks, with the draws it always made)."""
    if not driver.capabilities.permissions:
        return ("root",)
    if feature is not None and feature.id == "permissions":
        return tuple(ops.CALLERS)
    if feature is None:  # the whole machine: root most of the time, so that refusals do
        return ("root",) * 4 + tuple(c for c in ops.CALLERS if c != "root")  # not dilute it
    return ("root",)


#: The rules of the machine that only a driver claiming times is given.
TIME_RULES = frozenset({"utimens"})


def claims_times(driver: Driver) -> bool:
    """Whether the profile claims times (``times = true``, the default); without, no
    utimensat calls and no time relations in any feature (the whole machine included)."""
    return driver.capabilities.times


def claims_xattrs(driver: Driver) -> bool:
    """Whether the profile claims user.* xattrs. A profile with ``xattrs = false`` gets no
    xattr operations in any feature, and the view's xattrs are not compared (they cannot
    be seen through such a mount)."""
    return driver.capabilities.xattrs


def compares_upper(driver: Driver) -> bool:
    return driver.capabilities.upper_decodable
