"""The command line: bad input gets one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.__main__ import USAGE_OR_SETUP_ERROR, main
from reference.options import MATRIX
from tests import thirdparty

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = (
    "{binary} -o lowerdir={{lowerdir}},upperdir={{upperdir}},workdir={{workdir}} {{mountpoint}}"
)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["certify", "--budget", "huge"], "invalid choice: 'huge'"),
        (["certify", "--driver", "nope"], "unknown driver 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["certify", "--driver-cmd", "fuse-overlayfs -o lowerdir={lowerdir}"], "{mountpoint}"),
        (
            ["certify", "--driver-cmd", TEMPLATE.format(binary="/nonexistent/overlay")],
            "/nonexistent/overlay",
        ),
        (["certify", "--profile", "/nonexistent/profile.toml"], "cannot read"),
        (["certify", "--driver-timeout", "0"], "--driver-timeout"),
        (["certify", "--driver-timeout", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, says, capsys) -> None:
    assert main(argv) == USAGE_OR_SETUP_ERROR
    err = capsys.readouterr().err.strip()
    assert says in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('name = "x"\ncolour = "blue"\n', "colour"),
        ('name = 3\n', "name"),
    ],
)
def test_bad_profile_is_one_line_and_exit_2(tmp_path: Path, content, says, capsys) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(content)
    assert main(["certify", "--driver", "fuse", "--profile", str(profile)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_certify_reference_prints_the_matrix(capsys) -> None:
    assert main(["certify", "--driver", "reference"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "conforms" in out and "redirect_dir=on,index=on" in out


def test_a_binary_that_is_not_executable_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "my-overlay"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o644)
    argv = ["certify", "--driver", "fuse", "--driver-cmd", TEMPLATE.format(binary=binary)]
    assert main(argv) == USAGE_OR_SETUP_ERROR
    err = capsys.readouterr().err.strip()
    assert "is not an executable file" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["certify", "--feature", "teleport"], "unknown feature 'teleport'"),
        (
            ["certify", "--driver", "reference", "--driver-cmd", "fuse-overlayfs {mountpoint}"],
            "add --driver=fuse",
        ),
        (["certify", "--driver", "kernel", "--profile", "x.toml"], "needs a FUSE driver"),
        (["certify", "--workers", "0"], "--workers must be at least 1"),
        (["certify", "-n", "two"], "invalid int value: 'two'"),
        (["certify", "--seed", "x"], "invalid int value: 'x'"),
        (["certify", "--driver", "reference", "--driver", "reference"], "named twice"),
        (["replay"], "the following arguments are required"),
        (["diff", "only-one.json"], "the following arguments are required"),
    ],
)
def test_inconsistent_options_are_one_line_and_exit_2(argv, says, capsys) -> None:
    assert main(argv) == USAGE_OR_SETUP_ERROR
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_console_script_is_the_cli() -> None:
    import tomllib

    from conformance import __main__ as cli

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["unionspec"].partition(":")
    assert module == "conformance.__main__" and getattr(cli, function) is main


def _cells(report: Path) -> list[tuple[str, str, list[str]]]:
    doc = json.loads((report / "report.json").read_text())
    return [(c["id"], c["verdict"], [s["op"] for s in c["steps"]]) for c in doc["cells"]]


def test_a_seed_makes_the_generation_reproducible() -> None:
    """--seed N: the same examples are drawn (conformance.certify.command.seeded), so the same first
    failing example is found."""
    from hypothesis import Phase, settings

    from conformance.certify.command import seeded
    from conformance.features import BY_ID
    from conformance.lockstep.machine import Diverged, run_machine
    from reference.options import Options
    from tests.test_reports import TruncatingDriver

    search = settings(max_examples=500, stateful_step_count=15, deadline=None, database=None,
                      phases=[Phase.generate])
    found = []
    for _ in range(2):
        with seeded(7), pytest.raises(Diverged) as caught:
            run_machine(TruncatingDriver(), Options(), search, BY_ID["copy-up"])
        found.append((caught.value.failures[0].stack, caught.value.failures[0].ops))
    assert found[0] == found[1]


def test_the_seed_is_recorded_and_progress_is_shown(tmp_path: Path, capsys) -> None:
    argv = ["certify", "--driver", "reference", "--feature", "xattrs", "--seed", "7",
            "--report-dir", str(tmp_path / "r"), "--corpus", str(tmp_path / "c")]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["settings"]["seed"] == 7
    # progress while it runs: one cell per option set
    assert f"[1/{len(MATRIX)}] reference" in capsys.readouterr().err


def test_workers_keep_the_report_in_plan_order(tmp_path: Path, capsys) -> None:
    reports = []
    for workers in ("1", "2"):
        report = tmp_path / f"n{workers}"
        argv = ["certify", "--driver", "reference", "--feature", "xattrs", "--feature",
                "metadata", "-n", workers, "--report-dir", str(report),
                "--corpus", str(tmp_path / "c")]
        assert main(argv) == 0
        reports.append([(cell_id, verdict) for cell_id, verdict, _ in _cells(report)])
    assert reports[0] == reports[1] and len(reports[0]) == 2 * len(MATRIX)


def test_a_driver_registered_by_an_entry_point_is_certified(tmp_path: Path) -> None:
    """A separate package (a dist-info with entry_points.txt on the path, as pip installs
    one) registers two drivers in the unionspec.drivers group; certify finds and runs
    them."""
    env = thirdparty.install(tmp_path / "site")
    command = [sys.executable, "-m", "conformance", "certify", "--corpus", str(tmp_path / "c")]
    clean = subprocess.run(
        [*command, "--driver", "thirdparty-clean", "--feature", "xattrs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert clean.returncode == 0, clean.stderr
    assert "thirdparty-clean" in clean.stdout and "conforms" in clean.stdout
    broken = subprocess.run(
        [*command, "--driver", "thirdparty-chown", "--feature", "metadata", "--seed", "0",
         "--report-dir", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert broken.returncode == 1, broken.stderr
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {c["driver"] for c in doc["cells"]} == {"thirdparty-chown"}
    assert any(c["verdict"] == "diverges" and c["reproducer"] for c in doc["cells"])


def test_feature_machine_selects_the_whole_machine_cells(tmp_path: Path) -> None:
    """``--feature machine`` (the whole-machine cells' id) alone, or with features."""
    for features, expected in (
        (["machine"], {"machine"}),
        (["machine", "xattrs"], {"machine", "xattrs"}),
        (["xattrs"], {"xattrs"}),
    ):
        report = tmp_path / "-".join(features)
        argv = ["certify", "--driver", "reference", "--report-dir", str(report),
                "--corpus", str(tmp_path / "c"), "--budget", "quick"]
        for feature in features:
            argv += ["--feature", feature]
        assert main(argv) == 0
        cells = [cell_id for cell_id, _, _ in _cells(report)]
        assert {cell.split("/")[1] for cell in cells} == expected, features
        assert len(cells) == len(MATRIX) * len(expected)
