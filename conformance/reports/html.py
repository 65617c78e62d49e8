"""report.html: the page a driver author attaches to a bug report.

One self-contained page (no script, stylesheet, font or image from elsewhere; the only
links are to the upstream issues a recorded behaviour names). From the top: per driver a
summary (version, command, the option sets it claims, its verdict counts); the overview
and each driver's matrix; each divergence with its shrunk steps (allowed vs actual per
step), the differing fields of the last observation and the command that runs its
reproducer; the recorded behaviours (``conformance/records/expectations.toml``) the run met, with
their upstream references. Colours and sections follow the verdict values, so a verdict
this module does not name still gets a colour, a count and its divergences listed.
"""

from __future__ import annotations

import html
import re
import shlex
from typing import Any

from conformance import verdicts as v
from conformance.records.failure import actual_text, allowed_text, differs
from conformance.verdicts import QUIET, fails, is_engine

#: The colours of the verdicts; any other verdict gets :data:`OTHER_COLOUR`.
COLOURS = {
    v.CONFORMS: "#c8e6c9",
    v.EXPECTED: "#fff59d",
    v.UNCLAIMED: "#e0e0e0",
    v.SKIPPED: "#eeeeee",
    v.DIVERGES: "#ef9a9a",
    v.HUNG: "#ce93d8",
    v.CRASHED: "#ce93d8",
}
OTHER_COLOUR = "#ffe0b2"

_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 0.6em 0; }
td { max-width: 40em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td.cell a { color: inherit; }
pre, code { font-family: monospace; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
summary { cursor: pointer; margin: 0.4em 0; }
details.divergence { border-left: 4px solid #bbb; padding-left: 0.8em; margin: 0.8em 0; }
.banner { background: #ffcc80; padding: 0.6em; font-weight: bold; }
.badge { padding: 0.1em 0.5em; margin-right: 0.3em; border: 1px solid #bbb;
         white-space: nowrap; }
.drivers { display: flex; flex-wrap: wrap; gap: 1em; }
.driver { border: 1px solid #bbb; padding: 0.6em 1em; min-width: 20em; flex: 1; }
.driver h3 { margin: 0 0 0.4em 0; }
.command { background: #263238; color: #eceff1; padding: 0.4em 0.6em; display: block; }
tr.differs td { background: #ffebee; font-weight: bold; }
.muted { color: #666; }
"""


def colour(verdict: str) -> str:
    return COLOURS.get(verdict, OTHER_COLOUR)


def _e(text: Any) -> str:
    return html.escape(str(text))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge" style="background:{colour(verdict)}">{_e(text or verdict)}</span>'


def reproducer_command(directory: str, reproducer: str) -> str:
    """The command that runs a reproducer, from where certify ran (the scripts mount, so
    they run as root)."""
    path = f"{directory.rstrip('/')}/{reproducer}"
    return f"sudo python3 {shlex.quote(path)}"


_REFERENCE = re.compile(
    r"(?P<repo>\b[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]*[A-Za-z0-9_-])"
    r"|(?P<kind>\b(?:PRs?|pull requests?|issues?))\s+#(?P<number>\d+)"
    r"|#(?P<bare>\d+)"
)


def upstream_html(text: str) -> str:
    """The upstream text, escaped, its ``owner/repo PR #N`` and ``issue #N`` (and the
    ``#N`` that follow one) linked to the repository's issue or pull request."""
    out: list[str] = []
    repo, kind, at = None, "issues", 0
    for found in _REFERENCE.finditer(text):
        out.append(_e(text[at:found.start()]))
        at = found.end()
        piece = found.group(0)
        if found.group("repo"):
            repo = found.group("repo")
            out.append(_e(piece))
            continue
        if found.group("kind"):
            kind = "pull" if found.group("kind").lower().startswith(("pr", "pull")) else "issues"
        number = found.group("number") or found.group("bare")
        if repo is None:
            out.append(_e(piece))
            continue
        url = f"https://github.com/{repo}/{kind}/{number}"
        out.append(f'<a href="{_e(url)}">{_e(piece)}</a>')
    out.append(_e(text[at:]))
    return "".join(out)


def _driver_summaries(doc: dict[str, Any]) -> list[str]:
    by_driver: dict[str, list[dict[str, Any]]] = {}
    for cell in doc["cells"]:
        by_driver.setdefault(cell["driver"], []).append(cell)
    info = doc["environment"].get("drivers", {})
    engines = doc["environment"].get("engines", {})
    out = ['<h2>Drivers</h2><div class="drivers">']
    for driver in dict.fromkeys([*info, *by_driver]):
        cells = by_driver.get(driver, [])
        about = info.get(driver) or engines.get(driver.partition(":")[2]) or {}
        claimed = about.get("options_claimed", about.get("profiles"))
        out.append(f'<div class="driver"><h3 id="summary-{_e(slug(driver))}">{_e(driver)}</h3>')
        out.append(f"<p>version: <code>{_e(about.get('version') or 'unknown')}</code>")
        if about.get("command"):
            out.append(f"<br>command: <code>{_e(about['command'])}</code>")
        if about.get("profile"):
            out.append(f"<br>profile: <code>{_e(about['profile'])}</code>")
        label = "profiles" if "profiles" in about else "option sets claimed"
        listed = ", ".join(claimed) if claimed else "all"
        out.append(f"<br>{label}: {_e(listed)}</p>")
        if about.get("error"):
            out.append(f"<p>error: {_e(about['error'])}</p>")
        found = v.count(cell["verdict"] for cell in cells)
        out.append("<p>" + " ".join(badge(v, f"{n} {v}") for v, n in found.items())
                   + f' <span class="muted">({len(cells)} cells)</span></p>')
        listed_cells = [c for c in cells if c["verdict"] not in QUIET]
        if listed_cells:
            out.append(f'<p><a href="#{_e(slug(driver))}">matrix</a>, '
                       f'<a href="#divergences-{_e(slug(driver))}">'
                       f"{len(listed_cells)} divergent cells</a></p>")
        out.append("</div>")
    out.append("</div>")
    return out


def grid(doc: dict[str, Any]) -> dict[str, tuple[list[str], list[str], dict]]:
    """Per driver: its features (rows), its option sets (columns) and the cells (report.md
    and report.html draw their matrices from it)."""
    grids: dict[str, tuple[list[str], list[str], dict]] = {}
    for cell in doc["cells"]:
        rows, columns, by_key = grids.setdefault(cell["driver"], ([], [], {}))
        if cell["feature"] not in rows:
            rows.append(cell["feature"])
        if cell["options"] not in columns:
            columns.append(cell["options"])
        by_key[(cell["feature"], cell["options"])] = cell
    return grids


def _overview(doc: dict[str, Any]) -> list[str]:
    """The worst verdict per (driver, feature): the overlay drivers' table, then the
    container engines' (their features are not the drivers')."""
    engines = [c for c in doc["cells"] if is_engine(c["driver"])]
    overlay = [c for c in doc["cells"] if not is_engine(c["driver"])]
    if not doc["cells"]:
        return []
    out = ["<h2>Overview</h2><p>The worst verdict over the option sets (profiles for the "
           "container engines).</p>"]
    for cells, corner in ((overlay, "feature"), (engines, "container feature")):
        if cells:
            out += _worst_table(cells, corner)
    return out


def _worst_table(cells: list[dict[str, Any]], corner: str) -> list[str]:
    from conformance.verdicts import worst

    found: dict[tuple[str, str], list[str]] = {}
    for cell in cells:
        found.setdefault((cell["driver"], cell["feature"]), []).append(cell["verdict"])
    drivers = list(dict.fromkeys(driver for driver, _ in found))
    features = list(dict.fromkeys(feature for _, feature in found))
    out = [f"<table><tr><th>{_e(corner)}</th>"]
    out += [f'<th><a href="#{_e(slug(d))}">{_e(d)}</a></th>' for d in drivers]
    out.append("</tr>")
    for feature in features:
        out.append(f"<tr><th>{_e(feature)}</th>")
        for d in drivers:
            values = found.get((d, feature))
            if not values:
                out.append("<td>-</td>")
                continue
            verdict = worst(values)
            out.append(f'<td style="background:{colour(verdict)}">{_e(verdict)}</td>')
        out.append("</tr>")
    out.append("</table>")
    return out


def _matrices(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for driver, (rows, columns, by_key) in grid(doc).items():
        out.append(f'<h2 id="{_e(slug(driver))}">{_e(driver)}</h2><table><tr><th>feature</th>')
        out += [f"<th>{'<br>'.join(_e(part) for part in col.split(','))}</th>" for col in columns]
        out.append("</tr>")
        for row in rows:
            out.append(f"<tr><th>{_e(row)}</th>")
            for col in columns:
                cell = by_key.get((row, col))
                if cell is None:
                    out.append("<td>-</td>")
                    continue
                text = _e(cell["verdict"])
                if cell["verdict"] not in QUIET:
                    text = f'<a href="#{_e(slug(cell["id"]))}">{text}</a>'
                title = _e(cell["reason"].splitlines()[0] if cell["reason"] else "")
                out.append(f'<td class="cell" style="background:{colour(cell["verdict"])}" '
                           f'title="{title}">{text}</td>')
            out.append("</tr>")
        out.append("</table>")
    return out


def _failure(failure: dict[str, Any], directory: str) -> list[str]:
    steps = failure["steps"]
    then = f"then {len(steps)} step(s):" if steps else "and no step (the mount itself differs)."
    out = [f"<p>Shrunk program: mount <code>{_e(failure['stack'])}</code> "
           f"with <code>{_e(failure['options'])}</code>, {then}</p>"]
    if steps:
        out.append("<table><tr><th>#</th><th>operation</th><th>reference allows</th>"
                   "<th>driver gave</th></tr>")
    for number, step in enumerate(steps, 1):
        out.append(f'<tr{" class=differs" if differs(step) else ""}><td>{number}</td>'
                   f"<td><code>{_e(step['op'])}</code></td>"
                   f"<td>{_e(allowed_text(step))}</td><td>{_e(actual_text(step))}</td></tr>")
    if steps:
        out.append("</table>")
    differences = failure.get("differences") or []
    if differences:
        out.append("<p>Differing fields of the last observation:</p><table><tr><th>where</th>"
                   "<th>field</th><th>reference</th><th>driver</th></tr>")
        out += [f"<tr><td><code>{_e(d['where'])}</code></td><td>{_e(d['field'])}</td>"
                f"<td><code>{_e(d['expected'])}</code></td><td><code>{_e(d['actual'])}</code>"
                "</td></tr>" for d in differences]
        out.append("</table>")
    else:
        out.append(f"<p>Difference:</p><pre>{_e(failure['divergence'])}</pre>")
    if failure.get("reproducer"):
        out.append("<p>Reproducer (a standalone script; exit 1 while it reproduces, 0 once "
                   "fixed):</p>")
        out.append(f'<code class="command">'
                   f"{_e(reproducer_command(directory, failure['reproducer']))}</code>")
    if failure.get("program"):
        out.append(f"<p>Corpus program: <code>{_e(failure['program'])}</code></p>")
    return out


def _clip(text: str, most: int = 240) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _divergences(doc: dict[str, Any]) -> list[str]:
    listed = [c for c in doc["cells"] if c["verdict"] not in QUIET]
    if not listed:
        return []
    directory = doc.get("directory") or "."
    unexpected = [c for c in listed if fails(c["verdict"])]
    out = ["<h2>Divergences</h2>",
           f"<p>{len(unexpected)} unexpected (shown open), {len(listed) - len(unexpected)} "
           "recorded or otherwise expected (click to open); each with the program "
           "Hypothesis shrank.</p>"]
    ordered = sorted(listed, key=lambda c: not fails(c["verdict"]))
    recorded_for: dict[str, list[int]] = {}
    for number, record in enumerate(doc.get("recorded") or []):
        for cell_id in record["cells"]:
            recorded_for.setdefault(cell_id, []).append(number)
    seen: set[str] = set()
    for cell in ordered:
        if cell["driver"] not in seen:
            seen.add(cell["driver"])
            out.append(f'<h3 id="divergences-{_e(slug(cell["driver"]))}">'
                       f"{_e(cell['driver'])}</h3>")
        opened = " open" if fails(cell["verdict"]) else ""
        out.append(f'<details class="divergence" id="{_e(slug(cell["id"]))}"{opened}><summary>'
                   f"{badge(cell['verdict'])} <b>{_e(cell['id'])}</b> "
                   f'<span class="muted">({cell["seconds"]} s)</span><br>'
                   f"<small>{_e(_clip(first_difference(cell, cell['reason'])))}</small>"
                   "</summary>")
        for number in recorded_for.get(cell["id"], []):
            record = doc["recorded"][number]
            out.append(f'<p>Recorded behaviour: <a href="#recorded-{number}">'
                       f"{_e(record['reason'])}</a></p>")
        if not cell["failures"]:
            out.append(f"<pre>{_e(cell['reason'])}</pre>")
        for failure in cell["failures"]:
            out += _failure(failure, directory)
        if cell["failures"]:
            out.append(f"<details><summary>The suite's full report</summary>"
                       f"<pre>{_e(cell['reason'])}</pre></details>")
        out.append("</details>")
    return out


def _seen_in(cells: list[str]) -> str:
    """Cell ids ``driver/feature/options`` as links, grouped by option set."""
    by_options: dict[str, list[str]] = {}
    for cell in cells:
        _, feature, options = cell.split("/", 2)
        by_options.setdefault(options, []).append(
            f'<a href="#{_e(slug(cell))}">{_e(feature)}</a>'
        )
    return "<br>".join(
        f"<code>{_e(options)}</code>: {', '.join(links)}" for options, links in by_options.items()
    )


def _recorded(doc: dict[str, Any]) -> list[str]:
    records = doc.get("recorded") or []
    if not records:
        return []
    out = ["<h2>Recorded behaviours</h2><p>Entries of <code>conformance/records/expectations.toml"
           "</code> for the installed versions that matched cells of this run, with what "
           "upstream knows of them.</p>"]
    by_driver: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number, record in enumerate(records):
        by_driver.setdefault((record["driver"], record["version"]), []).append(
            {**record, "number": number})
    for (driver, version), mine in by_driver.items():
        out.append(f"<h3>{_e(driver)} <small class=muted>({_e(version)})</small></h3>")
        out.append("<table><tr><th>behaviour</th><th>upstream</th><th>seen in</th></tr>")
        for record in mine:
            out.append(f'<tr id="recorded-{record["number"]}"><td>{_e(record["reason"])}'
                       f"<details><summary>how it was confirmed</summary>"
                       f"<pre>{_e(record['confirmed'])}</pre></details></td>"
                       f"<td>{upstream_html(record['upstream'] or 'not recorded')}</td>"
                       f"<td>{len(record['cells'])} cells<br>{_seen_in(record['cells'])}</td>"
                       "</tr>")
        out.append("</table>")
    return out


def render_html(doc: dict[str, Any]) -> str:
    """The page (see the module docstring) of a report document (report.json's data)."""

    env = doc["environment"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>unionspec certification report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>unionspec certification report</h1>",
    ]
    if doc["status"] == "interrupted":
        out.append(f'<p class="banner">Interrupted ({_e(doc["interruption"] or "")}): '
                   f"only the cells done are shown.</p>")
    out.append(f"<p>{_e(_status_line(doc))}: "
               + " ".join(badge(v, f"{n} {v}") for v, n in doc["summary"].items())
               + "</p>")
    out.append(f"<p>Kernel {_e(env['kernel']['release'])}, Python {_e(env['python'])}, "
               f"Hypothesis {_e(env['hypothesis'])}. Started {_e(doc['started'])}, updated "
               f"{_e(doc['updated'])}. Command: <code>{_e(shlex.join(doc['command']))}</code>"
               "</p>")
    params = ", ".join(f"{k}={v}" for k, v in env["overlay_parameters"].items())
    out.append(f"<p>Overlay module parameters: {_e(params or '(none)')}</p>")
    for name, why in (doc.get("left_out") or {}).items():
        out.append(f"<p>Not run: {_e(name)} ({_e(why)}).</p>")
    out += _driver_summaries(doc)
    out.append("<p>" + " ".join(badge(v) for v in dict.fromkeys(
        [*COLOURS, *(c["verdict"] for c in doc["cells"])])) + "</p>")
    out += _overview(doc)
    out += _divergences(doc)
    out += _recorded(doc)
    out += _matrices(doc)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _status_line(doc: dict[str, Any]) -> str:
    text = f"status: {doc['status']}, {doc['done']} of {doc['planned']} cells done"
    if doc["interruption"]:
        text += f" (interrupted by {doc['interruption']})"
    return text


def first_difference(cell: dict[str, Any] | None, detail: str) -> str:
    """The first step whose outcome the reference does not allow (allowed vs actual), or
    the difference after the last step, or the first line of the reason."""
    failures = (cell or {}).get("failures") or []
    if failures:
        failure = failures[0]
        steps = failure["steps"]
        for number, step in enumerate(steps, 1):
            if differs(step):
                return (f"step {number}/{len(steps)} {step['op']}: allowed "
                        f"{allowed_text(step)}, actual {actual_text(step)}")
        differences = failure.get("differences") or []
        if differences:
            d = differences[0]
            after = f"{d['where']}: {d['field']}: allowed {d['expected']}, actual {d['actual']}"
        else:
            after = _first_fact(failure["divergence"])
        if not steps:
            return f"after the mount: {after}"
        return f"after step {len(steps)}/{len(steps)}: {after}"
    return _first_fact(detail) or "(no detail)"


def _first_fact(text: str) -> str:
    """The first line that is not a heading (a line ending with a colon)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if not line.endswith(":")), lines[0] if lines else "")
