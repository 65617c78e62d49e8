"""Programs as text: a reproducer's ``StackSpec(...)`` and its operations' reprs, read back
safely (shared by ``expectations.toml``, the corpus and saved failures)."""

from __future__ import annotations

import ast
from typing import Any

from conformance.records.program_check import ProgramError, check_program
from reference import layer, ops

#: The names a reproducer may use: the operations and the layer specs (their reprs).
_NAMES: dict[str, Any] = {
    **{n: getattr(ops, n) for n in dir(ops) if isinstance(getattr(ops, n), type)},
    **{n: getattr(layer, n) for n in dir(layer) if n.endswith("Spec")},
}


def parse_repr(text: str, where: str) -> Any:
    """Evaluate the repr of an operation or a StackSpec: only calls of the known classes,
    literals, tuples and lists are accepted (nothing else is evaluated)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ProgramError(f"{where}: not a valid expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in _NAMES:
                raise ProgramError(f"{where}: unknown name {node.id!r}")
        elif not isinstance(
            node,
            ast.Expression | ast.Call | ast.keyword | ast.Constant | ast.Tuple | ast.List
            | ast.Load,
        ):
            raise ProgramError(f"{where}: {type(node).__name__} is not allowed")
    try:
        return eval(compile(tree, where, "eval"), {"__builtins__": {}}, dict(_NAMES))
    except Exception as exc:  # a wrong argument to a known class
        raise ProgramError(f"{where}: {type(exc).__name__}: {exc}") from None


def parse_program(
    stack_text: str, step_texts: list[str], where: str
) -> tuple[layer.StackSpec, tuple[ops.Op, ...]]:
    """A reproducer's ``stack`` (a StackSpec repr) and ``steps`` (operation reprs), checked:
    an ProgramError naming ``where`` for anything else (shared with the corpus)."""
    stack = parse_repr(stack_text, f"{where} stack")
    if not isinstance(stack, layer.StackSpec):
        raise ProgramError(f"{where}: 'stack' must be a StackSpec(...)")
    steps = tuple(parse_repr(step, f"{where} steps[{i}]") for i, step in enumerate(step_texts))
    for i, step in enumerate(steps):
        if type(step).__module__ != ops.__name__ or isinstance(step, ops.StatResult):
            raise ProgramError(f"{where} steps[{i}]: not an operation")
    check_program(stack, steps, where)  # field types, path shapes, sizes
    return stack, steps
