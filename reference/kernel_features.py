"""What depends on the kernel's version, as data: each feature with the release it
appeared in, the upstream commit and the document that says so.

The suite's rules are the same on every kernel it was run on (docs/kernels.md: 6.1, 6.12
and 7.2 give the same verdicts); what differs between these kernels is around overlay, not
in its semantics: how a mount may name its lower layers, and what the file system under
the layers accepts. A VM on a given kernel (adapters.vm) observes each feature at boot
(adapters/vm/probes.py); a report records observed against expected (:func:`expected`),
and :func:`disagreements` names any difference, so a wrong entry here shows.
"""

from __future__ import annotations

import re

import attrs


@attrs.frozen
class KernelFeature:
    #: The name the probes and reports use.
    name: str
    #: What a kernel with the feature does that one without does not.
    what: str
    #: The first mainline release with it (major, minor).
    since: tuple[int, int]
    #: The upstream commit that added it.
    commit: str
    #: Where that is written.
    source: str
    #: Stable series that got it in one of their point releases: a release of such a
    #: series may or may not have it (:func:`expected` is None there).
    backported_to: tuple[tuple[int, int], ...] = ()


FEATURES: tuple[KernelFeature, ...] = (
    KernelFeature(
        name="lowerdir+",
        what="overlay mounts take lowerdir+=DIR (and datadir+=DIR), one lower layer per "
        "option; older kernels refuse the mount (EINVAL, unknown parameter)",
        since=(6, 8),
        commit="24e16e385f22 (ovl: add support for appending lowerdirs one by one)",
        source="Documentation/filesystems/overlayfs.rst: 'Since kernel version v6.8, "
        "directory names containing colons can also be configured as lower layer using "
        "the \"lowerdir+\" mount options'",
        # taken into 6.6.y as a Stable-dep-of 2824083db76c ("ovl: Always reject mounting
        # over case-insensitive directories"), March 2024
        backported_to=((6, 6),),
    ),
    KernelFeature(
        name="tmpfs-user-xattrs",
        what="tmpfs accepts user.* extended attributes; older kernels give ENOTSUP (so the "
        "VM's layers are on ext2 on every kernel, docs/kernels.md)",
        since=(6, 6),
        commit="2daf18a7884d (tmpfs,xattr: enable limited user extended attributes)",
        source="Documentation/filesystems/tmpfs.rst (tmpfs supports user xattrs, since the "
        "vfs.tmpfs merge for 6.6)",
    ),
)

BY_NAME = {feature.name: feature for feature in FEATURES}


def version_of(release: str) -> tuple[int, int]:
    """``6.12.118+deb12-amd64`` -> (6, 12): the mainline series of a release string."""
    found = re.match(r"(\d+)\.(\d+)", release)
    if found is None:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(found.group(1)), int(found.group(2))


def expected(name: str, release: str) -> bool | None:
    """Whether the kernel ``release`` has the feature: True from :attr:`since` on, False
    before, None in a series it was backported to (it depends on the point release)."""
    feature = BY_NAME[name]
    series = version_of(release)
    if series >= feature.since:
        return True
    if series in feature.backported_to:
        return None
    return False


def disagreements(release: str, observed: dict[str, bool]) -> list[str]:
    """Each observed feature that the data says otherwise of, in one line each."""
    found = []
    for name, has in sorted(observed.items()):
        if name not in BY_NAME:
            found.append(f"{name}: observed on {release}, not in reference/kernel_features.py")
            continue
        wanted = expected(name, release)
        if wanted is not None and wanted != has:
            since = ".".join(map(str, BY_NAME[name].since))
            found.append(
                f"{name}: {'present' if has else 'absent'} on {release}, but the reference "
                f"says it appeared in {since}"
            )
    return found
