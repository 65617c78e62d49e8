"""One operation table (reference.ops.KINDS): every kind it declares has a handler in every
place that runs or draws operations, and nothing handles a kind it does not declare."""

from __future__ import annotations

import ast
import inspect
import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture.data import ConjectureData

from adapters import syscalls
from adapters.sandbox import executor as _executor
from conformance.containers import machine as containers
from conformance.features import BY_ID, FEATURES
from conformance.generation import strategies
from conformance.generation.cases import Cases
from conformance.records import reproducer
from reference import ops
from reference.layer import StackSpec
from reference.options import Options
from reference.overlay import Overlay

KINDS = list(ops.KINDS.values())
IDS = [kind.rule for kind in KINDS]
CALLED = [kind for kind in KINDS if kind.effect is not ops.Effect.REMOUNTS]


def test_every_operation_class_is_declared() -> None:
    classes = {c for c in vars(ops).values() if isinstance(c, type) and c is not ops.Operation}
    assert {c for c in classes if issubclass(c, ops.Operation)} == set(ops.KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_the_reference_has_a_rule_for_each_kind(kind: ops.Kind) -> None:
    assert callable(getattr(Overlay, f"_op_{kind.rule}", None)), (
        f"no reference rule Overlay._op_{kind.rule} for ops.{kind.cls.__name__}"
    )


def test_the_reference_dispatches_every_kind_to_its_rule() -> None:
    overlay = Overlay(StackSpec(()), Options())
    assert {cls: handler.__name__ for cls, handler in overlay._handlers.items()} == {
        kind.cls: f"_op_{kind.rule}" for kind in KINDS
    }


@pytest.mark.parametrize("kind", CALLED, ids=[k.rule for k in CALLED])
def test_each_kind_has_a_system_call_taking_its_fields(kind: ops.Kind) -> None:
    call = syscalls.CALLS.get(kind.rule)
    assert call is not None, f"no system call adapters.syscalls.CALLS[{kind.rule!r}]"
    assert list(inspect.signature(call).parameters) == [f.name for f in ops.own_fields(kind.cls)]
    assert kind.cls in _executor.HANDLERS


def test_no_system_call_without_a_kind() -> None:
    assert set(syscalls.CALLS) == {kind.rule for kind in CALLED}
    assert set(_executor.HANDLERS) == {kind.cls for kind in CALLED}


def test_the_system_calls_use_the_standard_library_only() -> None:
    """The reproducer embeds the module verbatim: it must run without the project."""
    tree = ast.parse(Path(syscalls.__file__).read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert modules and modules <= set(sys.stdlib_module_names), modules


class _NoLibc:
    """A libc whose every lookup fails: a call made through it looked libc up again."""

    def __getattr__(self, name: str) -> None:
        raise AssertionError(f"libc looked up again: {name}")


def _rename_both_ways(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    syscalls.renameat2(str(a), str(b), syscalls.RENAME_FLAGS[""])
    assert b.read_text() == "1" and not a.exists()
    a.write_text("2")
    syscalls.renameat2(str(a), str(b), syscalls.RENAME_FLAGS["RENAME_EXCHANGE"])
    assert (a.read_text(), b.read_text()) == ("1", "2")
    with pytest.raises(FileExistsError):
        syscalls.renameat2(str(a), str(b), syscalls.RENAME_FLAGS["RENAME_NOREPLACE"])


def test_renameat2_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The libc function (or the raw system call) is found and typed at import, not on
    every rename."""
    monkeypatch.setattr(syscalls, "_libc", _NoLibc())
    _rename_both_ways(tmp_path)


def test_renameat2_falls_back_to_the_raw_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where libc has no renameat2 wrapper (glibc < 2.28), the system call by number."""

    class OldLibc:
        syscall = syscalls._libc.syscall

    monkeypatch.setattr(syscalls, "_libc", OldLibc())
    monkeypatch.setattr(syscalls, "_renameat2", syscalls._renameat2_function())
    _rename_both_ways(tmp_path)
    monkeypatch.setattr(syscalls.os, "uname", lambda: os.uname_result(("", "", "", "", "vax")))
    monkeypatch.setattr(syscalls, "_renameat2", syscalls._renameat2_function())
    with pytest.raises(OSError, match="no system call number"):
        syscalls.renameat2(str(tmp_path / "a"), str(tmp_path / "c"), 0)


def test_the_reproducer_embeds_the_system_calls_verbatim() -> None:
    template = reproducer.TEMPLATE.read_text(encoding="utf-8")
    assert any("__SYSCALLS__" in mark for mark in reproducer._EMBEDDED)
    assert all(mark in template for mark in reproducer._EMBEDDED)
    assert "HANDLERS" not in template  # no second executor
    assert reproducer.syscalls_source() == Path(syscalls.__file__).read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@settings(max_examples=20, database=None)
@given(data=st.data())
def test_each_kind_is_drawn_by_the_strategies(kind: ops.Kind, data: st.DataObject) -> None:
    """Operations([rule]) draws that kind, each field from its domain's table."""
    op = data.draw(strategies.Operations([kind.rule]))
    assert type(op) is kind.cls
    for field, domain in zip(ops.own_fields(kind.cls), kind.draws, strict=True):
        assert getattr(op, field.name) in strategies.DOMAINS[domain], (field.name, domain)


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_each_kind_is_drawn_by_the_state_aware_generator(kind: ops.Kind) -> None:
    """Cases([rule]) draws programs of that kind and no other (but the remount every
    program may have); a kind with no path roles of its own in paths_choice.ROLES draws
    its paths as "any" (before, drawing it raised IndexError)."""
    drawn = []
    for n in range(20):
        _, program = ConjectureData(random=random.Random(n)).draw(Cases([kind.rule], 6, Options()))
        drawn += [type(op) for op in program]
    assert set(drawn) <= {kind.cls, ops.Remount}
    assert kind.cls in drawn


def test_every_domain_is_drawn_by_some_kind() -> None:
    """No field domain of the strategies or of the container machine that no kind draws
    (a stray one is a misspelt or a forgotten name)."""
    drawn = {domain for kind in KINDS for domain in kind.draws}
    assert set(strategies.DOMAINS) == drawn
    assert set(containers._domains(strategies.paths)) <= drawn


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_each_kind_belongs_to_a_feature(kind: ops.Kind) -> None:
    machines = {feature.id for feature in FEATURES if kind.rule in feature.rules}
    assert machines, f"ops.{kind.cls.__name__} is drawn by no feature"
    assert kind.features <= set(BY_ID)


@settings(max_examples=60, database=None)
@given(op=strategies.Operations())
def test_every_drawn_operation_runs_on_the_reference(op: ops.Op) -> None:
    Overlay(StackSpec(()), Options()).apply(op)
