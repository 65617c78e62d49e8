"""Where two container engines differ, as data (``conformance/records/engines.toml``).

Each ``[[engine-divergence]]`` record is one field of the engine profile
(:class:`reference.engines.EngineProfile`) whose Docker and Podman values differ,
reproduced by hand with both CLIs first. Keys:

``id`` (string), ``field`` (string: a profile field), ``reason`` (one line),
``scenarios`` (array of scenario ids) and/or ``steps`` (array of Lockstep calls, as
``create('c', ContainerSpec((VolumeMount('a', 'v'),)))`` or ``run('c', ops.Unlink('a/x'))``),
``shows`` (array: the engines whose program shows the field), ``confirmed`` (the CLI
commands and what each engine did), ``replays`` (optional array: the engines that give
the program's outcome every time; default both - an engine left out was seen to vary,
which ``confirmed`` says).

:func:`replay` holds an engine to a record: under its own profile the program passes,
under its profile with the *other* engine's value of the field it diverges. So each
record is exactly what makes the two engines differ on its program, and every differing
field has its record (:func:`check`). Unknown keys, missing keys and wrong types are
refused with a one-line :class:`ExpectationError`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs

from conformance.records.expectations import ExpectationError
from reference import container as model
from reference import ops
from reference.engines import DOCKER, PODMAN, EngineProfile

DEFAULT_PATH = Path(__file__).with_name("engines.toml")
#: The two engines a record compares; each one's other.
OTHER: dict[str, EngineProfile] = {"docker": PODMAN, "podman": DOCKER}
_REQUIRED = {"id": str, "field": str, "reason": str, "shows": list, "confirmed": str}
_OPTIONAL = {"scenarios": list, "steps": list, "replays": list}
#: The names a step may use: Lockstep methods, the container spec classes, ``ops``.
_NAMES: dict[str, Any] = {
    "ops": ops,
    **{
        name: getattr(model, name)
        for name in ("ContainerSpec", "VolumeMount", "BindMount", "TmpfsMount", "VolumesFrom")
    },
}
_METHODS = frozenset(
    {"create", "start", "stop", "remove", "run", "create_volume", "remove_volume"}
    | {"make_host_dir", "host_run", "commit", "cp_in", "cp_out"}
)


@attrs.frozen
class EngineRecord:
    id: str
    field: str
    reason: str
    shows: tuple[str, ...]
    confirmed: str
    scenarios: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    replays: tuple[str, ...] = ("docker", "podman")


def load(path: Path = DEFAULT_PATH) -> list[EngineRecord]:
    from adapters.drivers.driver_profile import read_toml

    data = read_toml(path, ExpectationError)
    unknown_tables = set(data) - {"engine-divergence"}
    if unknown_tables:
        raise ExpectationError(f"{path}: unknown table {sorted(unknown_tables)[0]!r}")
    return [_record(path, raw) for raw in data.get("engine-divergence", [])]


def _record(path: Path, raw: dict[str, Any]) -> EngineRecord:
    where = f"{path}: engine-divergence {raw.get('id', '?')!r}"
    for key, kind in _REQUIRED.items():
        if not isinstance(raw.get(key), kind):
            raise ExpectationError(f"{where}: {key} must be a {kind.__name__}")
    unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise ExpectationError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if raw["field"] not in attrs.fields_dict(EngineProfile):
        raise ExpectationError(f"{where}: {raw['field']!r} is no engine profile field")
    if not (raw.get("scenarios") or raw.get("steps")):
        raise ExpectationError(f"{where}: needs scenarios or steps")
    for step in raw.get("steps", []):
        parse_step(step)  # refused early
    return EngineRecord(
        raw["id"],
        raw["field"],
        raw["reason"],
        tuple(raw["shows"]),
        raw["confirmed"],
        tuple(raw.get("scenarios", ())),
        tuple(raw.get("steps", ())),
        tuple(raw.get("replays", ("docker", "podman"))),
    )


def check(records: list[EngineRecord]) -> list[str]:
    """What is wrong with the records as a whole: a field whose Docker and Podman values
    differ with no record, or a record of a field whose values agree, or two of one."""
    problems = []
    fields = [f.name for f in attrs.fields(EngineProfile) if f.name != "name"]
    differing = {f for f in fields if getattr(DOCKER, f) != getattr(PODMAN, f)}
    recorded = [r.field for r in records]
    problems += [f"{f}: docker and podman differ, no record" for f in sorted(differing)]
    problems = [p for p in problems if p.split(":")[0] not in recorded]
    same = [r for r in records if r.field not in differing]
    problems += [f"{r.id}: {r.field} is the same on both" for r in same]
    twice = sorted(f for f in set(recorded) if recorded.count(f) > 1)
    problems += [f"{f}: {recorded.count(f)} records" for f in twice]
    return problems


def parse_step(text: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``method(args)`` of a step: literals and the whitelisted constructors only."""
    try:
        call = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ExpectationError(f"step {text!r}: {exc.msg}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise ExpectationError(f"step {text!r}: not a call of a Lockstep method")
    if call.func.id not in _METHODS:
        raise ExpectationError(f"step {text!r}: {call.func.id!r} is no Lockstep action")
    args = tuple(_value(arg, text) for arg in call.args)
    kwargs = {kw.arg: _value(kw.value, text) for kw in call.keywords if kw.arg}
    return call.func.id, args, kwargs


def _value(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_value(item, text) for item in node.elts)
    if isinstance(node, ast.Call):
        func = _callable(node.func, text)
        args = [_value(arg, text) for arg in node.args]
        return func(*args, **{kw.arg: _value(kw.value, text) for kw in node.keywords if kw.arg})
    raise ExpectationError(f"step {text!r}: {ast.dump(node)[:60]} is not allowed")


def _callable(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ops"
        and node.attr in {kind.cls.__name__ for kind in ops.KINDS.values()}
    ):
        return getattr(ops, node.attr)
    raise ExpectationError(f"step {text!r}: {ast.unparse(node)} is not allowed")


def replay(driver: Any, record: EngineRecord, *, swapped: bool) -> None:
    """Run the record's program on ``driver`` in lockstep with its profile (``swapped``:
    with the other engine's value of the record's field); ContainerDiverged on a
    difference. The scenarios each from a fresh start, then the steps."""
    from conformance.containers.machine import SCENARIOS, Lockstep

    profile = driver.profile
    if swapped:
        other = OTHER[profile.name]
        profile = attrs.evolve(profile, **{record.field: getattr(other, record.field)})
    by_id = {s.id: s for s in SCENARIOS}
    for scenario in record.scenarios:
        by_id[scenario].program(Lockstep(driver, profile=profile))
    if record.steps:
        run = Lockstep(driver, profile=profile)
        for step in record.steps:
            method, args, kwargs = parse_step(step)
            getattr(run, method)(*args, **kwargs)
