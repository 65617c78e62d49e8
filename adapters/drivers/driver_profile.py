"""Driver profiles as data: what a FUSE overlay driver claims, and how it writes its upper.

A profile is a TOML file a driver author writes without any Python; the presets live in
``adapters/drivers/profiles/``. Every key but ``name`` is optional; the defaults describe a driver
that behaves like the kernel. Keys:

``name`` (string, required)
    The driver's name in reports.
``template`` (string)
    The command that mounts the driver (see :mod:`adapters.drivers.fuse` for the placeholders
    ``{lowerdir}``, ``{upperdir}``, ``{workdir}``, ``{mountpoint}``, ``{options}``).
    ``--driver-cmd`` overrides it for the generic ``fuse`` driver.
``ro_template`` (string)
    The command for a read-only run (no upper, no work directory). Without it the driver
    derives one from ``template`` by dropping every comma-separated item that mentions
    ``{upperdir}`` or ``{workdir}`` and adding ``ro`` (``-o lowerdir=..,upperdir=..,workdir=..``
    becomes ``-o lowerdir=..,ro``); a template where that is impossible has no read-only
    form. Mount read-only (``-o ro``), as the kernel does without an upper layer.
``whiteout`` = ``"chardev"`` | ``"wh-file"`` | ``"opaque-unknown"`` (default chardev)
    How the upper layer records a deleted name: a 0/0 character device (the kernel's form),
    an empty ``.wh.<name>`` file, or a form this suite cannot decode (then only the merged
    view and its persistence across remount can be checked).
``opaque`` = ``"xattr"`` | ``"wh-opq"`` | ``"xattr+wh-opq"`` | ``"opaque-unknown"``
    How a directory is marked opaque: ``trusted.overlay.opaque=y``, a ``.wh..wh..opq``
    file, both (fuse-overlayfs), or an undecodable form. Default xattr.
``options`` (array of strings)
    The option sets of :data:`reference.options.MATRIX` the driver supports, by label
    (``"redirect_dir=off,index=off"``, ..., ``"ro"``). Default: all of them.
``directory_rename`` = ``"exdev"`` | ``"redirect"`` | ``"copy"`` (default redirect)
    Renaming a directory that has lower parts: always EXDEV; like the kernel (a redirect
    with ``redirect_dir=on``, EXDEV without); or the tree is copied up.
``hardlinks_on_copy_up`` = ``"break"`` | ``"keep"`` (default keep)
    Copying up one name of a lower hardlink: breaks the link on disk, or keeps the names
    linked (the kernel with ``index=on``; it breaks them with ``index=off``).
``xattrs`` (boolean, default true)
    Whether user.* extended attributes are supported through the mount.
``permissions`` (boolean, default false)
    Whether callers other than root are claimed (feature ``permissions``; issue 18): the
    template must let other users in (``allow_other``). Without it every operation runs
    as root, as before callers existed.
``times`` (boolean, default true)
    Whether mtime and ctime follow the kernel's rules through the mount and utimensat
    works: the ``times`` feature and the whole machine compare them.
``private_xattrs`` (array of strings)
    Prefixes of ``user.*`` xattr names the driver keeps for itself on disk (hidden from
    the mount), left out when its layers are decoded; e.g. ``["user.fuseoverlayfs."]``.
``env`` (table of strings)
    Extra environment for the driver's process, e.g.
    ``{ FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT = "1" }``.
``variants`` (array of strings)
    Recorded behaviours of the driver that are rules of the engine
    (:mod:`reference.variants`): the lockstep model follows them, so the comparison
    expects them (each is recorded in ``conformance/records/expectations.toml``).
``version_command`` (string)
    A command that prints the driver's version (recorded with verdicts and expectations).

Unknown keys and wrong types are refused with a one-line :class:`DriverProfileError` naming the
key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from adapters.base import AdapterError, Capabilities
from adapters.sandbox.layerdisk import DiskFormat
from reference.options import MATRIX, Options

WHITEOUT_FORMS = ("chardev", "wh-file", "opaque-unknown")
OPAQUE_FORMS = ("xattr", "wh-opq", "xattr+wh-opq", "opaque-unknown")
DIRECTORY_RENAMES = ("exdev", "redirect", "copy")
HARDLINK_BEHAVIOURS = ("break", "keep")
OPTION_LABELS = tuple(options.label for options in MATRIX)


class DriverProfileError(AdapterError, ValueError):
    """A profile file that cannot be used; the message is one line naming the key."""


@attrs.frozen
class DriverProfile:
    """What a driver claims (see the module docstring for each field)."""

    name: str
    template: str = ""
    ro_template: str | None = None
    whiteout: str = "chardev"
    opaque: str = "xattr"
    options: tuple[str, ...] = OPTION_LABELS
    directory_rename: str = "redirect"
    hardlinks_on_copy_up: str = "keep"
    xattrs: bool = True
    permissions: bool = False
    times: bool = True
    private_xattrs: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    version_command: str = ""
    variants: tuple[str, ...] = ()
    #: Where the profile was loaded from (None when built in Python).
    source: str | None = attrs.field(default=None, eq=False)

    def supports(self, options: Options) -> bool:
        """Whether the profile claims the option set ``options``."""
        return options.label in self.options

    @property
    def upper_decodable(self) -> bool:
        """Whether the upper layer's markers can be decoded (else only the view counts)."""
        return self.whiteout != "opaque-unknown" and self.opaque != "opaque-unknown"

    @property
    def kernel_form(self) -> bool:
        """Whether the upper is written in the kernel's form (chardev whiteouts, opaque
        xattr): the kernel reads it."""
        return self.whiteout == "chardev" and self.opaque in ("xattr", "xattr+wh-opq")

    def claims(self, capabilities: Capabilities) -> Capabilities:
        """``capabilities`` (a driver's own) with what this profile claims."""
        return attrs.evolve(
            capabilities,
            options=self.options,
            claimed_by=self.name,
            xattrs=self.xattrs,
            permissions=self.permissions,
            times=self.times,
            upper_decodable=self.upper_decodable,
            kernel_form=self.kernel_form,
            upper_form=f"whiteout {self.whiteout}, opaque {self.opaque}",
        )

    @property
    def disk_format(self) -> DiskFormat:
        """How :func:`adapters.sandbox.layerdisk.read_layer` decodes this driver's layers."""
        return DiskFormat(
            whiteout_files=self.whiteout == "wh-file",
            opaque_sentinel=self.opaque in ("wh-opq", "xattr+wh-opq"),
            private_xattrs=self.private_xattrs,
        )


_STRING_KEYS = ("name", "template", "ro_template", "version_command")
_CHOICES: dict[str, tuple[str, ...]] = {
    "whiteout": WHITEOUT_FORMS,
    "opaque": OPAQUE_FORMS,
    "directory_rename": DIRECTORY_RENAMES,
    "hardlinks_on_copy_up": HARDLINK_BEHAVIOURS,
}
KEYS = (
    *_STRING_KEYS, *_CHOICES, "options", "xattrs", "permissions", "times", "private_xattrs",
    "env",
    "variants",
)


def _type_name(value: object) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def driver_profile_from_dict(data: dict[str, Any], source: str = "<profile>") -> DriverProfile:
    """Check ``data`` (a parsed TOML table) and build the :class:`DriverProfile`."""

    def fail(message: str) -> DriverProfileError:
        return DriverProfileError(f"{source}: {message}")

    for key in data:
        if key not in KEYS:
            raise fail(f"unknown key {key!r} (known: {', '.join(KEYS)})")
    if "name" not in data:
        raise fail("missing key 'name'")
    fields: dict[str, Any] = {}
    for key in _STRING_KEYS:
        if key in data:
            if not isinstance(data[key], str):
                raise fail(f"key {key!r} must be a string, not {_type_name(data[key])}")
            fields[key] = data[key]
    if not fields["name"].strip():
        raise fail("key 'name' must not be empty")
    for key, choices in _CHOICES.items():
        if key in data:
            value = data[key]
            if not isinstance(value, str):
                raise fail(f"key {key!r} must be a string, not {_type_name(value)}")
            if value not in choices:
                raise fail(f"key {key!r} must be one of {', '.join(choices)} (not {value!r})")
            fields[key] = value
    for key in ("options", "private_xattrs", "variants"):
        if key in data:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(f"key {key!r} must be an array of strings")
            fields[key] = tuple(value)
    for label in fields.get("options", ()):
        if label not in OPTION_LABELS:
            raise fail(
                f"key 'options': unknown option set {label!r} (known: {', '.join(OPTION_LABELS)})"
            )
    for prefix in fields.get("private_xattrs", ()):
        if not prefix.startswith("user."):
            raise fail(f"key 'private_xattrs': {prefix!r} is not a user.* prefix")
    if fields.get("variants"):
        from reference.variants import VariantError, check

        try:
            check(fields["variants"], "key 'variants'")
        except VariantError as problem:
            raise fail(str(problem)) from None
    for key in ("xattrs", "permissions", "times"):
        if key in data:
            if not isinstance(data[key], bool):
                raise fail(f"key {key!r} must be a boolean, not {_type_name(data[key])}")
            fields[key] = data[key]
    if "env" in data:
        env = data["env"]
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise fail("key 'env' must be a table of strings")
        fields["env"] = dict(env)
    return DriverProfile(source=source, **fields)


def load_driver_profile(path: str | Path) -> DriverProfile:
    """Read and check the profile at ``path`` (a :class:`DriverProfileError` if it is unusable)."""
    return driver_profile_from_dict(read_toml(path, DriverProfileError), str(path))


def read_toml(path: str | Path, error: type[ValueError]) -> dict[str, Any]:
    """The TOML file at ``path``; an unreadable or invalid file raises ``error`` with one
    line naming the file (shared by profiles and conformance/records/expectations.toml)."""
    from adapters.input_files import InputError, read_text

    try:
        return tomllib.loads(read_text(path))
    except InputError as exc:
        raise error(str(exc)) from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
