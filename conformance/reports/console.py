"""What ``certify`` prints for a person: a progress line while it runs, a summary at the end.

Progress (stderr): on a terminal (stdout and stderr both terminals, ``TERM`` not ``dumb``)
one line redrawn in place (cells done/total, elapsed, an estimate of what is left); else one
line per cell, which a log or CI keeps.

The summary (stdout) ends the output: the reference's self-check in one line, the drivers
left out, the skipped cells grouped by reason, the matrix (one symbol per option set or
profile), each unexpected verdict in two lines, the counts per verdict, what the exit
status means, and where report.html is. Everything is driven by the verdict values: a
verdict this module does not know gets a symbol of its own and its own count.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TextIO

from conformance.reports.html import first_difference
from conformance.verdicts import (
    CONFORMANT,
    NONCONFORMANT,
    SKIPPED,
    VerdictKind,
    count,
    fails,
    is_engine,
)
from conformance.verdicts import ENGINE_PREFIX as PREFIX
from reference.options import MATRIX

if TYPE_CHECKING:
    from conformance.certify.engine import Verdict

#: The matrix's symbol of each verdict; any other verdict gets a letter of its name.
SYMBOLS = {
    VerdictKind.CONFORMS: ".",
    VerdictKind.EXPECTED: "e",
    VerdictKind.UNCLAIMED: "-",
    VerdictKind.SKIPPED: "s",
    VerdictKind.DIVERGES: "D",
    VerdictKind.HUNG: "H",
    VerdictKind.CRASHED: "C",
}
#: The drivers of the reference's self-check (the executable specification run against
#: itself): one line, not a column, when other drivers are certified with it.
SELF_CHECK = ("reference", f"{PREFIX}reference")
#: The width of a terminal the matrix and its legends fit in.
WIDTH = 80
#: The options column of a cell's line: the longest option set's label.
OPTIONS_COLUMN = max(len(options.label) for options in MATRIX)
#: At most this many unexpected verdicts are listed (two lines each); report.html has all.
MAX_LISTED = 10
#: What the exit status of certify means (conformance.__main__).
EXIT_MEANING = {
    CONFORMANT: "exit status 0: no unexpected divergence (every cell conforms, is recorded, "
    "unclaimed or skipped)",
    NONCONFORMANT: "exit status 1: an unexpected divergence, hang or crash (listed above)",
}


# --- progress ---------------------------------------------------------------------------------


def live_terminal(stdout: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Whether the progress line is redrawn in place: both streams are terminals."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    ttys = all(getattr(s, "isatty", lambda: False)() for s in (out, err))
    return ttys and os.environ.get("TERM", "") != "dumb"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def cell_line(verdict: Verdict, number: int, total: int) -> str:
    """One cell's line, when the output is not a terminal."""
    return (
        f"[{number}/{total}] {verdict.driver:<14} {verdict.feature or 'machine':<20} "
        f"{verdict.options:<{OPTIONS_COLUMN}} {verdict.verdict} ({verdict.seconds:.1f}s)"
    )


class Progress:
    """The progress of a run of ``total`` cells, on ``stream``."""

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        columns: int | None = None,
    ) -> None:
        """``columns``: the terminal's width (None: asked at each redraw); the live line is
        cut to it, since a line that wraps cannot be redrawn in place."""
        self.total = total
        self.columns = columns
        self.stream = stream or sys.stderr
        self.live = live_terminal() if live is None else live
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.drawn = False

    def status(self, verdict: Verdict) -> str:
        """The live line: done/total, elapsed, the estimate of what is left (the mean time
        of a cell so far times the cells left), the last cell."""
        elapsed = self.clock() - self.started
        left = self.total - self.done
        estimate = f"about {duration(elapsed / self.done * left)} left" if left else "done"
        return (
            f"[{self.done}/{self.total}] {duration(elapsed)} elapsed, {estimate}; "
            f"{verdict.id} {verdict.verdict}"
        )

    def update(self, verdict: Verdict) -> None:
        self.done += 1
        if not self.live:
            print(cell_line(verdict, self.done, self.total), file=self.stream, flush=True)
            return
        width = (self.columns or shutil.get_terminal_size((100, 24)).columns) - 1
        self.stream.write("\r\x1b[K" + self.status(verdict)[:width])
        self.stream.flush()
        self.drawn = True

    def note(self, text: str) -> None:
        """A line that stays (a warning): above the live line, which the next cell redraws."""
        self.close()
        print(text, file=self.stream, flush=True)

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def close(self) -> None:
        """Clear the live line, so the summary starts on a clean line."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


# --- the summary ------------------------------------------------------------------------------


def symbols(verdicts: Iterable[str]) -> dict[str, str]:
    """The symbol of each verdict: :data:`SYMBOLS`, else the first letter of its name not
    yet taken (upper case for a verdict that fails the run)."""
    names = list(dict.fromkeys(verdicts))
    chosen = {v: SYMBOLS[v] for v in names if v in SYMBOLS}
    taken = set(SYMBOLS.values())
    for verdict in names:
        if verdict in chosen:
            continue
        upper = fails(verdict)
        letters = [c.upper() if upper else c.lower() for c in verdict if c.isalpha()]
        symbol = next((c for c in letters if c not in taken), "?")
        chosen[verdict] = symbol
        taken.add(symbol)
    return chosen


def is_self_check(verdict: Verdict) -> bool:
    return verdict.driver in SELF_CHECK


def split_self_check(verdicts: Sequence[Verdict]) -> tuple[list[Verdict], list[Verdict]]:
    """(the reference's cells, the others); when only the reference was certified, it is
    the subject of the run and nothing is set apart."""
    mine = [v for v in verdicts if is_self_check(v)]
    others = [v for v in verdicts if not is_self_check(v)]
    if not others:
        return [], mine
    return mine, others


def self_check_line(cells: Sequence[Verdict]) -> str | None:
    """The reference's self-check in one line (None: it did not run)."""
    if not cells:
        return None
    seconds = sum(v.seconds for v in cells)
    wrong = [v for v in cells if fails(v.verdict)]
    per_driver: dict[str, int] = {}
    for v in cells:
        per_driver[v.driver] = per_driver.get(v.driver, 0) + 1
    kinds = ", ".join(
        f"{n} {'container' if is_engine(d) else 'overlay'}" for d, n in per_driver.items()
    ).replace(", ", " + ")
    if wrong:
        return (
            f"reference self-check: {len(wrong)} of {len(cells)} cells ({kinds}) do not "
            f"conform: the specification is wrong, see below ({duration(seconds)})"
        )
    found = count_line(cells).partition(": ")[2]
    return f"reference self-check: {found} ({kinds} cells, {duration(seconds)})"


def count_line(verdicts: Sequence[Verdict], noun: str = "cells") -> str:
    """``516 cells: 300 conforms, 40 expected-divergence, ...`` (most frequent first)."""
    counts = count(v.verdict for v in verdicts)
    parts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items(),
                                                               key=lambda kv: -kv[1]))
    return f"{len(verdicts)} {noun}: {parts}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def short_cells(cells: Sequence[Verdict], universe: Sequence[Verdict]) -> str:
    """Cells in short form: per driver, the features sharing the same option sets,
    ``*`` for all of them (all in ``universe``, the run's cells), drivers with the same
    features and option sets together, e.g. ``engine:podman/*/*``,
    ``{reference,kernel}/layer-interchange/{redirect_dir=off,index=on | ro}``."""
    features_of: dict[str, list[str]] = {}
    options_of: dict[str, list[str]] = {}
    for v in universe:
        features_of.setdefault(v.driver, [])
        options_of.setdefault(v.driver, [])
        if (v.feature or "machine") not in features_of[v.driver]:
            features_of[v.driver].append(v.feature or "machine")
        if v.options not in options_of[v.driver]:
            options_of[v.driver].append(v.options)
    groups: dict[tuple[str, str], list[str]] = {}
    for driver in dict.fromkeys(v.driver for v in cells):
        by_feature: dict[str, list[str]] = {}
        for v in cells:
            if v.driver == driver:
                by_feature.setdefault(v.feature or "machine", []).append(v.options)
        by_options: dict[tuple[str, ...], list[str]] = {}
        for feature, options in by_feature.items():
            by_options.setdefault(tuple(options), []).append(feature)
        for options, features in by_options.items():
            every_feature = len(features) == len(features_of.get(driver, ()))
            every_option = set(options) == set(options_of.get(driver, ()))
            f_text = "*" if every_feature else _alternatives(features, ",")
            o_text = "*" if every_option else _alternatives(list(options), " | ")
            groups.setdefault((f_text, o_text), []).append(driver)
    # drivers with the same features and option sets share one group
    return ", ".join(
        f"{_alternatives(drivers, ',')}/{f_text}/{o_text}"
        for (f_text, o_text), drivers in groups.items()
    )


def _alternatives(items: list[str], joiner: str) -> str:
    return items[0] if len(items) == 1 else "{" + joiner.join(items) + "}"


def skip_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per reason a cell was skipped: how many, the reason (its first line, the
    cell's option set written ``<option set>``), the cells in short form (``*``: all of
    ``verdicts``' features or option sets of the driver)."""
    by_reason: dict[str, list[Verdict]] = {}
    for v in verdicts:
        if v.verdict == SKIPPED:
            # a reason that names the cell's own option set is the same reason for each
            # (an engine's profile is a plain word: left as it is)
            reason = _first_line(v.detail)
            if not is_engine(v.driver):
                reason = reason.replace(v.options, "<option set>")
            by_reason.setdefault(reason or "(no reason given)", []).append(v)
    return [
        f"skipped {len(cells)}: {reason} [{short_cells(cells, verdicts)}]"
        for reason, cells in by_reason.items()
    ]


def _table(
    verdicts: Sequence[Verdict],
    corner: str,
    row: Callable[[Verdict], str],
    column: Callable[[Verdict], str],
    marks: dict[str, str],
) -> list[str]:
    """Rows x columns, each cell the symbols of its verdicts in the run's order. Columns
    that would make a line wider than :data:`WIDTH` go to a further block below (its own
    header, the row names again, a blank line between blocks)."""
    rows = list(dict.fromkeys(row(v) for v in verdicts))
    columns = list(dict.fromkeys(column(v) for v in verdicts))
    found: dict[tuple[str, str], str] = {}
    for v in verdicts:
        key = (row(v), column(v))
        found[key] = found.get(key, "") + marks[v.verdict]
    first = max(len(corner), *(len(r) for r in rows))
    widths = {c: max(len(c), *(len(found.get((r, c), "")) for r in rows)) for c in columns}
    blocks: list[list[str]] = [[]]
    used = first
    for c in columns:
        if blocks[-1] and used + 2 + widths[c] > WIDTH:
            blocks.append([])
            used = first
        blocks[-1].append(c)
        used += 2 + widths[c]
    lines: list[str] = []
    for block in blocks:
        if lines:
            lines.append("")
        lines.append("  ".join([f"{corner:<{first}}", *(f"{c:<{widths[c]}}" for c in block)])
                     .rstrip())
        for r in rows:
            cells = [f"{found.get((r, c), ''):<{widths[c]}}" for c in block]
            lines.append("  ".join([f"{r:<{first}}", *cells]).rstrip())
    return lines


def _numbered(title: str, items: Sequence[str]) -> list[str]:
    """``title`` and the items numbered from 1, packed into lines of at most :data:`WIDTH`
    (an item longer than that alone on its line), broken between items only: ``n`` is the
    n-th symbol of a matrix cell."""
    lines = [title]
    for n, item in enumerate(items, 1):
        entry = f"{n} {item}"
        if len(lines[-1]) + 2 + len(entry) > WIDTH:
            lines.append(f"  {entry}")
        else:
            lines[-1] += f"  {entry}"
    return lines


def _packed(head: str, entries: list[str]) -> list[str]:
    """``head`` and then ``entries``, "; " between them, a line broken only between two
    entries (an engine and its profiles stay on one line), each line within WIDTH."""
    lines = [head]
    for entry in entries:
        joined = f"{lines[-1]}{' ' if lines[-1] == head else '; '}{entry}"
        if len(joined) <= WIDTH:
            lines[-1] = joined
        else:
            lines.append(f"  {entry}")
    return lines


def matrix_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """The overlay drivers' matrix (features x drivers, a symbol per option set) and the
    container engines' (container features x engines, a symbol per profile), with the
    order of the option sets and profiles and the symbols' legend."""
    marks = symbols(v.verdict for v in verdicts)
    overlay = [v for v in verdicts if not is_engine(v.driver)]
    engines = [v for v in verdicts if is_engine(v.driver)]
    lines: list[str] = []
    if overlay:
        labels = list(dict.fromkeys(v.options for v in overlay))
        lines += _numbered("option sets, a symbol each in this order:", labels)
        lines += _table(overlay, "feature", lambda v: v.feature or "machine",
                        lambda v: v.driver, marks)
    if engines:
        if lines:
            lines.append("")
        profiles: dict[str, list[str]] = {}
        for v in engines:
            name = v.driver[len(PREFIX):]
            if v.options not in profiles.setdefault(name, []):
                profiles[name].append(v.options)
        lines += _packed("container engines, profiles in each cell's order:",
                         [f"{name} {','.join(chosen)}" for name, chosen in profiles.items()])
        lines += _table(engines, "container feature", lambda v: v.feature.removeprefix(
            "container:"), lambda v: v.driver[len(PREFIX):], marks)
    known = list(SYMBOLS)
    used = sorted(dict.fromkeys(v.verdict for v in verdicts),
                  key=lambda v: known.index(v) if v in known else len(known))
    if used:
        lines.append("  ".join(f"{marks[v]} {v}" for v in used))
    return lines


def divergence_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """Each verdict that fails the run in two lines: the cell, its first difference."""
    from conformance.reports.report import Cell

    failing = [v for v in verdicts if fails(v.verdict)]
    lines: list[str] = []
    for v in failing[:MAX_LISTED]:
        cell = Cell(v).as_json()
        lines += [f"{v.verdict.upper()} {v.id}", f"  {first_difference(cell, v.detail)}"]
    if len(failing) > MAX_LISTED:
        lines.append(f"... and {len(failing) - MAX_LISTED} more (report.html has them all)")
    return lines


def summary_lines(
    verdicts: Sequence[Verdict],
    left_out: dict[str, str] | None = None,
    report_html: str | None = None,
    elapsed: float | None = None,
) -> list[str]:
    """The closing summary of a run (see the module docstring). ``left_out``: driver ->
    why it was not run (not asked for and not configured); ``elapsed``: the run's wall
    time in seconds."""
    reference, others = split_self_check(verdicts)
    lines: list[str] = []
    check = self_check_line(reference)
    if check:
        lines.append(check)
    for name, why in (left_out or {}).items():
        lines.append(f"not run: {name} ({why})")
    lines += skip_lines(verdicts)
    if lines:
        lines.append("")
    lines += matrix_lines(others)
    wrong = divergence_lines(verdicts)
    if wrong:
        lines += ["", *wrong]
    counted = count_line(verdicts)
    if elapsed is not None:
        counted = counted.replace(" cells: ", f" cells in {duration(elapsed)}: ", 1)
    lines += ["", counted, EXIT_MEANING[exit_status(verdicts)]]
    if report_html:
        lines.append(f"report: {report_html}")
    else:
        lines.append("report: none written (--report-dir DIR writes report.html and the "
                     "reproducers)")
    return lines


def exit_status(verdicts: Iterable[Verdict]) -> int:
    """CONFORMANT when no verdict fails the run (verdicts.fails), else NONCONFORMANT."""
    return NONCONFORMANT if any(fails(v.verdict) for v in verdicts) else CONFORMANT
