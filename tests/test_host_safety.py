"""Host safety (issue 17): what the tool writes on the host, and the bounds of its input.

Each test here failed on the code before the protection it proves (docs/host-safety.md
lists the protection, the test and what the test showed before)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conformance.reports import report, safe_write

# --- item 2: every file written is created O_EXCL|O_NOFOLLOW, its mode set before the rename


def _plant(directory: Path, victim: Path) -> list[Path]:
    """Symlinks to ``victim`` at every temporary name the writer could predict."""
    planted = []
    for name in ("report.json", "x.py", "p.json"):
        for pattern in (f".{name}.tmp{os.getpid()}", f".probe{os.getpid()}"):
            link = directory / pattern
            if not link.exists():
                link.symlink_to(victim)
                planted.append(link)
    return planted


def test_writes_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    out = tmp_path / "out"
    out.mkdir()
    planted = _plant(out, victim)
    report.prepare(out)
    safe_write.write_atomically(out / "report.json", "{}\n")
    assert victim.read_text() == "host file\n"
    assert (out / "report.json").read_text() == "{}\n"
    assert all(link.is_symlink() for link in planted)


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    (tmp_path / "report.json").symlink_to(victim)
    safe_write.write_atomically(tmp_path / "report.json", "{}\n")
    assert victim.read_text() == "host file\n"
    assert not (tmp_path / "report.json").is_symlink()


def test_the_mode_is_set_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    """A reproducer is executable the moment it appears; nothing chmods a path afterwards
    (a path that could by then be someone's symlink)."""
    seen: list[int] = []
    real_replace = os.replace

    def replace(src, dst, **kw):
        seen.append(stat.S_IMODE(os.lstat(src, **kw).st_mode))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    chmods: list[object] = []
    monkeypatch.setattr(os, "chmod", lambda *a, **k: chmods.append(a))
    safe_write.write_atomically(tmp_path / "x.py", "print()\n", mode=0o755)
    assert seen == [0o755]
    assert chmods == []
    assert stat.S_IMODE((tmp_path / "x.py").stat().st_mode) == 0o755


def test_a_full_disk_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        safe_write.write_atomically(tmp_path / "report.json", "{}\n")
    assert list(tmp_path.iterdir()) == []


# --- items 3, 6, 8: bad input is one line and exit 2, never a traceback --------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from conformance.__main__ import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOOD_STACK = "StackSpec(lowers=(LayerSpec(entries=(('a', FileSpec(data=b'x')),)),))"
#: Programs read from a file that the suite must refuse, and what the refusal says.
BAD_PROGRAMS = {
    "wrong-path-type": (GOOD_STACK, ["Read(path=1)"], "Read.path must be str"),
    "wrong-mode-type": (GOOD_STACK, ["Chmod(path='a', mode='x')"], "Chmod.mode must be int"),
    "wrong-lowers-type": ("StackSpec(lowers=5)", ["Read(path='a')"], "StackSpec.lowers"),
    "huge-truncate": (GOOD_STACK, ["Truncate(path='a', size=100000000000)"], "Truncate.size"),
    "huge-offset": (
        GOOD_STACK, ["Write(path='a', data=b'x', offset=1099511627776)"], "Write.offset"
    ),
    "huge-in-all": (
        GOOD_STACK, [f"Truncate(path='a{i}', size=1048576)" for i in range(17)], "in all"
    ),
    "dotdot-path": (GOOD_STACK, ["Read(path='../../etc/passwd')"], "'..'"),
    "absolute-path": (GOOD_STACK, ["Read(path='/etc/passwd')"], "relative"),
    "nul-path": (GOOD_STACK, ["Read(path='a\\x00b')"], "NUL"),
    "dotdot-entry": (
        "StackSpec(lowers=(LayerSpec(entries=(('../x', FileSpec(data=b'x')),)),))",
        ["Read(path='a')"], "'..'",
    ),
    "unknown-flag": (GOOD_STACK, ["Write(path='a', flags=('O_SYNC',))"], "O_SYNC"),
}


def _program(stack: str, steps: list[str]) -> dict:
    return {"format": "unionspec-program/1", "driver": "reference", "version": None,
            "feature": "", "options": "redirect_dir=off,index=off", "stack": stack,
            "steps": steps, "divergence": "", "found": ""}


def _one_line_error(capsys, says: str = "") -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert says in err, err
    return err


@pytest.mark.parametrize("name", list(BAD_PROGRAMS))
def test_a_bad_program_file_is_one_line_and_exit_2(tmp_path: Path, capsys, name: str) -> None:
    stack, steps, says = BAD_PROGRAMS[name]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(_program(stack, steps)))
    assert main(["replay", str(path), "--driver", "reference"]) == 2
    _one_line_error(capsys, says)


def test_the_layers_count_in_a_programs_total_bytes(monkeypatch) -> None:
    """The bound on a whole program covers the layers' data and xattr values too."""
    from conformance.records import program_check
    from reference import ops
    from reference.layer import FileSpec, LayerSpec, StackSpec

    monkeypatch.setattr(program_check, "MAX_PROGRAM_BYTES", 1000)
    big = FileSpec(data=b"x" * 400, xattrs=(("user.a", b"y" * 300),))
    stack = StackSpec((LayerSpec((("a", big), ("b", FileSpec(data=b"x" * 200)))),))
    program_check.check_program(stack, (ops.Read(path="a"),), "ok")
    with pytest.raises(program_check.ProgramError, match="in all"):
        program_check.check_program(stack, (ops.Truncate(path="a", size=200),), "bad")
    with pytest.raises(program_check.ProgramError, match="in all"):
        program_check.check_program(
            StackSpec((LayerSpec((("a", big),)), LayerSpec((("b", big),)))), (), "bad"
        )


def test_an_input_file_past_the_bound_is_refused(tmp_path: Path, monkeypatch) -> None:
    """adapters.input_files reads at most MAX_INPUT bytes of a file the user names."""
    from adapters import input_files

    monkeypatch.setattr(input_files, "MAX_INPUT", 10)
    (tmp_path / "small.toml").write_text("x" * 10)
    (tmp_path / "big.toml").write_text("x" * 11)
    assert input_files.read_text(tmp_path / "small.toml") == "x" * 10
    with pytest.raises(input_files.InputError, match=r"big\.toml: larger than 10 bytes"):
        input_files.read_text(tmp_path / "big.toml")


def test_a_deeply_nested_json_file_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert main(["replay", str(path)]) == 2
    _one_line_error(capsys, "deep.json")


def test_a_fifo_given_as_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "conformance", "replay", str(fifo)], cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2 and "not a regular file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["inf", "1e20", "nan"])
def test_an_absurd_driver_timeout_is_one_line(value: str, capsys) -> None:
    assert main(["certify", "--driver", "reference", "--driver-timeout", value]) == 2
    _one_line_error(capsys, "--driver-timeout")


@pytest.mark.parametrize("option", ["--profile", "--expectations"])
def test_a_non_utf8_settings_file_is_one_line(tmp_path: Path, capsys, option: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'name = "\xff\xfe"\n')
    driver = "fuse-overlayfs" if option == "--profile" else "reference"
    assert main(["certify", "--driver", driver, option, str(bad)]) == 2
    _one_line_error(capsys, "bad.toml")


def test_corpus_naming_a_regular_file_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    assert main(["certify", "--driver", "reference", "--corpus", str(tmp_path / "file")]) == 2
    _one_line_error(capsys, "not a directory")


def test_a_bad_corpus_file_is_reported_and_skipped(tmp_path: Path, capsys) -> None:
    """Bad files beside a good one: each named on one line, the run goes on and ends."""
    corpus_dir = tmp_path / "c"
    corpus_dir.mkdir()
    for name, (stack, steps, _) in BAD_PROGRAMS.items():
        (corpus_dir / f"{name}.json").write_text(json.dumps(_program(stack, steps)))
    (corpus_dir / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (corpus_dir / "latin1.json").write_bytes(b'{"format": "\xff"}')
    (corpus_dir / "good.json").write_text(json.dumps(_program(GOOD_STACK, ["Read(path='a')"])))
    report = tmp_path / "report"
    code = main(["certify", "--driver", "reference", "--feature", "xattrs",
                 "--corpus", str(corpus_dir), "--report-dir", str(report)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if "skipped" in line and "corpus" in line]
    assert len(skipped) == len(BAD_PROGRAMS) + 2, err[-3000:]
    assert json.loads((report / "report.json").read_text())["status"] == "complete"


def test_a_full_report_disk_is_one_line_and_leaves_no_temporary(tmp_path: Path) -> None:
    """The report directory on a one-page tmpfs (in a mount namespace of the test's own)."""
    report = tmp_path / "report"
    report.mkdir()
    script = (
        f"mount -t tmpfs -o size=4k unionspec-full {report} && "
        f"{sys.executable} -m conformance certify --driver reference --feature xattrs "
        f"--report-dir {report} --corpus {tmp_path / 'c'}; echo code=$?; ls -A {report}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert "code=2" in result.stdout, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "No space left on device" in result.stderr.strip().splitlines()[-1]
    assert ".tmp" not in result.stdout


# --- item 8: reports that stay well-formed --------------------------------------------------


def test_diff_refuses_a_report_with_a_cell_twice(tmp_path: Path, capsys) -> None:
    from conformance.reports.report import SCHEMA

    def doc(*verdicts: str) -> dict:
        return {"schema": SCHEMA, "status": "complete",
                "cells": [{"id": "a", "verdict": v} for v in verdicts]}

    (tmp_path / "old.json").write_text(json.dumps(doc("conforms")))
    (tmp_path / "new.json").write_text(json.dumps(doc("diverges", "conforms")))
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 2
    _one_line_error(capsys, "'a'")


def _doc_with_reason(reason: str) -> dict:
    """A report document (as Report.document makes it) with one diverging cell."""
    from conformance.certify.engine import Verdict
    from conformance.reports.report import Cell, Report

    report = Report(Path("/nonexistent"), ["reference"], {"budget": "quick"}, planned=1)
    verdict = Verdict("reference", "redirect_dir=off,index=off", "diverges", reason)
    report.cells.append(Cell(verdict))
    return report.document()


def test_junit_stays_well_formed_with_control_characters() -> None:
    from xml.etree import ElementTree as ET

    from conformance.reports.report import render_junit

    text = render_junit(_doc_with_reason("got b'\\x00' \x00\x01\x1b[31m red\x7f \ufffe end"))
    failure = ET.fromstring(text.split("\n", 1)[1]).find(".//failure")
    assert failure is not None and "end" in (failure.text or "")


def test_a_code_fence_in_a_reason_stays_inside_its_block() -> None:
    from conformance.reports.report import render_markdown

    text = render_markdown(_doc_with_reason("before\n```\n# Injected heading\n```\nafter"))
    lines = text.splitlines()
    start = lines.index("before") - 1
    fence = lines[start].split("text")[0]
    assert set(fence) == {"`"} and len(fence) > 3
    assert lines[lines.index("after") + 1] == fence


# --- item 3: bounds in the sandbox ------------------------------------------------------------


def test_the_private_tmpfs_is_bounded_nosuid_and_nodev() -> None:
    from adapters.drivers.kernel import KernelDriver
    from tests.host import require

    require(KernelDriver, "kernel driver")
    with KernelDriver(timeout=30) as driver, open(f"/proc/{driver.executor_pid}/mountinfo") as f:
        lines = [line.split() for line in f if line.split()[4] == "/tmp"]
    fields = lines[-1]
    super_options = fields[fields.index("-") + 3].split(",")
    assert any(option.startswith("size=") for option in super_options), fields
    assert {"nosuid", "nodev"} <= set(fields[5].split(",")), fields


def test_reading_an_endless_file_stops_at_the_bound() -> None:
    """A FUSE driver serving endless data (here /dev/zero) must not grow the executor until
    the OOM killer: the read stops at the bound with EFBIG (a divergence, not a crash).
    Run under a 1 GiB address-space limit so the code before the bound fails harmlessly."""
    code = (
        "import errno, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from adapters.sandbox.layerdisk import read_all\n"
        "try:\n"
        "    read_all('/dev/zero')\n"
        "except OSError as exc:\n"
        "    sys.exit(0 if exc.errno == errno.EFBIG else 3)\n"
        "sys.exit(4)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_refused_expectations_file_does_not_stay_configured(tmp_path: Path, capsys) -> None:
    """In one process (the pytest plugin, a test calling main twice), a refused file must
    leave nothing behind: the module is as it was, and a later run without
    --expectations reads the shipped file (each run's file travels in its own
    conformance.run_config.RunConfig)."""
    from conformance.records import expectations

    before = dict(vars(expectations))
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff")
    assert main(["certify", "--driver", "reference", "--expectations", str(bad)]) == 2
    capsys.readouterr()
    now = vars(expectations)
    assert now.keys() == before.keys()
    assert all(now[name] is value for name, value in before.items())
    assert expectations.loaded() == expectations.load()
