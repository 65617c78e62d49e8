"""The lockstep state machine: every operation on the reference and on a driver, compared.

Hypothesis draws a mount (a stack of lower layers) and a program of operations, the
program step by step against a private reference model so that its paths come from what
exists (conformance.generation.cases); the machine mounts the stack on the reference and on
the driver, then applies each operation to both and compares after every step: the
outcome, the merged view (names, types, bytes, metadata, xattrs, nlink, inode sharing and
stability), the decoded upper layer, and that the lower layers are untouched. Hypothesis
shrinks a failing program by deleting and simplifying steps, so a failure reads as a short
story.

The runner is a plain ``@given`` test over (stack, program), not a RuleBasedStateMachine:
the state a step's choices depend on is the reference model's, which the strategy keeps
itself, and Hypothesis's stateful runner cost 0.4 ms of CPU per step (rule choice through
feature flags, a filtered sampled_from, per-argument strategies), most of a kernel step
(docs/performance.md). The program is drawn as the stateful runner draws its steps
(a stop choice before each, almost never true), so shrinking works the same way.

Run one with :func:`run_machine`; the driver is a class attribute set by
:func:`machine_for`, never subclassed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import attrs
from hypothesis import currently_in_test_context, given, note, seed, settings

from adapters.base import Driver, DriverFailure, DriverHung
from conformance.errors import ConformanceError, Diverges
from conformance.features import ALL_FIELDS, Feature
from conformance.generation import strategies as s
from conformance.generation.cases import cases
from conformance.lockstep.claims import (
    TIME_RULES,
    XATTR_RULES,
    claims_times,
    claims_xattrs,
    compares_upper,
)
from conformance.lockstep.claims import callers as claimed_callers
from conformance.lockstep.clock import Clock
from conformance.lockstep.compare import (
    TIME_FIELDS,
    Divergence,
    InodeMap,
    TimeMap,
    compare_images,
    compare_views,
    render,
)
from conformance.records import behaviours as records
from conformance.records.failure import Failure, TracedStep
from conformance.run_config import DEFAULT_RUN, RunConfig
from conformance.verdicts import CRASHED, DIVERGES, HUNG
from reference import ops, variants
from reference.layer import StackSpec
from reference.options import Options
from reference.outcome import Allowed, Ok, Outcome, describe
from reference.overlay import Overlay
from reference.rebuild import CannotRebuild, rebuild_upper
from reference.view import LayerImage, View

T = TypeVar("T")


class Diverged(Diverges):
    """The driver did something the reference does not allow; ``failures`` holds the
    failing example(s) as data (conformance.records.failure)."""

    def __init__(self, message: str, failures: tuple[Failure, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class _StopExample(ConformanceError):
    """A recorded behaviour the model cannot follow (resync "stop"): the example ends."""


class DriverBroke(ConformanceError, DriverFailure):
    """The driver hung or crashed: ``verdict`` is HUNG or CRASHED, ``step`` the number
    of the operation it broke on (0: while mounting), ``steps`` the program up to there."""

    def __init__(
        self,
        verdict: str,
        step: int,
        what: str,
        cause: str,
        steps: list[str],
        failures: tuple[Failure, ...] = (),
    ) -> None:
        program = "\n".join(f"  {line}" for line in steps)
        super().__init__(f"{verdict} at step {step} ({what}): {cause}\n{program}")
        self.verdict, self.step = verdict, step
        self.failures = failures


class OverlayMachine:
    """Applies operations to the reference and to ``driver``, compares after each."""

    options: Options = Options()
    driver: Driver
    #: The rules (operation kinds, conformance.generation.strategies.OPERATIONS) programs draw from.
    rules: frozenset[str] = frozenset(s.OPERATIONS)
    #: Lower layers a mount has at least (a read-only mount needs two, see machine_for).
    min_lowers: int = 1
    #: Where the time goes (set by the benchmark; None costs nothing).
    clock: Clock | None = None
    #: The view fields compared (None: all; see conformance.features).
    fields: frozenset[str] | None = None
    #: The feature's id ("" for the whole machine).
    feature_id: str = ""
    #: Who the operations run as (conformance.lockstep.claims.callers).
    callers: tuple[str, ...] = ("root",)
    #: The first hang or crash of the driver: every later example stops at once, since a
    #: broken driver cannot be trusted (or waited for) again.
    broken: DriverBroke | None = None
    #: The engine of the model: the reference with the driver profile's variants
    #: (reference.variants).
    engine: Callable[[StackSpec, Options], Overlay] = Overlay
    #: The recorded behaviours of the driver under these options (conformance.records.behaviours):
    #: a difference one of them accounts for is expected, any other is a divergence.
    records: tuple = ()
    #: Every record of the driver under these options (those modelled by variants too).
    behaviours: tuple = ()

    def __init__(self) -> None:
        self.model: Overlay | None = None
        self.view_inodes = InodeMap("")
        self.upper_inodes = InodeMap("upper:")
        self.times = self._time_map()
        self.lower_images: tuple | None = None
        #: The model's view and upper image, until an operation that does more than look
        #: (ops.LOOKS): the reference does not recompute what cannot have changed.
        self.expected: tuple[View, LayerImage | None] | None = None
        #: The driver's lowers last found equal to lower_images (the very object: a driver
        #: hands the same frozen images back while its digest says they are unchanged).
        self.lowers_agreed: tuple | None = None
        #: What the last comparison found equal: the expected and actual view, upper and
        #: lowers (the very objects: the model and the drivers hand them back unchanged).
        self.agreed: tuple | None = None
        #: What ran so far: the mount, then each operation (rendered when the driver breaks).
        self.program: list[object] = []
        # the failing example as data (conformance.records.failure): kept for the last run, which
        # is Hypothesis's replay of the minimal example
        self.stack: StackSpec | None = None
        self.trace: list[TracedStep] = []
        self.identities: list[tuple[dict[str, int], dict[str, int]]] = []
        self.pending: TracedStep | None = None
        #: With records: the last step's operation, its target before the step, the
        #: driver's outcome and the outcome difference (None: it agreed).
        self.step: tuple[ops.Op | None, object, Outcome | None] = (None, None, None)
        self.outcome_differs: Divergence | None = None
        #: The records and variants this example saw (counted when it ends).
        self.seen: set[str] = set()

    def failure(
        self, text: str, found: list[Divergence] | tuple = (), kind: str = DIVERGES
    ) -> tuple[Failure, ...]:
        """This run's program as a Failure (none before the layers are mounted)."""
        if self.stack is None:
            return ()
        steps = [
            attrs.evolve(step, allowed=tuple(sorted(step.allowed, key=describe)))
            for step in (*self.trace, *([self.pending] if self.pending is not None else []))
        ]
        mounts = self.driver.capabilities.mounts
        return (
            Failure(
                driver=self.driver.name,
                options=self.options,
                feature=self.feature_id,
                stack=self.stack,
                steps=tuple(steps),
                divergence=text,
                found=tuple(found),
                fields=self.fields,
                mounter=self.driver.mounter_settings() if mounts else None,  # type: ignore[attr-defined]
                identities=tuple(self.identities),
                kind=kind,
            ),
        )

    def call_driver(
        self, what: object, action: Callable[[], T], step: tuple | None = None
    ) -> T:
        """Call the driver; a hang or a crash becomes the run's verdict (DriverBroke),
        except a crash at ``step`` (op, target, allowed) that a record describes: counted,
        and the example ends there (the dead mount is cleaned up; the next example mounts
        afresh)."""
        cls = type(self)
        if cls.broken is not None:
            # the same verdict again, with a fresh traceback: one re-raised as it was keeps
            # every earlier raise's frames (millions, after a shrink phase's runs)
            raise cls.broken.with_traceback(None)
        try:
            return action()
        except DriverFailure as failure:
            verdict = HUNG if isinstance(failure, DriverHung) else CRASHED
            if verdict == CRASHED and step is not None and self.records:
                op, target, allowed = step
                assert self.model is not None
                context = records.StepContext(op, target, self.model, None, records.CRASHED)
                expected = tuple(sorted(allowed, key=describe))
                known = records.crash_record(self.records, str(failure), context, expected)
                if known is not None:
                    self.seen.add(known.id)
                    raise _StopExample() from None
            step = len(self.program) - 1
            cls.broken = DriverBroke(
                verdict,
                step,
                str(what),
                str(failure),
                [str(line) for line in self.program],
                self.failure(f"{verdict} at step {step} ({what}): {failure}", kind=verdict),
            )
            raise cls.broken.with_traceback(None) from None

    def _time_map(self) -> TimeMap | None:
        """The time relations of the fields compared (None: this machine has no times)."""
        wanted = TIME_FIELDS if self.fields is None else self.fields & TIME_FIELDS
        return TimeMap(frozenset(wanted)) if wanted else None

    # --- plumbing -------------------------------------------------------------------------

    def timed(self, section: str) -> AbstractContextManager[object]:
        return self.clock.section(section) if self.clock is not None else nullcontext()

    def apply(self, op: ops.Op) -> Outcome:
        assert self.model is not None
        target = records.subject(self.model, op) if self.records else None
        with self.timed("reference"):
            allowed: Allowed = self.model.apply(op)
        if type(op) not in ops.LOOKS:
            self.expected = None
        self.program.append(op)
        # the trace keeps the set; failure() orders it (describing every outcome of every
        # step cost more than a reference step)
        self.pending = TracedStep(op, allowed, None)  # type: ignore[arg-type]
        # A driver that declares it observes in the same round trip (the check follows at
        # once); a wrapper that replaces run() declares it does not (tests/test_broken_drivers).
        run = self.driver.run
        if self.driver.capabilities.one_round_trip:
            run = self.driver.run_and_observe  # type: ignore[attr-defined]
        with self.timed("driver operations"):
            actual = self.call_driver(op, lambda: run(op), (op, target, allowed))
        self.pending = None
        self.trace.append(TracedStep(op, allowed, actual))  # type: ignore[arg-type]
        if self.fields is None or "nlink" in self.fields:
            agrees = actual in allowed
        else:
            agrees = self._masked(actual) in {self._masked(o) for o in allowed}
        self.step, self.outcome_differs = (op, target, actual), None
        if not agrees:
            if self.records:
                # compared with the view after the step: a record may account for it
                self.outcome_differs = Divergence(
                    _first_path(op), "outcome", tuple(sorted(allowed, key=describe)), actual
                )
                return actual
            raise Diverged(self._outcome_text(op, actual, allowed), self.failure(
                self._outcome_text(op, actual, allowed)
            ))
        return actual

    def _outcome_text(self, op: ops.Op, actual: Outcome, allowed: object) -> str:
        return (
            f"{op!r}: {self.driver.name} gave {describe(actual)}, the reference allows "
            + " or ".join(sorted(describe(o) for o in allowed))  # type: ignore[attr-defined]
        )

    def _masked(self, outcome: Outcome) -> Outcome:
        """An outcome as this machine compares it: a feature that leaves ``nlink`` out of
        its fields (conformance.features) ignores st_nlink in stat results too."""
        if (
            self.fields is not None
            and "nlink" not in self.fields
            and isinstance(outcome, Ok)
            and isinstance(outcome.value, ops.StatResult)
        ):
            return Ok(attrs.evolve(outcome.value, nlink=0))
        return outcome

    # --- setup ----------------------------------------------------------------------------

    def mount(self, stack: StackSpec) -> None:
        with self.timed("layer setup and mount"):
            self.model = self.engine(stack, self.options)
            self.step, self.outcome_differs = (None, None, None), None
            self.expected = None
            self.program = [_Mounted(stack, self.options)]
            self.stack, self.trace, self.identities = stack, [], []
            self.call_driver("mount", lambda: self.driver.mount(stack, self.options))
            self.lower_images = self.model.images()[1]

    # --- the check after every step -------------------------------------------------------

    def agrees_with_reference(self) -> None:
        if self.model is None:
            return
        with self.timed("reference"):
            if self.expected is None:
                self.expected = self.model.view(), self.model.upper_image()
            expected_view, expected_upper = self.expected
        with self.timed("driver observation"):
            actual_view = self.call_driver("observing the view", self.driver.view)
            actual_upper, actual_lowers = self.call_driver("reading layers", self.driver.images)
        compared = (expected_view, actual_view, expected_upper, actual_upper, actual_lowers)
        with self.timed("comparison"):
            if self.agreed is not None and all(map(operator.is_, compared, self.agreed)):
                found = []  # the very objects that agreed last step (an op that changed nothing)
            else:
                found = self._differences(*compared)
        self.agreed = None if found else compared
        self.identities.append(
            (expected_view.inodes, expected_upper.inodes if expected_upper is not None else {})
        )
        if self.outcome_differs is not None:
            found.insert(0, self.outcome_differs)
            self.outcome_differs = None
        if found and self.records:
            self._account(found, actual_view, actual_upper)
        elif found:
            text = f"{self.driver.name} differs from the reference:\n{render(found)}"
            raise Diverged(text, self.failure(text, found))

    def _account(
        self, found: list[Divergence], actual_view: View, actual_upper: LayerImage | None
    ) -> None:
        """Differences of a driver with records: those the records account for are expected
        (counted, then the model resynchronised); any other is a divergence."""
        op, target, actual = self.step
        assert self.model is not None
        earlier = tuple(o for o in self.program[:-1] if not isinstance(o, _Mounted))
        context = records.StepContext(op, target, self.model, actual_view, actual, None, earlier)
        matched = records.match(self.records, found, context)
        if matched.unmatched:
            also = (
                f"\n(recorded behaviours also seen at this step: {', '.join(matched.by_record)})"
                if matched.by_record
                else ""
            )
            first = matched.unmatched[0]
            if first.field == "outcome" and op is not None and actual is not None:
                text = self._outcome_text(op, actual, first.expected)
                rest = matched.unmatched[1:]
                if rest:
                    text += f"\nand the view differs:\n{render(list(rest))}"
            else:
                text = (
                    f"{self.driver.name} differs from the reference:\n"
                    f"{render(list(matched.unmatched))}"
                )
            text += also
            # (an outcome is data of its step, as without records: found holds the view's)
            view = [d for d in matched.unmatched if d.field != "outcome"]
            raise Diverged(text, self.failure(text, view))
        self.seen.update(matched.by_record)
        self.agreed = None
        if self.times is not None and self.expected is not None:
            # a recorded time difference: that object's times are not followed any more
            for diff in found:
                if diff.field in TIME_FIELDS:
                    self.times.forgive(self.expected[0].inodes.get(records.split_where(diff)[1]))
        if matched.resync == "stop":
            raise _StopExample()
        changed_state = any(
            records.split_where(d)[0] in ("outcome", "upper") for d in found
        )
        if matched.resync == "model" and changed_state:
            # (only what the driver shows differs: the model's state is still right)
            if actual_upper is not None and compares_upper(self.driver):
                try:
                    rebuild_upper(self.model, actual_upper)
                except CannotRebuild:
                    raise _StopExample() from None
            elif self.model.upper is not None:
                raise _StopExample()
            # identities are new after a rebuild: stability is checked from here on
            self.view_inodes, self.upper_inodes = InodeMap(""), InodeMap("upper:")
            self.times = self._time_map()
        self.expected = None

    def finish(self) -> None:
        """Count what this example saw (records and the model's variants)."""
        hits = getattr(self.model, "variant_hits", None)
        if hits:
            self.seen.update(name for name, n in hits.items() if n)
        if self.seen:
            records.count(self.seen)
        self.seen = set()

    def _differences(
        self,
        expected_view: View,
        actual_view: View,
        expected_upper: LayerImage | None,
        actual_upper: LayerImage | None,
        actual_lowers: tuple[LayerImage, ...],
    ) -> list[Divergence]:
        found = compare_views(
            expected_view, actual_view, self.view_inodes, self.fields, self.times
        )
        if not compares_upper(self.driver):
            pass  # the profile says this driver's upper layer cannot be decoded
        elif expected_upper is not None and actual_upper is not None:
            found += compare_images("upper", expected_upper, actual_upper, self.upper_inodes)
        elif (expected_upper is None) != (actual_upper is None):
            found.append(Divergence("upper", "exists", expected_upper, actual_upper))
        assert self.lower_images is not None
        if actual_lowers is self.lowers_agreed:
            return found
        lowers_found: list[Divergence] = []
        for number, (before, now) in enumerate(zip(self.lower_images, actual_lowers, strict=True)):
            # Lowers are never written: byte for byte what was mounted (doc "Upper and Lower").
            lowers_found += compare_images(f"lower{number}", before, now)
        if not lowers_found:
            self.lowers_agreed = actual_lowers
        return found + lowers_found

    # --- a whole run ----------------------------------------------------------------------

    def run(self, stack: StackSpec, program: list[ops.Op]) -> None:
        """Mount ``stack``, compare, then apply each operation and compare after it. A
        failing run notes what each operation gave (Hypothesis prints it with the minimal
        example; noted once, at the end: a note per step cost more than the step)."""
        try:
            self.mount(stack)
            self.agrees_with_reference()
            for op in program:
                self.apply(op)
                self.agrees_with_reference()
        except _StopExample:
            pass  # a recorded behaviour the model cannot follow: the example ends here
        except BaseException:
            if currently_in_test_context():
                note("\n".join(f"{step.op!r} -> {describe(step.actual)}" for step in self.trace))
            raise
        finally:
            self.finish()


@attrs.frozen
class _Mounted:
    """The first line of :attr:`OverlayMachine.program`, rendered only when a broken
    driver's program is reported (a repr of the stack for every example is not free)."""

    stack: StackSpec
    options: Options

    def __str__(self) -> str:
        return f"mount {self.stack!r} with {self.options.label}"


#: The rule names of the machine: one per kind of operation.
RULES: frozenset[str] = frozenset(s.OPERATIONS)


def machine_for(
    driver: Driver,
    options: Options,
    feature: Feature | None = None,
    behaviours: tuple | None = None,
    run_config: RunConfig = DEFAULT_RUN,
) -> type[OverlayMachine]:
    """A machine class bound to ``driver`` and ``options`` (a read-only mount needs two
    lowers: the kernel refuses one lower without an upper, obs M.20).

    With a ``feature``, programs draw only its rules and only its fields of the view are
    compared. The model follows the variants the driver's profile selects, and the
    differences the driver's records (``behaviours``; default: those of its installed
    version in the run's records file, the version asked with its driver settings, see
    conformance.run_config) account for are expected (conformance.records.behaviours). The
    class goes through the run's ``observe_machine`` (--hypothesis-show-statistics); it is
    given rather than imported, so the coverage command, which runs machines, and the
    machine do not import each other.
    """
    rules = RULES if feature is None else feature.rules
    fields = None if feature is None else feature.fields
    if feature is not None:
        unknown = feature.rules - RULES
        if unknown:
            raise ValueError(f"feature {feature.id!r}: no rules named {sorted(unknown)}")
    if not claims_xattrs(driver):
        # the profile says xattrs = false: no xattr calls, xattrs not compared
        rules = rules - XATTR_RULES
        fields = (ALL_FIELDS if fields is None else fields) - {"xattrs"}
    if not claims_times(driver):
        # the profile says times = false: no utimensat, times not compared
        rules = rules - TIME_RULES
        fields = (ALL_FIELDS if fields is None else fields) - TIME_FIELDS

    class Machine(OverlayMachine):
        pass

    Machine.options = options
    Machine.driver = driver
    Machine.rules = frozenset(rules)
    Machine.min_lowers = 2 if options.read_only or options.data_only else 1
    Machine.fields = fields
    Machine.feature_id = feature.id if feature is not None else ""
    Machine.callers = claimed_callers(driver, feature)
    profile = getattr(driver, "profile", None)
    chosen = () if records.is_plain() else getattr(profile, "variants", ())
    Machine.engine = staticmethod(variants.engine(chosen))
    if records.is_plain():
        behaviours = ()
    if behaviours is None:
        behaviours = records.behaviours_for(driver.name, options.label, run_config)
    Machine.behaviours = tuple(behaviours)
    Machine.records = tuple(b for b in behaviours if b.differs)
    Machine.__name__ = Machine.__qualname__ = "OverlayMachine"
    if run_config.observe_machine is not None:
        # pytest --hypothesis-show-statistics: each rare state reached is an event
        return run_config.observe_machine(Machine)
    return Machine


def lockstep_test(
    machine: type[OverlayMachine], run_settings: settings | None = None
) -> Callable[[], None]:
    """The Hypothesis test of ``machine``: a stack and a program of up to
    ``stateful_step_count`` steps, run in lockstep (:meth:`OverlayMachine.run`).

    Its example-database key is the machine's driver, options and feature, so a failure
    saved for one cell is replayed for that cell (one key for every machine would replay
    it everywhere)."""
    run_settings = run_settings or settings()
    # the stack and the program drawn together, the program against a private reference
    # model (conformance.generation.cases)
    drawn = cases(
        machine.rules,
        run_settings.stateful_step_count,
        machine.options,
        machine.min_lowers,
        machine.callers,
    )

    @settings(run_settings)
    @given(case=drawn)
    def overlay_machine(case: tuple[StackSpec, list[ops.Op]]) -> None:
        machine().run(*case)

    cell = f"{machine.driver.name} {machine.options.label} {machine.feature_id}"
    inner = overlay_machine.hypothesis.inner_test  # type: ignore[attr-defined]
    inner._hypothesis_internal_add_digest = cell.encode()
    return overlay_machine


def run_machine(
    driver: Driver,
    options: Options,
    run_settings: settings | None = None,
    feature: Feature | None = None,
    run_config: RunConfig = DEFAULT_RUN,
    behaviours: tuple | None = None,
) -> None:
    """Run the lockstep machine for one driver and option set (``run_config``: the run's
    configuration, conformance.run_config: its records file, its share of a duration
    budget, the driver settings of a driver the check makes itself, the layer-interchange
    reader; ``behaviours``: its records, by default those of the run's records file, see
    machine_for).

    Raises Diverged (with Hypothesis's shrunk program) on a divergence, and DriverBroke
    ("hung at step N" / "crashed at step N", with the program up to there) when the driver
    broke: that one is not shrunk, since the broken driver cannot replay anything.
    """
    if feature is not None and not feature.machine:
        from conformance.lockstep.interchange import run_interchange

        run_interchange(driver, options, run_settings or settings(), run_config)
        return
    machine = machine_for(driver, options, feature, behaviours, run_config)
    try:
        _explore(machine, run_settings, run_config.seconds_per_run)
    except BaseException as exc:
        if machine.broken is not None:
            raise machine.broken.with_traceback(None) from None
        if isinstance(exc, BaseExceptionGroup):
            leaves = _leaves(exc)
            if all(isinstance(leaf, AssertionError) for leaf in leaves):
                # Hypothesis found several distinct divergences: one Diverged with each
                # shrunk program (a caller catching AssertionError must not lose them).
                raise Diverged(
                    f"{len(leaves)} distinct divergences:\n\n"
                    + "\n\n".join(_with_notes(leaf) for leaf in leaves),
                    tuple(f for leaf in leaves for f in getattr(leaf, "failures", ())),
                ) from None
        raise


def _first_path(op: ops.Op) -> str:
    paths = records.operands(op)
    return paths[0] if paths else ""


def _explore(
    machine: type[OverlayMachine], run_settings: settings | None, budget: float | None = None
) -> None:
    """One run of the machine's test, or under a time budget (``budget``: this run's share
    of it in seconds, conformance.timebudget) runs from other seeds until that share is
    spent."""
    from conformance import timebudget

    if budget is None:
        lockstep_test(machine, run_settings)()
        return

    def run_round(number: int) -> None:
        test = lockstep_test(machine, run_settings)
        (test if number == 0 else seed(number)(test))()

    timebudget.explore(run_round, budget)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def _with_notes(exc: BaseException) -> str:
    """The exception and Hypothesis's notes (the falsifying program)."""
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes]).strip()
