"""FUSE overlay drivers: a generic command-template driver and the Debian presets.

:class:`FuseDriver` runs any FUSE overlay driver from a command template, with the kernel
driver's architecture (:mod:`adapters.sandbox.namespace`): one executor in a private mount
namespace with a private tmpfs, every operation in a chroot of the mount, a per-request
timeout. Only the mount step differs (:mod:`adapters.sandbox.fusemount`): the executor runs the
command (in its own process group, inside a PID namespace that dies with the executor),
waits until the mount appears in ``/proc/self/mountinfo``, and at unmount runs
``fusermount3 -u``, then ``umount -l``, then kills what is left by PID.

The template is split like a shell would (``shlex``; no shell runs it) and each word is
filled in with:

* ``{lowerdir}``: the lower directories, colon-joined, top layer first;
* ``{upperdir}``, ``{workdir}``: the upper and (empty) work directories;
* ``{mountpoint}``: where to mount (required);
* ``{options}``: each overlay option under test with a leading comma
  (``,redirect_dir=off,index=off``; ``,metacopy=on`` is added when on).

Read-only runs (no upper): the profile's ``ro_template`` if it has one; otherwise the
template with every comma-separated item that mentions ``{upperdir}`` or ``{workdir}``
dropped and ``ro`` added (``-o lowerdir={lowerdir},upperdir={upperdir},workdir={workdir}{options}``
becomes ``-o lowerdir={lowerdir},ro{options}``). The FUSE mount must be read-only itself,
as the kernel's overlay without upper is (SB_RDONLY): otherwise the VFS looks the last
name up before the driver can refuse, and ``rmdir`` of a missing name gives ENOENT where
the kernel gives EROFS (checked by hand with fuse-overlayfs and unionfs-fuse). When a
word would be left empty or still mention them, the template has no read-only form and a
read-only mount fails saying so.

Failures: a command that exits before mounting or never mounts is a :class:`DriverFailure`
with its last stderr line; a driver whose mount answers ENOTCONN is a
``DriverFailure("... crashed ...")``; one that does not answer is :class:`DriverHung`.
An option set the profile does not claim is refused at mount with :class:`NotClaimed`.

Presets (registry names ``fuse-overlayfs``, ``unionfs-fuse``) are FuseDriver plus a profile
from ``adapters/drivers/profiles/``; ``--profile`` replaces it, ``--driver-cmd`` sets the template
of the generic ``fuse`` driver (the run's :class:`adapters.settings.DriverSettings`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import AdapterError, DriverFailure, DriverUnavailable
from adapters.drivers.driver_profile import DriverProfile, load_driver_profile
from adapters.sandbox.layerdisk import DiskFormat
from adapters.sandbox.namespace import SandboxedDriver
from reference.layer import StackSpec
from reference.options import Options

PLACEHOLDERS = ("lowerdir", "upperdir", "workdir", "mountpoint", "options")
#: How long the executor waits for a started command to show up in mountinfo.
MOUNT_WAIT = 15.0
PROFILES = Path(__file__).resolve().parent / "profiles"
CAP_SYS_ADMIN = 21


class TemplateError(AdapterError, ValueError):
    """A command template that cannot be used (the message is one line)."""


class NotClaimed(DriverFailure):
    """The option set is not among those the driver's profile claims."""


def parse_template(template: str) -> list[str]:
    """Split and check a command template; return its words (placeholders unfilled)."""
    if "\n" in template.strip():
        raise TemplateError("the command template must be one line")
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise TemplateError(f"cannot split the command template: {exc}") from None
    if not words:
        raise TemplateError("the command template is empty")
    used: set[str] = set()
    for word in words:
        try:
            parsed = list(string.Formatter().parse(word))
        except ValueError as exc:
            raise TemplateError(f"bad braces in {word!r}: {exc} (write {{{{ for a brace)") from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                raise TemplateError(
                    f"unknown placeholder {{{field}}} in the command template "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
            if spec or conversion:
                raise TemplateError(f"placeholder {{{field}}} takes no format spec or conversion")
            used.add(field)
    if "{" in words[0]:
        raise TemplateError(f"the program name must be literal, not {words[0]!r}")
    for required in ("mountpoint", "lowerdir"):
        if required not in used:
            raise TemplateError(f"the command template has no {{{required}}}")
    return words


def read_only_words(words: list[str]) -> list[str] | None:
    """The template without its upper and work directories, or None when impossible."""
    result = []
    for word in words:
        if "{upperdir}" not in word and "{workdir}" not in word:
            result.append(word)
            continue
        items = word.split(",")
        kept = [i for i in items if "{upperdir}" not in i and "{workdir}" not in i]
        if not kept or kept == ["{options}"] or any(i.endswith("=") for i in kept):
            return None
        # The FUSE mount itself is read-only, as the kernel's overlay without an upper
        # is (SB_RDONLY): the VFS then refuses writes before it looks the last name up.
        kept.append("ro")
        # "{options}" glued to a dropped item ("workdir={workdir}{options}") is kept.
        for item in items:
            if item not in kept and "{options}" in item:
                kept.append("{options}")
        joined = ",".join(kept).replace(",{options}", "{options}")
        result.append(joined)
    return result


def binary_problem(program: str) -> str | None:
    """Why ``program`` cannot be run, or None."""
    if "/" in program:
        if not os.path.exists(program):
            return f"{program} does not exist"
        if not os.path.isfile(program) or not os.access(program, os.X_OK):
            return f"{program} is not an executable file"
        return None
    if shutil.which(program) is None:
        return f"{program} is not installed (not found on PATH)"
    return None


def _host_problem() -> str | None:
    """Why no FUSE driver can run on this machine, or None."""
    import sys

    from adapters.drivers.kernel import _has_cap_sys_admin

    if not sys.platform.startswith("linux"):
        return f"FUSE drivers need Linux (this is {sys.platform})"
    if os.geteuid() != 0 or not _has_cap_sys_admin():
        return f"FUSE drivers run in a private mount namespace: need root (euid {os.geteuid()})"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (no FUSE support in this kernel or container)"
    return None


def profile_version(profile: DriverProfile) -> str | None:
    """The first line of ``profile.version_command``'s output that mentions "version"
    (not libfuse's or fusermount's), or None."""
    if not profile.version_command:
        return None
    try:
        done = subprocess.run(
            shlex.split(profile.version_command),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    lines = [
        line.strip()
        for line in (done.stdout + done.stderr).splitlines()
        if "version" in line and "FUSE library" not in line and "fusermount" not in line
    ]
    return lines[0] if lines else None


class FuseDriver(SandboxedDriver):
    """Any FUSE overlay driver, from a command template and a :class:`DriverProfile`."""

    name = "fuse"

    def __init__(
        self,
        template: str | None,
        profile: DriverProfile,
        name: str = "fuse",
        timeout: float = 30.0,
        mount_wait: float = MOUNT_WAIT,
    ) -> None:
        template = template or profile.template
        if not template:
            raise ValueError("no command template: give --driver-cmd or a profile's template")
        self.name = name
        self.profile = profile
        self.capabilities = profile.claims(type(self).capabilities)
        self.template = template
        self.words = parse_template(template)
        self.ro_words = (
            parse_template(profile.ro_template)
            if profile.ro_template
            else read_only_words(self.words)
        )
        self.mount_wait = mount_wait
        #: The programs the templates run (each once).
        self.programs = tuple(dict.fromkeys([self.words[0], *(self.ro_words or [])[:1]]))
        for program in self.programs:
            problem = binary_problem(program)
            if problem is not None:
                raise DriverUnavailable(problem)
        super().__init__(timeout)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _host_problem()

    def mounter_settings(self) -> tuple[str, dict[str, Any]]:
        return "fuse", {
            "name": self.name,
            "argv": self.words,
            "ro_argv": self.ro_words,
            "env": dict(self.profile.env),
            "mount_wait": self.mount_wait,
            "disk_format": self.disk_format,
            "programs": [
                os.path.abspath(found)
                for word in self.programs
                if (found := shutil.which(word)) is not None
            ],
        }

    @property
    def disk_format(self) -> DiskFormat:
        return self.profile.disk_format

    def _mount_timeout(self) -> float:
        # stopping the previous mount, then starting and waiting for the new one
        return self.timeout + self.mount_wait + 15.0

    def mount(self, stack: StackSpec, options: Options) -> None:
        if not self.profile.supports(options):
            raise NotClaimed(
                f"{self.name}: profile {self.profile.name!r} does not claim option set "
                f"{options.label!r} (claims: {', '.join(self.profile.options)})"
            )
        super().mount(stack, options)

    def daemon_pids(self) -> list[int]:
        """PIDs of the driver's processes now (in the executor's PID namespace)."""
        return self._call("daemon_pids")

    def version(self) -> str | None:
        """The driver's version as its profile's ``version_command`` prints it."""
        return profile_version(self.profile)

    @staticmethod
    def _about(template: str | None, profile: DriverProfile) -> dict[str, Any]:
        """What a report records of a FUSE driver besides its version (the report takes
        that from ``installed_version``: the version command runs once): its command
        template and the option sets its profile claims."""
        return {
            "command": template or profile.template or None,
            "options_claimed": list(profile.options),
            "profile": profile.source,
        }

    def __enter__(self) -> FuseDriver:
        return self


# --- registry entries -----------------------------------------------------------------------


class _Preset(FuseDriver):
    """A preset: FuseDriver with the profile ``adapters/drivers/profiles/<preset>.toml``
    (``--profile`` replaces it)."""

    preset: ClassVar[str]

    @classmethod
    def preset_profile(cls) -> DriverProfile:
        return load_driver_profile(cls.settings.driver_profile or PROFILES / f"{cls.preset}.toml")

    @classmethod
    def installed_version(cls) -> str | None:
        return profile_version(cls.preset_profile())

    @classmethod
    def about(cls) -> dict[str, Any]:
        return cls._about(None, cls.preset_profile())

    def __init__(self, timeout: float = 30.0) -> None:
        profile = self.preset_profile()
        super().__init__(profile.template, profile, name=self.preset, timeout=timeout)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        problem = _host_problem()
        if problem is not None:
            return problem
        profile = cls.preset_profile()
        program = parse_template(profile.template)[0]
        problem = binary_problem(program)
        if problem is not None:
            return f"{cls.preset}: {problem} (Debian package {cls.preset})"
        return None


class FuseOverlayfsDriver(_Preset):
    preset = "fuse-overlayfs"


class UnionfsFuseDriver(_Preset):
    preset = "unionfs-fuse"


class GenericFuseDriver(FuseDriver):
    """The ``fuse`` registry entry: ``--driver-cmd`` (or ``--profile`` with a template)."""

    @classmethod
    def configured(cls) -> tuple[str | None, DriverProfile]:
        cmd, profile_path = cls.settings.driver_cmd, cls.settings.driver_profile
        profile = load_driver_profile(profile_path) if profile_path else DriverProfile(name="fuse")
        return cmd or profile.template or None, profile

    @classmethod
    def installed_version(cls) -> str | None:
        return profile_version(cls.configured()[1])

    @classmethod
    def about(cls) -> dict[str, Any]:
        return cls._about(*cls.configured())

    def __init__(self, timeout: float = 30.0) -> None:
        template, profile = self.configured()
        if template is None:
            raise DriverUnavailable(self.unavailable_reason() or "--driver-cmd is required")
        super().__init__(template, profile, name="fuse", timeout=timeout)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        problem = _host_problem()
        if problem is not None:
            return problem
        template, _ = cls.configured()
        if template is None:
            return (
                "--driver-cmd is required for the generic fuse driver "
                "(or a --profile with a template)"
            )
        problem = binary_problem(parse_template(template)[0])
        return f"fuse: {problem}" if problem is not None else None
