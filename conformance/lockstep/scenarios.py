"""Named scenarios from the seed document: deterministic step programs with stable ids.

Each step runs in lockstep on the reference and the driver (with the full comparison after
it, as in the state machine) and also checks an explicit expectation, so a scenario holds
the reference to the documented behaviour too, not only the driver to the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from adapters.base import Driver
from conformance.lockstep.claims import compares_upper
from conformance.run_config import DEFAULT_RUN, RunConfig
from reference import ops
from reference.layer import DirSpec, FileSpec, LayerSpec, MetacopySpec, StackSpec, WhiteoutSpec
from reference.options import Options
from reference.outcome import Err, Ok, Outcome

if TYPE_CHECKING:
    from conformance.features import Feature


@attrs.frozen
class UpperHas:
    """The upper layer on disk holds ``path`` as ``kind`` (with ``opaque``/``redirect``
    when given)."""

    path: str
    kind: str
    opaque: bool | None = None
    redirect: str | None = None


@attrs.frozen
class Step:
    op: ops.Op
    expect: Outcome | None = None
    upper: tuple[UpperHas, ...] = ()


@attrs.frozen
class Scenario:
    id: str
    title: str
    source: str
    stack: StackSpec
    steps: tuple[Step, ...]
    #: The option sets the scenario is written for (default: every one whose layers are
    #: all regular lowers; with ``data_only`` the bottom layer's names do not show).
    applies: Callable[[Options], bool] = lambda options: not options.data_only


def _stack(*layers: dict[str, object]) -> StackSpec:
    return StackSpec(tuple(LayerSpec(tuple(layer.items())) for layer in layers))


def _xino_bits(options: Options) -> bool:
    """xino=on over layers on several filesystems: st_ino carries the layer in high bits."""
    return options.xino and options.separate_fs


def _rw(options: Options) -> bool:
    return not options.read_only and not options.data_only


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        id="read-precedence-3-layers",
        title="The topmost layer that has a name wins; directories merge across layers",
        source="overlayfs.rst 'Upper and Lower'; obs E1.2",
        stack=_stack(
            {"a": FileSpec(b"top"), "d": DirSpec(), "d/x": FileSpec(b"x0")},
            {"a": FileSpec(b"middle"), "b": FileSpec(b"mid-b"), "d/y": FileSpec(b"y1")},
            {"a": FileSpec(b"bottom"), "b": FileSpec(b"low-b"), "c": FileSpec(b"only-bottom")},
        ),
        steps=(
            Step(ops.Read("a"), Ok(b"top")),
            Step(ops.Read("b"), Ok(b"mid-b")),
            Step(ops.Read("c"), Ok(b"only-bottom")),
            Step(ops.Readdir(""), Ok(("a", "b", "c", "d"))),
            Step(ops.Readdir("d"), Ok(("x", "y"))),
        ),
    ),
    Scenario(
        id="copy-up-once",
        title="The first write copies the whole file up once; later writes reuse the copy",
        source="overlayfs.rst 'Copy up'; obs E2.2",
        stack=_stack(
            {"f": FileSpec(b"0123456789", mode=0o640, uid=1000, xattrs=(("user.a", b"1"),))}
        ),
        steps=(
            Step(ops.Write("f", b"AB", offset=2), Ok(2), (UpperHas("f", "file"),)),
            Step(ops.Write("f", b"Z", offset=0), Ok(1)),
            Step(ops.Read("f"), Ok(b"Z1AB456789")),
            Step(ops.GetXattr("f", "user.a"), Ok(b"1")),
        ),
        applies=_rw,
    ),
    Scenario(
        id="unlink-whiteout-persists",
        title="Unlinking a lower file leaves a whiteout; it stays gone after remount",
        source="overlayfs.rst 'whiteouts and opaque directories'; obs E3.1",
        stack=_stack({"a": FileSpec(b"lower"), "b": FileSpec(b"keep")}),
        steps=(
            Step(ops.Unlink("a"), Ok(), (UpperHas("a", "whiteout"),)),
            Step(ops.Stat("a"), Err("ENOENT")),
            Step(ops.Remount(), Ok()),
            Step(ops.Stat("a"), Err("ENOENT")),
            Step(ops.Readdir(""), Ok(("b",))),
        ),
        applies=_rw,
    ),
    Scenario(
        id="rmdir-mkdir-opaque",
        title="rmdir of a lower dir then mkdir gives an empty opaque directory",
        source="overlayfs.rst 'whiteouts and opaque directories'; obs E3.13, E3.16",
        stack=_stack({"d": DirSpec(), "d/x": FileSpec(b"x"), "d/y": FileSpec(b"y")}),
        steps=(
            Step(ops.Rmdir("d"), Err("ENOTEMPTY")),
            Step(ops.Unlink("d/x"), Ok()),
            Step(ops.Unlink("d/y"), Ok()),
            Step(ops.Rmdir("d"), Ok(), (UpperHas("d", "whiteout"),)),
            Step(ops.Mkdir("d"), Ok(), (UpperHas("d", "dir", opaque=True),)),
            Step(ops.Readdir("d"), Ok(())),
            Step(ops.Remount(), Ok()),
            Step(ops.Readdir("d"), Ok(())),
        ),
        applies=_rw,
    ),
    Scenario(
        id="dir-rename-exdev",
        title="Renaming a lower directory gives EXDEV with redirect_dir=off",
        source="overlayfs.rst 'Renaming directories'; obs R.default.1",
        stack=_stack({"d": DirSpec(), "d/x": FileSpec(b"x")}),
        steps=(
            Step(ops.Rename("d", "e"), Err("EXDEV")),
            Step(ops.Read("d/x"), Ok(b"x")),
        ),
        applies=lambda options: _rw(options) and not options.redirect_dir,
    ),
    Scenario(
        id="dir-rename-redirect",
        title="Renaming a lower directory with redirect_dir=on records a redirect",
        source="overlayfs.rst 'Redirect dir'; obs R.rd_on.1, R.rd_on.6",
        stack=_stack({"d": DirSpec(), "d/x": FileSpec(b"x")}),
        steps=(
            Step(
                ops.Rename("d", "e"),
                Ok(),
                (UpperHas("e", "dir", redirect="d"), UpperHas("d", "whiteout")),
            ),
            Step(ops.Read("e/x"), Ok(b"x")),
            Step(ops.Stat("d"), Err("ENOENT")),
            Step(ops.Remount(), Ok()),
            Step(ops.Read("e/x"), Ok(b"x")),
        ),
        applies=lambda options: _rw(options) and options.redirect_dir,
    ),
    Scenario(
        id="xattr-whiteouts",
        title="An overlay.whiteout file hides what is below it; readdir hides it only in a "
        "directory marked overlay.opaque=x; it keeps rmdir from succeeding",
        source="overlayfs.rst 'whiteouts and opaque directories'; readdir.c "
        "ovl_dir_read_merged (in_xwhiteouts_dir), ovl_check_empty_dir; obs XW.1-XW.4",
        stack=_stack(
            {
                "d/g": WhiteoutSpec(xattr=True),
                "d/k": FileSpec(b"k"),
                "e/g": WhiteoutSpec(xattr=True, marked=False),
                "only/g": WhiteoutSpec(xattr=True),
            },
            {"d/g": FileSpec(b"low"), "e/g": FileSpec(b"low"), "only/g": FileSpec(b"low")},
        ),
        steps=(
            Step(ops.Stat("d/g"), Err("ENOENT")),
            Step(ops.Readdir("d"), Ok(("k",))),
            Step(ops.Stat("e/g"), Err("ENOENT")),
            Step(ops.Readdir("e"), Ok(("g",))),
            Step(ops.Readdir("only"), Ok(())),
            Step(ops.Rmdir("only"), Err("ENOTEMPTY")),
            Step(ops.Write("e/g", b"new", flags=("O_CREAT",)), Ok(3), (UpperHas("e/g", "file"),)),
            Step(ops.Read("e/g"), Ok(b"new")),
            Step(ops.Unlink("e/g"), Ok()),
            Step(ops.Readdir("e"), Ok(("g",))),
            Step(ops.Remount(), Ok()),
            Step(ops.Stat("d/g"), Err("ENOENT")),
        ),
        applies=lambda options: _rw(options) and not _xino_bits(options),
    ),
    Scenario(
        id="xattr-whiteouts-xino",
        title="With xino bits in use readdir looks every entry up, so an xattr whiteout is "
        "never listed, marked or not",
        source="overlayfs.rst 'whiteouts and opaque directories'; readdir.c "
        "ovl_calc_d_ino, ovl_cache_update (a stale entry is dropped); obs XW.5",
        stack=_stack(
            {
                "d/g": WhiteoutSpec(xattr=True),
                "d/k": FileSpec(b"k"),
                "e/g": WhiteoutSpec(xattr=True, marked=False),
                "only/g": WhiteoutSpec(xattr=True),
            },
            {"d/g": FileSpec(b"low"), "e/g": FileSpec(b"low"), "only/g": FileSpec(b"low")},
        ),
        steps=(
            Step(ops.Stat("d/g"), Err("ENOENT")),
            Step(ops.Readdir("d"), Ok(("k",))),
            Step(ops.Stat("e/g"), Err("ENOENT")),
            Step(ops.Readdir("e"), Ok(())),
            Step(ops.Readdir("only"), Ok(())),
            Step(ops.Rmdir("only"), Err("ENOTEMPTY")),
            Step(ops.Write("e/g", b"new", flags=("O_CREAT",)), Ok(3), (UpperHas("e/g", "file"),)),
            Step(ops.Read("e/g"), Ok(b"new")),
            Step(ops.Unlink("e/g"), Ok()),
            Step(ops.Readdir("e"), Ok(())),
            Step(ops.Remount(), Ok()),
            Step(ops.Stat("d/g"), Err("ENOENT")),
        ),
        applies=lambda options: _rw(options) and _xino_bits(options),
    ),
    Scenario(
        id="data-only-stub",
        title="A metacopy stub reads its data from a data-only layer, whose own names do not "
        "show; copy-up copies that data",
        source="overlayfs.rst 'Data-only lower layers'; namei.c ovl_lookup_data_layers; obs "
        "DO.1-DO.5, DO.7",
        stack=_stack(
            {"top": FileSpec(b"t")},
            {"s": MetacopySpec("/x/blob", 8, mode=0o640), "d/s": MetacopySpec("/x/blob", 8)},
            {"x/blob": FileSpec(b"BLOBDATA"), "only-data": FileSpec(b"od")},
        ),
        steps=(
            Step(ops.Read("s"), Ok(b"BLOBDATA")),
            Step(ops.Read("d/s"), Ok(b"BLOBDATA")),
            Step(ops.Stat("x"), Err("ENOENT")),
            Step(ops.Stat("only-data"), Err("ENOENT")),
            Step(ops.Readdir(""), Ok(("d", "s", "top"))),
            Step(ops.Chmod("s", 0o600), Ok(), (UpperHas("s", "file"),)),
            Step(ops.Read("s"), Ok(b"BLOBDATA")),
            Step(ops.Write("d/s", b"Z"), Ok(1)),
            Step(ops.Remount(), Ok()),
            Step(ops.Read("d/s"), Ok(b"ZLOBDATA")),
            Step(ops.Read("s"), Ok(b"BLOBDATA")),
        ),
        applies=lambda options: not options.read_only and options.data_only,
    ),
)



def run_scenario(
    driver: Driver,
    scenario: Scenario,
    options: Options,
    feature: Feature | None = None,
    run_config: RunConfig = DEFAULT_RUN,
) -> None:
    """Run ``scenario`` on ``driver`` in lockstep with the reference; raise on divergence.
    With a ``feature``, the view comparison checks only that feature's fields.

    A driver with recorded behaviours (conformance.records.behaviours): a difference they account
    for is expected as in the machine, and a step's explicit expectation (the kernel's
    outcome or upper layer) that the driver does not meet is expected only when a record
    of the driver that names this scenario showed at that very step (its variant hit the
    model's rule, or its clauses accounted for a difference); the later steps are then
    checked in lockstep only (the kernel's outcomes there follow from the step the driver
    did otherwise)."""
    from conformance.lockstep.machine import _StopExample, machine_for

    machine = machine_for(driver, options, feature, run_config=run_config)()
    named = {b.id for b in machine.behaviours if scenario.id in b.scenarios}
    departed = False
    try:
        machine.mount(scenario.stack)
        machine.agrees_with_reference()
        for number, step in enumerate(scenario.steps, 1):
            where = f"{scenario.id} step {number} {step.op!r}"
            before, machine.seen = machine.seen, set()
            hits = dict(getattr(machine.model, "variant_hits", {}))
            actual = machine.apply(step.op)
            if machine.records:
                machine.agrees_with_reference()  # first: a record may account for it
            now = getattr(machine.model, "variant_hits", {})
            shown = machine.seen | {name for name, n in now.items() if n > hits.get(name, 0)}
            machine.seen |= before
            problem = None if departed else _unmet(driver, step, actual, where)
            if problem is not None:
                if not named & shown:
                    raise AssertionError(problem)
                # the kernel's later outcomes follow from this step: from here on the
                # driver is held to the model (which follows the record) alone
                machine.seen |= named & shown
                departed = True
            if not machine.records:
                machine.agrees_with_reference()
    except _StopExample:
        pass
    finally:
        machine.finish()


def _unmet(driver: Driver, step: Step, actual: Outcome, where: str) -> str | None:
    """What of the step's explicit expectation the driver did not meet (None: all)."""
    if step.expect is not None and actual != step.expect:
        return f"{where}: expected {step.expect!r}, got {actual!r}"
    if step.upper and compares_upper(driver):
        # (a profile whose upper form cannot be decoded is held to the view only)
        upper, _ = driver.images()
        if upper is None:
            return f"{where}: no upper layer"
        for wanted in step.upper:
            entry = upper.entries.get(wanted.path)
            if entry is None:
                return f"{where}: upper has no {wanted.path!r}"
            if entry.kind != wanted.kind:
                return f"{where}: upper {wanted.path!r} is {entry}"
            if wanted.opaque is not None and entry.opaque != wanted.opaque:
                return f"{where}: upper {entry}"
            if wanted.redirect is not None and entry.redirect != wanted.redirect:
                return f"{where}: upper {entry}"
    return None
