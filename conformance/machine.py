"""The lockstep state machine: every operation on the reference and on a driver, compared.

After every step the invariant compares the merged view (names, types, bytes, metadata,
xattrs, nlink, inode sharing and stability), the decoded upper layer, and that the lower
layers are untouched. Rules are one per operation, so a shrunk failure reads as a story.

Run one with :func:`run_machine`; the driver is a constructor argument, never subclassed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import attrs
from hypothesis import currently_in_test_context, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RULE_MARKER,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from adapters.base import Driver, DriverFailure, DriverHung
from conformance import strategies as s
from conformance.claims import XATTR_RULES, claims_xattrs, compares_upper
from conformance.clock import Clock
from conformance.compare import Divergence, InodeMap, compare_images, compare_views, render
from conformance.failure import Failure, TracedStep
from conformance.features import ALL_FIELDS, Feature
from reference import ops
from reference.layer import StackSpec
from reference.options import Options
from reference.outcome import Allowed, Ok, Outcome, describe
from reference.overlay import Overlay
from reference.view import LayerImage, View

T = TypeVar("T")


class Diverged(AssertionError):
    """The driver did something the reference does not allow; ``failures`` holds the
    failing example(s) as data (conformance.failure)."""

    def __init__(self, message: str, failures: tuple[Failure, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class DriverBroke(DriverFailure):
    """The driver hung or crashed: ``verdict`` is "hung" or "crashed", ``step`` the number
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


class OverlayMachine(RuleBasedStateMachine):
    """Applies generated operations to the reference and to ``driver``, compares after each."""

    options: Options = Options()
    driver: Driver
    #: Where the time goes (set by the benchmark; None costs nothing).
    clock: Clock | None = None
    #: The view fields compared (None: all; see conformance.features).
    fields: frozenset[str] | None = None
    #: The feature's id ("" for the whole machine).
    feature_id: str = ""
    #: The first hang or crash of the driver: every later example stops at once, since a
    #: broken driver cannot be trusted (or waited for) again.
    broken: DriverBroke | None = None

    def __init__(self) -> None:
        super().__init__()
        self.model: Overlay | None = None
        self.view_inodes = InodeMap("")
        self.upper_inodes = InodeMap("upper:")
        self.lower_images: tuple | None = None
        #: The model's view and upper image, until an operation that does more than look
        #: (ops.LOOKS): the reference does not recompute what cannot have changed.
        self.expected: tuple[View, LayerImage | None] | None = None
        #: The driver's lowers last found equal to lower_images (the very object: a driver
        #: hands the same frozen images back while its digest says they are unchanged).
        self.lowers_agreed: tuple | None = None
        self.program: list[str] = []
        # the failing example as data (conformance.failure): kept for the last run, which
        # is Hypothesis's replay of the minimal example
        self.stack: StackSpec | None = None
        self.trace: list[TracedStep] = []
        self.identities: list[tuple[dict[str, int], dict[str, int]]] = []
        self.pending: TracedStep | None = None

    def failure(
        self, text: str, found: list[Divergence] | tuple = (), kind: str = "diverges"
    ) -> tuple[Failure, ...]:
        """This run's program as a Failure (none before the layers are mounted)."""
        if self.stack is None:
            return ()
        steps = [*self.trace, *([self.pending] if self.pending is not None else [])]
        settings_of = getattr(self.driver, "mounter_settings", None)
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
                mounter=settings_of() if settings_of is not None else None,
                identities=tuple(self.identities),
                kind=kind,
            ),
        )

    def call_driver(self, what: str, action: Callable[[], T]) -> T:
        """Call the driver; a hang or a crash becomes the run's verdict (DriverBroke)."""
        cls = type(self)
        if cls.broken is not None:
            raise cls.broken
        try:
            return action()
        except DriverFailure as failure:
            verdict = "hung" if isinstance(failure, DriverHung) else "crashed"
            step = len(self.program) - 1
            cls.broken = DriverBroke(
                verdict,
                step,
                what,
                str(failure),
                self.program,
                self.failure(f"{verdict} at step {step} ({what}): {failure}", kind=verdict),
            )
            raise cls.broken from None

    # --- plumbing -------------------------------------------------------------------------

    def timed(self, section: str) -> AbstractContextManager[object]:
        return self.clock.section(section) if self.clock is not None else nullcontext()

    def apply(self, op: ops.Op) -> Outcome:
        assert self.model is not None
        with self.timed("reference"):
            allowed: Allowed = self.model.apply(op)
        if type(op) not in ops.LOOKS:
            self.expected = None
        self.program.append(repr(op))
        ordered = tuple(sorted(allowed, key=describe))
        self.pending = TracedStep(op, ordered, None)
        # A driver whose class can observes in the same round trip (the invariant follows at
        # once); looked up on the class, so a wrapper that replaces run() is not bypassed.
        run = self.driver.run
        if getattr(type(self.driver), "run_and_observe", None) is not None:
            run = self.driver.run_and_observe  # type: ignore[attr-defined]
        with self.timed("driver operations"):
            actual = self.call_driver(repr(op), lambda: run(op))
        self.pending = None
        self.trace.append(TracedStep(op, ordered, actual))
        if currently_in_test_context():
            note(f"{op!r} -> {describe(actual)}")
        if self._masked(actual) not in {self._masked(o) for o in allowed}:
            text = (
                f"{op!r}: {self.driver.name} gave {describe(actual)}, the reference allows "
                + " or ".join(sorted(describe(o) for o in allowed))
            )
            raise Diverged(text, self.failure(text))
        return actual

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
            self.model = Overlay(stack, self.options)
            self.expected = None
            self.program = [f"mount {stack!r} with {self.options.label}"]
            self.stack, self.trace, self.identities = stack, [], []
            self.call_driver("mount", lambda: self.driver.mount(stack, self.options))
            self.lower_images = self.model.images()[1]

    # --- invariant ------------------------------------------------------------------------

    @invariant()
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
        with self.timed("comparison"):
            found = self._differences(
                expected_view, actual_view, expected_upper, actual_upper, actual_lowers
            )
        self.identities.append(
            (expected_view.inodes, expected_upper.inodes if expected_upper is not None else {})
        )
        if found:
            text = f"{self.driver.name} differs from the reference:\n{render(found)}"
            raise Diverged(text, self.failure(text, found))

    def _differences(
        self,
        expected_view: View,
        actual_view: View,
        expected_upper: LayerImage | None,
        actual_upper: LayerImage | None,
        actual_lowers: tuple[LayerImage, ...],
    ) -> list[Divergence]:
        found = compare_views(expected_view, actual_view, self.view_inodes, self.fields)
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

    # --- rules: one per operation ---------------------------------------------------------

    @rule(path=s.paths, follow=st.booleans())
    def stat(self, path: str, follow: bool) -> None:
        self.apply(ops.Stat(path, follow))

    @rule(path=s.paths)
    def read(self, path: str) -> None:
        self.apply(ops.Read(path))

    @rule(path=s.paths, data=s.data, offset=s.offsets, flags=s.open_flags, mode=s.modes)
    def write(self, path: str, data: bytes, offset: int, flags: tuple, mode: int) -> None:
        self.apply(ops.Write(path, data, offset, flags, mode))

    @rule(path=s.paths, size=s.sizes)
    def truncate(self, path: str, size: int) -> None:
        self.apply(ops.Truncate(path, size))

    @rule(path=s.paths, mode=st.sampled_from([0o755, 0o700]))
    def mkdir(self, path: str, mode: int) -> None:
        self.apply(ops.Mkdir(path, mode))

    @rule(path=s.paths)
    def rmdir(self, path: str) -> None:
        self.apply(ops.Rmdir(path))

    @rule(path=s.paths)
    def unlink(self, path: str) -> None:
        self.apply(ops.Unlink(path))

    @rule(src=s.paths, dst=s.paths, flags=s.rename_flags)
    def rename(self, src: str, dst: str, flags: str) -> None:
        self.apply(ops.Rename(src, dst, flags))

    @rule(src=s.paths, dst=s.paths)
    def link(self, src: str, dst: str) -> None:
        self.apply(ops.Link(src, dst))

    @rule(link_target=st.sampled_from(s.TARGETS), path=s.paths)
    def symlink(self, link_target: str, path: str) -> None:
        self.apply(ops.Symlink(link_target, path))

    @rule(path=s.paths)
    def readlink(self, path: str) -> None:
        self.apply(ops.Readlink(path))

    @rule(path=s.paths, mode=s.modes)
    def chmod(self, path: str, mode: int) -> None:
        self.apply(ops.Chmod(path, mode))

    @rule(path=s.paths, uid=s.ids, gid=s.ids)
    def chown(self, path: str, uid: int, gid: int) -> None:
        self.apply(ops.Chown(path, uid, gid))

    @rule(path=s.paths, name=s.xattr_names, value=s.xattr_values)
    def setxattr(self, path: str, name: str, value: bytes) -> None:
        self.apply(ops.SetXattr(path, name, value))

    @rule(path=s.paths, name=s.xattr_names)
    def getxattr(self, path: str, name: str) -> None:
        self.apply(ops.GetXattr(path, name))

    @rule(path=s.paths)
    def listxattr(self, path: str) -> None:
        self.apply(ops.ListXattr(path))

    @rule(path=s.paths, name=s.xattr_names)
    def removexattr(self, path: str, name: str) -> None:
        self.apply(ops.RemoveXattr(path, name))

    @rule(path=s.dir_paths)
    def readdir(self, path: str) -> None:
        self.apply(ops.Readdir(path))

    @rule(path=s.paths, mode=s.modes)
    def mkfifo(self, path: str, mode: int) -> None:
        self.apply(ops.Mkfifo(path, mode))

    @rule()
    def remount(self) -> None:
        self.apply(ops.Remount())


#: The rule method names of the machine.
RULES: frozenset[str] = frozenset(
    name for name, member in vars(OverlayMachine).items() if hasattr(member, RULE_MARKER)
)


def machine_for(
    driver: Driver, options: Options, feature: Feature | None = None
) -> type[OverlayMachine]:
    """A machine class bound to ``driver`` and ``options`` (a read-only mount needs two
    lowers: the kernel refuses one lower without an upper, obs M.20).

    With a ``feature``, only its rules run (the others are set to None in the subclass:
    Hypothesis collects rules with inspect.getmembers and skips members without its
    marker) and only its fields of the view are compared.
    """
    min_lowers = 2 if options.read_only else 1

    class Machine(OverlayMachine):
        @initialize(stack=s.stacks(min_lowers=min_lowers))
        def mount_layers(self, stack: StackSpec) -> None:
            self.mount(stack)

    Machine.options = options
    Machine.driver = driver
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
    for name in RULES - rules:
        setattr(Machine, name, None)
    Machine.fields = fields
    Machine.feature_id = feature.id if feature is not None else ""
    Machine.__name__ = Machine.__qualname__ = "OverlayMachine"
    return Machine


def run_machine(
    driver: Driver,
    options: Options,
    run_settings: settings | None = None,
    feature: Feature | None = None,
) -> None:
    """Run the lockstep machine for one driver and option set.

    Raises Diverged (with Hypothesis's shrunk program) on a divergence, and DriverBroke
    ("hung at step N" / "crashed at step N", with the program up to there) when the driver
    broke: that one is not shrunk, since the broken driver cannot replay anything.
    """
    if feature is not None and not feature.machine:
        from conformance.interchange import run_interchange

        run_interchange(driver, options, run_settings or settings())
        return
    machine = machine_for(driver, options, feature)
    try:
        run_state_machine_as_test(machine, settings=run_settings)
    except BaseException as exc:
        if machine.broken is not None:
            raise machine.broken from None
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


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found


def _with_notes(exc: BaseException) -> str:
    """The exception and Hypothesis's notes (the falsifying program)."""
    notes = getattr(exc, "__notes__", [])
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes]).strip()
