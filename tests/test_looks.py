"""ops.LOOKS: the operations after which the state machine reuses the reference's view and
upper image (conformance/lockstep/machine.py). Each must leave everything the engine keeps as it
was, in every option set, after any history of other operations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.generation import strategies as s
from reference import ops
from reference.options import Options
from reference.overlay import Overlay

OPTION_SETS = [
    Options(),
    Options(redirect_dir=True),
    Options(index=True),
    Options(redirect_dir=True, index=True),
    Options(redirect_dir=True, metacopy=True),
    Options(read_only=True),
]

#: Every operation, drawn as the machine draws its programs.
any_op = s.Operations()


def test_the_looking_operations_are_the_ones_that_write_nothing() -> None:
    assert not ops.LOOKS & set(ops.WRITES)
    assert ops.Remount not in ops.LOOKS


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: o.label)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_operation_that_looks_changes_nothing(options: Options, data: st.DataObject) -> None:
    min_lowers = 2 if options.read_only else 1
    fs = Overlay(data.draw(s.stacks(min_lowers=min_lowers)), options)
    for op in data.draw(st.lists(any_op, max_size=12)):
        before = fs.view(), fs.images(), dict(fs.index), dict(fs.index_nlink)
        fs.apply(op)
        if type(op) in ops.LOOKS:
            assert (fs.view(), fs.images(), dict(fs.index), dict(fs.index_nlink)) == before, op
