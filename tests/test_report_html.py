"""report.html, the page a driver author attaches to a bug (conformance/reports/html.py):
well-formed, every text escaped, and it holds the parts: per driver a summary (verdict
counts, version, option sets claimed), each divergence with its shrunk steps (allowed vs
actual), the differing fields and the reproducer's command, the recorded behaviours with
their upstream links."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance.certify.engine import Verdict
from conformance.lockstep.compare import Divergence
from conformance.records.failure import Failure, TracedStep
from conformance.reports.report import Cell, Report, environment
from conformance.run_config import RunConfig
from reference import ops
from reference.layer import FileSpec, LayerSpec, StackSpec
from reference.options import Options
from reference.outcome import Err, Ok

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
HOSTILE = "<script>alert('x')</script> & \"quoted\""

RECORD = f'''
[[divergence]]
driver = "mydriver"
version = "mydriver 2.0"
features = ["copy-up"]
options = ["redirect_dir=off,index=off"]
reason = "chmod of a lower FIFO gives EIO {HOSTILE.replace('"', "'")}"
stack = "StackSpec(lowers=(LayerSpec(entries=(('a', FifoSpec(mode=0o755)),)),))"
steps = ["Chmod(path='a', mode=0o700)"]
confirmed = "mkfifo L/a; chmod 700 M/a: EIO"
upstream = "related: example/mydriver PR #109 (one inode), issue #435 and #436 (open)"
id = "fifo-eio"

[[divergence.differs]]
in = "outcome"
actual = "EIO"
'''


class Balance(HTMLParser):
    """Every element closed, in order (void elements excepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.links += [value for name, value in attrs if name == "href"]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()


def _failure(feature: str, actual: object, found=()) -> Failure:
    stack = StackSpec(lowers=(LayerSpec(entries=(("a", FileSpec(data=b"")),)),))
    steps = (
        TracedStep(ops.Mkdir(path="d<&>", mode=0o755), (Ok(None),), Ok(None)),
        TracedStep(ops.Chmod(path="a", mode=0o700), (Ok(None),), actual),
    )
    return Failure("mydriver", Options(), feature, stack, steps,
                   divergence=f"mydriver differs from the reference:\n{HOSTILE}", found=found)


@pytest.fixture
def page(tmp_path: Path) -> tuple[str, dict]:
    records = tmp_path / "expectations.toml"
    records.write_text(RECORD)
    label = Options().label
    diverges = Verdict("mydriver", label, "diverges", f"Diverged: {HOSTILE}", 1.5, "metadata",
                       (_failure("metadata", Ok(None),
                                 (Divergence("d<&>", "nlink", 1, 2),)),))
    expected = Verdict("mydriver", label, "expected-divergence", f"expected: {HOSTILE}", 0.4,
                       "copy-up", (_failure("copy-up", Err("EIO")),), (("fifo-eio", 3),))
    cells = [
        Cell(diverges, reproducers=["reproducers/mydriver-metadata-1.py"]),
        Cell(expected, reproducers=["reproducers/mydriver-copy-up-1.py"]),
        Cell(Verdict("mydriver", "ro", "unclaimed", "not claimed", 0.0, "copy-up")),
        Cell(Verdict("mydriver", "ro", "skipped", "cannot run <here>", 0.0, "metadata")),
        Cell(Verdict("reference", label, "conforms", "", 0.1, "copy-up")),
        Cell(Verdict("mydriver", "ro", "recorded-only", "a verdict of tomorrow", 0.2, "xattrs")),
    ]
    report = Report(tmp_path / "reports", ["reference", "mydriver"], {"budget": "quick"},
                    planned=len(cells), cells=cells, left_out={"fuse": "give --driver-cmd"},
                    run_config=RunConfig(expectations_path=records))
    report.directory.mkdir()
    report.env = environment([])
    report.env["drivers"] = {
        "reference": {"version": "unionspec 0.1", "command": None, "options_claimed": None},
        "mydriver": {"version": "mydriver 2.0", "command": "mydriver -o {lowerdir} <x>",
                     "options_claimed": [label, "ro"], "profile": "/p/my<driver>.toml"},
    }
    report.status = "complete"
    report.write()
    return ((report.directory / "report.html").read_text(),
            json.loads((report.directory / "report.json").read_text()))


def test_the_page_is_well_formed_and_escapes_every_text(page) -> None:
    html, _ = page
    checker = Balance()
    checker.feed(html)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert checker.open == [], checker.open
    assert "<script" not in html and HOSTILE not in html
    assert "&lt;script&gt;alert(" in html
    for external in ("src=", "<link", "@import", "url("):
        assert external not in html
    # the only links: anchors in the page and the upstream references
    assert all(link.startswith(("#", "https://github.com/example/mydriver/"))
               for link in checker.links), checker.links


def test_each_driver_has_a_summary_at_the_top(page) -> None:
    html, _ = page
    top = html[: html.index("<h2>Overview")]
    mine = top[top.index('id="summary-mydriver"'):]
    assert "mydriver 2.0" in mine
    assert "option sets claimed: redirect_dir=off,index=off, ro" in mine
    for count in ("1 diverges", "1 expected-divergence", "1 unclaimed", "1 skipped",
                  "1 recorded-only"):
        assert count in mine
    assert "mydriver -o {lowerdir} &lt;x&gt;" in mine and "/p/my&lt;driver&gt;.toml" in mine
    reference = top[top.index('id="summary-reference"'):top.index('id="summary-mydriver"')]
    assert "option sets claimed: all" in reference and "1 conforms" in reference
    assert "Not run: fuse (give --driver-cmd)" in top


def _divergence(html: str, anchor: str) -> str:
    """The part of the page about one divergence: up to the next one or section."""
    part = html[html.index(f'id="{anchor}"'):]
    ends = [part.find(mark, 1) for mark in ('<details class="divergence"', "<h2", "<h3")]
    return part[: min(end for end in ends if end > 0)]


def test_a_divergence_has_its_steps_fields_and_reproducer_command(page) -> None:
    html, doc = page
    part = _divergence(html, "mydriver-metadata-redirect_dir-off-index-off")
    assert " open>" in part.split("\n", 1)[0]  # unexpected: shown open
    assert "Mkdir(path=&#x27;d&lt;&amp;&gt;&#x27;, mode=0o755)" in part
    assert "<th>reference allows</th><th>driver gave</th>" in part
    assert "<td>None</td><td>None</td>" in part
    # the differing fields of the last observation
    assert ("<td><code>d&lt;&amp;&gt;</code></td><td>nlink</td><td><code>1</code></td>"
            "<td><code>2</code></td>") in part
    assert (f"sudo python3 {doc['directory']}/reproducers/mydriver-metadata-1.py</code>"
            in part)
    # the expected one: its differing step marked, closed
    expected = _divergence(html, "mydriver-copy-up-redirect_dir-off-index-off")
    assert '<tr class=differs><td>2</td><td><code>Chmod(path=&#x27;a&#x27;, mode=0o700)' \
        in expected
    assert "<td>None</td><td>EIO (Input/output error)</td>" in expected
    assert " open>" not in expected.split("\n", 1)[0]
    assert ('Recorded behaviour: <a href="#recorded-0">chmod of a lower FIFO gives EIO '
            "&lt;script&gt;") in expected
    # a verdict the page does not name is listed too, with a colour of its own
    assert 'id="mydriver-xattrs-ro"' in html and "a verdict of tomorrow" in html


def test_recorded_behaviours_are_listed_with_upstream_links(page) -> None:
    html, doc = page
    assert doc["recorded"] == [{
        "driver": "mydriver", "version": "mydriver 2.0",
        "reason": doc["recorded"][0]["reason"], "upstream": doc["recorded"][0]["upstream"],
        "confirmed": "mkfifo L/a; chmod 700 M/a: EIO",
        "cells": ["mydriver/copy-up/redirect_dir=off,index=off"],
        "id": "fifo-eio", "examples": 3,
    }]
    part = html[html.index("<h2>Recorded behaviours"):]
    assert '<tr id="recorded-0">' in part
    assert "chmod of a lower FIFO gives EIO &lt;script&gt;" in part
    assert '<a href="https://github.com/example/mydriver/pull/109">PR #109</a>' in part
    assert '<a href="https://github.com/example/mydriver/issues/435">issue #435</a>' in part
    assert '<a href="https://github.com/example/mydriver/issues/436">#436</a>' in part
    assert '<a href="#mydriver-copy-up-redirect_dir-off-index-off">copy-up</a>' in part


def test_report_json_keeps_every_cell_and_adds_only_keys(page) -> None:
    _, doc = page
    verdicts = [c["verdict"] for c in doc["cells"]]
    assert "skipped" in verdicts and "conforms" in verdicts and len(verdicts) == 6
    assert doc["left_out"] == {"fuse": "give --driver-cmd"}
    failure = doc["cells"][0]["failures"][0]
    assert failure["differences"] == [
        {"where": "d<&>", "field": "nlink", "expected": "1", "actual": "2"}]
    for key in ("schema", "status", "planned", "done", "summary", "cells", "environment"):
        assert key in doc


def test_one_rule_says_which_verdicts_fail_the_run(page) -> None:
    """junit.xml, report.html, the console and the exit status agree on what fails a run:
    a verdict this version does not know fails it as a divergence does (junit.xml gave it
    a passing testcase while the exit status was 1)."""
    from xml.etree import ElementTree as ET

    from conformance import verdicts as v
    from conformance.reports import console
    from conformance.reports.report import render_junit

    html, doc = page
    junit = ET.fromstring(render_junit(doc))
    failed = {case.get("name"): case.find("failure").get("type")
              for case in junit.iter("testcase") if case.find("failure") is not None}
    assert failed == {f"metadata[{Options().label}]": "diverges", "xattrs[ro]": "recorded-only"}
    assert "2 unexpected (shown open)" in html
    cells = [Verdict(c["driver"], c["options"], c["verdict"], c["reason"], feature=c["feature"])
             for c in doc["cells"]]
    failing = {cell.id for cell in cells if v.fails(cell.verdict)}
    assert {f"{c.get('classname')[len('unionspec.'):]}/{c.get('name')}" for c in
            junit.iter("testcase") if c.find("failure") is not None} == {
        f"{i.split('/')[0]}/{i.split('/')[1]}[{i.split('/', 2)[2]}]" for i in failing}
    unknown = [cell for cell in cells if cell.verdict == "recorded-only"]
    assert console.exit_status(unknown) == v.NONCONFORMANT
    assert any(line.startswith("RECORDED-ONLY ") for line in console.divergence_lines(cells))
    assert console.symbols(["recorded-only"])["recorded-only"].isupper()
    for kind in v.VerdictKind:
        assert v.fails(kind) == (kind in v.FAILING)
        assert not (v.fails(kind) and kind in v.QUIET)


def test_a_step_reads_the_same_in_every_rendering(page) -> None:
    """The failure text, report.md, report.html and the first difference draw a step from
    one helper (conformance.records.failure.step_text and its parts)."""
    from conformance.records.failure import step_text
    from conformance.reports.html import first_difference, slug
    from conformance.reports.report import render_markdown

    html, doc = page
    failure = _failure("copy-up", Err("EIO"))
    step = failure.steps[1].as_json()
    line = step_text(2, step)
    assert failure.render().splitlines()[2] == line and line.endswith("<-- differs")
    assert line in render_markdown(doc)
    cell = next(c for c in doc["cells"] if c["feature"] == "copy-up")
    assert first_difference(cell, "") == (
        f"step 2/2 {step['op']}: allowed {step['allowed'][0]}, actual {step['actual']}")
    assert "<td>EIO (Input/output error)</td>" in _divergence(html, slug(cell["id"]))
    assert list(doc["summary"]) == list(dict.fromkeys(c["verdict"] for c in doc["cells"]))
