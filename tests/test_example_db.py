"""The Hypothesis example database shared between machines (``--example-db DIR``,
``$UNIONSPEC_EXAMPLE_DB``; conformance.budgets.example_database): a failure one run saved
is replayed first by another run that has only the shared directory in common with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase, MultiplexedDatabase

from conformance.__main__ import USAGE_OR_SETUP_ERROR, main
from conformance.budgets import EXAMPLE_DB_ENV, example_database

ROOT = Path(__file__).resolve().parent.parent

#: Run by pytester under the plugin: a seeded fault (adapters/faults.py) in the metadata
#: feature's machine, with the plugin's settings (so its database); ``UNIONSPEC_REUSE_ONLY``
#: leaves Hypothesis only its reuse phase: a failure then comes from the database, never
#: from generation.
FAULTY_TEST = """
import os

from hypothesis import Phase, settings

from adapters.faults import FaultyDriver
from conformance.features import BY_ID
from conformance.lockstep.machine import run_machine
from reference.options import Options


def test_chown(feature_settings):
    reuse_only = bool(os.environ.get("UNIONSPEC_REUSE_ONLY"))
    phases = [Phase.reuse] if reuse_only else [Phase.reuse, Phase.generate, Phase.shrink]
    chosen = settings(feature_settings, phases=phases, max_examples=100)
    run_machine(FaultyDriver("chown-swaps-ids"), Options(), chosen, BY_ID["metadata"])
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    shutil.rmtree(pytester.path / ".hypothesis", ignore_errors=True)  # another machine
    return pytester.runpytest_subprocess("-p", "no:randomly", "-q", *args)


def test_a_failure_saved_by_one_run_is_replayed_first_by_another(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(EXAMPLE_DB_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's plugin, not an installed one
    pytester.makepyfile(test_faulty=FAULTY_TEST)
    shared = tmp_path / "shared"
    found = _run(pytester, f"--example-db={shared}")
    found.assert_outcomes(failed=1)
    assert any(shared.rglob("*")), "the failure was not saved in the shared directory"

    monkeypatch.setenv("UNIONSPEC_REUSE_ONLY", "1")
    # no generation, an empty local database: the failure can only come from the shared one
    _run(pytester, f"--example-db={shared}").assert_outcomes(failed=1)
    monkeypatch.setenv(EXAMPLE_DB_ENV, str(shared))  # the same through the environment
    _run(pytester).assert_outcomes(failed=1)
    monkeypatch.delenv(EXAMPLE_DB_ENV)
    # and without it nothing is replayed (Hypothesis skips a test that ran no example):
    # the check can fail
    _run(pytester).assert_outcomes(skipped=1)


def test_the_shared_directory_is_joined_to_the_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(EXAMPLE_DB_ENV, raising=False)
    alone = example_database(tmp_path)
    assert isinstance(alone, DirectoryBasedExampleDatabase)
    joined = example_database(tmp_path, tmp_path / "shared")
    assert isinstance(joined, MultiplexedDatabase)
    joined.save(b"key", b"value")
    assert list(DirectoryBasedExampleDatabase(str(tmp_path / "shared")).fetch(b"key")) == [
        b"value"
    ]
    assert list(alone.fetch(b"key")) == [b"value"]


def test_certify_uses_the_shared_directory_and_refuses_it_with_a_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conformance.certify import command as run

    monkeypatch.chdir(tmp_path)
    whole, feature = run._settings("quick", None, str(tmp_path / "shared"))
    for chosen in (whole, feature):
        assert isinstance(chosen.database, MultiplexedDatabase)
    argv = ["certify", "--driver", "reference", "--seed", "1", "--example-db", "x"]
    assert main(argv) == USAGE_OR_SETUP_ERROR
    err = capsys.readouterr().err.strip()
    assert "--example-db" in err and len(err.splitlines()) == 1
