"""The project's layout: no import cycles among its modules, one error base per package,
no module puts the checkout on sys.path."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reference", "adapters", "conformance")
#: Each package's error base: every exception class it defines derives from it.
BASES = {
    "reference": "reference.errors:SpecError",
    "adapters": "adapters.base:AdapterError",
    "conformance": "conformance.errors:ConformanceError",
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(inner) for inner in ast.walk(node)}
    return hidden


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, wherever the import is (a function's lazy
    import is a dependency too; one under ``if TYPE_CHECKING`` is not). ``from pkg import
    mod`` depends on ``pkg.mod``: a package's ``__init__`` may re-export its modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                inner = f"{node.module}.{alias.name}"
                found.add(inner if inner in known else node.module)
    return {name for name in found if name in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_one_error_base_per_package(package: str) -> None:
    module_name, _, name = BASES[package].partition(":")
    base = getattr(importlib.import_module(module_name), name)
    strays = []
    for module in modules():
        if module.split(".")[0] != package or module.endswith("__main__"):
            continue
        loaded = importlib.import_module(module)
        for cls in vars(loaded).values():
            if (
                inspect.isclass(cls)
                and cls.__module__ == module
                and issubclass(cls, Exception)
                and not issubclass(cls, base)
            ):
                strays.append(f"{module}.{cls.__name__}")
    assert strays == []


def test_nothing_puts_the_checkout_on_sys_path() -> None:
    """The packages import only each other: the seeded faults live in the package
    (adapters.faults), where the bench imports them from."""
    for name, path in modules().items():
        assert "sys.path.insert" not in path.read_text(encoding="utf-8"), name
