"""The catalogue of recorded divergences, a Markdown page made from ``expectations.toml``.

``python -m conformance.reports.catalogue`` prints it; ``docs/divergences.md`` is its output, and
``tests/test_readme.py`` fails when the two differ, so the page never drifts from the data.
Every key of a record is shown: the ones every record has in a fixed order, any other key
(a newer record format) after them, by name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adapters.drivers.driver_profile import read_toml
from conformance.records.expectations import DEFAULT_PATH, ExpectationError

#: Keys rendered in the heading or in this order; the rest follow by name.
_HEADING_KEYS = ("driver", "version", "reason")
_ORDERED_KEYS = ("features", "options", "scenarios", "stack", "steps", "confirmed", "upstream")


def _inline(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value)
    return f"`{value}`"


def _field(key: str, value: Any) -> list[str]:
    if key == "confirmed" or (isinstance(value, str) and "\n" in value):
        body = [f"  {line}" for line in value.strip().splitlines()]
        return [f"- **{key}**:", "", "  ```", *body, "  ```"]
    if key == "differs":
        # what the record accounts for (conformance.records.behaviours): one clause a line
        clauses = [
            ", ".join(f"{name}={item!r}" if not isinstance(item, str) else f"{name}={item}"
                      for name, item in clause.items())
            for clause in value
        ]
        return [f"- **{key}**:", *(f"  - `{clause}`" for clause in clauses)]
    if key == "steps":
        return [f"- **{key}**:", *(f"  1. `{step}`" for step in value)]
    if key == "upstream":
        return [f"- **{key}**: {value}"]
    return [f"- **{key}**: {_inline(value)}"]


def _record(number: int, record: dict[str, Any]) -> list[str]:
    lines = [f"### {number}. {record.get('driver', '?')}: {record.get('reason', '')}", ""]
    lines.append(f"- **version**: `{record.get('version', '?')}`")
    rest = [k for k in record if k not in _HEADING_KEYS and k not in _ORDERED_KEYS]
    for key in (*_ORDERED_KEYS, *sorted(rest)):
        if key in record:
            lines.extend(_field(key, record[key]))
    return [*lines, ""]


def render(records: Iterable[dict[str, Any]], source: str) -> str:
    """The page: an index by driver, then every record in file order."""
    records = list(records)
    lines = [
        "# Recorded divergences",
        "",
        f"Generated from `{source}` by `python -m conformance.reports.catalogue`;"
        " do not edit by hand.",
        "Each record was found by the suite and reproduced by hand against the driver and the",
        "kernel; the reproducer (`stack` and `steps`) replays in the pytest items and certify.",
        "",
    ]
    drivers: dict[str, int] = {}
    for record in records:
        drivers[record.get("driver", "?")] = drivers.get(record.get("driver", "?"), 0) + 1
    lines += [f"- {driver}: {count} records" for driver, count in drivers.items()]
    lines.append("")
    for number, record in enumerate(records, 1):
        lines += _record(number, record)
    return "\n".join(lines).rstrip("\n") + "\n"


def catalogue(path: Path = DEFAULT_PATH) -> str:
    data = read_toml(path, ExpectationError)
    records = [
        record
        for key, value in data.items()
        if isinstance(value, list)
        for record in value
        if isinstance(record, dict)
    ]
    source = "conformance/records/expectations.toml" if path == DEFAULT_PATH else str(path)
    page = render(records, source)
    return page + render_engines() if path == DEFAULT_PATH else page


def render_engines() -> str:
    """The docker-vs-podman records (conformance/records/engines.toml): each with both
    engines' values of its profile field and the sources of each."""
    from conformance.records import engine_records
    from reference.engines import DOCKER, PODMAN, sources

    lines = [
        "",
        "# Container engines: where Docker and Podman differ",
        "",
        "Generated from `conformance/records/engines.toml` (one record per field of",
        "`reference/engines.py` EngineProfile whose values differ); each reproduced by hand",
        "with both CLIs, and replayed by `tests/test_container_engines.py::test_engine_record`.",
        "",
    ]
    for number, record in enumerate(engine_records.load(), 1):
        found = sources(record.field)
        lines += [f"### E{number}. {record.id}: {record.reason}", ""]
        lines.append(f"- **field**: `{record.field}`")
        for name, profile in (("docker", DOCKER), ("podman", PODMAN)):
            value = getattr(profile, record.field)
            lines.append(f"- **{name}**: `{getattr(value, 'value', value)!r}` ({found[name]})")
        if record.scenarios:
            lines.append(f"- **scenarios**: {_inline(list(record.scenarios))}")
        if record.steps:
            lines.append("- **steps**:")
            lines += [f"  1. `{step}`" for step in record.steps]
        lines.append(f"- **shows**: {_inline(list(record.shows))}")
        lines.append(f"- **replays**: {_inline(list(record.replays))}")
        lines += [*_field("confirmed", record.confirmed), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    try:
        sys.stdout.write(catalogue(path))
    except ExpectationError as problem:  # one line naming the file
        print(f"catalogue: {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
