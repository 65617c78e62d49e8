"""The layer-interchange feature (conformance.lockstep.interchange): which pairs run, when it is
defined, and that it catches a reader that shows the layers differently."""

from __future__ import annotations

import os

import attrs
import pytest
from hypothesis import settings

from adapters import registry
from adapters.base import Capabilities, DriverUnavailable
from adapters.drivers.fuse import FuseOverlayfsDriver, UnionfsFuseDriver
from adapters.drivers.kernel import KernelDriver
from adapters.drivers.reference import ReferenceDriver
from conformance.lockstep import interchange
from conformance.lockstep.interchange import InterchangeDiverged, Pair, exchange, pairs
from reference import ops
from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec
from reference.options import MATRIX, Options
from reference.view import UNREACHABLE, EntryView, View

FILE = EntryView(kind="file", mode=0o644, uid=0, gid=0, nlink=1, data=b"x")
STACK = StackSpec(
    (LayerSpec((("a", FileSpec(b"lower a")), ("d", DirSpec()), ("d/x", FileSpec(b"x")))),)
)
STEPS = [ops.Unlink("a"), ops.Unlink("d/x"), ops.Rmdir("d"), ops.Mkdir("d", 0o755)]


def _make(name: str):
    try:
        return registry.make(name)
    except DriverUnavailable as reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {name} cannot run: {reason}")
        pytest.skip(str(reason))


def test_defined_without_index_and_metacopy() -> None:
    defined = [o.label for o in MATRIX if interchange.applies(o) is None]
    assert defined == [
        "redirect_dir=off,index=off",
        "redirect_dir=on,index=off",
        "ro",
        "redirect_dir=nofollow,index=off,userxattr",
    ]


def test_check_accepts_unreachable_either_way_and_catches_a_difference() -> None:
    pair, options = Pair("kernel", "x"), Options()
    written = View({"a": FILE, "d": FILE, "d/w": UNREACHABLE}, {"a": 1, "d": 2})
    interchange.check(pair, options, written, View({"a": FILE, "d": FILE}, {"a": 7, "d": 8}))
    with pytest.raises(InterchangeDiverged, match="a: data: expected b'x', got b'y'"):
        changed = View({"a": FileSpecView(b"y"), "d": FILE}, {"a": 1, "d": 2})
        interchange.check(pair, options, written, changed)


def FileSpecView(data: bytes) -> EntryView:
    return EntryView(kind="file", mode=0o644, uid=0, gid=0, nlink=1, data=data)


def test_pairs_follow_the_profile() -> None:
    class Named:
        def __init__(self, name: str, profile=None, capabilities=None) -> None:
            self.name = name
            self.capabilities = capabilities or profile.claims(Capabilities())

    reference, kernel = ReferenceDriver.capabilities, KernelDriver.capabilities
    assert pairs(Named("reference", capabilities=reference))[0] == [Pair("reference", "kernel")]
    assert pairs(Named("kernel", capabilities=kernel))[0] == [
        Pair("kernel", "kernel"),
        Pair("reference", "kernel"),
    ]
    fo = FuseOverlayfsDriver.preset_profile()
    assert pairs(Named("fuse-overlayfs", fo))[0] == [
        Pair("kernel", "fuse-overlayfs"),
        Pair("fuse-overlayfs", "kernel"),
    ]
    found, left_out = pairs(Named("unionfs-fuse", UnionfsFuseDriver.preset_profile()))
    assert found == [Pair("kernel", "unionfs-fuse")]
    assert "not the kernel's" in left_out[0]


@pytest.mark.parametrize("options", [Options(), Options(read_only=True)], ids=["rw", "ro"])
def test_reference_and_kernel_layers_interchange(options: Options) -> None:
    kernel = _make("kernel")
    try:
        exchange(Pair("reference", "kernel"), kernel, kernel, STACK, STEPS, options)
        exchange(Pair("kernel", "kernel"), kernel, kernel, STACK, STEPS, options)
        # the writer's mounter is back: the kernel driver mounts as the kernel again
        kernel.mount(STACK, Options())
        assert kernel.run(ops.Read("a")) == ops_ok(b"lower a")
    finally:
        kernel.close()


def ops_ok(value: object):
    from reference.outcome import Ok

    return Ok(value)


def test_a_reader_that_ignores_whiteouts_is_caught() -> None:
    """unionfs-fuse does not read the kernel's 0/0 whiteouts: the removed lower file shows
    again (as a character device) when it mounts layers the kernel wrote."""
    kernel = _make("kernel")
    unionfs = _make("unionfs-fuse")
    try:
        with pytest.raises(InterchangeDiverged, match=r"\ba: exists: expected None"):
            exchange(Pair("kernel", "unionfs-fuse"), unionfs, kernel, STACK, STEPS, Options())
    finally:
        unionfs.close()
        kernel.close()


def test_the_feature_runs_and_leaves_nothing_mounted() -> None:
    kernel = _make("kernel")
    try:
        quick = settings(max_examples=3, stateful_step_count=5, deadline=None, database=None)
        interchange.run_interchange(kernel, Options(), quick)
    finally:
        kernel.close()


def test_check_matches_records_only_to_what_they_describe() -> None:
    """Records are matched at the differences (as after a mount), not the whole cell:
    fuse-overlayfs's private xattr shown by the reader is interchange-private-markers;
    another xattr, or a wrong byte, beside it is still a divergence."""
    from conformance.records import expectations

    known = tuple(
        r for r in expectations.load() if r.id == "interchange-private-markers"
    )
    stack = StackSpec((LayerSpec((("a", FileSpec(b"x")),)),))
    model = interchange._reader_model(stack, [], MATRIX[0])
    pair = Pair("fuse-overlayfs", "kernel")
    written = View({"a": FILE}, {"a": 1})
    private = (("user.fuseoverlayfs.origin", b"a"),)
    shows = View({"a": attrs.evolve(FILE, xattrs=private)}, {"a": 1})
    assert interchange.check(pair, MATRIX[0], written, shows, known, model) == {
        "interchange-private-markers"
    }
    with pytest.raises(InterchangeDiverged):
        interchange.check(pair, MATRIX[0], written, shows)  # no records: a divergence
    other = (("user.fuseoverlayfs.origin", b"a"), ("user.b", b"1"))
    for wrong in (
        View({"a": attrs.evolve(FILE, xattrs=other)}, {"a": 1}),
        View({"a": attrs.evolve(FILE, xattrs=private, data=b"y")}, {"a": 1}),
    ):
        with pytest.raises(InterchangeDiverged):
            interchange.check(pair, MATRIX[0], written, wrong, known, model)
