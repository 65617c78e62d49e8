"""Observations cross the executor's socket as pickles (reference/view.py
``pickled_as_a_call``): every one must come back equal, field for field."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.generation import strategies as s
from reference.options import Options
from reference.overlay import Overlay
from reference.view import UNREACHABLE, DiskEntry, EntryView, LayerImage, View


def test_every_field_survives() -> None:
    view = View(
        {
            "a": UNREACHABLE,
            "b": EntryView("file", 0o640, 1, 2, 3, b"x\x00", "", (("user.a", b""),)),
        },
        {"b": 7},
    )
    layer = LayerImage(
        {
            "w": DiskEntry("whiteout"),
            "f": DiskEntry("file", 0o600, 1, 2, None, "", (("user.b", b"v"),), False, "r", True),
            "d": DiskEntry("dir", opaque=True),
        },
        frozenset({frozenset({"f", "g"})}),
        {"f": 1, "d": 2},
    )
    for value in (view, layer, UNREACHABLE):
        assert pickle.loads(pickle.dumps(value)) == value


@settings(max_examples=50, deadline=None)
@given(stack=s.stacks(), options=st.sampled_from([Options(), Options(read_only=True)]))
def test_reference_observations_survive(stack, options) -> None:
    if options.read_only and len(stack.lowers) < 2:
        return
    fs = Overlay(stack, options)
    observed = (fs.view(), fs.images())
    assert pickle.loads(pickle.dumps(observed)) == observed
