"""Smoke test of ``python -m conformance bench``: a tiny run writes the expected JSON.

No timing assertions: only that every part ran and reported positive numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from conformance.__main__ import main


def test_bench_writes_the_expected_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--driver", "reference", "--examples", "2", "--steps", "5"]
    argv += ["--fault", "chown-swaps-ids", "--xdist-budget", "none", "--json", str(out)]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert set(results) >= {"environment", "drivers", "engine", "xdist", "faults", "budget"}

    reference = results["drivers"]["reference"]
    assert reference["status"] == "completed"
    assert reference["examples"] > 0 and reference["steps"] > 0
    assert reference["steps_per_s"] > 0 and reference["examples_per_s"] > 0
    assert set(reference["sections_s"]) == {
        "layer setup and mount",
        "reference",
        "driver operations",
        "driver observation",
        "comparison",
    }
    assert reference["generation_s"] >= 0
    engine = results["engine"]
    assert engine["steps"] > 0 and engine["steps_per_s"] > 0
    assert results["xdist"]["status"] == "skipped"

    fault = results["faults"]["chown-swaps-ids"]
    assert fault["detected"] is True
    assert fault["first_detection_s"] > 0
    assert fault["total_s"] >= fault["first_detection_s"]
    assert fault["counterexample_steps"] > 0
    assert "reference" in capsys.readouterr().out
