"""The regression corpus: every divergence found, saved as a step program and replayed.

Hypothesis's example database is a cache (its keys change with the machine's code, and
nothing is saved under a fixed seed; ../shared/notes/pbt-anchors.md), so each divergence
is also written as a small JSON *step program*; ``certify`` and the pytest suite replay
every program of the corpus deterministically before they generate anything new. Replay
runs the program in lockstep with the reference on the driver under test (the full
comparison after every step, :func:`conformance.records.replay.replay_steps`); it passes
when the driver conforms on it now.

A program file (format ``unionspec-program/1``)::

    {"format": "unionspec-program/1",
     "driver": "fuse-overlayfs", "version": "fuse-overlayfs: version 1.10",
     "feature": "copy-up", "options": "redirect_dir=off,index=off",
     "stack": "StackSpec(lowers=(...))", "steps": ["Chmod(path='a', mode=0o700)"],
     "divergence": "Chmod(path='a', mode=0o700): fuse-overlayfs gave EIO ...",
     "found": "2026-12-01T23:10:00+00:00"}

``stack`` and ``steps`` are the reprs the suite prints (decoded by
:func:`conformance.records.programs.parse_repr`, as in ``expectations.toml``); ``feature`` is
a feature id or ``""`` (the whole machine: every rule, every field); ``driver`` and
``version`` say where it was found (a program replays on any driver that claims its
option set). The project's own corpus is ``conformance/records/corpus/``; a user's defaults to
``.unionspec/corpus/`` (``--corpus DIR``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from conformance.errors import ConformanceError
from conformance.records.failure import Failure
from conformance.records.program_check import ProgramError
from conformance.records.programs import parse_program
from conformance.records.replay import replay_steps
from conformance.run_config import DEFAULT_RUN, RunConfig
from reference import layer, ops
from reference.options import MATRIX, Options

FORMAT = "unionspec-program/1"
PROJECT_CORPUS = Path(__file__).resolve().parent / "corpus"
_KEYS = {
    "format": str,
    "driver": str,
    "version": (str, type(None)),
    "feature": str,
    "options": str,
    "stack": str,
    "steps": list,
    "divergence": str,
    "found": str,
}
_OPTIONAL = {"version", "found", "divergence"}


class CorpusError(ConformanceError, ValueError):
    """A program file that cannot be used (the message is one line naming the file)."""


@attrs.frozen
class Program:
    driver: str
    feature: str
    options: Options
    stack: layer.StackSpec
    steps: tuple[ops.Op, ...]
    divergence: str = ""
    version: str | None = None
    found: str = ""
    #: The file it was read from (None: not saved yet).
    path: Path | None = attrs.field(default=None, eq=False)

    @property
    def key(self) -> str:
        """A digest of what makes the program (the same program is saved once)."""
        text = repr((self.feature, self.options.label, self.stack, self.steps))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """A stable, readable id (pytest item ids, file names)."""
        from conformance.reports.report import slug

        feature = self.feature or "machine"
        return f"{slug(self.driver)}-{slug(feature)}-{slug(self.options.label)}-{self.key}"

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "driver": self.driver,
            "version": self.version,
            "feature": self.feature,
            "options": self.options.label,
            "stack": repr(self.stack),
            "steps": [repr(op) for op in self.steps],
            "divergence": self.divergence,
            "found": self.found,
        }

    def replay(
        self, driver: Any, feature: Any = None, run_config: RunConfig = DEFAULT_RUN
    ) -> None:
        """Run it on ``driver`` in lockstep with the reference (raises Diverged while the
        driver does not conform on it), the run's records applied (``run_config``)."""
        if feature is None and self.feature:
            from conformance.features import BY_ID

            feature = BY_ID[self.feature]
        replay_steps(
            driver,
            self.stack,
            self.steps,
            self.options,
            feature,
            title=self.divergence.splitlines()[0] if self.divergence else self.name,
            source=str(self.path or "corpus"),
            run_config=run_config,
        )


def from_failure(failure: Failure, version: str | None = None) -> Program:
    """The step program of a failing example."""
    return Program(
        driver=failure.driver,
        feature=failure.feature,
        options=failure.options,
        stack=failure.stack,
        steps=failure.ops,
        divergence=failure.divergence,
        version=version,
        found=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def parse(data: Any, where: str) -> Program:
    """Check a decoded program file and build the :class:`Program`."""
    from conformance.features import BY_ID

    if not isinstance(data, dict):
        raise CorpusError(f"{where}: must be a JSON object")
    for key in data:
        if key not in _KEYS:
            raise CorpusError(f"{where}: unknown key {key!r} (known: {', '.join(_KEYS)})")
    for key, kind in _KEYS.items():
        if key not in data:
            if key in _OPTIONAL:
                continue
            raise CorpusError(f"{where}: missing key {key!r}")
        if not isinstance(data[key], kind):
            raise CorpusError(f"{where}: key {key!r} has the wrong type")
    if data["format"] != FORMAT:
        raise CorpusError(f"{where}: format {data['format']!r} is not {FORMAT!r}")
    if data["feature"] and data["feature"] not in BY_ID:
        raise CorpusError(f"{where}: unknown feature {data['feature']!r}")
    if data["feature"] and not BY_ID[data["feature"]].machine:
        raise CorpusError(f"{where}: feature {data['feature']!r} has no step programs")
    by_label = {options.label: options for options in MATRIX}
    if data["options"] not in by_label:
        raise CorpusError(f"{where}: unknown option set {data['options']!r}")
    if not all(isinstance(step, str) for step in data["steps"]):
        raise CorpusError(f"{where}: 'steps' must be an array of strings")
    try:
        stack, steps = parse_program(data["stack"], data["steps"], where)
    except ProgramError as exc:
        raise CorpusError(str(exc)) from None
    return Program(
        driver=data["driver"],
        feature=data["feature"],
        options=by_label[data["options"]],
        stack=stack,
        steps=steps,
        divergence=data.get("divergence", ""),
        version=data.get("version"),
        found=data.get("found", ""),
    )


def read_json(path: str | Path, error: type[ValueError]) -> Any:
    """The JSON file at ``path``; an unreadable or invalid file raises ``error`` with one
    line naming the file (shared by the corpus and conformance.reports.diff's reports)."""
    from adapters.input_files import InputError, read_text

    try:
        return json.loads(read_text(path))
    except InputError as exc:
        raise error(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON: nested too deeply") from None


def load_file(path: str | Path) -> Program:
    data = read_json(path, CorpusError)
    return attrs.evolve(parse(data, str(path)), path=Path(path))


def load_dir(
    directory: str | Path, on_problem: Callable[[str], None] | None = None
) -> tuple[Program, ...]:
    """Every program of a corpus directory, sorted by file name (a missing directory is an
    empty corpus; a path that is not a directory is a CorpusError). With ``on_problem``, a
    file that is not a valid program is given to it (one line) and skipped instead of
    raising: one bad file must not stop a run (issue 17)."""
    where = Path(directory)
    if not where.exists():
        return ()
    if not where.is_dir():
        raise CorpusError(f"corpus {str(where)!r} is not a directory")
    programs = []
    for path in sorted(where.glob("*.json")):
        try:
            programs.append(load_file(path))
        except CorpusError as problem:
            if on_problem is None:
                raise
            on_problem(str(problem))
    return tuple(programs)


def load(
    directories: Iterable[str | Path], on_problem: Callable[[str], None] | None = None
) -> tuple[Program, ...]:
    """The programs of several corpora, each program once (by :attr:`Program.key`)."""
    seen: dict[str, Program] = {}
    for directory in directories:
        for program in load_dir(directory, on_problem):
            seen.setdefault(program.key, program)
    return tuple(seen.values())


def save(program: Program, directory: str | Path) -> Path:
    """Write ``program`` into ``directory`` (made if missing) unless it is there already;
    the file's path. Atomic (a temporary file and a rename)."""
    from conformance.reports.safe_write import write_atomically

    where = Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{program.name}.json"
    if not path.exists():
        write_atomically(path, json.dumps(program.as_json(), indent=2) + "\n")
    return path


def matching(programs: Iterable[Program], options: Options, feature_id: str) -> list[Program]:
    """The programs a cell replays: same option set and feature ("" the whole machine)."""
    return [p for p in programs if p.options == options and p.feature == feature_id]
