"""``python -m conformance coverage``: how deep the generated programs reach, measured.

For every option set of the matrix it runs the whole-machine state machine on the
reference driver (no root, no mount: the reference engine is pure) at a budget, and
reports, as a table and as JSON:

- per operation kind, the share of attempts that succeeded (all steps of all examples of
  the writable option sets: on a read-only mount every write is EROFS by design);
- per named rare state (:data:`RARE_STATES`), the share of examples that reached it, out
  of the examples whose option set allows it;
- the checked steps per second of that run.

The states are detected from the reference engine's own state (its upper layer, index,
redirects, metacopy flags) before and after each step, never from a driver. The same
detection reports each state through Hypothesis's ``event()``, so
``pytest --hypothesis-show-statistics`` shows, per test, the share of examples that
reached each state (:func:`observed`; only when that option is given, since it costs a
lookup per step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from conformance import timebudget
from conformance.generation.cases import copied_since_open
from conformance.generation.cases import created as created_name
from reference import ops
from reference.layer import (
    DirSpec,
    Inode,
    Kind,
    StackSpec,
    WhiteoutSpec,
)
from reference.lookup import Node
from reference.options import MATRIX, Options
from reference.outcome import Allowed, Err, Ok
from reference.overlay import Overlay
from reference.paths import FsError

PAGE = 4096


def _writable(options: Options) -> bool:
    return not options.read_only


@attrs.frozen
class RareState:
    """A state worth reaching; ``applies``: the option sets under which it can happen (by
    default the writable ones: most states need a change)."""

    name: str
    description: str
    applies: Callable[[Options], bool] = _writable


def _redirects(options: Options) -> bool:
    return options.redirect_dir and not options.read_only


def _index(options: Options) -> bool:
    return options.index and not options.read_only


def _exdev(options: Options) -> bool:
    return not options.redirect_dir and not options.read_only


def _metacopy(options: Options) -> bool:
    return options.metacopy and not options.read_only


RARE_STATES: tuple[RareState, ...] = (
    RareState("dir-over-whiteout", "mkdir where the upper holds a whiteout (an opaque dir)"),
    RareState(
        "dir-over-whiteout-renamed",
        "a directory made over a whiteout, then renamed away",
    ),
    RareState("nondir-over-whiteout", "a file, symlink, FIFO or link made over a whiteout"),
    RareState("rename-over-whiteout", "rename onto a name the upper holds as a whiteout"),
    RareState("rename-exchange", "RENAME_EXCHANGE that succeeded"),
    RareState("absolute-redirect", "an upper entry with an absolute redirect", _redirects),
    RareState("relative-redirect", "an upper directory with a relative redirect", _redirects),
    RareState("dir-rename-exdev", "renaming a lower directory gave EXDEV", _exdev),
    RareState("index-copy-up", "copy-up of a lower hardlink under index=on", _index),
    RareState("index-nlink-above-1", "an index entry whose union nlink is above 1", _index),
    RareState("index-link-removed", "unlink of a name of a lower hardlink (index=on)", _index),
    RareState("metacopy-then-data", "a metacopy file whose data was then copied up", _metacopy),
    RareState("nested-copy-up", "copy-up of an entry inside a lower directory (a/b)"),
    RareState(
        "page-write-after-copy-up",
        "a write across a 4096-byte boundary into a copied-up file",
    ),
    RareState("file-over-a-page", "a file in the upper layer longer than 4096 bytes"),
    RareState("merged-dir-removed", "rmdir of a directory with lower entries (a whiteout)"),
    RareState("remount-non-empty-upper", "a remount with a non-empty upper layer"),
    RareState("opaque-dir-middle-lower", "an opaque dir in a lower with lowers below it", bool),
    RareState("lower-whiteout-hides", "a whiteout in a lower hides a name of a lower below", bool),
    RareState("long-name", "a name of 200 or more bytes created"),
    RareState("wh-prefixed-name", "a name starting with .wh. created"),
    RareState("view-12-entries", "a merged view of 12 or more entries at the end", bool),
    RareState(
        "read-fd-after-copy-up",
        "a read through a descriptor opened before its file was copied up and changed",
    ),
)

def succeeded(allowed: Allowed) -> bool:
    """An operation succeeded when the reference allows a success (Linux's outcome)."""
    return any(isinstance(outcome, Ok) for outcome in allowed)


def _upper_entry(model: Overlay, path: str) -> Inode | None:
    """The upper layer's own entry at ``path`` (no lookup through lowers, no symlinks)."""
    node = model.upper
    for part in path.split("/"):
        if node is None or not node.is_dir:
            return None
        node = node.entries.get(part)
    return node


def _node(model: Overlay, path: str, follow: bool) -> Node | None:
    try:
        return model.resolve(path, follow=follow).node
    except FsError:
        return None


_COPY_UP_OPS = (ops.Write, ops.Truncate, ops.Chmod, ops.Chown, ops.SetXattr)


def stack_states(stack: StackSpec) -> set[str]:
    """The states a stack has before any operation."""
    found: set[str] = set()
    lowers = stack.lowers
    for number, layer in enumerate(lowers):
        below = [dict(other.entries) for other in lowers[number + 1 :]]
        for path, spec in layer.entries:
            if isinstance(spec, DirSpec) and spec.opaque and below:
                found.add("opaque-dir-middle-lower")
            if isinstance(spec, WhiteoutSpec) and any(path in other for other in below):
                found.add("lower-whiteout-hides")
    return found


class Watch:
    """One example's observation of the reference model: what it attempted, what
    succeeded, which rare states it reached."""

    def __init__(self, model: Overlay, stack: StackSpec) -> None:
        self.model = model
        self.reached: set[str] = stack_states(stack)
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        #: directories made over a whiteout in this example (by their path now)
        self.recreated: set[str] = set()

    def before(self, op: ops.Op) -> dict[str, Any]:
        model = self.model
        pre: dict[str, Any] = {}
        if model.upper is None:
            return pre
        created = created_name(op)
        if created is not None:
            entry = _upper_entry(model, created)
            pre["whiteout"] = entry is not None and entry.kind is Kind.WHITEOUT
        if model.options.index:
            pre["index"] = len(model.index)
            pre["links"] = sum(model.index_nlink.values())
        if isinstance(op, _COPY_UP_OPS):
            node = _node(model, op.path, follow=True)
            if node is not None and not node.is_dir:
                pre["lower_only"] = node.upper is None
                meta = model.meta(node)
                pre["metacopy"] = meta if meta.metacopy else None
        if isinstance(op, ops.Rmdir):
            node = _node(model, op.path, follow=False)
            pre["merged"] = node is not None and bool(node.lowers)
        if isinstance(op, ops.Remount):
            pre["upper"] = bool(model.upper.entries)
        if isinstance(op, ops.ReadFd):
            pre["stale"] = copied_since_open(model, op.handle)
        if model.options.index and isinstance(op, ops.Unlink):
            node = _node(model, op.path, follow=False)
            lower = model.lower_of(node) if node is not None and not node.is_dir else None
            pre["lower_link"] = lower is not None and model.lower_nlink.get(lower.ident, 1) > 1
        return pre

    def after(self, op: ops.Op, allowed: Allowed, pre: dict[str, Any]) -> None:
        rule = ops.KINDS[type(op)].rule
        self.attempts[rule] += 1
        if not succeeded(allowed):
            if isinstance(op, ops.Rename) and Err("EXDEV") in allowed:
                self.reached.add("dir-rename-exdev")
            return
        self.successes[rule] += 1
        model, reached = self.model, self.reached
        if model.upper is None:
            return
        created = created_name(op)
        if created is not None:
            leaf = created.rsplit("/", 1)[-1]
            if len(leaf) >= 200:
                reached.add("long-name")
            if leaf.startswith(".wh."):
                reached.add("wh-prefixed-name")
        if pre.get("whiteout"):
            if isinstance(op, ops.Rename):
                reached.add("rename-over-whiteout")
            elif isinstance(op, ops.Mkdir):
                reached.add("dir-over-whiteout")
                self.recreated.add(op.path)
            else:
                reached.add("nondir-over-whiteout")
        if isinstance(op, ops.Rename):
            self._renamed(op)
        if model.options.index:
            if len(model.index) > pre.get("index", 0):
                reached.add("index-copy-up")
            if any(count > 1 for count in model.index_nlink.values()):
                reached.add("index-nlink-above-1")
            if pre.get("lower_link"):
                reached.add("index-link-removed")
        if "lower_only" in pre:
            self._changed_file(op, pre)
        if pre.get("merged"):
            reached.add("merged-dir-removed")
        if pre.get("upper"):
            reached.add("remount-non-empty-upper")
        if pre.get("stale"):
            reached.add("read-fd-after-copy-up")

    def _renamed(self, op: ops.Rename) -> None:
        reached = self.reached
        if op.flags == "RENAME_EXCHANGE":
            reached.add("rename-exchange")
        if op.src in self.recreated:
            reached.add("dir-over-whiteout-renamed")
            self.recreated.discard(op.src)
            self.recreated.add(op.dst)
        if self.model.options.redirect_dir:
            # a rename sets a redirect on what it moved only: at dst, and at src after an
            # exchange
            moved = (op.dst, op.src) if op.flags == "RENAME_EXCHANGE" else (op.dst,)
            for path in moved:
                inode = _upper_entry(self.model, path)
                if inode is not None and inode.redirect is not None:
                    absolute = inode.redirect.startswith("/")
                    reached.add("absolute-redirect" if absolute else "relative-redirect")

    def _changed_file(self, op: ops.Op, pre: dict[str, Any]) -> None:
        reached, model = self.reached, self.model
        path = op.path  # type: ignore[attr-defined]
        if pre["lower_only"] and path.count("/") >= 1:
            reached.add("nested-copy-up")
        metacopy = pre.get("metacopy")
        if metacopy is not None and not metacopy.metacopy:
            reached.add("metacopy-then-data")
        if not isinstance(op, ops.Write | ops.Truncate):
            return
        node = _node(model, path, follow=True)
        if node is None or node.upper is None:
            return
        if len(node.upper.data) > PAGE:
            reached.add("file-over-a-page")
        if isinstance(op, ops.Write) and op.data and node.upper.origin is not None:
            start = len(node.upper.data) - len(op.data) if "O_APPEND" in op.flags else op.offset
            if start // PAGE != (start + len(op.data) - 1) // PAGE:
                reached.add("page-write-after-copy-up")

    def finish(self) -> None:
        count = 0
        pending = [self.model.root()]
        while pending and count < 12:
            directory = pending.pop()
            for _, node in self.model.found_children(directory):
                count += 1
                if node.is_dir:
                    pending.append(node)
        if count >= 12:
            self.reached.add("view-12-entries")


def observed(base: type, sink: Callable[[Watch], None] | None = None) -> type:
    """``base`` (an OverlayMachine class) observing each example: every reached state and
    every operation kind that succeeded at least once becomes a Hypothesis ``event``;
    ``sink`` gets each finished example's :class:`Watch`."""
    from hypothesis import event

    class Observed(base):  # type: ignore[misc, valid-type]
        watch: Watch | None = None

        def mount(self, stack: StackSpec) -> None:
            super().mount(stack)
            self.watch = Watch(self.model, stack)

        def apply(self, op: ops.Op) -> Any:
            watch = self.watch
            if watch is None:
                return super().apply(op)
            pre = watch.before(op)
            # the model's allowed set, as the machine computes it (apply stores it)
            try:
                return super().apply(op)
            finally:
                if self.pending is not None:
                    watch.after(op, self.pending.allowed, pre)
                elif self.trace:
                    watch.after(op, self.trace[-1].allowed, pre)

        def run(self, stack: StackSpec, program: list[ops.Op]) -> None:
            try:
                super().run(stack, program)
            finally:
                watch = self.watch
                if watch is not None:
                    watch.finish()
                    for name in sorted(watch.reached):
                        event(f"reached {name}")
                    for rule in sorted(watch.successes):
                        event(f"{rule} succeeded")
                    if sink is not None:
                        sink(watch)

    Observed.__name__ = Observed.__qualname__ = "OverlayMachine"
    return Observed


# --- the command --------------------------------------------------------------------------


def measure(budget: str, seed_value: int, option_sets: tuple[Options, ...] = MATRIX) -> dict:
    """Run the whole-machine reference at ``budget`` for each option set, observed."""
    from hypothesis import Phase, seed

    from adapters.drivers.reference import ReferenceDriver
    from conformance.bench import _fixed
    from conformance.budgets import BUDGETS
    from conformance.lockstep.machine import lockstep_test, machine_for

    values = BUDGETS[budget]
    attempts: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    eligible: Counter[str] = Counter()
    examples = steps = 0
    seconds = 0.0
    per_options: dict[str, Any] = {}
    for options in option_sets:
        watches: list[Watch] = []
        driver = ReferenceDriver()
        machine = observed(machine_for(driver, options), watches.append)
        run_settings = _fixed(
            max_examples=values["max_examples"],
            stateful_step_count=values["stateful_step_count"],
            phases=[Phase.generate],
        )
        started = time.perf_counter()
        seed(seed_value)(lockstep_test(machine, run_settings))()
        wall = time.perf_counter() - started
        driver.close()
        these: Counter[str] = Counter()
        for watch in watches:
            if not options.read_only:  # there every write is EROFS by design
                attempts.update(watch.attempts)
                successes.update(watch.successes)
            these.update(watch.reached)
        for state in RARE_STATES:
            if state.applies(options):
                eligible[state.name] += len(watches)
                reached[state.name] += these[state.name]
        n_steps = sum(sum(w.attempts.values()) for w in watches)
        examples += len(watches)
        steps += n_steps
        seconds += wall
        per_options[options.label] = {
            "examples": len(watches),
            "steps": n_steps,
            "wall_s": wall,
            "reached": {s.name: these[s.name] for s in RARE_STATES if s.applies(options)},
        }
    return {
        "budget": budget,
        "budget_values": dict(BUDGETS[budget]),
        "seed": seed_value,
        "examples": examples,
        "steps": steps,
        "wall_s": seconds,
        "steps_per_s": steps / seconds if seconds else 0.0,
        "success": {
            rule: {
                "attempts": attempts[rule],
                "succeeded": successes[rule],
                "share": successes[rule] / attempts[rule] if attempts[rule] else None,
            }
            for rule in sorted(attempts)
        },
        "states": {
            state.name: {
                "description": state.description,
                "examples": eligible[state.name],
                "reached": reached[state.name],
                "share": reached[state.name] / eligible[state.name]
                if eligible[state.name]
                else None,
            }
            for state in RARE_STATES
        },
        "per_options": per_options,
    }


def render(results: dict) -> str:
    lines = [
        f"coverage: whole machine on the reference, budget {results['budget']} "
        f"{results['budget_values']}, seed {results['seed']}, every option set",
        f"{results['examples']} examples, {results['steps']} steps in {results['wall_s']:.1f}s:"
        f" {results['steps_per_s']:.0f} checked steps/s",
        "",
        "operation kind    succeeded / attempts",
    ]
    for rule, row in results["success"].items():
        share = row["share"]
        lines.append(
            f"  {rule:<14}  {100 * share:5.1f}%  ({row['succeeded']}/{row['attempts']})"
            if share is not None
            else f"  {rule:<14}  -"
        )
    lines += ["", "rare state                  examples reaching it (of those allowing it)"]
    for name, row in results["states"].items():
        share = row["share"]
        text = "-" if share is None else f"{100 * share:5.1f}%"
        lines.append(f"  {name:<26} {text}  ({row['reached']}/{row['examples']})")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget", default="standard", choices=timebudget.NAMES,
        help="examples and steps per option set (default: standard)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    parser.add_argument("--json", default="coverage.json", help="where to write the JSON")


def main(args: argparse.Namespace) -> int:
    results = measure(args.budget, args.seed)
    print(render(results))
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
