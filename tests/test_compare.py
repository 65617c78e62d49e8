"""The comparison of views (conformance.lockstep.compare): what counts as a divergence."""

from __future__ import annotations

from conformance.lockstep.compare import InodeMap, compare_views, may_be_absent
from reference.layer import FileSpec, LayerSpec, StackSpec, WhiteoutSpec
from reference.options import Options
from reference.overlay import Overlay
from reference.view import UNREACHABLE, EntryView, View

FILE = EntryView(kind="file", mode=0o644, uid=0, gid=0, nlink=1, data=b"b")


def _expected() -> View:
    """What the reference shows for lower {d/a: whiteout, d/b: file}: d is not merged, so
    the whiteout d/a is listed and unreachable (readdir.c ovl_iterate)."""
    stack = StackSpec((LayerSpec((("d/a", WhiteoutSpec()), ("d/b", FileSpec(b"b")))),))
    view = Overlay(stack, Options()).view()
    assert view.entries["d/a"] == UNREACHABLE
    return view


def _without(view: View, *paths: str) -> View:
    return View(
        {p: e for p, e in view.entries.items() if p not in paths},
        {p: i for p, i in view.inodes.items() if p not in paths},
    )


def test_an_unreachable_entry_may_be_listed() -> None:
    expected = _expected()
    assert compare_views(expected, expected, InodeMap("")) == []


def test_an_unreachable_entry_may_be_absent() -> None:
    expected = _expected()
    actual = _without(expected, "d/a")
    assert may_be_absent(expected, actual) == {"d/a"}
    assert compare_views(expected, actual, InodeMap("")) == []


def test_a_missing_reachable_entry_is_still_a_divergence() -> None:
    expected = _expected()
    actual = _without(expected, "d/b")
    found = compare_views(expected, actual, InodeMap(""))
    assert [(d.where, d.field) for d in found] == [("d/b", "exists")]


def test_an_unreachable_entry_shown_as_a_file_is_a_divergence() -> None:
    expected = _expected()
    actual = View({**expected.entries, "d/a": FILE}, {**expected.inodes, "d/a": 99})
    found = compare_views(expected, actual, InodeMap(""))
    assert ("d/a", "kind") in [(d.where, d.field) for d in found]
