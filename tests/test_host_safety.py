"""Host safety (issue 17): what the tool writes on the host, and the bounds of its input.

Each test here failed on the code before the protection it proves (docs/host-safety.md
lists the protection, the test and what the test showed before)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conformance import report, safe_write

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
