"""The command line: bad input gets one clear line and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.__main__ import USAGE_OR_SETUP_ERROR, main

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
