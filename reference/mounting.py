"""Mount-time validation: which option sets and layer shapes an overlay mount refuses, and
with which errno (the reference's rules; conformance/lockstep/mount_validation.py holds the
cases and runs them on a driver).

A :class:`MountSpec` names its layers as paths below a scratch directory; ``dirs`` and
``files`` say what exists there (``other_fs``: directories on a second filesystem). The
rules are checked in the kernel's order (fs/overlayfs/params.c ``ovl_parse_param`` while
the options are parsed, then ``ovl_fs_params_verify``, then super.c ``ovl_fill_super``
looking the layers up), so the first one that applies gives the errno. Sources: overlayfs.rst,
xfstests overlay/035-037, 065, 083, 086, and what this kernel did (docs/mount-validation.md,
``obs M.*`` of the notes).
"""

from __future__ import annotations

import attrs

#: Every feature option and the values it takes (params.c ``ovl_parameter_spec``).
VALUES: dict[str, frozenset[str]] = {
    "redirect_dir": frozenset({"on", "off", "follow", "nofollow"}),
    "index": frozenset({"on", "off"}),
    "metacopy": frozenset({"on", "off"}),
    "nfs_export": frozenset({"on", "off"}),
    "xino": frozenset({"on", "off", "auto"}),
    "uuid": frozenset({"on", "off", "null", "auto"}),
    "userxattr": frozenset({""}),
    "volatile": frozenset({""}),
}


@attrs.frozen
class MountSpec:
    """One mount attempt. ``lowers`` top first; ``data``: data-only lower layers (the
    ``lowerdir=a::d`` form, or ``datadir+=`` with ``new_api``); ``options``: feature
    options as ``key=value`` (or a bare flag)."""

    lowers: tuple[str, ...]
    upper: str | None = None
    work: str | None = None
    data: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    other_fs: tuple[str, ...] = ()
    #: ``lowerdir+=``/``datadir+=`` one layer per option (v6.8) instead of ``lowerdir=``;
    #: ``datadir_first`` puts a ``datadir+=`` before the first ``lowerdir+=``.
    new_api: bool = False
    datadir_first: bool = False

    def option_string(self, root: str) -> str:
        """The mount(2) data: every path below ``root``."""
        at = f"{root}/".__add__
        if self.new_api:
            lower = [f"lowerdir+={at(p)}" for p in self.lowers]
            data = [f"datadir+={at(p)}" for p in self.data]
            parts = [*data, *lower] if self.datadir_first else [*lower, *data]
        else:
            joined = ":".join(at(p) for p in self.lowers)
            joined += "".join(f"::{at(p)}" for p in self.data)
            parts = [f"lowerdir={joined}"] if self.lowers or self.data else []
        if self.upper is not None:
            parts.append(f"upperdir={at(self.upper)}")
        if self.work is not None:
            parts.append(f"workdir={at(self.work)}")
        return ",".join([*parts, *self.options])


def _values(spec: MountSpec) -> dict[str, str]:
    out: dict[str, str] = {}
    for option in spec.options:
        key, _, value = option.partition("=")
        out[key] = value
    return out


def _inside(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def mount_result(spec: MountSpec, redirect_always_follow: bool = True) -> str:
    """``"ok"`` or the errno name the mount gives. ``redirect_always_follow``: the module
    parameter (Y on this kernel's build), which turns ``redirect_dir=off`` into follow."""
    values = _values(spec)
    # params.c ovl_parse_param: an unknown option or value (obs M.17)
    for key, value in values.items():
        if key not in VALUES or value not in VALUES[key]:
            return "EINVAL"
    # params.c: datadir+ before any lowerdir+, or "::" before the first lower (xfs 086,
    # obs M.22, M.24)
    if spec.datadir_first or (spec.data and not spec.lowers):
        return "EINVAL"
    # params.c ovl_parse_layer / ovl_mount_dir: each layer path is looked up as it is
    # parsed; a missing one is ENOENT, one that is not a directory EINVAL (obs M.12, M.13)
    layers = [*spec.lowers, *spec.data, *filter(None, (spec.upper, spec.work))]
    for path in layers:
        if path in spec.files:
            return "EINVAL"
        if path not in spec.dirs and path not in spec.other_fs:
            return "ENOENT"
    # params.c ovl_fs_params_verify
    if not spec.lowers:
        return "EINVAL"  # obs M.11
    if spec.upper is not None and spec.work is None:
        return "EINVAL"  # "missing 'workdir'", obs M.10
    if spec.upper is None and len(spec.lowers) + len(spec.data) < 2:
        return "EINVAL"  # "at least 2 lowerdir are needed while upperdir nonexistent", M.20
    redirect = values.get("redirect_dir", "off")
    if redirect == "off" and redirect_always_follow:
        redirect = "follow"  # doc "Redirect dir": off falls back to follow
    metacopy = values.get("metacopy") == "on"
    nfs_export = values.get("nfs_export") == "on"
    if nfs_export and values.get("index") == "off":
        return "EINVAL"  # doc "NFS export": nfs_export needs index (obs M.14)
    if metacopy and nfs_export:
        return "EINVAL"  # doc "Metadata only copy up" (obs M.16)
    if metacopy and "redirect_dir" in values and redirect != "on":
        return "EINVAL"  # "conflicting options: metacopy=on,redirect_dir=..." (obs M.15)
    if "userxattr" in values and (
        metacopy or ("redirect_dir" in values and redirect in ("on", "follow"))
    ):
        # userxattr: no redirects followed nor metacopy (obs M.18, M.19); without an
        # explicit redirect_dir it mounts redirect_dir=nofollow
        return "EINVAL"
    # super.c ovl_get_workdir: workdir and upperdir on one mount, separate subtrees
    if spec.upper is not None and spec.work is not None:
        if (spec.upper in spec.other_fs) != (spec.work in spec.other_fs):
            return "EINVAL"  # obs M.9
        if _inside(spec.work, spec.upper) or _inside(spec.upper, spec.work):
            return "EINVAL"  # obs M.7, M.8
    # super.c ovl_check_layer / ovl_setup_trap: a layer inside another in use gives ELOOP
    # (xfs 065: lower == upper, a lower twice, a lower inside upper; upper inside a lower
    # is allowed)
    lowers = [*spec.lowers, *spec.data]
    if len(set(lowers)) != len(lowers):
        return "ELOOP"
    if spec.upper is not None and any(_inside(low, spec.upper) for low in lowers):
        return "ELOOP"
    return "ok"
