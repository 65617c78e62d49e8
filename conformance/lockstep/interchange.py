"""Layer interchange: layers written through one driver, then mounted by another, show the
same merged view.

Real deployments switch drivers on the same layers (rootless and rootful engines, image
extraction versus run time). For a driver under test D, the pairs (writer -> reader) are:

* a FUSE driver: kernel -> D, and D -> kernel when D's profile says its upper layer is in a
  form the kernel reads (0/0 character-device whiteouts, ``trusted.overlay.opaque``);
* the kernel: kernel -> kernel (a fresh mount with a fresh work directory);
* the reference and the kernel: reference -> kernel (the kernel mounts the upper layer the
  reference says the kernel writes, :func:`adapters.sandbox.layerdisk.write_layer`).

Each example draws a stack and a program of changes; the writer runs it, its view is
taken, then the same lowers and the written upper are mounted by the reader (in the same
sandbox, a fresh work directory) and its view must equal the writer's. The reader is
compared with the writer, not with the reference: the writer's own divergences are the
other features' business, this one isolates what the layers carry. Inode numbers and link
counts are not compared (another driver numbers its own inodes); a whiteout listed as
unreachable may be absent on either side (:func:`conformance.lockstep.compare.may_be_absent`).

With the read-only option set the reader mounts the written upper as the top lower layer
(an image's layers stacked read-only). Defined for ``index=off`` without metacopy: the
index lives in the work directory and does not travel with the layers (overlayfs.rst
"Sharing and copying layers"), and a metacopy upper needs its lower's file handle.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import Driver, DriverUnavailable
from conformance.errors import ConformanceError, Diverges
from conformance.features import BY_ID, WITHOUT_LINK_COUNTS
from conformance.generation import strategies as s
from conformance.lockstep.claims import claims_xattrs
from conformance.lockstep.compare import InodeMap, compare_views, render
from conformance.records import behaviours as records
from conformance.run_config import DEFAULT_RUN, RunConfig
from reference import ops
from reference.layer import StackSpec, link_counts
from reference.options import Options
from reference.overlay import Overlay
from reference.view import UNREACHABLE, View

#: The driver every other's layers are read with (it declares ``interchange_reader``), and
#: the engine whose layers it reads too (the reference, ``in_process``).
READER, ENGINE = "kernel", "reference"
#: What a reader is held to: every field but inode numbers and link counts (and xattrs
#: with a driver whose profile says it has none, as in the machine).
FIELDS = WITHOUT_LINK_COUNTS

#: Operations that change the layers: every kind that writes (ops.KINDS).
CHANGES: st.SearchStrategy[ops.Op] = s.Operations(BY_ID["layer-interchange"].rules)


class FeatureSkipped(ConformanceError):
    """The feature cannot run for this cell; ``missing_driver`` when that is because a
    driver it needs cannot run here (a failure under ``--require-drivers``)."""

    def __init__(self, reason: str, missing_driver: bool = False) -> None:
        super().__init__(reason)
        self.missing_driver = missing_driver


class InterchangeDiverged(Diverges):
    """The reader shows another view of the layers than the writer did."""


@attrs.frozen
class Pair:
    writer: str
    reader: str

    def __str__(self) -> str:
        return f"{self.writer} -> {self.reader}"


def applies(options: Options) -> str | None:
    """Why the feature is not defined for ``options`` (None: it is)."""
    if options.index or options.metacopy:
        return (
            f"layer interchange is defined for index=off without metacopy, not "
            f"{options.label}: the index lives in the work directory (overlayfs.rst "
            f"'Sharing and copying layers')"
        )
    if options.data_only or options.xwhiteouts or options.separate_fs:
        return (
            f"layer interchange hands over an upper layer; {options.label} is a form of the "
            f"lower layers, which the state machine checks"
        )
    return None


def pairs(driver: Driver) -> tuple[list[Pair], list[str]]:
    """The pairs to run for ``driver``, and why others are left out (its capabilities: the
    engine in process writes through the reader; the reader reads its own layers and the
    engine's; any other driver reads the reader's and, in the kernel's form, is read)."""
    name, declared = driver.name, driver.capabilities
    if declared.in_process:
        return [Pair(name, READER)], []
    if declared.interchange_reader:
        return [Pair(name, name), Pair(ENGINE, name)], []
    found, left_out = [Pair(READER, name)], []
    if declared.kernel_form:
        found.append(Pair(name, READER))
    else:
        left_out.append(
            f"{name} -> {READER}: the profile's upper form is not the kernel's "
            f"({declared.upper_form})"
        )
    return found, left_out


def reachable(view: View) -> View:
    """The view without the unreachable names (listed or not: both allowed)."""
    entries = {p: e for p, e in view.entries.items() if e != UNREACHABLE}
    return View(entries, view.inodes)


def check(
    pair: Pair,
    options: Options,
    written: View,
    read: View,
    known: tuple[Any, ...] = (),
    model: Overlay | None = None,
    fields: frozenset[str] = FIELDS,
) -> set[str]:
    """Compare the reader's view with the writer's. ``known``: the driver's records of
    this feature (conformance.records.behaviours), matched against the differences as after a mount
    (no operation: only clauses that hold anywhere, ``at = "any"``), with ``model`` the
    reference's picture of the layers the reader mounts; raise on any difference no
    record accounts for. The ids of the records that accounted for some."""
    found = compare_views(reachable(written), reachable(read), InodeMap(""), fields)
    seen: set[str] = set()
    if found and known and model is not None:
        context = records.StepContext(None, None, model, read, None, written)
        matched = records.match(known, found, context)
        seen, found = set(matched.by_record), list(matched.unmatched)
    if found:
        also = f"\n(recorded behaviours also seen: {', '.join(sorted(seen))})" if seen else ""
        raise InterchangeDiverged(
            f"layers written by {pair.writer} and mounted by {pair.reader} "
            f"[{options.label}] show another view (expected: the writer's):\n{render(found)}"
            + also
        )
    return seen


def _records_of(driver: Driver, options: Options, run_config: RunConfig) -> tuple:
    """The driver's records of this feature under ``options`` (none in records.plain())."""
    if records.is_plain():
        return ()
    return tuple(
        r
        for r in records.behaviours_for(driver.name, options.label, run_config)
        if r.differs and "layer-interchange" in r.features
    )


def _reader_model(stack: StackSpec, steps: list[ops.Op], options: Options) -> Overlay:
    """The reference's picture of the layers the reader mounts: ``steps`` applied over
    ``stack`` by a writable mount; read-only, with the written upper as the top lower."""
    model = Overlay(stack, attrs.evolve(options, read_only=False))
    for op in steps:
        model.apply(op)
    if options.read_only and model.upper is not None:
        reader = copy.copy(model)
        reader.lowers = [model.upper, *model.lowers]
        reader.upper = None
        reader.options = options
        reader.lower_nlink = {}
        for root in reader.lowers:
            reader.lower_nlink.update(link_counts(root))
        return reader
    return model


@contextmanager
def _kernel(run_config: RunConfig = DEFAULT_RUN) -> Iterator[Any]:
    from adapters import registry

    try:
        kernel = registry.make(READER, run_config.driver_settings)
    except DriverUnavailable as reason:
        raise FeatureSkipped(
            f"layer interchange needs the kernel driver: {reason}", missing_driver=True
        ) from None
    try:
        yield kernel
    finally:
        kernel.close()


def exchange(
    pair: Pair, driver: Driver, kernel: Any, stack: StackSpec, steps: list[ops.Op],
    options: Options, known: tuple[Any, ...] = (),
) -> None:
    """Write ``steps`` over ``stack`` with the pair's writer, mount with its reader, compare
    (``known``: the driver's records of this feature, see :func:`check`; each one that
    accounts for a difference counts once, as an example of the machine)."""
    writer_options = attrs.evolve(options, read_only=False)
    model = _reader_model(stack, steps, options) if known else None
    # a profile with xattrs = false cannot show them (conformance.lockstep.claims): not compared
    fields = FIELDS if claims_xattrs(driver) else FIELDS - {"xattrs"}
    if pair.writer == ENGINE:
        engine = Overlay(stack, writer_options)
        for op in steps:
            engine.apply(op)
        written = engine.view()
        assert engine.upper is not None
        kernel.mount_with_upper(stack, options, engine.upper)
        records.count(check(pair, options, written, kernel.view(), known, model, fields))
        return
    writer = kernel if pair.writer == READER else driver
    reader = kernel if pair.reader == READER else driver
    writer.mount(stack, writer_options)
    try:
        for op in steps:
            writer.run(op)
        written = writer.view()
        writer.hand_over(reader, options)
        records.count(check(pair, options, written, writer.view(), known, model, fields))
    finally:
        writer.take_back()


def run_interchange(
    driver: Driver,
    options: Options,
    run_settings: settings,
    run_config: RunConfig = DEFAULT_RUN,
) -> None:
    """The layer-interchange feature for ``driver`` and ``options`` (see the module doc).
    Raises InterchangeDiverged (with Hypothesis's shrunk stack and program) or
    FeatureSkipped."""
    reason = applies(options)
    if reason is not None:
        raise FeatureSkipped(reason)
    chosen, _ = pairs(driver)
    steps = int(run_settings.stateful_step_count)
    known = _records_of(driver, options, run_config)
    failures: list[str] = []
    with _kernel(run_config) as kernel:
        for pair in chosen:
            try:
                _explore(pair, driver, kernel, options, run_settings, steps, known)
            except AssertionError as exc:  # one pair does not hide the other
                notes = getattr(exc, "__notes__", [])
                failures.append("\n".join([str(exc), *notes]))
    if failures:
        raise InterchangeDiverged("\n\n".join(failures))


def _explore(
    pair: Pair, driver: Driver, kernel: Any, options: Options, run_settings: settings,
    steps: int, known: tuple[Any, ...] = (),
) -> None:
    @settings(run_settings)
    @given(stack=s.stacks(min_lowers=1), program=st.lists(CHANGES, max_size=max(1, steps)))
    def written_then_read(stack: StackSpec, program: list[ops.Op]) -> None:
        exchange(pair, driver, kernel, stack, program, options, known)

    written_then_read()


def replay_program(
    driver: Driver,
    options: Options,
    stack: StackSpec,
    steps: list[ops.Op],
    run_config: RunConfig = DEFAULT_RUN,
) -> None:
    """One recorded program through every pair of ``driver`` (expectations replay it),
    the driver's records of this feature applied as in the exploration."""
    reason = applies(options)
    if reason is not None:
        raise FeatureSkipped(reason)
    known = _records_of(driver, options, run_config)
    failures: list[str] = []
    with _kernel(run_config) as kernel:
        for pair in pairs(driver)[0]:
            try:
                exchange(pair, driver, kernel, stack, steps, options, known)
            except InterchangeDiverged as exc:
                failures.append(str(exc))
    if failures:
        raise InterchangeDiverged("\n\n".join(failures))
