"""Reproducers run for real: standalone scripts, the system Python, no project on the path.

A recorded divergence of fuse-overlayfs 1.10 (conformance/records/expectations.toml) reproduces
against fuse-overlayfs (exit 1) and not against the kernel (exit 0); so does an inode
divergence of unionfs-fuse; a seeded fault's counterexample (adapters/faults.py) is what the
kernel does (exit 0). Nothing is left mounted or running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from adapters import registry
from adapters.base import DriverUnavailable
from adapters.faults import FaultyDriver
from conformance.features import BY_ID
from conformance.lockstep.machine import Diverged, run_machine
from conformance.records import behaviours as records
from conformance.records import expectations, replay, reproducer
from conformance.records.failure import Failure
from reference.options import MATRIX, Options

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
BY_LABEL = {options.label: options for options in MATRIX}


def _need(name: str) -> None:
    try:
        registry.make(name).close()
    except DriverUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"{name} unavailable in CI: {reason}")
        pytest.skip(str(reason))


def _recorded_failure(driver_name: str, first_step: str) -> tuple[Failure, str | None]:
    """The failing example of a recorded divergence, as the suite captures it."""
    record = next(
        e for e in expectations.load()
        if e.driver == driver_name and repr(e.steps[0]).startswith(first_step)
    )
    driver = registry.make(driver_name)
    try:
        with records.plain():  # the kernel's rules alone: the record is a divergence
            replay.replay(
                driver, record, BY_LABEL[record.options[0]], BY_ID[record.features[0]]
            )
    except Diverged as diverged:
        return diverged.failures[0], expectations.installed_version(driver_name)
    finally:
        driver.close()
    pytest.fail(f"the recorded divergence {record.reason!r} did not reproduce")


def _run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a reproducer as a driver author would: the system Python, a directory of its
    own, no PYTHONPATH (it must not need this project)."""
    return subprocess.run(
        [SYSTEM_PYTHON, str(script.resolve()), *args],
        cwd=script.parent,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def host_unchanged():
    before = Path("/proc/self/mountinfo").read_text()
    yield
    assert Path("/proc/self/mountinfo").read_text() == before


def _no_process_runs(script: Path) -> None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            assert str(script).encode() not in cmdline, f"pid {entry.name} still runs it"


def test_a_fuse_overlayfs_divergence_reproduces_on_it_and_not_on_the_kernel(
    tmp_path: Path, host_unchanged
) -> None:
    _need("fuse-overlayfs")
    _need("kernel")
    failure, version = _recorded_failure("fuse-overlayfs", "Chmod(")
    script = reproducer.write(failure, tmp_path / "repro.py", version)
    assert "import conformance" not in script.read_text()
    found = _run(script)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "Chmod(path='a', mode=0o700)" in found.stdout
    assert "expected: None" in found.stdout
    assert "actual:   EIO (Input/output error)   <-- differs" in found.stdout
    assert "REPRODUCES" in found.stdout
    gone = _run(script, "--kernel")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "GONE" in gone.stdout and "mount -t overlay" in gone.stdout
    _no_process_runs(script)


def test_an_upper_layer_divergence_is_checked_on_disk(tmp_path: Path, host_unchanged) -> None:
    """fuse-overlayfs makes every new directory opaque (a difference of the upper layer,
    not of an outcome): the script decodes the upper layer to see it."""
    _need("fuse-overlayfs")
    _need("kernel")
    failure, version = _recorded_failure("fuse-overlayfs", "Mkdir(")
    assert failure.found, "an observation divergence"
    script = reproducer.write(failure, tmp_path / "repro.py", version)
    found = _run(script)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "upper:a opaque: expected False, got True   <-- differs" in found.stdout
    assert _run(script, "--kernel").returncode == 0
    _no_process_runs(script)


def test_an_inode_divergence_of_unionfs_fuse_reproduces(tmp_path: Path, host_unchanged) -> None:
    _need("unionfs-fuse")
    _need("kernel")
    failure, version = _recorded_failure("unionfs-fuse", "Chmod(path='f'")
    assert any(d.field == "st_ino" for d in failure.found)
    script = reproducer.write(failure, tmp_path / "repro.py", version)
    found = _run(script)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "st_ino" in found.stdout and "changed" in found.stdout
    assert _run(script, "--kernel").returncode == 0
    _no_process_runs(script)


def test_a_seeded_fault_counterexample_is_what_the_kernel_does(
    tmp_path: Path, host_unchanged
) -> None:
    """A divergence found on an in-process driver (a seeded fault) cannot be mounted: its
    reproducer runs against the kernel by default, and the kernel does what the reference
    expects (exit 0). The same fault's truncate, with short names, against fuse-overlayfs
    with --fuse-cmd too (the shrunk program may hold a 252-255-byte name, which
    fuse-overlayfs refuses: its recorded new-name-max-251)."""
    _need("kernel")
    search = settings(max_examples=500, stateful_step_count=20, deadline=None,
                      database=None, derandomize=True, phases=[Phase.generate, Phase.shrink])
    with pytest.raises(Diverged) as caught:
        run_machine(FaultyDriver("truncate-to-zero"), Options(), search)
    failure = caught.value.failures[0]
    assert any(repr(op).startswith("Truncate(") for op in failure.ops)
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runs against the kernel by default" in result.stdout
    assert "data: expected" in result.stdout  # the fault's difference is checked
    _no_process_runs(script)
    if shutil.which("fuse-overlayfs"):
        from reference import ops
        from reference.layer import FileSpec, LayerSpec, StackSpec

        stack = StackSpec((LayerSpec((("a", FileSpec(b"xyz")),)),))
        short = _reference_failure(stack, [ops.Truncate("a", 1)], Options())
        script = reproducer.write(short, tmp_path / "repro-fuse.py")
        template = (
            "fuse-overlayfs -o lowerdir={lowerdir},upperdir={upperdir},workdir={workdir} "
            "{mountpoint}"
        )
        found = _run(script, "--fuse-cmd", template)
        assert found.returncode == 0, found.stdout + found.stderr
        _no_process_runs(script)


def _reference_failure(stack, steps, options: Options) -> Failure:
    """A Failure whose expected outcomes are the reference's, built without a driver (the
    shape a divergence has), for programs the kernel must pass."""
    from conformance.records.failure import TracedStep
    from reference.outcome import describe
    from reference.overlay import Overlay

    model = Overlay(stack, options)
    traced = []
    for op in steps:
        allowed = tuple(sorted(model.apply(op), key=describe))
        traced.append(TracedStep(op, allowed, allowed[0]))
    return Failure("kernel", options, "", stack, tuple(traced), "a program to replay",
                   mounter=("kernel", {}))


@pytest.mark.parametrize("options", [Options(), Options(read_only=True)], ids=["rw", "ro"])
def test_a_program_with_a_remount_and_every_layer_marker_passes_on_the_kernel(
    tmp_path: Path, options: Options, host_unchanged
) -> None:
    """Whiteouts, opaque directories, xattrs, owners, FIFOs, hardlinks and symlinks in the
    lowers, a remount among the steps: the script writes and mounts them as the suite
    does, so the kernel passes."""
    _need("kernel")
    from reference import ops
    from reference.layer import (
        DirSpec,
        FifoSpec,
        FileSpec,
        HardlinkSpec,
        LayerSpec,
        StackSpec,
        SymlinkSpec,
        WhiteoutSpec,
    )

    stack = StackSpec((
        LayerSpec((("a", WhiteoutSpec()), ("d", DirSpec(opaque=True, mode=0o700)),
                   ("d/x", FileSpec(b"top", uid=1000, xattrs=(("user.a", b"1"),))),
                   ("h", HardlinkSpec("d/x")), ("s", SymlinkSpec("/d/x")))),
        LayerSpec((("a", FileSpec(b"hidden")), ("d", DirSpec()), ("d/y", FileSpec(b"y")),
                   ("f", FifoSpec(0o600)))),
    ))
    steps = [ops.Readdir(""), ops.Readdir("d"), ops.Read("s"), ops.Stat("h"),
             ops.GetXattr("d/x", "user.a"), ops.Write("b", b"new", 0, ("O_CREAT",)),
             ops.Remount(), ops.Read("b"), ops.Stat("f"), ops.Stat("a")]
    failure = _reference_failure(stack, steps, options)
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("<-- differs") == 0 and "step 10" in result.stdout


def test_a_script_embeds_the_confined_root_and_the_system_calls_verbatim() -> None:
    """The script holds adapters/sandbox/confine.py and adapters/syscalls.py as they are, each
    once, in place of the template's imports, and no libc handle of its own."""
    from reference import ops
    from reference.layer import DirSpec, LayerSpec, StackSpec

    failure = _reference_failure(
        StackSpec((LayerSpec((("d", DirSpec()),)),)), [ops.Readdir(path="")], Options()
    )
    text = reproducer.script(failure)
    for module in (reproducer.CONFINE, Path(reproducer.syscalls.__file__)):
        assert text.count(module.read_text(encoding="utf-8")) == 1, module
    imports = ("from adapters", "import adapters")
    assert not [line for line in text.splitlines() if line.lstrip().startswith(imports)]
    assert text.count("ctypes.CDLL(") == 2  # _confine's libc and syscalls' own


def test_the_driver_files_a_confined_root_shows() -> None:
    """adapters.sandbox.confine.driver_paths (the suite's mounter and the script share it)."""
    from adapters.sandbox.confine import driver_paths, host_source

    programs = ["/usr/bin/fuse-overlayfs", "/opt/d/bin/drv", "/tmp/drv", "/drv",
                "/tmp/b/drv", "/opt/d/bin/other"]
    assert driver_paths(programs, ["/usr", "/opt/py"]) == [
        "/opt/py", "/opt/d/bin", "/tmp/drv", "/drv", "/tmp/b"
    ]
    assert host_source("/tmp/b", 7) == "/proc/self/fd/7/b"
    assert host_source("/opt/d/bin", 7) == "/opt/d/bin"
    assert host_source("/tmp/b", None) == "/tmp/b"


def test_callers_and_descriptors_replay_on_the_kernel(tmp_path: Path, host_unchanged) -> None:
    """Steps run by other callers (a forked child with their credentials, issue 18) and
    descriptors held across steps, closed by a remount: the kernel passes the script."""
    _need("kernel")
    from reference import ops
    from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec

    stack = StackSpec((LayerSpec((("s", FileSpec(b"s", 0o600)), ("p", DirSpec(0o777)),
                                  ("f", FileSpec(b"lower")))),))
    steps = [ops.Read("s", caller="user"), ops.Write("p/n", b"n", 0, ("O_CREAT",), 0o666,
                                                     caller="other"),
             ops.Stat("p/n"), ops.Open("f"), ops.Write("f", b"UP"), ops.ReadFd(0),
             ops.Remount(), ops.ReadFd(0), ops.Chmod("f", 0o600, caller="user")]
    failure = _reference_failure(stack, steps, Options())
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("<-- differs") == 0 and "step 9" in result.stdout

@pytest.mark.parametrize(
    "fault", ["xattr-whiteout-ignored", "escaped-xattr-leaked", "data-only-layer-shown"]
)
def test_a_marker_fault_counterexample_is_what_the_kernel_does(
    tmp_path: Path, fault: str, host_unchanged
) -> None:
    """The seeded faults of issue 19 on their axes: the shrunk counterexample's script
    writes the layers in that form (xattr whiteouts, user.overlay.* markers and escaped
    names, a data-only layer) and the kernel does what the reference expects (exit 0)."""
    _need("kernel")
    from adapters.faults import options_for

    search = settings(max_examples=500, stateful_step_count=20, deadline=None,
                      database=None, derandomize=True, phases=[Phase.generate, Phase.shrink])
    with pytest.raises(Diverged) as caught:
        run_machine(FaultyDriver(fault), options_for(fault), search)
    failure = caught.value.failures[0]
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "expected" in result.stdout  # the fault's difference is checked
    _no_process_runs(script)


@pytest.mark.parametrize(
    "options",
    [
        Options(xwhiteouts=True),
        Options(userxattr=True),
        Options(data_only=True),
        Options(xino=True, separate_fs=True),
    ],
    ids=lambda o: o.test_id,
)
def test_a_program_over_the_new_layer_forms_passes_on_the_kernel(
    tmp_path: Path, options: Options, host_unchanged
) -> None:
    """xattr whiteouts (marked and not), an escaped xattr in a lower, metacopy stubs over a
    data-only layer: the script writes them as the suite does, so the kernel passes."""
    _need("kernel")
    from reference import ops
    from reference.layer import DirSpec, FileSpec, LayerSpec, MetacopySpec, StackSpec, WhiteoutSpec

    stack = StackSpec((
        LayerSpec((("d", DirSpec()), ("d/g", WhiteoutSpec(xattr=True)),
                   ("e/g", WhiteoutSpec(xattr=True, marked=False)),
                   ("f", FileSpec(b"f", xattrs=(("user.overlay.e", b"1"),))))),
        LayerSpec((("d/g", FileSpec(b"low")), ("e/g", FileSpec(b"low")),
                   # a stub is followed only into a data-only layer (else: EPERM)
                   *((("s", MetacopySpec("/x/blob", 4)),) if options.data_only else ()))),
        LayerSpec((("x/blob", FileSpec(b"BLOB")), ("d/h", FileSpec(b"h")))),
    ))
    steps = [ops.Readdir(""), ops.Readdir("d"), ops.Readdir("e"), ops.Stat("d/g"),
             ops.GetXattr("f", "user.overlay.e"), ops.SetXattr("f", "user.overlay.e", b"2"),
             ops.Remount(), ops.ListXattr("f")]
    if options.data_only:
        steps.append(ops.Read("s"))
    failure = _reference_failure(stack, steps, options)
    script = reproducer.write(failure, tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("<-- differs") == 0


# --- issue 18, first half: times, set-id bits, capabilities -------------------------------


def test_the_script_decodes_the_same_xattrs_as_the_suite() -> None:
    """The script's layer decoder keeps the xattrs adapters/sandbox/layerdisk.py keeps (it
    kept user.* only in a layer, and a security.* xattr copied up showed as missing)."""
    from adapters.sandbox import layerdisk
    from conformance.records import repro_template

    assert repro_template.CONTENT_XATTRS == layerdisk.CONTENT_XATTRS
    assert repro_template.NOT_CONTENT == layerdisk.NOT_CONTENT


def test_an_unchanged_time_is_compared_where_its_object_was(tmp_path: Path, host_unchanged) -> None:
    """A rename takes a time to another name: the copied-up source's mtime, now at the
    target, is "unchanged" against the source's before the step, not the target's (another
    object's; an exact time here, so the two differ whatever the clock's tick)."""
    _need("kernel")
    from reference import ops
    from reference.layer import FileSpec, LayerSpec, StackSpec

    exact = 1_000_000_000_123_456_789
    stack = StackSpec((
        LayerSpec((("a", FileSpec(b"a", mtime=exact)), ("b", FileSpec(b"b", mtime=exact)))),
        LayerSpec((("c", FileSpec(b"c")),)),
    ))
    with pytest.raises(Diverged) as caught:
        replay.replay_steps(FaultyDriver("copy-up-resets-mtime"), stack, [ops.Rename("c", "a")],
                            Options(), BY_ID["times"])
    script = reproducer.write(caught.value.failures[0], tmp_path / "repro.py")
    assert "'was_at': ['c']" in script.read_text()
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a mtime: expected 'unchanged" in result.stdout, result.stdout
    # held to another object's time (b's, exact), the same check differs
    script.write_text(script.read_text().replace("'was_at': ['c']", "'was_at': ['b']"))
    result = _run(script)
    assert result.returncode == 1 and "<-- differs" in result.stdout, result.stdout
    _no_process_runs(script)



@pytest.mark.parametrize(
    ("fault", "feature", "shown"),
    [
        ("copy-up-resets-mtime", "times", "mtime: expected"),
        ("create-keeps-parent-mtime", "times", "mtime: expected 'changed'"),
        ("write-keeps-capability", "set-id", "xattrs: expected"),
    ],
)
def test_a_time_or_privilege_fault_counterexample_is_what_the_kernel_does(
    tmp_path: Path, host_unchanged, fault: str, feature: str, shown: str
) -> None:
    """The script writes the lowers' mtimes and checks the time relations (an exact time,
    "changed" against the time before the last step) and the security.* xattrs: the
    kernel does what the reference expects (exit 0)."""
    _need("kernel")
    search = settings(max_examples=500, stateful_step_count=20, deadline=None,
                      database=None, derandomize=True, phases=[Phase.generate, Phase.shrink])
    with pytest.raises(Diverged) as caught:
        run_machine(FaultyDriver(fault), Options(), search, BY_ID[feature])
    script = reproducer.write(caught.value.failures[0], tmp_path / "repro.py")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert shown in result.stdout, result.stdout
    _no_process_runs(script)
