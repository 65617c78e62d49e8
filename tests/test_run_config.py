"""A run's configuration travels as one frozen value (conformance.run_config), never through
module globals: a run with every option given leaves every module of the project as it
found it."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.test_layout import modules

#: A test of the suite's own shape, for the pytester run: one machine item (it asks for
#: the budget's settings), so the plugin spreads the duration over it.
MACHINE_ITEM = """
def test_machine(driver, conformance_settings):
    pass
"""


def _snapshot() -> dict[str, tuple[ModuleType, dict[str, Any], dict[str, Any]]]:
    """Each project module, its globals (by identity) and a shallow copy of each mutable
    table (a write into a table is a write too)."""
    loaded = {name: importlib.import_module(name) for name in modules()}
    found = {}
    for name, module in loaded.items():
        names = dict(vars(module))
        tables = {
            key: type(value)(value)
            for key, value in names.items()
            if type(value) in (dict, list, set)
        }
        found[name] = (module, names, tables)
    return found


def _changes(before: dict[str, tuple[ModuleType, dict[str, Any], dict[str, Any]]]) -> list[str]:
    changed = []
    for name, (module, names, tables) in before.items():
        now = vars(module)
        for key in sorted(set(names) | set(now)):
            where = f"{name}.{key}"
            if key not in now or key not in names or now[key] is not names[key]:
                changed.append(where)
            elif key in tables and type(now[key])(now[key]) != tables[key]:
                changed.append(f"{where} (its contents)")
    return changed


def _smallest_shard(parts: int = 8) -> str:
    """The shard of the xattrs cells with the fewest cells (at least one): a short run."""
    from conformance.certify.engine import plan
    from conformance.certify.shard import Shard
    from conformance.features import BY_ID

    labels = [f"{k}/{parts}" for k in range(1, parts + 1)]
    sizes = [
        (len(plan(["reference"], [BY_ID["xattrs"]], False, Shard.parse(label))), label)
        for label in labels
    ]
    return min(size for size in sizes if size[0])[1]


def test_a_run_writes_no_module_global(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certify and the pytest plugin in this process, with a non-default --expectations,
    a duration --budget and --hypothesis-show-statistics: no module's globals change."""
    from conformance.__main__ import main
    from conformance.records.expectations import DEFAULT_PATH

    records = tmp_path / "records.toml"
    shutil.copy(DEFAULT_PATH, records)
    before = _snapshot()
    monkeypatch.chdir(tmp_path)
    argv = [
        "certify", "--driver", "reference", "--feature", "xattrs", "--budget", "2s",
        f"--shard={_smallest_shard()}", f"--expectations={records}",
        "--corpus", str(tmp_path / "corpus"),
    ]
    assert main(argv) == 0
    monkeypatch.chdir(pytester.path)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_machine=MACHINE_ITEM)
    result = pytester.runpytest(
        "-p", "no:randomly", "--driver=reference", "--budget=2s",
        f"--expectations={records}", "--hypothesis-show-statistics",
    )
    result.assert_outcomes(passed=1)
    changes = _changes(before)
    assert changes == [], "\n".join(changes)


PLUGIN_CONFIG = """
import os

def test_config(run_config, driver_settings):
    from conformance.generation import coverage

    observed = coverage.observed if os.environ["OBSERVED"] == "yes" else None
    assert run_config.observe_machine is observed
    assert run_config.expectations_path == (os.environ["RECORDS"] or None)
    assert run_config.seconds_per_run == 60.0  # --budget=1m, no machine item to share it
    assert run_config.driver_settings is driver_settings
    assert driver_settings.timeout == 7.0
"""


def test_the_plugin_builds_the_run_config_from_its_options(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conformance.records.expectations import DEFAULT_PATH

    records = tmp_path / "records.toml"
    shutil.copy(DEFAULT_PATH, records)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_config=PLUGIN_CONFIG)
    given = ["-p", "no:randomly", "--driver-timeout=7", "--budget=1m"]
    monkeypatch.setenv("OBSERVED", "yes")
    monkeypatch.setenv("RECORDS", str(records))
    result = pytester.runpytest(
        *given, "--hypothesis-show-statistics", f"--expectations={records}"
    )
    result.assert_outcomes(passed=1)
    monkeypatch.setenv("OBSERVED", "no")
    monkeypatch.setenv("RECORDS", "")
    pytester.runpytest(*given).assert_outcomes(passed=1)


def test_the_machine_goes_through_the_runs_observer() -> None:
    from adapters.drivers.reference import ReferenceDriver
    from conformance.lockstep.machine import OverlayMachine, machine_for
    from conformance.run_config import RunConfig
    from reference.options import Options

    seen: list[type] = []

    def observe(machine: type) -> type:
        seen.append(machine)
        return type("Observed", (machine,), {})

    made = machine_for(ReferenceDriver(), Options(), run_config=RunConfig(observe_machine=observe))
    assert made.__name__ == "Observed" and made.__bases__ == tuple(seen)
    assert issubclass(made, OverlayMachine)
    plain = machine_for(ReferenceDriver(), Options())
    assert plain.__name__ == "OverlayMachine" and seen == [seen[0]]


def test_certify_workers_serve_their_cells_under_the_runs_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's cells run under the configuration of its task (pickled, as a spawned
    worker gets it), not under anything of its own process."""
    import pickle
    import queue

    from adapters.settings import DriverSettings
    from conformance.run_config import RunConfig
    from reference.options import MATRIX

    # the modules as sys.modules holds them now (an in-process pytester run drops those it
    # imported, so a package attribute may name an older copy than the one _serve uses)
    command, engine, coverage = (
        importlib.import_module(f"conformance.{name}")
        for name in ("certify.command", "certify.engine", "generation.coverage")
    )
    records_file = tmp_path / "records.toml"
    shutil.copyfile(Path(__file__).parents[1] / "conformance/records/expectations.toml",
                    records_file)
    run = RunConfig(
        expectations_path=records_file,
        seconds_per_run=0.5,
        observe_machine=coverage.observed,
        driver_settings=DriverSettings(timeout=7.0),
    )
    given = pickle.loads(pickle.dumps(run))
    assert given == run
    seen: list[RunConfig] = []

    def cell(driver, options, chosen, feature, programs, run_config):
        seen.append(run_config)
        return engine.Verdict(driver.name, options.label, "conforms", feature=feature.id)

    monkeypatch.setattr(engine, "certify_cell", cell)
    tasks: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    tasks.put((0, "reference", "xattrs", MATRIX[0].label))
    tasks.put(None)
    drivers: dict = {}
    try:
        command._serve({"run_config": given}, tasks, results, drivers, None, None, ())
    finally:
        for driver in drivers.values():
            driver.close()
    assert seen == [run]
    assert results.get_nowait()[1].verdict == "conforms"
