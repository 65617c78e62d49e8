"""Issue 18 (first half): times, set-id bits, file capabilities, trusted.*/security.*
xattrs and sizes in the reference, each rule as the kernel showed it (docs/design.md), and
the seeded faults of adapters/faults.py found and shrunk."""

from __future__ import annotations

import os

import pytest
from hypothesis import Phase, settings

from adapters.faults import TIME_AND_PRIVILEGE_FAULTS, FaultyDriver
from conformance.generation.strategies import CAP_V2, CAP_V3
from conformance.lockstep.compare import TimeMap
from conformance.lockstep.machine import Diverged, run_machine
from reference import ops
from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec
from reference.options import Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay
from reference.view import EntryView, View

T1 = 1_000_000_000_123_456_789
T2 = 1_500_000_000_000_000_001


def _overlay(*entries: tuple[str, object], options: Options | None = None) -> Overlay:
    return Overlay(StackSpec((LayerSpec(tuple(entries)),)), options or Options())  # type: ignore[arg-type]


def _entry(fs: Overlay, path: str) -> EntryView:
    return fs.view().entries[path]


def test_copy_up_keeps_mtime_and_restores_the_parents() -> None:
    fs = _overlay(("d", DirSpec(mtime=T2)), ("d/f", FileSpec(b"x", mtime=T1)))
    before = _entry(fs, "d")
    assert fs.apply(ops.Chmod("d/f", 0o600)) == {Ok(None)}
    assert _entry(fs, "d/f").mtime == T1
    assert _entry(fs, "d").mtime == T2 and _entry(fs, "d").ctime != before.ctime


def test_a_write_changes_the_files_times_and_a_create_its_parents() -> None:
    fs = _overlay(("d", DirSpec(mtime=T2)), ("d/f", FileSpec(b"x", mtime=T1)))
    fs.apply(ops.Write("d/f", b"y"))
    assert _entry(fs, "d/f").mtime < 0 and _entry(fs, "d").mtime == T2
    fs.apply(ops.Write("d/g", b"", flags=("O_CREAT",)))
    assert _entry(fs, "d").mtime < 0


def test_an_empty_write_changes_no_time() -> None:
    fs = _overlay(("f", FileSpec(b"x", mtime=T1)))
    fs.apply(ops.Write("f", b""))
    assert _entry(fs, "f").mtime == T1


def test_truncate_to_the_same_size_changes_times_only_with_allocated_pages() -> None:
    fs = _overlay(("f", FileSpec(b"", mtime=T1)), ("g", FileSpec(b"abc", mtime=T1)))
    fs.apply(ops.Truncate("f", 0))
    fs.apply(ops.Truncate("g", 3))
    assert _entry(fs, "f").mtime == T1
    assert _entry(fs, "g").mtime != T1


def test_utimens_sets_mtime_and_omit_omit_succeeds_before_lookup() -> None:
    fs = _overlay(("f", FileSpec(b"x", mtime=T1)))
    fs.apply(ops.Utimens("f", ops.UTIME_OMIT, T2))
    assert _entry(fs, "f").mtime == T2
    assert fs.apply(ops.Utimens("missing", ops.UTIME_OMIT, ops.UTIME_OMIT)) == {Ok(None)}
    ro = Overlay(StackSpec((LayerSpec(), LayerSpec())), Options(read_only=True))
    assert ro.apply(ops.Utimens("a", ops.UTIME_OMIT, ops.UTIME_OMIT)) == {Ok(None)}
    assert ro.apply(ops.Utimens("a", ops.UTIME_NOW, ops.UTIME_NOW)) == {Err("ENOENT")}


@pytest.mark.parametrize(
    ("mode", "after"),
    [(0o4755, 0o755), (0o2755, 0o755), (0o6744, 0o2744), (0o2745, 0o2745), (0o1777, 0o1777)],
)
def test_chown_by_root_clears_set_id_bits_as_the_kernel_does(mode: int, after: int) -> None:
    fs = _overlay(("f", FileSpec(b"x", mode=mode)), ("d", DirSpec(mode=0o2755)))
    fs.apply(ops.Chown("f", 0, 0))
    fs.apply(ops.Chown("d", 0, 0))
    assert _entry(fs, "f").mode == after
    assert _entry(fs, "d").mode == 0o2755


def test_a_write_by_root_keeps_set_id_bits_and_drops_the_capability() -> None:
    xattrs = (("security.capability", CAP_V2), ("trusted.a", b"1"))
    fs = _overlay(("f", FileSpec(b"x", mode=0o6755, xattrs=xattrs)))
    fs.apply(ops.Write("f", b""))
    assert dict(_entry(fs, "f").xattrs) == dict(xattrs)  # copied up, nothing written
    fs.apply(ops.Write("f", b"y"))
    assert _entry(fs, "f").mode == 0o6755
    assert dict(_entry(fs, "f").xattrs) == {"trusted.a": b"1"}


#: A write by a caller without CAP_FSETID (its own files, groups 1000 and 1001 for "user",
#: 1001 for "other"): the mode each set-id file is left with, as the kernel (6.18) gave it.
SETID_WRITES = [
    ("user", 0o2745, 1000, 1000, 0o2745),  # no group exec, in the group: mandatory locking
    ("user", 0o2745, 1000, 1001, 0o2745),  # a supplementary group counts
    ("other", 0o2745, 1001, 0, 0o745),  # not in the group: in_group_or_capable fails
    ("user", 0o2755, 1000, 1000, 0o755),  # group exec: S_ISGID goes
    ("user", 0o4744, 1000, 1000, 0o744),  # S_ISUID always goes
]


def _setid_stack(mode: int, uid: int, gid: int) -> StackSpec:
    return StackSpec((LayerSpec((("f", FileSpec(b"x", mode=mode, uid=uid, gid=gid)),)),))


@pytest.mark.parametrize(("caller", "mode", "uid", "gid", "after"), SETID_WRITES)
def test_a_write_by_another_caller_drops_set_id_bits_as_the_kernel_does(
    caller: str, mode: int, uid: int, gid: int, after: int
) -> None:
    """fs/attr.c setattr_should_drop_sgid: S_ISGID goes with group exec, or when the
    writer is neither in the file's group nor has CAP_FSETID."""
    fs = Overlay(_setid_stack(mode, uid, gid), Options())
    assert fs.apply(ops.Fallocate("f", "", 0, 4, caller=caller)) == {Ok(None)}
    assert _entry(fs, "f").mode == after


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel driver needs root")
def test_the_kernel_drops_set_id_bits_on_another_callers_write_the_same_way() -> None:
    from adapters.drivers.kernel import KernelDriver

    reason = KernelDriver.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    for caller, mode, uid, gid, after in SETID_WRITES:
        driver = KernelDriver(timeout=30.0)
        try:
            driver.mount(_setid_stack(mode, uid, gid), Options())
            assert driver.run(ops.Fallocate("f", "", 0, 4, caller=caller)) == Ok(None)
            assert driver.view().entries["f"].mode == after, (caller, oct(mode), gid)
        finally:
            driver.close()


def test_capabilities_must_be_valid_and_v3_with_root_0_reads_as_v2() -> None:
    fs = _overlay(("f", FileSpec(b"x")), ("d", DirSpec()))
    assert fs.apply(ops.SetXattr("f", "security.capability", b"1")) == {Err("EINVAL")}
    fs.apply(ops.SetXattr("f", "security.capability", CAP_V3))
    assert fs.apply(ops.GetXattr("f", "security.capability")) == {Ok(CAP_V2)}
    assert fs.apply(ops.SetXattr("d", "security.capability", CAP_V2)) == {Ok(None)}


def test_a_setgid_directory_gives_new_names_its_group() -> None:
    fs = _overlay(("d", DirSpec(mode=0o2755, gid=1000)))
    fs.apply(ops.Mkdir("d/e", 0o755))
    fs.apply(ops.Write("d/f", b"", flags=("O_CREAT",), mode=0o644))
    assert (_entry(fs, "d/e").gid, _entry(fs, "d/e").mode) == (1000, 0o2755)
    assert (_entry(fs, "d/f").gid, _entry(fs, "d/f").mode) == (1000, 0o644)


@pytest.mark.parametrize(
    ("mode", "data"),
    [("", b"abc\0\0"), ("KEEP_SIZE", b"abc"), ("PUNCH_HOLE", b"a\0\0")],
)
def test_fallocate(mode: str, data: bytes) -> None:
    fs = _overlay(("f", FileSpec(b"abc", xattrs=(("security.capability", CAP_V2),))))
    assert fs.apply(ops.Fallocate("f", mode, 1, 4)) == {Ok(None)}
    assert _entry(fs, "f").data == data and _entry(fs, "f").xattrs == ()
    assert fs.apply(ops.Fallocate("f", "", 0, 0)) == {Err("EINVAL")}


def _view(**times: tuple[int, int]) -> View:
    entries = {
        p: EntryView("file", 0o644, 0, 0, 1, mtime=m, ctime=c) for p, (m, c) in times.items()
    }
    return View(entries=entries, inodes=dict.fromkeys(entries, 1))


def test_time_map_relations() -> None:
    times = TimeMap()
    assert times.check(_view(a=(T1, -1)), _view(a=(T1, 5))) == []
    assert [d.field for d in times.check(_view(a=(T2, -1)), _view(a=(T1, 5)))] == ["mtime"]
    times = TimeMap()
    assert times.check(_view(a=(T1, -1), b=(-7, -1)), _view(a=(T1, 5), b=(11, 5))) == []
    # a stamp replacing an exact time must show another time; a known stamp keeps its
    # time; a new stamp after a stamp may show the same (one clock tick)
    found = times.check(
        _view(a=(-8, -2), b=(-7, -1), c=(-9, -1)), _view(a=(T1, 5), b=(12, 5), c=(1, 1))
    )
    assert {(d.where, d.field) for d in found} == {("a", "mtime"), ("b", "mtime")}
    assert times.check(_view(b=(-10, -1)), _view(b=(12, 5))) == []
    # ctime never goes back for one object
    assert [d.field for d in times.check(_view(b=(-10, -1)), _view(b=(12, 4)))] == ["ctime"]


def test_time_map_checks_only_the_fields_asked_for() -> None:
    times = TimeMap(frozenset({"ctime"}))
    times.check(_view(a=(-7, -1)), _view(a=(10, 5)))
    assert times.check(_view(a=(-7, -1)), _view(a=(99, 5))) == []


SHRINK = settings(
    max_examples=1500,
    stateful_step_count=20,
    deadline=None,
    database=None,
    phases=[Phase.generate, Phase.shrink],
    report_multiple_bugs=False,
    derandomize=True,
)
#: Fault -> the focused feature that finds it fast, and the operations its shrunk program
#: may end with (the step that shows the fault).
FOUND_BY = {
    "copy-up-resets-mtime": ("times", (ops.Chmod, ops.Chown, ops.SetXattr, ops.Write,
                                       ops.Truncate, ops.Link, ops.Rename, ops.Fallocate,
                                       ops.Utimens, ops.Mkdir, ops.Mkfifo, ops.Symlink,
                                       ops.Unlink, ops.Rmdir)),
    "create-keeps-parent-mtime": ("times", (ops.Write, ops.Mkdir, ops.Mkfifo, ops.Symlink,
                                            ops.Link, ops.Rename)),
    "utimens-ignores-mtime": ("times", (ops.Utimens,)),
    "root-write-clears-setuid": ("set-id", (ops.Write,)),
    "chown-keeps-setuid": ("set-id", (ops.Chown,)),
    "write-keeps-capability": ("set-id", (ops.Write,)),
    "copy-up-drops-capability": ("set-id", (ops.Chmod, ops.Chown, ops.SetXattr,
                                            ops.RemoveXattr, ops.Write, ops.Truncate,
                                            ops.Fallocate, ops.Mkdir)),
    "keep-size-grows": ("sizes", (ops.Fallocate,)),
}


@pytest.mark.parametrize("fault", sorted(TIME_AND_PRIVILEGE_FAULTS))
def test_fault_is_found_by_its_feature_and_shrunk(fault: str) -> None:
    """Found, and shrunk to a program that ends with the step showing the fault. (The
    shrinker may keep filler steps before it: a step's rule is drawn from what the model
    holds, so deleting one can change the next; docs/generation.md.)"""
    from conformance.features import BY_ID

    feature, last = FOUND_BY[fault]
    with pytest.raises(Diverged) as info:
        run_machine(FaultyDriver(fault), Options(), SHRINK, BY_ID[feature])
    (failure,) = info.value.failures
    ops_run = [step.op for step in failure.steps]
    assert len(ops_run) < SHRINK.stateful_step_count, ops_run
    assert isinstance(ops_run[-1], last), ops_run


def test_a_profile_claims_times_or_not() -> None:
    """``times = false``: the times feature is unclaimed, and no machine compares times or
    draws utimensat (conformance.lockstep.claims)."""
    from adapters.base import Capabilities
    from adapters.drivers.driver_profile import DriverProfileError, driver_profile_from_dict
    from conformance.features import BY_ID
    from conformance.lockstep.claims import unclaimed_reason
    from conformance.lockstep.machine import machine_for

    profile = driver_profile_from_dict({"name": "p", "template": "x {mountpoint}", "times": False})
    claims = profile.claims(Capabilities())
    assert claims.times is False

    class Driver(FaultyDriver):
        capabilities = claims

    driver = Driver("keep-size-grows")
    assert "times = false" in (unclaimed_reason(driver, Options(), BY_ID["times"]) or "")
    machine = machine_for(driver, Options(), None, behaviours=())
    assert "utimens" not in machine.rules and machine.fields is not None
    assert not machine.fields & {"mtime", "ctime"}
    with pytest.raises(DriverProfileError, match="'times' must be a boolean"):
        driver_profile_from_dict({"name": "p", "template": "x {mountpoint}", "times": "yes"})
