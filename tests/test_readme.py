"""The README's two commands are what users and CI run: keep them true.

- `.ci/run` runs the README's test command verbatim (a user and CI run the same thing);
- both commands start with `scripts/setup` and use the project's own `.venv`, never the
  system's Python (Debian's is externally managed, PEP 668: pip refuses to install there);
- `ruff check .` stays clean (CI runs it through this test).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    """The command lines of the README's first ``sh`` block (comments left out)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh block"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def ci_commands() -> list[str]:
    """The command lines of `.ci/run` after its shell preamble."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.startswith("scripts/setup")]


def test_readme_starts_with_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2, commands
    for command in commands:
        assert command.startswith("scripts/setup && .venv/bin/"), command


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    assert ci_commands() == [readme_commands()[1]]


def test_ci_uses_the_distribution_python_only() -> None:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    path = re.search(r"^export PATH=(\S+)$", text, re.M)
    assert path, ".ci/run must set PATH so only the distribution's Python is found"
    # a stock Debian root's PATH: no /usr/local/bin, where a build machine keeps its own
    # tools (this one has another Python and a newer docker client there)
    assert set(path.group(1).split(":")) <= {"/usr/local/sbin", "/usr/sbin", "/usr/bin",
                                              "/sbin", "/bin"}


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff is not None, "ruff is not installed (scripts/setup installs it: the dev extras)"
    result = subprocess.run(
        [ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_divergence_catalogue_is_generated_from_the_records() -> None:
    """docs/divergences.md is `python -m conformance.reports.catalogue` (regenerate it after an
    edit of conformance/records/expectations.toml)."""
    from conformance.reports import catalogue

    page = (ROOT / "docs" / "divergences.md").read_text(encoding="utf-8")
    regenerate = "python -m conformance.reports.catalogue > docs/divergences.md"
    assert page == catalogue.catalogue(), f"stale: run {regenerate}"


def test_readme_is_short_and_points_to_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
