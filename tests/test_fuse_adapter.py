"""The FUSE drivers (adapters.drivers.fuse, adapters.drivers.driver_profile): templates, profiles,
real mounts,
crashes, hangs, and no leftovers.

Tests that need a FUSE binary skip only when it is missing (with the reason); with ``CI``
set in the environment that is a failure instead.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from adapters import registry
from adapters.base import Driver, DriverFailure, DriverHung, DriverUnavailable
from adapters.drivers.driver_profile import DriverProfile, DriverProfileError, load_driver_profile
from adapters.drivers.fuse import (
    PROFILES,
    FuseDriver,
    FuseOverlayfsDriver,
    GenericFuseDriver,
    NotClaimed,
    TemplateError,
    UnionfsFuseDriver,
    parse_template,
    read_only_words,
)
from adapters.sandbox.layerdisk import DiskFormat, read_layer
from adapters.settings import DriverSettings
from reference import ops
from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec, SymlinkSpec
from reference.options import Options
from reference.outcome import Err, Ok

FO_TEMPLATE = (
    "fuse-overlayfs -o lowerdir={lowerdir},upperdir={upperdir},workdir={workdir}{options}"
    " {mountpoint}"
)

TWO = StackSpec(
    (
        LayerSpec((("a", FileSpec(b"top a")), ("d/x", FileSpec(b"x0")))),
        LayerSpec(
            (
                ("a", FileSpec(b"bottom a")),
                ("b", FileSpec(b"bee", mode=0o640, uid=3, gid=4)),
                ("d/y", FileSpec(b"y1")),
                ("e", DirSpec()),
            )
        ),
    )
)


def _require(cls: type) -> None:
    reason = cls.unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {cls.__name__} is unavailable: {reason}")
    pytest.skip(reason)


def fuse_mounts(pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line for line in f if " - fuse" in line]


def stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is really stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not stop")


def process_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def fo():
    _require(FuseOverlayfsDriver)
    drv = FuseOverlayfsDriver(timeout=30.0)
    try:
        yield drv
    finally:
        drv.close()


# --- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("fuse-overlayfs -o lowerdir={lowerdir}", "no {mountpoint}"),
        ("fo -o lowerdir={lowerdir},x={colour} {mountpoint}", "unknown placeholder {colour}"),
        ("fo {mountpoint}", "no {lowerdir}"),
        ("", "empty"),
        ("fo 'unclosed {lowerdir} {mountpoint}", "cannot split"),
        ("fo -o lowerdir={lowerdir {mountpoint}", "bad braces"),
        ("fo {lowerdir!r} {mountpoint}", "no format spec"),
        ("{lowerdir} {mountpoint}", "program name must be literal"),
    ],
)
def test_template_errors_are_one_line(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")) as e:
        parse_template(template)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


def test_missing_binary_is_unavailable(tmp_path) -> None:
    profile = DriverProfile(name="ghost")
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(DriverUnavailable, match="no-such-fuse-driver is not installed"):
        FuseDriver("no-such-fuse-driver {lowerdir} {mountpoint}", profile)
    with pytest.raises(DriverUnavailable, match="is not an executable file"):
        FuseDriver(f"{plain} {{lowerdir}} {{mountpoint}}", profile)
    with pytest.raises(DriverUnavailable, match="does not exist"):
        FuseDriver("/nonexistent/fo {lowerdir} {mountpoint}", profile)


def test_read_only_form_drops_upper_and_work() -> None:
    words = parse_template(FO_TEMPLATE)
    assert read_only_words(words) == [
        "fuse-overlayfs",
        "-o",
        "lowerdir={lowerdir},ro{options}",
        "{mountpoint}",
    ]
    assert read_only_words(parse_template("u {upperdir}=RW:{lowerdir} {mountpoint}")) is None


def test_generic_fuse_needs_a_command() -> None:
    reason = registry.unavailable_reason("fuse", DriverSettings())
    if reason is not None and "root" in reason:
        pytest.skip(reason)
    assert reason is not None and "--driver-cmd is required" in reason
    given = DriverSettings(driver_cmd="no-such-fuse-driver {lowerdir} {mountpoint}")
    reason = registry.unavailable_reason("fuse", given)
    assert "no-such-fuse-driver is not installed" in (reason or "")


def test_preset_names_its_missing_binary(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\ntemplate = "no-such-overlay {lowerdir} {mountpoint}"\n')
    given = DriverSettings(driver_profile=str(path))
    reason = UnionfsFuseDriver.with_settings(given).unavailable_reason()
    if reason is not None and "root" in reason:
        pytest.skip(reason)
    assert reason is not None and "no-such-overlay is not installed" in reason


# --- profiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["fuse-overlayfs", "fuse-overlayfs-wh", "unionfs-fuse"])
def test_presets_load(preset: str) -> None:
    profile = load_driver_profile(PROFILES / f"{preset}.toml")
    assert profile.name == preset
    parse_template(profile.template)
    assert profile.supports(Options())
    assert not profile.supports(Options(redirect_dir=True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\ncolour = "red"\n', "unknown key 'colour'"),
        ('name = "x"\nxattrs = "yes"\n', "key 'xattrs' must be a boolean, not a string"),
        ('name = "x"\nwhiteout = "bitmap"\n', "key 'whiteout' must be one of"),
        ('name = "x"\noptions = ["index=maybe"]\n', "unknown option set 'index=maybe'"),
        ('name = "x"\noptions = "ro"\n', "key 'options' must be an array of strings"),
        ('name = "x"\nenv = { A = 1 }\n', "key 'env' must be a table of strings"),
        ("name = 3\n", "key 'name' must be a string, not an integer"),
        ('template = "x"\n', "missing key 'name'"),
        ('name = "x\n', "not valid TOML"),
    ],
)
def test_profile_errors_are_one_line(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DriverProfileError, match=message) as info:
        load_driver_profile(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_profile_disk_format() -> None:
    assert DriverProfile(name="k").disk_format == DiskFormat()
    wh = load_driver_profile(PROFILES / "fuse-overlayfs-wh.toml")
    assert wh.disk_format == DiskFormat(True, True, ("user.fuseoverlayfs.",))
    assert wh.env == {"FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT": "1"}
    assert not load_driver_profile(PROFILES / "unionfs-fuse.toml").upper_decodable


def test_wh_forms_decode(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / ".wh.gone").write_bytes(b"")
    (tmp_path / "d" / ".wh..wh..opq").write_bytes(b"")
    (tmp_path / "d" / "f").write_bytes(b"f")
    os.setxattr(tmp_path / "d" / "f", "user.fuseoverlayfs.origin", b"/f")
    os.setxattr(tmp_path / "d" / "f", "user.kept", b"1")
    plain = read_layer(str(tmp_path))  # the default is unchanged: the files are files
    assert plain.entries[".wh.gone"].kind == "file"
    assert not plain.entries["d"].opaque
    decoded = read_layer(str(tmp_path), DiskFormat(True, True, ("user.fuseoverlayfs.",)))
    assert sorted(decoded.entries) == ["d", "d/f", "gone"]
    assert decoded.entries["gone"].kind == "whiteout"
    assert decoded.entries["d"].opaque
    assert decoded.entries["d/f"].xattrs == (("user.kept", b"1"),)


# --- real mounts --------------------------------------------------------------------------


def test_fuse_overlayfs_ops_and_chardev_whiteouts(fo) -> None:
    assert isinstance(fo, Driver)
    assert fo.name == "fuse-overlayfs" and fo.profile.name == "fuse-overlayfs"
    fo.mount(TWO, Options())
    assert fo.run(ops.Read("a")) == Ok(b"top a")
    assert fo.run(ops.Write("d/y", b"Y", offset=1)) == Ok(1)
    assert fo.run(ops.Unlink("a")) == Ok(None)
    assert fo.run(ops.Read("a")) == Err("ENOENT")
    assert fo.run(ops.Readdir("")) == Ok(("b", "d", "e"))
    upper, lowers = fo.images()
    assert upper is not None
    assert upper.entries["a"].kind == "whiteout"
    assert upper.entries["d/y"].data == b"yY"
    assert not any(name for _, name in upper.entries["d/y"].xattrs if "fuseoverlayfs" in name)
    assert lowers[1].entries["d/y"].data == b"y1"
    # remount keeps the changes
    assert fo.run(ops.Remount()) == Ok(None)
    assert fo.run(ops.Read("a")) == Err("ENOENT")
    assert fo.run(ops.Read("d/y")) == Ok(b"yY")
    assert not fuse_mounts()  # nothing on the host
    assert len(fuse_mounts(fo.executor_pid)) == 1


def test_fuse_overlayfs_wh_files_decode() -> None:
    _require(FuseOverlayfsDriver)
    given = DriverSettings(driver_profile=str(PROFILES / "fuse-overlayfs-wh.toml"))
    with FuseOverlayfsDriver.with_settings(given)() as drv:
        assert drv.profile.whiteout == "wh-file"
        drv.mount(TWO, Options())
        assert drv.run(ops.Unlink("a")) == Ok(None)
        assert drv.run(ops.Unlink("d/y")) == Ok(None)
        upper, _ = drv.images()
        assert upper is not None
        assert upper.entries["a"].kind == "whiteout"
        assert upper.entries["d/y"].kind == "whiteout"
        assert not [p for p in upper.entries if ".wh." in p]


def test_foreground_generic_driver_and_read_only() -> None:
    _require(FuseOverlayfsDriver)
    drv = registry.make("fuse", DriverSettings(driver_cmd="fuse-overlayfs -f " + FO_TEMPLATE[15:]))
    try:
        assert isinstance(drv, GenericFuseDriver) and drv.name == "fuse"
        drv.mount(TWO, Options(read_only=True))
        assert drv.run(ops.Read("b")) == Ok(b"bee")
        assert drv.run(ops.Unlink("b")) == Err("EROFS")
        assert drv.images()[0] is None
        pids = drv.daemon_pids()
        assert len(pids) == 1
    finally:
        drv.close()
    assert process_gone(pids[0])


def test_unclaimed_option_set_is_refused(fo) -> None:
    with pytest.raises(NotClaimed, match="does not claim option set 'redirect_dir=on"):
        fo.mount(TWO, Options(redirect_dir=True))


def test_command_that_fails_to_mount_names_stderr() -> None:
    _require(FuseOverlayfsDriver)
    profile = DriverProfile(name="bad")
    template = FO_TEMPLATE.replace("{options}", ",redirect_dir=on")
    with FuseDriver(template, profile, name="bad", mount_wait=5) as drv:
        started = time.monotonic()
        with pytest.raises(
            DriverFailure, match=r"without mounting.*only supports redirect_dir=off"
        ):
            drv.mount(TWO, Options())
        assert time.monotonic() - started < 10
        assert not fuse_mounts(drv.executor_pid)
        assert drv.daemon_pids() == []


def test_command_that_never_mounts_is_bounded() -> None:
    _require(FuseOverlayfsDriver)
    with FuseDriver(
        "sh -c 'echo waiting forever >&2; sleep 60' {lowerdir} {mountpoint}",
        DriverProfile(name="sleepy"),
        name="sleepy",
        mount_wait=1.0,
    ) as drv:
        with pytest.raises(DriverFailure, match=r"did not mount within 1\.0s.*waiting forever"):
            drv.mount(TWO, Options())
        assert drv.daemon_pids() == []  # the sleeper was killed by PID


def test_crashed_driver_is_a_failure_and_leaves_no_mount(fo) -> None:
    fo.mount(TWO, Options())
    (pid,) = fo.daemon_pids()
    os.kill(pid, signal.SIGKILL)
    assert process_gone(pid)
    with pytest.raises(DriverFailure, match="crashed during Write") as info:
        fo.run(ops.Write("new", b"x", flags=("O_CREAT",)))
    assert not isinstance(info.value, DriverHung)
    assert "ENOTCONN" in str(info.value)
    assert not fuse_mounts(fo.executor_pid)
    # the executor survived and mounts again
    fo.mount(TWO, Options())
    assert fo.run(ops.Read("b")) == Ok(b"bee")


def test_hung_driver_raises_quickly_and_close_cleans_up() -> None:
    _require(FuseOverlayfsDriver)
    drv = FuseOverlayfsDriver(timeout=1.0)
    executor = drv.executor_pid
    try:
        drv.mount(TWO, Options())
        (pid,) = drv.daemon_pids()
        stop(pid)
        started = time.monotonic()
        with pytest.raises(DriverHung, match="no answer to Write"):
            drv.run(ops.Write("new", b"x", flags=("O_CREAT",)))
        assert time.monotonic() - started < 5
    finally:
        drv.close()
    assert process_gone(executor)
    assert process_gone(pid), f"the stopped FUSE daemon {pid} survived"
    assert not fuse_mounts()


def test_close_of_a_stopped_daemon_cleans_up() -> None:
    _require(FuseOverlayfsDriver)
    drv = FuseOverlayfsDriver()
    drv.mount(TWO, Options())
    (pid,) = drv.daemon_pids()
    stop(pid)
    started = time.monotonic()
    drv.close()
    assert time.monotonic() - started < 15
    assert process_gone(pid)
    assert process_gone(drv.executor_pid)


def test_killed_executor_takes_the_daemon_with_it(fo) -> None:
    fo.mount(TWO, Options())
    (pid,) = fo.daemon_pids()
    os.kill(fo.executor_pid, signal.SIGKILL)
    assert process_gone(pid), "the FUSE daemon outlived its executor"


def test_unionfs_fuse_mounts() -> None:
    _require(UnionfsFuseDriver)
    with UnionfsFuseDriver() as drv:
        assert not drv.profile.upper_decodable
        drv.mount(TWO, Options())
        assert drv.run(ops.Read("a")) == Ok(b"top a")
        assert drv.run(ops.Unlink("a")) == Ok(None)
        assert drv.run(ops.Readdir("")) == Ok(("b", "d", "e"))
        assert drv.run(ops.Remount()) == Ok(None)
        assert drv.run(ops.Readdir("")) == Ok(("b", "d", "e"))
        pids = drv.daemon_pids()
    assert all(process_gone(p) for p in pids)
    assert not fuse_mounts()


def test_a_branch_symlink_to_the_host_root_is_recorded_not_walked() -> None:
    """unionfs-fuse merges a directory with a lower branch's symlink of the same name and
    follows it, here to the host's /: the view records those names as foreign without
    reading or entering them (before, the walk read the host's tree until it timed out)."""
    _require(UnionfsFuseDriver)
    stack = StackSpec(
        (
            LayerSpec((("c", DirSpec()),)),
            LayerSpec((("c", SymlinkSpec("/")),)),
        )
    )
    with UnionfsFuseDriver(timeout=30.0) as drv:
        drv.mount(stack, Options(read_only=True))
        view = drv.view()
    below = {path: entry for path, entry in view.entries.items() if path.startswith("c/")}
    assert below, "unionfs-fuse no longer follows the branch symlink: update the expectation"
    assert all(entry.kind.startswith("foreign ") for entry in below.values())
    assert all(path.count("/") == 1 for path in below)  # not entered


HOLDER_FAILS = """
import os, sys
from adapters.sandbox import executor as _executor, fusemount as _fusemount

def refuse(*args, **kwargs):
    raise OSError(1, "pivot_root refused")

_executor.setup()
_fusemount._confine.enter = refuse
for attempt in range(2):
    try:
        _fusemount.holder()
    except Exception as exc:
        print("raised:", exc)
    else:
        print("returned")
"""


def test_a_holder_that_cannot_confine_itself_says_so() -> None:
    """The holder (PID 1 of the daemons' PID namespace) confines itself before it holds:
    when that fails, holder() raises with the reason, and so does every later call (a
    silent holder used to be kept, and every daemon start then failed on fork, ENOMEM)."""
    import subprocess
    import sys

    if os.geteuid() != 0 or not os.path.exists("/usr/bin/unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    result = subprocess.run(
        ["/usr/bin/unshare", "--mount", "--propagation", "private", "--",
         sys.executable, "-c", HOLDER_FAILS],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True, text=True, timeout=60, check=False,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line in lines:
        assert line.startswith("raised:") and "pivot_root refused" in line, line


@pytest.mark.parametrize("name", ["fuse-overlayfs", "unionfs-fuse"])
def test_a_report_runs_the_version_command_once(monkeypatch, name: str) -> None:
    """What a report records of a FUSE driver (conformance.reports.report.driver_info): its
    version, from one run of the profile's version command, with the rest of about()."""
    from adapters.drivers import fuse
    from conformance.reports.report import driver_info

    calls: list[str] = []

    def version(profile: DriverProfile) -> str:
        calls.append(profile.name)
        return f"{profile.name} 9.9"

    monkeypatch.setattr(fuse, "profile_version", version)
    info = driver_info(name)
    assert len(calls) == 1 and info["version"] == f"{calls[0]} 9.9"
    assert info["command"] and info["options_claimed"], info
