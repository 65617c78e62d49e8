"""``python -m conformance bench``: throughput, scaling and bug-finding speed, measured.

In one run it measures, and prints as a table and writes as JSON (``--json``):

1. **drivers**: per driver (default reference, kernel, fuse-overlayfs; a driver that cannot
   run here is skipped with the reason), steps/s and examples/s of the full-checking state
   machine (``machine_for(driver, Options())``, every comparison after every step), with a
   fixed budget, and where the time goes: the machine's clock sections and Hypothesis's own
   generation (wall minus the sections). Generation is reproducible: the seed is fixed
   (``hypothesis.seed(SEED)`` on the machine's test, ``machine.lockstep_test``; with only
   ``derandomize=True`` Hypothesis would derive it from the test's source, so any edit of
   machine.py would draw other examples and before/after runs would not compare) and
   there is no example database. The seed fixes what is drawn, not the strategies: an edit
   of conformance/generation/strategies.py draws other programs. Nor the loaded modules: Hypothesis
   also draws integers from constants it finds in the loaded modules, collected again
   whenever ``sys.modules`` grows (hypothesis.internal.conjecture.providers
   ``_get_local_constants``), so a fault measured after the driver runs may draw other
   examples than the same fault measured alone.
   Only the generate phase runs. An example that diverges ends at its divergence and the
   run goes on (a driver with a recorded divergence in ``Options()`` is measured over the
   whole budget: the count and the first
   divergence are reported); a hung or crashed driver stops it. Then the reference
   engine alone (:func:`bench_engine`): the same programs through ``Overlay`` with no
   generation, no driver and no comparison.
2. **xdist**: the wall time of the same pytest workload with ``-n 1`` and ``-n 2`` (as
   subprocesses, ``--hypothesis-seed=0``) and their ratio, in ``--xdist-rounds`` rounds of
   one ``-n 1`` and one ``-n 2`` run back to back (each round's ratio, and their median and
   spread: on a shared machine a single pair says little). The workload is the state
   machine and feature items of tests/test_conformance.py on the reference and, where it
   can run, the kernel: every pytest process pays a fixed cost to start and collect,
   whatever ``-n``, so the workload must be long for the ratio to measure the workers
   rather than start-up.
3. **faults**: for every seeded fault of ``adapters/faults.py``,
   the time until the first failure, the total time including shrinking, and the length of
   the shrunk counterexample (the operations of its failing example, the mount not
   counted). Generation and shrinking run
   as in the suite; Hypothesis's explain phase does not (it only annotates the report, and
   costs more than the shrinking).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given, seed, settings

from adapters import registry
from adapters.base import DriverFailure, DriverUnavailable
from adapters.faults import FAULTS, FaultyDriver, options_for
from conformance import timebudget
from conformance.generation.cases import cases as drawn_cases
from conformance.lockstep.clock import Clock
from conformance.lockstep.machine import Diverged, OverlayMachine, lockstep_test, machine_for
from reference import ops
from reference.layer import StackSpec
from reference.options import Options
from reference.overlay import Overlay

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DRIVERS = ("reference", "kernel", "fuse-overlayfs")
SECTIONS = (
    "layer setup and mount",
    "reference",
    "driver operations",
    "driver observation",
    "comparison",
)
#: unionmount-testsuite, one configuration on this kind of machine (issue 5).
REFERENCE_POINT_OPS_PER_S = 660.0


#: The seed of every machine the benchmark runs (see the module doc).
SEED = 0


def _run_seeded(machine: type[OverlayMachine], run_settings: settings) -> None:
    """Run ``machine``'s Hypothesis test with the benchmark's seed."""
    seed(SEED)(lockstep_test(machine, run_settings))()


def _fixed(**values: Any) -> settings:
    """Reproducible settings: derandomized generation, no database, no deadline."""
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        **values,
    )


def _failure_text(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes]).strip()


def _cpu_seconds() -> float:
    """User and system CPU time of this process and of its reaped children (the
    executor and the FUSE daemons, once closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _breakdown(clock: Clock, wall: float, cpu: float | None = None) -> dict[str, Any]:
    steps = clock.counts.get("driver operations", 0)
    examples = clock.counts.get("layer setup and mount", 0)
    sections = {name: clock.seconds.get(name, 0.0) for name in SECTIONS}
    result = {
        "examples": examples,
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall if wall > 0 else 0.0,
        "examples_per_s": examples / wall if wall > 0 else 0.0,
        "sections_s": sections,
        "generation_s": max(0.0, wall - sum(sections.values())),
    }
    if cpu is not None:
        result["cpu_s"] = cpu
        result["steps_per_cpu_s"] = steps / cpu if cpu > 0 else 0.0
    return result


# --- 1. drivers ---------------------------------------------------------------------------


def _divergence_tolerant(base: type[OverlayMachine], seen: list[str]) -> type[OverlayMachine]:
    """A machine whose example ends at its first divergence, noted in ``seen``, instead of
    failing the run: a driver with a known divergence is measured over the whole budget
    (each example is checked fully up to where it diverges)."""

    class Tolerant(base):  # type: ignore[misc, valid-type]
        def run(self, stack: StackSpec, program: list[ops.Op]) -> None:
            try:
                super().run(stack, program)
            except Diverged as exc:
                # the first difference ("driver differs from the reference:" comes first)
                lines = str(exc).splitlines()
                seen.append(lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0])

    Tolerant.__name__ = Tolerant.__qualname__ = "OverlayMachine"
    return Tolerant


def bench_driver(name: str, examples: int, steps: int) -> dict[str, Any]:
    """The machine's throughput on one driver: per second of wall time and per second of
    CPU time (this process and the driver's processes: robust on a shared machine, but
    blind to time spent waiting, e.g. for an idle CPU to wake). An example that diverges
    ends there and the run goes on (``diverged_examples``, the first divergence's line):
    fuse-overlayfs and unionfs-fuse have recorded divergences in this option set."""
    reason = registry.unavailable_reason(name)
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    cpu_before = _cpu_seconds()
    try:
        driver = registry.make(name)
    except DriverUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    clock = Clock()
    diverged: list[str] = []
    machine = _divergence_tolerant(machine_for(driver, Options()), diverged)
    machine.clock = clock
    run_settings = _fixed(max_examples=examples, stateful_step_count=steps, phases=[Phase.generate])
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        _run_seeded(machine, run_settings)
    except (AssertionError, DriverFailure, LookupError) as exc:
        failure = exc
    finally:
        wall = time.perf_counter() - started
        driver.close()
    result = _breakdown(clock, wall, _cpu_seconds() - cpu_before)
    result["diverged_examples"] = len(diverged)
    if diverged:
        result["first_divergence"] = diverged[0]
    if failure is not None:
        result["status"] = "failed"
        result["failure"] = _failure_text(failure)
    else:
        result["status"] = "completed"
    return result


def bench_engine(examples: int, steps: int) -> dict[str, Any]:
    """The reference engine alone: the machine's programs (same seed, drawn first and not
    timed) replayed through ``Overlay``, each step what the machine asks of the reference:
    apply, then the view and the upper image unless the operation only looks
    (``ops.LOOKS``). No generation, no driver, no comparison: how fast the spec executes."""
    cases: list[tuple[StackSpec, list[ops.Op]]] = []

    @seed(SEED)
    @_fixed(max_examples=examples, phases=[Phase.generate])
    @given(case=drawn_cases(None, steps, Options()))
    def collect(case: tuple[StackSpec, list[ops.Op]]) -> None:
        cases.append(case)

    collect()
    count = 0
    cpu_before, started = _cpu_seconds(), time.perf_counter()
    for stack, program in cases:
        model = Overlay(stack, Options())
        model.view(), model.upper_image()
        for op in program:
            model.apply(op)
            if type(op) not in ops.LOOKS:
                model.view(), model.upper_image()
            count += 1
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
    return {
        "examples": len(cases),
        "steps": count,
        "wall_s": wall,
        "steps_per_s": count / wall if wall > 0 else 0.0,
        "steps_per_cpu_s": count / cpu if cpu > 0 else 0.0,
    }


# --- 2. xdist -----------------------------------------------------------------------------


#: The items of the -n 1 / -n 2 workload (see the module doc).
XDIST_SELECTION = "state_machine or feature"


def xdist_drivers() -> list[str]:
    """The drivers of the workload: the reference, and the kernel where it can run."""
    return ["reference", *(["kernel"] if registry.unavailable_reason("kernel") is None else [])]


def xdist_command(workers: int, budget: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_conformance.py",
        "-k",
        XDIST_SELECTION,
        *(f"--driver={name}" for name in xdist_drivers()),
        f"--budget={budget}",
        "--hypothesis-seed=0",
        "-n",
        str(workers),
    ]


def bench_xdist(budget: str, rounds: int = 1) -> dict[str, Any]:
    walls: dict[str, list[float]] = {"n1_s": [], "n2_s": []}
    for _ in range(rounds):
        for workers in (1, 2):
            command = xdist_command(workers, budget)
            started = time.perf_counter()
            done = subprocess.run(
                command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
            )
            walls[f"n{workers}_s"].append(time.perf_counter() - started)
            if done.returncode != 0:
                return {
                    "status": "failed",
                    "command": " ".join(command[1:]),
                    "reason": (done.stdout + done.stderr)[-2000:],
                    "rounds_s": walls,
                }
    ratios = [n2 / n1 for n1, n2 in zip(walls["n1_s"], walls["n2_s"], strict=True)]
    return {
        "status": "completed",
        "command": " ".join(xdist_command(1, budget)[1:]),
        "budget": budget,
        "n1_s": statistics.median(walls["n1_s"]),
        "n2_s": statistics.median(walls["n2_s"]),
        "rounds_s": walls,
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


# --- 3. seeded faults ---------------------------------------------------------------------


def _first_failure_recorder(base: type[OverlayMachine], seen: dict[str, Any]) -> type:
    """A machine that notes when and after how many steps its first failure happened."""

    def record(self: OverlayMachine) -> None:
        if "at" not in seen:
            seen["at"] = time.perf_counter()
            assert self.clock is not None
            seen["examples"] = self.clock.counts.get("layer setup and mount", 0)
            seen["steps"] = self.clock.counts.get("driver operations", 0)

    class Recorded(base):  # type: ignore[misc, valid-type]
        def apply(self, op: Any) -> Any:
            try:
                return super().apply(op)
            except BaseException:
                record(self)
                raise

        def agrees_with_reference(self) -> None:
            try:
                super().agrees_with_reference()
            except BaseException:
                record(self)
                raise

    Recorded.__name__ = Recorded.__qualname__ = "OverlayMachine"
    return Recorded


def bench_fault(fault: str, max_examples: int, steps: int) -> dict[str, Any]:
    clock = Clock()
    seen: dict[str, Any] = {}
    machine = _first_failure_recorder(machine_for(FaultyDriver(fault), options_for(fault)), seen)
    machine.clock = clock
    # No explain phase: it only annotates the report (which lines only failing runs hit)
    # and cost ~4x the shrinking itself here; generation and shrinking are unchanged.
    run_settings = _fixed(
        max_examples=max_examples,
        stateful_step_count=steps,
        phases=[Phase.generate, Phase.shrink],
    )
    started = time.perf_counter()
    try:
        _run_seeded(machine, run_settings)
    except (AssertionError, LookupError) as exc:
        total = time.perf_counter() - started
        text = _failure_text(exc)
        failures = exc.failures if isinstance(exc, Diverged) else ()
        first = seen.get("at", started + total) - started
        return {
            "detected": True,
            "first_detection_s": first,
            "examples_to_detection": seen.get("examples"),
            "steps_to_detection": seen.get("steps"),
            "total_s": total,
            "shrink_s": total - first,
            "counterexample_steps": len(failures[0].steps) if failures else None,
            "failure": text,
        }
    return {"detected": False, "total_s": time.perf_counter() - started}


# --- the run ------------------------------------------------------------------------------


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "hypothesis": hypothesis.__version__,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "seed": f"hypothesis.seed({SEED}), database=None; pytest --hypothesis-seed=0",
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(results: dict[str, Any]) -> str:
    lines = ["drivers (full-checking state machine, Options(): redirect_dir=off,index=off)"]
    head = ["driver", "status", "examples", "steps", "wall s", "steps/s", "ex/s", "x660"]
    head += ["cpu s", "steps/cpu s"]
    head += [*SECTIONS, "generation"]
    rows = [head]
    for name, r in results["drivers"].items():
        if r["status"] == "skipped":
            rows.append([name, f"skipped: {r['reason']}"])
            continue
        status = r["status"]
        if status == "failed":
            status = f"failed after {r['steps']} steps"
        elif r.get("diverged_examples"):
            status = f"{status} ({r['diverged_examples']} examples diverged)"
        row = [name, status, str(r["examples"]), str(r["steps"]), _fmt(r["wall_s"], 2)]
        row += [_fmt(r["steps_per_s"], 0), _fmt(r["examples_per_s"], 1)]
        row.append(_fmt(r["steps_per_s"] / REFERENCE_POINT_OPS_PER_S, 2))
        row += [_fmt(r.get("cpu_s"), 2), _fmt(r.get("steps_per_cpu_s"), 0)]
        row += [_fmt(r["sections_s"][s], 2) for s in SECTIONS] + [_fmt(r["generation_s"], 2)]
        rows.append(row)
    lines += _table(rows)
    engine = results.get("engine")
    if engine:
        kernel = results["drivers"].get("kernel", {})
        versus = ""
        if kernel.get("status") == "completed" and kernel.get("steps_per_s"):
            versus = f", {engine['steps_per_s'] / kernel['steps_per_s']:.1f}x the kernel machine"
        lines.append("")
        lines.append(
            f"reference engine alone (apply, view and upper image of the same programs, no"
            f" generation): {engine['steps']} steps in {engine['wall_s']:.2f}s,"
            f" {engine['steps_per_s']:.0f} steps/s{versus}"
        )
    xdist = results.get("xdist")
    lines.append("")
    if xdist is None or xdist.get("status") == "skipped":
        lines.append("xdist: skipped")
    elif xdist["status"] != "completed":
        lines.append(f"xdist: {xdist['status']}: {xdist.get('reason', '')}")
    else:
        lines.append(
            f"xdist ({xdist['command']}): -n 1 {xdist['n1_s']:.1f}s, -n 2 {xdist['n2_s']:.1f}s"
            f" (medians), ratio {xdist['ratio']:.2f} (rounds: "
            + ", ".join(f"{r:.2f}" for r in xdist["ratios"])
            + ")"
        )
    if results.get("faults"):
        lines.append("")
        lines.append("seeded faults (time to first failure, total with shrinking, shrunk steps)")
        rows = [["fault", "detected", "first s", "examples", "total s", "shrink s", "steps"]]
        for name, r in results["faults"].items():
            if not r["detected"]:
                rows.append([name, "NO", "-", "-", _fmt(r["total_s"], 2), "-", "-"])
                continue
            rows.append(
                [
                    name,
                    "yes",
                    _fmt(r["first_detection_s"], 2),
                    str(r["examples_to_detection"]),
                    _fmt(r["total_s"], 2),
                    _fmt(r["shrink_s"], 2),
                    str(r["counterexample_steps"]),
                ]
            )
        lines += _table(rows)
    return "\n".join(lines)


def _table(rows: list[list[str]]) -> list[str]:
    width = max(len(r) for r in rows)
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(width)]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--driver",
        action="append",
        default=[],
        help=f"driver to measure (repeatable; default: {', '.join(DEFAULT_DRIVERS)})",
    )
    parser.add_argument("--examples", type=int, default=200, help="examples per driver")
    parser.add_argument("--steps", type=int, default=30, help="steps per example")
    parser.add_argument(
        "--fault",
        action="append",
        default=None,
        help="seeded fault to measure (repeatable; default: all; --fault none for none)",
    )
    parser.add_argument(
        "--fault-examples", type=int, default=3000, help="bound on examples per fault"
    )
    parser.add_argument(
        "--xdist-budget",
        default="standard",
        choices=(*timebudget.NAMES, "none"),
        help="budget of the -n 1 / -n 2 pytest workload (none: skip it)",
    )
    parser.add_argument(
        "--xdist-rounds", type=int, default=2, help="-n 1 / -n 2 pairs to run (default 2)"
    )
    parser.add_argument("--json", default="bench-results.json", help="where to write the JSON")


def run(args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    def say(text: str) -> None:
        if progress is not None:
            progress(text)

    results: dict[str, Any] = {
        "environment": _environment(),
        "budget": {"examples": args.examples, "steps": args.steps},
        "reference_point_ops_per_s": REFERENCE_POINT_OPS_PER_S,
        "drivers": {},
        "engine": {},
        "xdist": {"status": "skipped"},
        "faults": {},
    }
    for name in args.driver or DEFAULT_DRIVERS:
        say(f"driver {name} ...")
        results["drivers"][name] = bench_driver(name, args.examples, args.steps)
    say("reference engine alone ...")
    results["engine"] = bench_engine(args.examples, args.steps)
    if args.xdist_budget != "none":
        say(f"pytest -n 1 / -n 2 (budget {args.xdist_budget}) ...")
        results["xdist"] = bench_xdist(args.xdist_budget, args.xdist_rounds)
    fault_names = sorted(FAULTS) if args.fault is None else args.fault
    for fault in fault_names:
        if fault == "none":
            continue
        say(f"fault {fault} ...")
        results["faults"][fault] = bench_fault(fault, args.fault_examples, args.steps)
    return results


def main(args: argparse.Namespace) -> int:
    if args.xdist_rounds < 1:
        print(f"error: --xdist-rounds must be 1 or more (got {args.xdist_rounds})", file=sys.stderr)
        return 2
    try:
        registry.check(args.driver)
    except registry.UnknownDriver as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.fault is not None:
        for fault in args.fault:
            if fault != "none" and fault not in FAULTS:
                print(
                    f"error: unknown fault {fault!r} (known: {', '.join(FAULTS)})", file=sys.stderr
                )
                return 2
    results = run(args, lambda text: print(text, file=sys.stderr, flush=True))
    print(render(results))
    from conformance.reports.safe_write import write_atomically

    write_atomically(args.json, json.dumps(results, indent=2, sort_keys=False) + "\n")
    print(f"\nwritten to {args.json}")
    return 0
