"""Mount validation as scenarios: option sets and layer shapes with the result the
reference's rules give (reference/mounting.py), checked against a driver that can try a
mount (the kernel driver's ``try_mount``). Ideas from xfstests overlay/035-037, 065, 083,
086; what this kernel did: docs/mount-validation.md."""

from __future__ import annotations

import attrs

from reference.mounting import MountSpec

#: The directories most cases start from.
BASIC = ("l0", "l1", "u", "w", "d")
RW = {"upper": "u", "work": "w", "dirs": BASIC}


@attrs.frozen
class MountCase:
    id: str
    spec: MountSpec
    #: What this kernel (6.18) gave; the reference must give it too (tests hold both).
    observed: str
    source: str


def _rw(*options: str, lowers: tuple[str, ...] = ("l0", "l1")) -> MountSpec:
    return MountSpec(lowers, "u", "w", options=options, dirs=BASIC)


CASES: tuple[MountCase, ...] = (
    MountCase("plain", _rw(), "ok", "doc 'Upper and Lower'"),
    MountCase("unknown-option", _rw("bogus=1"), "EINVAL", "obs M.17"),
    MountCase("bad-value", _rw("redirect_dir=bogus"), "EINVAL", "params.c fs_parse"),
    MountCase("userxattr", _rw("userxattr"), "ok", "doc 'Permission model'; obs U.*"),
    MountCase("userxattr-nofollow", _rw("userxattr", "redirect_dir=nofollow"), "ok", "obs"),
    MountCase("userxattr-redirect-on", _rw("userxattr", "redirect_dir=on"), "EINVAL", "M.18"),
    MountCase(
        "userxattr-redirect-follow",
        _rw("userxattr", "redirect_dir=follow"),
        "EINVAL",
        "params.c ovl_fs_params_verify",
    ),
    MountCase(
        "userxattr-redirect-off",
        _rw("userxattr", "redirect_dir=off"),
        "EINVAL",
        "redirect_always_follow=Y turns off into follow",
    ),
    MountCase("userxattr-metacopy", _rw("userxattr", "metacopy=on"), "EINVAL", "obs M.19"),
    MountCase("userxattr-index", _rw("userxattr", "index=on"), "ok", "observed on 6.18"),
    MountCase("userxattr-nfs-export", _rw("userxattr", "nfs_export=on"), "ok", "observed"),
    MountCase("metacopy", _rw("metacopy=on"), "ok", "doc 'Metadata only copy up'"),
    MountCase("metacopy-redirect-off", _rw("metacopy=on", "redirect_dir=off"), "EINVAL", "M.15"),
    MountCase(
        "metacopy-redirect-nofollow",
        _rw("metacopy=on", "redirect_dir=nofollow"),
        "EINVAL",
        "doc 'Metadata only copy up'",
    ),
    MountCase(
        "metacopy-redirect-follow",
        _rw("metacopy=on", "redirect_dir=follow"),
        "EINVAL",
        "doc: follow is not enough with an upper layer",
    ),
    MountCase("nfs-export-index-off", _rw("nfs_export=on", "index=off"), "EINVAL", "obs M.14"),
    MountCase("nfs-export", _rw("nfs_export=on"), "ok", "doc 'NFS export' (index turned on)"),
    MountCase("nfs-export-metacopy", _rw("nfs_export=on", "metacopy=on"), "EINVAL", "M.16"),
    MountCase("xino-on-one-fs", _rw("xino=on"), "ok", "doc 'Inode properties'"),
    MountCase("uuid-null", _rw("uuid=null"), "ok", "doc 'UUID and fsid'"),
    MountCase("lower-missing", MountSpec(("nope",), "u", "w", dirs=BASIC), "ENOENT", "M.12"),
    MountCase(
        "lower-is-a-file",
        MountSpec(("f",), "u", "w", dirs=BASIC, files=("f",)),
        "EINVAL",
        "obs M.13",
    ),
    MountCase("no-lowerdir", MountSpec((), "u", "w", dirs=BASIC), "EINVAL", "obs M.11"),
    MountCase("no-workdir", MountSpec(("l0",), "u", dirs=BASIC), "EINVAL", "obs M.10"),
    MountCase("one-lower-read-only", MountSpec(("l0",), dirs=BASIC), "EINVAL", "obs M.20"),
    MountCase("two-lowers-read-only", MountSpec(("l0", "l1"), dirs=BASIC), "ok", "doc"),
    MountCase(
        "upper-inside-lower",
        MountSpec(("l0",), "l0/up", "l0/wk", dirs=(*BASIC, "l0/up", "l0/wk")),
        "ok",
        "xfs 065",
    ),
    MountCase(
        "lower-inside-upper",
        MountSpec(("u/lo",), "u", "w", dirs=(*BASIC, "u/lo")),
        "ELOOP",
        "xfs 065",
    ),
    MountCase("same-lower-twice", _rw(lowers=("l0", "l0")), "ELOOP", "xfs 065, obs M.4"),
    MountCase("lower-is-upper", _rw(lowers=("u",)), "ELOOP", "xfs 065, obs M.3"),
    MountCase("workdir-is-upper", MountSpec(("l0",), "u", "u", dirs=BASIC), "EINVAL", "M.7"),
    MountCase(
        "workdir-in-upper",
        MountSpec(("l0",), "u", "u/w", dirs=(*BASIC, "u/w")),
        "EINVAL",
        "obs M.8",
    ),
    MountCase(
        "workdir-other-fs",
        MountSpec(("l0",), "u", "o/w", dirs=BASIC, other_fs=("o/w",)),
        "EINVAL",
        "obs M.9",
    ),
    MountCase(
        "lower-other-fs",
        MountSpec(("o/lo", "l1"), "u", "w", options=("xino=on",), dirs=BASIC, other_fs=("o/lo",)),
        "ok",
        "doc 'Inode properties'",
    ),
    MountCase(
        "data-only",
        MountSpec(("l0",), "u", "w", data=("d",), dirs=BASIC),
        "ok",
        "doc 'Data-only lower layers'",
    ),
    MountCase("data-only-read-only", MountSpec(("l0",), data=("d",), dirs=BASIC), "ok", "obs M.23"),
    MountCase(
        "data-only-first",
        MountSpec((), "u", "w", data=("d",), dirs=BASIC),
        "EINVAL",
        "xfs 086, obs M.24",
    ),
    MountCase(
        "data-only-userxattr",
        MountSpec(("l0",), "u", "w", data=("d",), options=("userxattr",), dirs=BASIC),
        "ok",
        "observed on 6.18",
    ),
    MountCase(
        "lowerdir-plus-datadir-plus",
        MountSpec(("l0", "l1"), "u", "w", data=("d",), dirs=BASIC, new_api=True),
        "ok",
        "doc (v6.8), xfs 086",
    ),
    MountCase(
        "datadir-plus-first",
        MountSpec(("l0",), "u", "w", data=("d",), dirs=BASIC, new_api=True, datadir_first=True),
        "EINVAL",
        "xfs 086, obs M.22",
    ),
)
