"""Generation that reaches deep states (issue 16): programs drawn against the model still
replay and shrink, mostly succeed, keep errors reachable, and the rare-state detection of
``python -m conformance coverage`` is not vacuous."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.internal.conjecture.data import ConjectureData

from conformance.generation import coverage, strategies
from conformance.generation.cases import Cases, _Drawer, cases, upper_as_layer
from conformance.generation.paths_choice import SLOTS, Inventory, choose, groups, inventory, tree_of
from conformance.generation.swarm import draw_swarm
from reference import ops
from reference.layer import (
    DirSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    StackSpec,
    WhiteoutSpec,
    build,
)
from reference.options import MATRIX, Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay, image

FIXED = settings(
    max_examples=60,
    database=None,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


DEFAULT = Options()


def _drawn(n: int, options: Options = DEFAULT, rules=None) -> list:
    """``n`` cases, each drawn from its own seeded random source (deterministic, whatever
    Hypothesis's engine would choose to generate)."""
    strategy = cases(rules, 30, options)
    return [ConjectureData(random=random.Random(i)).draw(strategy) for i in range(n)]


def test_a_case_replays_exactly_from_its_choices() -> None:
    """The program is data: the same choices give the same stack and program."""
    strategy = Cases(None, 30, Options())
    for n in range(20):
        # a fresh random draw, then its recorded choices replayed
        first = ConjectureData(random=random.Random(n))
        case = first.draw(strategy)
        replay = ConjectureData.for_choices(first.choices)
        assert replay.draw(strategy) == case


def test_the_simplest_case_is_an_empty_program() -> None:
    """Every choice at its simplest (index 0, stop at once) gives one bottom layer and no
    steps: what shrinking moves towards."""
    # swarm level, lower count, the three names' kinds, earlier overlay, remount, stop
    data = ConjectureData.for_choices([0, 0, 0, 0, 0, 0, 0, True])
    stack, program = data.draw(Cases(None, 30, Options()))
    assert len(stack.lowers) == 1
    assert program == []


def test_most_steps_succeed_and_errors_stay_reachable() -> None:
    """Drawn against the model, most steps succeed (paths drawn blind: about one in
    five); a share still fails, with the errors of wrong kinds and missing names."""
    outcomes: Counter[str] = Counter()
    errors: set[str] = set()
    for stack, program in _drawn(60):
        model = Overlay(stack, Options())
        for op in program:
            outcome, _ = model.step(op)
            ok = isinstance(outcome, Ok)
            outcomes["ok" if ok else "error"] += 1
            if isinstance(outcome, Err):
                errors.add(outcome.name)
    share = outcomes["ok"] / sum(outcomes.values())
    assert share > 0.55, outcomes
    assert outcomes["error"] / sum(outcomes.values()) > 0.05, outcomes
    assert {"ENOENT", "EEXIST", "ENOTDIR", "EISDIR"} <= errors, errors


def _fields(inv: Inventory) -> dict:
    """An inventory's contents (``viable`` is a cache of what they give)."""
    return {name: getattr(inv, name) for name in Inventory.FIELDS}


@pytest.mark.parametrize("options", [*MATRIX, Options(index=True, redirect_dir=True)],
                         ids=lambda options: options.label)
def test_the_kept_inventory_equals_a_fresh_one(options: Options) -> None:
    """The drawer keeps its tree of names up to date step by step and its inventory across
    steps that change no name (data, metadata): after every step both hold what a fresh
    walk of the model gives, ``recent`` cut to the same REMEMBERED names (a stale kept one
    drew other paths than a fresh one would)."""
    kept = updated = 0
    walks = []
    for n in range(40):
        data = ConjectureData(random=random.Random(n))
        # a data-only mount needs a regular lower above the data-only one
        least = 2 if options.data_only else 1
        stack = data.draw(strategies.stacks(min_lowers=least, max_lowers=2))
        drawer = _Drawer(Overlay(stack, options), strategies.Operations().rules)
        drawer.inventory()
        for _ in range(40):
            op = drawer.draw(data)
            before = drawer.tree
            drawer.apply(op)
            walks.append(drawer.tree is not before)
            fresh_tree = tree_of(drawer.model)
            assert drawer.tree == fresh_tree, (stack, op)
            fresh = inventory(
                drawer.model, drawer.removed, drawer.recent, drawer.recreated, drawer.waiting
            )
            if drawer.inv is not None:
                kept += 1
                assert _fields(drawer.inv) == _fields(fresh), (stack, op)
                for role, table in drawer.inv.groups.items():  # the cached path tables
                    assert table == groups(role, fresh), (stack, op, role)
            else:
                updated += 1
                assert _fields(drawer.inventory()) == _fields(fresh), (stack, op)
    assert kept > 400 and updated > 100  # both were exercised
    assert sum(walks) < len(walks) / 5  # most changes are updated, not walked again


def test_a_read_only_mount_draws_mostly_looking_steps() -> None:
    """On a read-only mount every write is EROFS: writing rules count once each (as rules
    that cannot succeed), so most steps look (78% of the steps were writes before)."""
    program_ops = [op for _, program in _drawn(60, Options(read_only=True)) for op in program]
    writes = sum(type(op) in ops.WRITES for op in program_ops)
    assert writes / len(program_ops) < 0.5, (writes, len(program_ops))
    assert {type(op) for op in program_ops} >= set(ops.WRITES)  # each still reachable


def test_a_feature_case_draws_only_its_rules_and_remounts() -> None:
    rules = frozenset({"setxattr", "getxattr", "listxattr", "removexattr"})
    drawn = {type(op) for _, program in _drawn(40, rules=rules) for op in program}
    assert drawn <= {ops.SetXattr, ops.GetXattr, ops.ListXattr, ops.RemoveXattr, ops.Remount}
    assert {ops.SetXattr, ops.GetXattr, ops.RemoveXattr} <= drawn


def test_stacks_grow_deeper_and_files_cross_pages() -> None:
    drawn = _drawn(150)
    assert max(len(stack.lowers) for stack, _ in drawn) >= 5
    writes = [op for _, program in drawn for op in program if isinstance(op, ops.Write)]
    assert any(op.offset >= 4090 for op in writes)
    assert any(len(op.data) >= 4096 for op in writes)
    truncates = [op for _, program in drawn for op in program if isinstance(op, ops.Truncate)]
    assert any(op.size == 1 << 20 for op in truncates)  # a 1 MiB file now and then
    names = {op.path for op in writes} | {
        op.path for _, program in drawn for op in program if isinstance(op, ops.Mkdir)
    }
    assert any(name.rsplit("/", 1)[-1] == "n" * 255 for name in names)
    assert any(name.rsplit("/", 1)[-1].startswith(".wh.") for name in names)


def test_each_field_is_drawn_from_its_domain() -> None:
    """The drawer picks each field by its domain name (ops.Kind.draws): paths from the
    inventory, flags by what the path holds, data, offsets and sizes from the bigger
    tables, every other field from strategies.DOMAINS."""
    from conformance.generation.cases import BIGGER, EXCHANGE, NEW_FLAGS, NOREPLACE

    special = {
        "open_flags": {*strategies.OPEN_FLAGS, *NEW_FLAGS},
        "rename_flags": {*EXCHANGE, *NOREPLACE},
    }
    seen: dict[str, set] = {}
    for _, program in _drawn(60):
        for op in program:
            kind = ops.KINDS[type(op)]
            for field, domain in zip(ops.own_fields(type(op)), kind.draws, strict=True):
                value = getattr(op, field.name)
                seen.setdefault(domain, set()).add(value)
                if domain in ("path", "dir_path"):
                    assert isinstance(value, str), (op, domain)
                elif domain == "handle":  # the model's handles, and the next number
                    assert isinstance(value, int) and value >= 0, (op, domain)
                else:
                    table = special.get(domain) or BIGGER.get(domain, strategies.DOMAINS[domain])
                    assert value in table, (op, domain)
    assert set(seen) == set(strategies.DOMAINS)  # every domain drawn
    for domain in BIGGER:  # and the bigger tables' own entries
        assert seen[domain] - set(strategies.DOMAINS[domain]), domain


def test_path_groups_put_the_right_kind_first_and_fall_back_to_it() -> None:
    stack = StackSpec(
        (LayerSpec((("d", DirSpec()), ("d/f", FileSpec(b"x")), ("e", DirSpec()))),)
    )
    inv = inventory(Overlay(stack, Options()), removed=["gone"])
    assert inv.files == ["d/f"] and inv.empty_dirs == ["e"]
    assert choose(0, groups("file", inv)) == "d/f"
    assert choose(0, groups("empty_dir", inv)) == "e"
    assert choose(0, groups("new", inv)) not in inv.existing
    # every slot of an empty group goes to the first non-empty one (the right kind)
    table = [([], 8), (["x"], 4), (["y"], 4)]
    assert {choose(n, table) for n in range(SLOTS)} == {"x", "y"}
    assert {choose(n, table) for n in range(8)} == {"x"}


def test_the_swarm_leaves_kinds_out_but_never_all() -> None:
    rules = ("stat", "write", "mkdir")
    everything = draw_swarm(ConjectureData.for_choices([0]), rules)
    assert everything.rules == rules and not everything.without
    # level 3: a base-4 digit of 1, 2 or 3 leaves a rule out; all left out: all enabled
    none_left = draw_swarm(ConjectureData.for_choices([3, 1 + 2 * 4 + 3 * 16, 0, 0, 0]), rules)
    assert none_left.rules == rules
    # level 2: digits 2 and 3 leave a rule out, base-8 digits 6 and 7 an object kind
    some = draw_swarm(ConjectureData.for_choices([2, 3 + 1 * 4 + 2 * 16, 6 + 5 * 8, 7, 0]), rules)
    assert some.rules == ("write",) and some.without == {"symlink", "hardlink"}
    # the simplest choices enable everything at every level
    for level in (1, 2, 3):
        simplest = draw_swarm(ConjectureData.for_choices([level, 0, 0, 0, 0]), rules)
        assert simplest.rules == rules and not simplest.without
    # each kind is left out as often as the level says
    left: Counter[int] = Counter()
    for n in range(400):
        swarm = draw_swarm(ConjectureData(random=random.Random(n)), strategies.Operations().rules)
        left[len(swarm.rules)] += 1
    assert 0.15 < left[len(strategies.Operations().rules)] / 400 < 0.5  # level 0, or luck


def test_an_earlier_overlay_upper_becomes_a_lower_with_its_markers() -> None:
    stack = StackSpec((LayerSpec((("d", DirSpec()), ("d/f", FileSpec(b"x")), ("g", FileSpec()))),))
    earlier = Overlay(stack, Options())
    program = (ops.Unlink("d/f"), ops.Rmdir("d"), ops.Mkdir("d"), ops.Link("g", "h"),
               ops.Unlink("g"))
    for op in program:
        assert earlier.apply(op) == {Ok(None)}, op
    layer = upper_as_layer(earlier)
    upper = earlier.upper_image()
    assert upper is not None
    assert image(build(layer)).entries == upper.entries
    entries = dict(layer.entries)
    assert entries["d"] == DirSpec(opaque=True)
    assert isinstance(entries["h"], FileSpec)
    assert not any(isinstance(spec, HardlinkSpec) for spec in entries.values())


def _reached(stack: StackSpec, program: list, options: Options = DEFAULT) -> set[str]:
    model = Overlay(stack, options)
    watch = coverage.Watch(model, stack)
    for op in program:
        pre = watch.before(op)
        watch.after(op, model.apply(op), pre)
    watch.finish()
    return watch.reached


LOWER_DIR = StackSpec((LayerSpec((("a", DirSpec()),)),))
LOWER_FILES = StackSpec((LayerSpec((("a", FileSpec(b"1")), ("b", FileSpec(b"2")))),))


#: (stack, program, options, states it reaches): every rare state at least once.
RARE_CASES = [
    (
        LOWER_DIR,
        [ops.Rmdir("a"), ops.Mkdir("a"), ops.Rename("a", "b")],
        Options(),
        {"merged-dir-removed", "dir-over-whiteout", "dir-over-whiteout-renamed"},
    ),
    (
        StackSpec((LayerSpec((("a", FileSpec(b"1")), ("b", FileSpec(b"2")))),)),
        [ops.Unlink("a"), ops.Rename("b", "a")],
        Options(),
        {"rename-over-whiteout"},
    ),
    (
        StackSpec((LayerSpec((("a", FileSpec(b"1")), ("b", HardlinkSpec("a")))),)),
        [ops.Chmod("a", 0o600), ops.Unlink("b")],
        Options(index=True),
        {"index-copy-up", "index-nlink-above-1", "index-link-removed"},
    ),
    (
        StackSpec((LayerSpec((("a", DirSpec()), ("a/f", FileSpec(b"x")))),)),
        [ops.Chmod("a/f", 0o600), ops.Write("a/f", b"0123456789", 4090)],
        Options(redirect_dir=True, metacopy=True),
        {"nested-copy-up", "metacopy-then-data", "page-write-after-copy-up",
         "file-over-a-page"},
    ),
    (
        StackSpec((LayerSpec((("a", DirSpec()), ("b", DirSpec()))),)),
        [ops.Rename("a", "b/c"), ops.Rename("b", "d")],
        Options(redirect_dir=True),
        {"absolute-redirect", "relative-redirect"},
    ),
    (LOWER_DIR, [ops.Rename("a", "b")], Options(), {"dir-rename-exdev"}),
    (LOWER_FILES, [ops.Unlink("a"), ops.Write("a", b"x", 0, ("O_CREAT",))], Options(),
     {"nondir-over-whiteout"}),
    (LOWER_FILES, [ops.Unlink("a"), ops.Symlink("b", "a")], Options(),
     {"nondir-over-whiteout"}),
    (LOWER_FILES, [ops.Rename("a", "b", "RENAME_EXCHANGE")], Options(),
     {"rename-exchange"}),
    (LOWER_FILES, [ops.Mkdir("c"), ops.Remount()], Options(), {"remount-non-empty-upper"}),
    (
        StackSpec((LayerSpec((("a", DirSpec(opaque=True)),)), LOWER_DIR.lowers[0])),
        [],
        Options(),
        {"opaque-dir-middle-lower"},
    ),
    (
        StackSpec((LayerSpec((("a", WhiteoutSpec()),)), LOWER_DIR.lowers[0])),
        [],
        Options(read_only=True),
        {"lower-whiteout-hides"},
    ),
    (LOWER_FILES, [ops.Mkdir("n" * 200)], Options(), {"long-name"}),
    (LOWER_DIR, [ops.Write("a/" + "n" * 255, b"", 0, ("O_CREAT",))], Options(),
     {"long-name"}),
    (LOWER_FILES, [ops.Mkfifo(".wh.a")], Options(), {"wh-prefixed-name"}),
    (LOWER_FILES, [ops.Open("a"), ops.Truncate("a", 0), ops.ReadFd(0)], Options(),
     {"read-fd-after-copy-up"}),
    (LOWER_FILES, [ops.Open("a"), ops.Open("a", "O_RDWR"), ops.WriteFd(1, b"xy"),
                   ops.ReadFd(0)], Options(metacopy=True, redirect_dir=True),
     {"read-fd-after-copy-up"}),
    (
        StackSpec((LayerSpec(tuple((f"f{n}", FileSpec()) for n in range(12))),)),
        [],
        Options(read_only=True),
        {"view-12-entries"},
    ),
]


@pytest.mark.parametrize(("stack", "program", "options", "states"), RARE_CASES)
def test_rare_states_are_detected(stack, program, options, states) -> None:
    assert states <= _reached(stack, program, options)


def test_every_rare_state_has_a_detection_case() -> None:
    covered = set().union(*(states for *_, states in RARE_CASES))
    assert covered == {state.name for state in coverage.RARE_STATES}


@pytest.mark.parametrize(
    ("stack", "program", "state"),
    [
        # a made name, not a removed one: no whiteout under it
        (LOWER_FILES, [ops.Write("c", b"x", 0, ("O_CREAT",))], "nondir-over-whiteout"),
        (LOWER_FILES, [ops.Rename("a", "b")], "rename-exchange"),
        # a remount of an upper that is still empty
        (LOWER_FILES, [ops.Remount()], "remount-non-empty-upper"),
        # an opaque dir in the bottom layer hides nothing
        (StackSpec((LOWER_FILES.lowers[0], LayerSpec((("a", DirSpec(opaque=True)),)))), [],
         "opaque-dir-middle-lower"),
        # a whiteout with nothing of its name below
        (StackSpec((LayerSpec((("c", WhiteoutSpec()),)), LOWER_FILES.lowers[0])), [],
         "lower-whiteout-hides"),
        (LOWER_FILES, [ops.Mkdir("n" * 199)], "long-name"),
        (LOWER_FILES, [ops.Mkdir("wh.a")], "wh-prefixed-name"),
        # copied up with the same data (a chmod), or opened after the copy-up
        (LOWER_FILES, [ops.Open("a"), ops.Chmod("a", 0o600), ops.ReadFd(0)],
         "read-fd-after-copy-up"),
        (LOWER_FILES, [ops.Truncate("a", 0), ops.Open("a"), ops.ReadFd(0)],
         "read-fd-after-copy-up"),
        (StackSpec((LayerSpec(tuple((f"f{n}", FileSpec()) for n in range(11))),)), [],
         "view-12-entries"),
    ],
)
def test_rare_states_are_not_reached_one_short(stack, program, state) -> None:
    """The same programs one step short of each state do not reach it."""
    assert state not in _reached(stack, program)


def test_a_dull_program_reaches_no_rare_state() -> None:
    stack = StackSpec((LayerSpec((("a", FileSpec(b"x")),)),))
    program = [ops.Stat("a"), ops.Read("a"), ops.Write("b", b"x", 0, ("O_CREAT",))]
    assert _reached(stack, program) == set()


def test_every_rare_state_can_happen_under_some_option_set() -> None:
    assert len(coverage.RARE_STATES) >= 12
    for state in coverage.RARE_STATES:
        assert any(state.applies(options) for options in MATRIX), state.name


def test_the_coverage_command_writes_its_json(tmp_path, monkeypatch) -> None:
    from conformance.__main__ import main

    monkeypatch.setattr(
        coverage, "measure", lambda budget, seed, option_sets=MATRIX[:1]: _measure(budget, seed)
    )
    out = tmp_path / "coverage.json"
    assert main(["coverage", "--budget", "quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["steps"] > 0 and results["steps_per_s"] > 0
    assert set(results["states"]) == {state.name for state in coverage.RARE_STATES}
    assert results["success"]["mkdir"]["attempts"] > 0


_real_measure = coverage.measure


def _measure(budget: str, seed_value: int) -> dict:
    return _real_measure(budget, seed_value, MATRIX[:1])


LONG = "n" * 252  # "/a/" + 252 + "/f" is 257 bytes: one past redirect_max


@pytest.mark.parametrize(
    ("options", "op", "expected"),
    [
        (Options(redirect_dir=True, metacopy=True), ops.Link(f"a/{LONG}/f", "z/c"), "EXDEV"),
        (Options(redirect_dir=True), ops.Link(f"a/{LONG}/f", "z/c"), None),
        # "/a/" + 254 is 257 bytes, "/a/" + 253 is 256
        (Options(redirect_dir=True), ops.Rename(f"a/{'n' * 254}", "z/d"), "EXDEV"),
        (Options(redirect_dir=True), ops.Rename(f"a/{'n' * 253}", "z/d"), None),
    ],
)
def test_an_absolute_redirect_past_redirect_max_is_exdev(options, op, expected) -> None:
    """dir.c ovl_get_redirect: an absolute redirect longer than redirect_max (256) gives
    EXDEV, after the source and the new parent were copied up (the kernel run, found by
    the state-aware generator with a 255-byte name)."""
    name = op.src.split("/")[1]
    stack = StackSpec(
        (LayerSpec((("a", DirSpec()), (f"a/{name}", DirSpec()), (f"a/{name}/f", FileSpec(b"x")),
                    ("z", DirSpec()))),)
    )
    model = Overlay(stack, options)
    outcome, _ = model.step(op)
    assert outcome == (Err(expected) if expected else Ok(None))
    upper = model.upper_image()
    assert upper is not None and "z" in upper.entries  # the new parent was copied up


def test_the_drawer_follows_a_descriptor_opened_on_a_lower_file() -> None:
    """A read-only descriptor on a lower file waits (the rules that change its data, and
    its path, drawn more); once its file was copied up and changed it is stale (a read
    through it drawn more, of it above all); read, the story is told. A copy-up that
    keeps the data (chmod) leaves it waiting; an open for writing is no such descriptor."""
    drawer = _Drawer(Overlay(LOWER_FILES, DEFAULT), strategies.Operations().rules)
    plain = Counter(drawer.rule_table())
    assert not drawer.waiting and not drawer.stale
    opens = Counter(drawer.rule_table())["open"]
    assert opens > 6  # lower files to open a descriptor on
    drawer.apply(ops.Open("b", "O_RDWR"))  # copies b up: no descriptor on a lower file
    drawer.apply(ops.Open("a"))
    drawer.apply(ops.Chmod("a", 0o600))  # copied up, the same data
    table = Counter(drawer.rule_table())
    assert drawer.waiting == ["a"] and not drawer.stale
    assert table["truncate"] > plain["truncate"] and table["open"] < opens
    assert drawer.inventory().descriptors == ["a"]
    assert choose(6, groups("file", drawer.inventory())) == "a"
    drawer.apply(ops.Truncate("a", 0))
    table = Counter(drawer.rule_table())
    assert drawer.stale == (1,) and not drawer.waiting
    assert table["read_fd"] > 10 * plain.get("read_fd", 1)
    assert drawer._handles("read_fd").count(1) > drawer._handles("read_fd").count(0)
    drawer.apply(ops.ReadFd(1))
    drawer.rule_table()
    assert not drawer.stale and not drawer.waiting and not drawer.lower_fds


def test_a_descriptor_is_read_after_its_file_was_copied_up_and_changed() -> None:
    """The story the seeded fault stale-descriptor needs (issue 15): open a lower file
    read-only, change its data (a copy-up), read the old descriptor. Drawn blind, one step
    at a time among twenty kinds, it came in 1 of 1,000 seeded cases and the fault was
    missed in 2,000 examples once other modules' constants changed the draws; now the
    drawer follows the story while it is under way (docs/generation.md)."""
    strategy = cases(None, 30, DEFAULT)
    told = 0
    for n in range(300):
        stack, program = ConjectureData(random=random.Random(n)).draw(strategy)
        told += "read-fd-after-copy-up" in _reached(stack, program)
    assert told >= 12, told  # 20 here; 0 before
