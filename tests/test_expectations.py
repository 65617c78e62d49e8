"""Known divergences as data (conformance.records.expectations): loading, checking, matching by
driver version, the strict xfail marks of the pytest plugin, and certify's verdict."""

from __future__ import annotations

import pytest

from conformance.records import expectations
from conformance.records.expectations import Expectation, ExpectationError, load
from conformance.records.program_check import ProgramError
from conformance.records.programs import parse_repr
from conformance.run_config import RunConfig
from reference import ops
from reference.layer import FifoSpec, LayerSpec, StackSpec

RECORD = """
[[divergence]]
driver = "ghost"
version = "ghost 1.0"
features = ["xattrs"]
options = ["redirect_dir=off,index=off"]
reason = "the ghost forgets xattrs"
stack = "StackSpec(lowers=(LayerSpec(entries=(('a', FifoSpec(mode=0o755)),)),))"
steps = ["Chmod(path='a', mode=0o700)"]
confirmed = "by hand"
upstream = "https://example.invalid/1"

[[divergence.differs]]
in = "outcome"
op = ["Chmod"]
actual = "EIO"
"""


def write(tmp_path, text: str):
    path = tmp_path / "expectations.toml"
    path.write_text(text)
    return path


def test_the_shipped_file_loads() -> None:
    for expectation in load():
        assert expectation.steps and expectation.confirmed


def test_a_record_loads(tmp_path) -> None:
    (found,) = load(write(tmp_path, RECORD))
    assert found.stack == StackSpec((LayerSpec((("a", FifoSpec(mode=0o755)),)),))
    assert found.steps == (ops.Chmod("a", 0o700),)
    assert found.matches("ghost", "ghost 1.0", "xattrs", "redirect_dir=off,index=off")
    assert found.matches("ghost", "ghost 1.0", "", "redirect_dir=off,index=off")
    assert not found.matches("ghost", "ghost 2.0", "xattrs", "redirect_dir=off,index=off")
    assert not found.matches("ghost", None, "xattrs", "redirect_dir=off,index=off")
    assert not found.matches("ghost", "ghost 1.0", "metadata", "redirect_dir=off,index=off")
    assert not found.matches("ghost", "ghost 1.0", "xattrs", "ro")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("reason", '"x"\ncolour = "red"'), "unknown key 'colour'"),
        (("features", '"xattrs"'), "key 'features' must be an array of strings"),
        (("features", '["telepathy"]'), "unknown feature 'telepathy'"),
        (("options", '["index=maybe"]'), "unknown option set 'index=maybe'"),
        (("version", "1"), "key 'version' must be a string"),
        (("steps", '["__import__(\'os\')"]'), "unknown name '__import__'"),
        (("steps", "[\"Chmod(path='a').mode\"]"), "Attribute is not allowed"),
        (("steps", "[\"Chmod(path='a', colour=1)\"]"), "TypeError"),
        (("steps", '["StackSpec(lowers=())"]'), "not an operation"),
        (("stack", '"Chmod(path=\'a\', mode=1)"'), "'stack' must be a StackSpec"),
        (("stack", '"StackSpec(("'), "not a valid expression"),
    ],
)
def test_bad_records_are_one_line_errors(tmp_path, change, message) -> None:
    key, value = change
    lines = [
        f"{key} = {value}" if line.startswith(f"{key} =") else line
        for line in RECORD.splitlines()
    ]
    with pytest.raises(ExpectationError, match=message.replace("(", r"\(")) as info:
        load(write(tmp_path, "\n".join(lines)))
    assert "\n" not in str(info.value)
    assert "divergence 1" in str(info.value)


def test_missing_key_and_bad_toml(tmp_path) -> None:
    without = "\n".join(line for line in RECORD.splitlines() if not line.startswith("reason"))
    with pytest.raises(ExpectationError, match="missing key 'reason'"):
        load(write(tmp_path, without))
    with pytest.raises(ExpectationError, match="not valid TOML"):
        load(write(tmp_path, "[[divergence]\n"))
    with pytest.raises(ExpectationError, match="cannot read"):
        load(tmp_path / "nonexistent.toml")


def test_parse_repr_evaluates_nothing_but_known_classes() -> None:
    assert parse_repr("Rename('a', 'b', 'RENAME_EXCHANGE')", "x") == ops.Rename(
        "a", "b", "RENAME_EXCHANGE"
    )
    with pytest.raises(ProgramError, match="not allowed"):
        parse_repr("[x for x in ()]", "x")


def test_settle_keeps_diverges_and_lists_what_was_recorded(tmp_path, monkeypatch) -> None:
    """A record accounts only for the differences it describes (conformance.records.behaviours),
    so a cell that diverges stays ``diverges`` (issue 15: it used to become expected), listing
    the records also seen; a cell that saw only records is expected, with the counts."""
    from collections import Counter

    from conformance.features import BY_ID
    from conformance.records import behaviours as records
    from reference.options import MATRIX

    monkeypatch.setattr(expectations, "installed_version", lambda name, settings=None: "ghost 1.0")
    replayed: list[str] = []

    def replay(driver, expectation, options, feature, settings=None) -> None:
        replayed.append(feature.id)
        if driver.still_broken:
            records.count({expectation.id})  # the reproducer's step matched the record

    monkeypatch.setattr(expectations, "replay", replay)

    class Ghost:
        name = "ghost"
        still_broken = True

    run = RunConfig(expectations_path=write(tmp_path, RECORD))

    def settle(cell, verdict, detail, seen=None):
        return expectations.settle(*cell, verdict, detail, seen, run)

    cell = (Ghost(), MATRIX[0], BY_ID["xattrs"])
    verdict, detail = settle(cell, "diverges", "found it", Counter(ghost=3))
    assert verdict == "diverges"
    assert "found it" in detail and "ghost (3 examples)" in detail
    verdict, detail = settle(cell, "conforms", "", Counter({"ghost#1": 2}))
    assert verdict == expectations.EXPECTED and "ghost#1 (2 examples)" in detail
    assert replayed == []
    # the exploration missed it: the reproducer is replayed
    seen: Counter[str] = Counter()
    assert settle(cell, "conforms", "", seen)[0] == expectations.EXPECTED
    assert replayed == ["xattrs"] and seen == {"ghost#1": 1}
    Ghost.still_broken = False
    verdict, detail = settle(cell, "conforms", "")
    assert verdict == "conforms" and "no longer reproduces" in detail
    other = (Ghost(), MATRIX[0], BY_ID["metadata"])
    assert settle(other, "diverges", "d")[0] == "diverges"
    # the run's file only: the default one has no record of the ghost
    assert expectations.settle(*cell, "conforms", "") == ("conforms", "")


GHOST_CONFTEST = """
import sys
from adapters import registry

class Ghost:
    name = "ghost"

    @classmethod
    def installed_version(cls):
        return "ghost 1.0"

    def close(self):
        pass

sys.modules["ghost_driver"] = sys.modules[__name__]
registry.BUILTIN["ghost"] = "ghost_driver:Ghost"
"""

GHOST_TESTS = """
import pytest
from conformance.features import BY_ID
from reference.options import MATRIX

@pytest.mark.records("feature")
@pytest.mark.parametrize(
    ("feature", "options"), [(BY_ID["xattrs"], MATRIX[0]), (BY_ID["metadata"], MATRIX[0])]
)
def test_feature(driver, feature, options):
    from conformance.records.behaviours import RecordedBehaviours

    if feature.id == "xattrs":
        raise RecordedBehaviours("only recorded behaviours: ghost#1 (1 example)")

@pytest.mark.records("machine")
@pytest.mark.parametrize("options", [MATRIX[0]])
def test_state_machine(driver, options):
    assert False, "a difference no record describes"
"""

@pytest.fixture
def ghost(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(GHOST_CONFTEST)
    pytester.makepyfile(GHOST_TESTS)
    return pytester


def test_a_known_divergence_is_a_strict_xfail(ghost: pytest.Pytester) -> None:
    path = write(ghost.path, RECORD)
    result = ghost.runpytest("--driver=ghost", f"--expectations={path}", "-p", "no:cacheprovider")
    # test_state_machine of the same cell is marked too, but what it found is no record's
    result.assert_outcomes(passed=1, xfailed=1, failed=1)


def test_a_pending_table_is_refused(tmp_path) -> None:
    """Issue 15: nothing found is excused by name any more (a [[pending]] table held the
    long and .wh. names of fuse-overlayfs 1.10 and unionfs-fuse 1.0 until they were
    recorded as behaviours): a file that still has one is refused, in one line."""
    from conformance.records.expectations import ExpectationError, load

    pending = '\n[[pending]]\ndriver = "ghost"\nversion = "ghost 1.0"\nreason = "later"\n'
    with pytest.raises(ExpectationError, match="unknown top-level key 'pending'") as info:
        load(write(tmp_path, RECORD + pending))
    assert "\n" not in str(info.value)


def test_a_fixed_divergence_turns_red(ghost: pytest.Pytester) -> None:
    path = write(ghost.path, RECORD.replace('["xattrs"]', '["xattrs", "metadata"]'))
    result = ghost.runpytest("--driver=ghost", f"--expectations={path}", "-k", "feature")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*"])


def test_another_version_gets_the_full_check(ghost: pytest.Pytester) -> None:
    path = write(ghost.path, RECORD.replace('version = "ghost 1.0"', 'version = "ghost 0.9"'))
    result = ghost.runpytest("--driver=ghost", f"--expectations={path}", "-k", "feature")
    result.assert_outcomes(passed=1, failed=1)


def test_a_bad_expectations_file_is_a_usage_error(ghost: pytest.Pytester) -> None:
    path = write(ghost.path, RECORD.replace("features", "feechurs"))
    result = ghost.runpytest("--driver=ghost", f"--expectations={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown key 'feechurs'*"])


def test_certify_cli_exits_2_on_a_bad_file(tmp_path, capsys) -> None:
    from conformance.__main__ import main

    path = write(tmp_path, RECORD.replace("features", "feechurs"))
    assert main(["certify", "--driver=reference", f"--expectations={path}"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'feechurs'" in err and len(err.strip().splitlines()) == 1


def test_expectation_renders_its_program() -> None:
    (found,) = load_text(RECORD)
    assert found.render().splitlines()[1] == "Chmod(path='a', mode=0o700)"


def load_text(text: str) -> tuple[Expectation, ...]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        return load(write(Path(directory), text))


def test_scenarios_key(tmp_path, monkeypatch) -> None:
    text = RECORD.replace('upstream =', 'scenarios = ["copy-up-once"]\nupstream =')
    (found,) = load(write(tmp_path, text))
    assert found.scenarios == ("copy-up-once",)
    with pytest.raises(ExpectationError, match="unknown scenario 'nonesuch'"):
        load(write(tmp_path, text.replace("copy-up-once", "nonesuch")))
    monkeypatch.setattr(expectations, "installed_version", lambda name, settings=None: "ghost 1.0")
    run = RunConfig(expectations_path=write(tmp_path, text))
    expectations.reload(run.expectations_path)
    label = "redirect_dir=off,index=off"
    assert expectations.matching_scenario("ghost", "copy-up-once", label, run) == (found,)
    assert expectations.matching_scenario("ghost", "copy-up-once", "ro", run) == ()
    assert expectations.matching_scenario("ghost", "rmdir-mkdir-opaque", label, run) == ()
    assert expectations.matching_scenario("ghost", "copy-up-once", label) == ()


def test_settle_names_a_reproducer_that_shows_nothing(tmp_path, monkeypatch) -> None:
    """Each replayed reproducer must show its own record: with two records of a cell, one
    reproducer showing its record does not stand for the other, which is named stale."""
    from conformance.features import BY_ID
    from conformance.records import behaviours as records
    from reference.options import MATRIX

    monkeypatch.setattr(expectations, "installed_version", lambda name, settings=None: "ghost 1.0")
    second = RECORD.replace("the ghost forgets xattrs", "the ghost forgets more")

    def replay(driver, expectation, options, feature, settings=None) -> None:
        records.count({"ghost#1"})  # every reproducer shows the first record only

    monkeypatch.setattr(expectations, "replay", replay)

    class Ghost:
        name = "ghost"

    run = RunConfig(expectations_path=write(tmp_path, RECORD + second))
    cell = (Ghost(), MATRIX[0], BY_ID["xattrs"])
    verdict, detail = expectations.settle(*cell, "conforms", "", None, run)
    assert verdict == expectations.EXPECTED
    assert "no longer reproduces: the ghost forgets more" in detail
    assert "the ghost forgets xattrs" not in detail.partition("no longer")[2]
