"""The ``certify`` command: check the arguments, run the cells (in this process or in
``--workers`` processes), and after every verdict write its artefacts (the corpus
program, the reproducer) and rewrite the reports (:mod:`conformance.reports.report`).

Interruption: SIGINT and SIGTERM raise :class:`Interrupted` in the main process; the
drivers are closed (the ``finally`` of :func:`conformance.certify.engine.certify`, or SIGTERM to
each worker, which closes its own), the reports are rewritten with ``status:
interrupted`` and the command exits 130 with one line. The artefacts of a verdict and
the closing of a driver run with the signals held
(:func:`conformance.certify.engine.uninterrupted`),
so no file is left half-written and no unmount is cut short.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from adapters import registry
from adapters.settings import DEFAULT, DriverSettings, SettingsError
from adapters.vm.image import KernelImage
from conformance import timebudget
from conformance.certify.engine import Planned, Verdict, plan, planned_id, uninterrupted
from conformance.certify.shard import Shard, ShardError, cell_id
from conformance.errors import ConformanceError
from conformance.features import BY_ID, FEATURES, Feature
from conformance.records import corpus, expectations
from conformance.run_config import RunConfig
from conformance.verdicts import INTERRUPTED, fails
from reference.options import MATRIX

FUSE_DRIVERS = ("fuse", "fuse-overlayfs", "unionfs-fuse")
DEFAULT_CORPUS = ".unionspec/corpus"
#: How long an interrupted run waits for a worker to close its drivers.
WORKER_GRACE = 20.0


class UsageError(ConformanceError):
    """Bad input: one line, exit status 2."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which. A KeyboardInterrupt, since that
    is what Hypothesis lets through at once (any other exception from a test it takes for
    a failure: it saves and replays the example, and reports it as flaky)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: The interruption being handled (None: none yet).
_pending: Interrupted | None = None
#: How soon a signal that lands in a gc callback is raised: an exception raised there is
#: lost (Hypothesis installs one; Python prints "Exception ignored" and goes on).
RERAISE_AFTER = 0.05


def _in_gc_callback(frame: FrameType | None) -> bool:
    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending is None:
        _pending = Interrupted(signum)
    _raise_again(signum, frame)


def _raise_again(signum: int, frame: FrameType | None) -> None:
    if _pending is None:
        return
    if _in_gc_callback(frame):
        signal.setitimer(signal.ITIMER_REAL, RERAISE_AFTER)  # out of the callback, soon
        return
    # raised once: raised again while it unwinds, it could land in Hypothesis's own
    # handling of the first and break it (an internal assertion, reported as a divergence)
    raise _pending


def chosen_engines(args: argparse.Namespace) -> list[str]:
    """The container engines to certify: those named with ``--engine``; with neither
    ``--driver``, ``--engine`` nor ``--feature``, every engine (those that cannot run here
    are reported as skipped); none otherwise."""
    engines = list(dict.fromkeys(getattr(args, "engine", []) or []))
    if engines or args.driver or args.feature:
        return engines
    from adapters.engines.registry import ENGINES

    return list(ENGINES)


#: ``--feature machine``: the whole-machine cells (every rule at once), the feature id
#: their cells have (conformance.certify.shard.cell_id).
WHOLE_MACHINE = "machine"


def check_arguments(
    args: argparse.Namespace, settings: DriverSettings = DEFAULT
) -> tuple[list[str], list[Feature], bool]:
    """The drivers, the features and whether the whole-machine cells run; a UsageError
    (one line) for anything inconsistent, before anything runs. With ``--engine`` and no
    ``--driver``, no overlay driver is certified."""
    try:
        registry.check(args.driver, settings)
    except registry.UnknownDriver as problem:
        raise UsageError(str(problem)) from None
    for name in args.feature:
        if name not in BY_ID and name != WHOLE_MACHINE:
            known = ", ".join((WHOLE_MACHINE, *BY_ID))
            raise UsageError(f"unknown feature {name!r} (known: {known})")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.driver and args.driver_cmd and "fuse" not in args.driver:
        raise UsageError("--driver-cmd sets the generic fuse driver's command: add --driver=fuse")
    if args.driver and args.profile and not set(args.driver) & set(FUSE_DRIVERS):
        raise UsageError(f"--profile needs a FUSE driver ({', '.join(FUSE_DRIVERS)}) in --driver")
    if len(set(args.driver)) != len(args.driver):
        raise UsageError("a driver is named twice in --driver")
    machine = not args.feature or WHOLE_MACHINE in args.feature
    named = [BY_ID[name] for name in dict.fromkeys(args.feature) if name != WHOLE_MACHINE]
    features = named if args.feature else list(FEATURES)
    if getattr(args, "engine", None) and not args.driver:
        return [], features, machine
    return args.driver or registry.names(settings), features, machine


#: Drivers that run only with a setting: not named with ``--driver`` and without that
#: setting, they are left out of the run (no cells), not reported as skipped.
NEEDS_SETTING = {"fuse": "the generic FUSE driver: give --driver-cmd TEMPLATE and --driver=fuse"}


def left_out(
    args: argparse.Namespace, drivers: list[str], settings: DriverSettings
) -> dict[str, str]:
    """The drivers of ``drivers`` that were not asked for (``--driver``) and cannot run
    for want of a setting (:data:`NEEDS_SETTING`): driver -> what to give."""
    return {
        name: why
        for name, why in NEEDS_SETTING.items()
        if name in drivers and name not in args.driver
        and registry.unavailable_reason(name, settings) is not None
    }


def _settings(budget: str, seed: int | None, example_db: str | None = None) -> tuple[Any, Any]:
    """The settings of the whole-machine and of the feature cells. Hypothesis's explain
    phase is left out: it only annotates the failure text (the reports carry the program
    as data) and took most of the time of a shrunk failure (README, Performance). With a
    seed there is no example database, so stored failures do not change what is drawn
    (the corpus replays them instead)."""
    from hypothesis import Phase, settings

    from conformance.budgets import budget_settings, feature_budget_settings, register_budgets

    register_budgets(Path.cwd(), example_db)
    chosen = []
    for base in (budget_settings(budget), feature_budget_settings(budget)):
        phases = [phase for phase in base.phases if phase is not Phase.explain]
        extra: dict[str, Any] = {"database": None} if seed is not None else {}
        chosen.append(settings(base, phases=phases, **extra))
    return chosen[0], chosen[1]


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Generation from ``seed`` (what Hypothesis's pytest plugin does for
    --hypothesis-seed), restored afterwards."""
    from hypothesis import core

    before = core.global_force_seed
    if seed is not None:
        core.global_force_seed = seed
    try:
        yield
    finally:
        core.global_force_seed = before


class Artefacts:
    """What is written after each verdict: the corpus programs, the reproducers, the
    reports."""

    def __init__(
        self,
        report: Any,
        corpus_dir: Path,
        settings: DriverSettings,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.report = report
        self.corpus_dir = corpus_dir
        self.settings = settings
        self.warn = warn or (lambda text: print(text, file=sys.stderr))

    def record(self, verdict: Verdict) -> None:
        from conformance.records import reproducer
        from conformance.reports.report import Cell, slug, writing

        cell = Cell(verdict)
        version = (
            expectations.version_of(verdict.driver, self.settings)
            if verdict.failures
            else None
        )
        for number, failure in enumerate(verdict.failures):
            program = None
            # saved: the failing examples of a verdict that fails the run; an expected
            # divergence has its reproducer in expectations.toml already
            if fails(verdict.verdict):
                try:
                    program = corpus.save(
                        corpus.from_failure(failure, version), self.corpus_dir
                    )
                except OSError as exc:
                    self.warn(f"warning: corpus: {exc}")
            if self.report is None:
                continue
            name = f"reproducers/{slug(verdict.id)}-{number + 1}.py"
            with writing(self.report.directory):
                reproducer.write(failure, self.report.directory / name, version)
            cell.reproducers.append(name)
            if program is not None:
                cell.programs.append(os.path.relpath(program, self.report.directory))
        if self.report is not None:
            self.report.cells.append(cell)
            self.report.write()


def check_fuse_settings(driver_cmd: str | None, profile: str | None) -> None:
    """Reject a bad template or profile before anything runs (one line each)."""
    from adapters.drivers.driver_profile import DriverProfileError, load_driver_profile
    from adapters.drivers.fuse import TemplateError, binary_problem, parse_template

    try:
        if driver_cmd is not None:
            words = parse_template(driver_cmd)
            problem = binary_problem(words[0])
            if problem is not None:
                raise UsageError(f"--driver-cmd: {problem}")
        if profile is not None:
            load_driver_profile(profile)
    except (TemplateError, DriverProfileError, OSError) as problem:
        raise UsageError(str(problem).splitlines()[0]) from None


def kernel_images(args: argparse.Namespace) -> tuple[KernelImage, ...]:
    """``--kernel-image``: the kernels to certify in a VM (adapters.vm), each a driver
    ``kernel@<release>`` of the run's settings; a UsageError (one line) for bad input."""
    images = getattr(args, "kernel_image", None) or []
    if not images:
        if getattr(args, "kernel_modules", None):
            raise UsageError("--kernel-modules needs a --kernel-image")
        return ()
    if args.kernel_modules and len(images) != 1:
        raise UsageError("--kernel-modules goes with exactly one --kernel-image")
    if args.workers > 1:
        raise UsageError("--kernel-image runs one VM per kernel in this process: use -n 1")
    from adapters.vm.image import ImageError, find_all

    try:
        return find_all(images, args.kernel_modules)
    except (ImageError, OSError) as problem:
        raise UsageError(f"--kernel-image: {problem}") from None


def driver_settings(args: argparse.Namespace) -> DriverSettings:
    """The run's driver settings, built once from the options and passed explicitly (to
    the registry, the workers, the reports); a UsageError (one line) for a bad one (the
    template and profile files are checked apart, :func:`check_fuse_settings`, once the
    options agree)."""
    images = kernel_images(args)
    try:
        return DriverSettings(
            args.driver_cmd, args.profile, getattr(args, "driver_timeout", None), images
        )
    except SettingsError as problem:
        raise UsageError(f"--driver-timeout: {problem}") from None


def with_kernel_images(drivers: list[str], settings: DriverSettings) -> list[str]:
    """The ``--driver`` names with the kernels of ``--kernel-image`` certified instead of
    ``kernel`` (the host's), or as the only drivers when no ``--driver`` is given."""
    labels = [image.label for image in settings.kernel_images]
    if not labels:
        return drivers
    return [name for name in drivers if name != "kernel"] + labels


def seconds_per_run(budget: str, cells: int, workers: int) -> float | None:
    """Under a duration budget, each overlay cell's machine's equal share of it (the
    workers run cells in parallel); None for a budget name."""
    duration = timebudget.seconds(budget)
    return None if duration is None else duration * max(1, workers) / max(1, cells)


def _skip_program(problem: str) -> None:
    """A corpus file that is not a valid program: said on one line, and skipped."""
    print(f"warning: corpus: skipped {problem}", file=sys.stderr)


def certify_command(args: argparse.Namespace) -> int:
    from conformance.certify.engines import certify_engines
    from conformance.certify.engines import plan as plan_engines
    from conformance.reports.console import Progress, exit_status, summary_lines
    from conformance.reports.report import Report, prepare

    settings = driver_settings(args)
    args.driver = with_kernel_images(args.driver, settings)
    drivers, features, machine = check_arguments(args, settings)
    if args.example_db and args.seed is not None:
        raise UsageError("--example-db: a run with --seed uses no example database")
    shard = shard_of(args)
    engines = chosen_engines(args)
    if shard is not None and engines:
        raise UsageError("--shard splits the overlay drivers' cells: certify --engine apart")
    engine_plan = plan_engines(engines)
    check_fuse_settings(args.driver_cmd, args.profile)
    try:
        expectations.reload(args.expectations)
    except expectations.ExpectationError as problem:
        raise UsageError(str(problem)) from None
    not_run = left_out(args, drivers, settings)
    drivers = [name for name in drivers if name not in not_run]
    cells = plan(drivers, features, machine, shard)
    ids = [planned_id(cell) for cell in cells] + [cell_id(*cell) for cell in engine_plan]
    run_config = RunConfig(
        expectations_path=args.expectations,
        seconds_per_run=seconds_per_run(args.budget, len(cells), args.workers),
        driver_settings=settings,
    )
    corpus_dir = Path(args.corpus or DEFAULT_CORPUS)
    try:
        programs = corpus.load([corpus.PROJECT_CORPUS, corpus_dir], on_problem=_skip_program)
    except corpus.CorpusError as problem:
        raise UsageError(str(problem)) from None
    if corpus_dir.exists() and not os.access(corpus_dir, os.W_OK):
        raise UsageError(f"corpus directory {str(corpus_dir)!r} cannot be written")
    report = None
    if args.report_dir:
        report = Report(
            prepare(args.report_dir),  # a ReportDirError: one line, exit 2 (__main__)
            drivers,
            {"budget": args.budget, "seed": args.seed, "workers": args.workers,
             **({"shard": shard.label} if shard is not None else {}),
             "features": [f.id for f in features], "corpus": str(corpus_dir)},
            planned=len(ids),
            order={cell: index for index, cell in enumerate(ids)},
            engines=engines,
            run_config=run_config,
            left_out=not_run,
        )
        report.write()
    run_settings, feature_settings = _settings(args.budget, args.seed, args.example_db)
    total = len(ids)
    done: list[Verdict] = []
    progress = Progress(total)
    artefacts = Artefacts(report, corpus_dir, settings, progress.note)

    def on_verdict(verdict: Verdict) -> None:
        with uninterrupted():
            done.append(verdict)
            progress.update(verdict)
            artefacts.record(verdict)

    global _pending
    _pending = None
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    }
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGALRM, _raise_again)
    try:
        with seeded(args.seed):
            if args.workers > 1:
                verdicts = run_parallel(args, run_config, cells, on_verdict)
            else:
                from conformance.certify.engine import certify

                verdicts = certify(
                    drivers, run_settings, on_verdict, feature_settings=feature_settings,
                    features=features, machine=machine, programs=programs, shard=shard,
                    run_config=run_config,
                )
            if engines:
                from conformance.budgets import container_budget_settings

                container_settings = container_budget_settings(args.budget)
                verdicts += certify_engines(engines, container_settings, on_verdict)
    except Interrupted as stop:
        signal.setitimer(signal.ITIMER_REAL, 0)
        progress.close()
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # the reports are written in peace
        if report is not None:
            report.status, report.interruption = "interrupted", str(stop)
            report.write()
        where = f"; reports in {report.directory}" if report is not None else ""
        print(
            f"interrupted by {stop} after {len(done)} of {total} cells{where}",
            file=sys.stderr,
        )
        return INTERRUPTED
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _pending = None
    progress.close()
    html = None
    if report is not None:
        report.status = "complete"
        report.env = None  # read again: the VMs of --kernel-image have booted by now
        report.write()
        html = str((report.directory / "report.html").resolve())
    print("\n".join(summary_lines(verdicts, not_run, html, progress.elapsed)), flush=True)
    return exit_status(verdicts)


def replay_command(args: argparse.Namespace) -> int:
    """``replay FILE``: run one step program on a driver (default: the program's own);
    0 when the driver conforms on it, 1 when it diverges, 2 for bad input."""
    from adapters.base import DriverUnavailable
    from conformance.lockstep.interchange import FeatureSkipped
    from conformance.records.failure import failures_of

    try:
        program = corpus.load_file(args.program)
    except corpus.CorpusError as problem:
        raise UsageError(str(problem)) from None
    name = args.driver or program.driver
    settings = driver_settings(args)
    try:
        registry.check([name], settings)
    except registry.UnknownDriver as problem:
        raise UsageError(str(problem)) from None
    check_fuse_settings(args.driver_cmd, args.profile)
    try:
        driver = registry.make(name, settings)
    except DriverUnavailable as reason:
        raise UsageError(f"driver {name!r} cannot run here: {reason}") from None
    try:
        print(f"replaying {args.program} on {name} [{program.options.label}]")
        program.replay(driver, run_config=RunConfig(driver_settings=settings))
    except FeatureSkipped as reason:
        print(f"skipped: {reason}")
        return 2
    except AssertionError as exc:
        failures = failures_of(exc)
        print(failures[0].render() if failures else "")
        print(f"DIVERGES: {str(exc).splitlines()[0]}")
        return 1
    finally:
        driver.close()
    print(f"CONFORMS: {name} does what the reference allows on this program")
    return 0


# --- workers --------------------------------------------------------------------------------


def shard_of(args: argparse.Namespace) -> Shard | None:
    """``--shard K/N`` (a UsageError for anything else); None without it."""
    text = getattr(args, "shard", None)
    if text is None:
        return None
    try:
        return Shard.parse(text)
    except ShardError as problem:
        raise UsageError(str(problem)) from None


def _worker(config: dict[str, Any], tasks: Any, results: Any) -> None:
    """A worker process: certifies the cells it is given, each driver an instance of its
    own (a fresh one after a hang or crash); SIGTERM closes them and exits. It dies with
    the main process even when that is SIGKILLed (parent-death signal); its executors die
    with it the same way, and their daemons with them (adapters.sandbox.namespace)."""
    from adapters.sandbox.namespace import die_with_parent

    die_with_parent(config["parent"])
    # SIGTERM from the main process: an Interrupted (Hypothesis lets a KeyboardInterrupt
    # through; it would replay a SystemExit as a failure), closing the drivers on the way
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGALRM, _raise_again)
    os.chdir(config["cwd"])
    run_settings, feature_settings = _settings(
        config["budget"], config["seed"], config["example_db"]
    )
    # (the main process said which files it skipped)
    programs = corpus.load([corpus.PROJECT_CORPUS, config["corpus"]], on_problem=lambda _: None)
    drivers: dict[str, Any] = {}
    try:
        with seeded(config["seed"]):
            _serve(config, tasks, results, drivers, run_settings, feature_settings, programs)
    except Interrupted:
        pass  # stopped by the main process; the drivers are closed below
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        with uninterrupted():
            for driver in drivers.values():
                driver.close()


def _serve(
    config: dict[str, Any],
    tasks: Any,
    results: Any,
    drivers: dict[str, Any],
    run_settings: Any,
    feature_settings: Any,
    programs: Any,
) -> None:
    """The worker's loop: a cell from ``tasks``, its verdict to ``results``, under the
    run's configuration (``config["run_config"]``, conformance.run_config)."""
    from adapters.base import DriverUnavailable
    from conformance.certify.engine import certify_cell
    from conformance.verdicts import BROKEN, SKIPPED

    by_label = {options.label: options for options in MATRIX}
    run_config: RunConfig = config["run_config"]
    while True:
        task = tasks.get()
        if task is None:
            break
        index, name, feature_id, label = task
        feature = BY_ID[feature_id] if feature_id else None
        try:
            if name not in drivers:
                drivers[name] = registry.make(name, run_config.driver_settings)
        except DriverUnavailable as reason:
            results.put((index, Verdict(name, label, SKIPPED, str(reason), feature=feature_id)))
            continue
        chosen = run_settings if feature is None else feature_settings
        verdict = certify_cell(
            drivers[name], by_label[label], chosen, feature, programs, run_config
        )
        if verdict.verdict in BROKEN:
            with uninterrupted():
                drivers.pop(name).close()
        results.put((index, verdict))


def run_parallel(
    args: argparse.Namespace,
    run_config: RunConfig,
    cells: list[Planned],
    on_verdict: Callable[[Verdict], None],
) -> list[Verdict]:
    """The ``cells`` (conformance.certify.engine.plan) in ``args.workers`` processes, each
    given the run's configuration; verdicts are reported as they come, and returned (and
    kept in the reports) in plan order."""
    work = [
        (name, feature.id if feature is not None else "", options.label)
        for name, feature, options in cells
    ]
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    config = {
        "parent": os.getpid(), "cwd": os.getcwd(), "run_config": run_config,
        "budget": args.budget, "seed": args.seed, "example_db": args.example_db,
        "corpus": args.corpus or DEFAULT_CORPUS,
    }
    for index, task in enumerate(work):
        tasks.put((index, *task))
    workers = [
        context.Process(target=_worker, args=(config, tasks, results), daemon=True)
        for _ in range(min(args.workers, len(work)))
    ]
    for _ in workers:
        tasks.put(None)
    found: dict[int, Verdict] = {}
    try:
        for worker in workers:
            worker.start()
        while len(found) < len(work):
            try:
                index, verdict = results.get(timeout=1.0)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    raise RuntimeError("every worker died before the run was done") from None
                continue
            found[index] = verdict
            on_verdict(verdict)
    finally:
        with uninterrupted():
            for worker in workers:
                if worker.is_alive() and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.join(WORKER_GRACE)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
    return [found[index] for index in sorted(found)]
