"""What a driver claims, read from its profile (adapters/profile.py); no profile claims all.

A cell the profile does not claim is reported as unclaimed, never as passing; an upper
layer the profile says cannot be decoded is not compared (the merged view, its persistence
across remount and the untouched lowers still are).
"""

from __future__ import annotations

from adapters.base import Driver
from reference.options import Options


def unclaimed_reason(driver: Driver, options: Options) -> str | None:
    profile = getattr(driver, "profile", None)
    if profile is None or profile.supports(options):
        return None
    return f"{options.label} is not claimed by the {profile.name} profile"


def compares_upper(driver: Driver) -> bool:
    profile = getattr(driver, "profile", None)
    return profile is None or profile.upper_decodable
