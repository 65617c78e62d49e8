"""The lowers are compared byte for byte after every step, through a digest: the executor
sends the decoded lowers once per mount and then only when their digest changes
(adapters/sandbox/layerdisk.py ``layer_digest``, adapters/sandbox/executor.py ``do_observe``). A
lower
changed in anything the decoder reads (metadata only, one xattr, same-size data, a
marker) is still a divergence naming the layer."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import pytest
from hypothesis import Phase, settings

from adapters.drivers.kernel import KernelDriver
from adapters.sandbox.layerdisk import OPAQUE, layer_digest, write_layer
from conformance.features import Feature
from conformance.lockstep.machine import Diverged, run_machine
from reference import ops
from reference.layer import DirSpec, FileSpec, LayerSpec, StackSpec, SymlinkSpec, build
from reference.options import Options

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (trusted.* xattrs, mknod)")

LAYER = LayerSpec(
    (
        ("a", FileSpec(b"abc", 0o644, xattrs=(("user.k", b"v"),))),
        ("d", DirSpec()),
        ("d/f", FileSpec(b"x")),
        ("s", SymlinkSpec("a")),
    )
)

#: One change each, to a part of the layer the decoder reads.
CHANGES: dict[str, Callable[[str], None]] = {
    "mode": lambda root: os.chmod(f"{root}/a", 0o600),
    "owner": lambda root: os.lchown(f"{root}/d/f", 1000, -1),
    "user-xattr": lambda root: os.setxattr(f"{root}/d/f", "user.k", b"w"),
    "xattr-value": lambda root: os.setxattr(f"{root}/a", "user.k", b"w"),
    "opaque-marker": lambda root: os.setxattr(f"{root}/d", OPAQUE, b"y"),
    "same-size-data": lambda root: _rewrite(f"{root}/a", b"abd"),
    "symlink-target": lambda root: (os.unlink(f"{root}/s"), os.symlink("d", f"{root}/s")),
    "hardlink": lambda root: (os.unlink(f"{root}/d/f"), os.link(f"{root}/a", f"{root}/d/f")),
    "whiteout": lambda root: (
        os.unlink(f"{root}/d/f"),
        os.mknod(f"{root}/d/f", stat.S_IFCHR, os.makedev(0, 0)),
    ),
    "new-name": lambda root: os.mkdir(f"{root}/d/e"),
}


def _rewrite(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


@needs_root
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_changes_the_digest(tmp_path, change: str) -> None:
    root = str(tmp_path / "layer")
    write_layer(build(LAYER), root)
    before = layer_digest(root)
    assert layer_digest(root) == before  # reading (atime) changes nothing
    CHANGES[change](root)
    assert layer_digest(root) != before


def _kernel() -> None:
    problem = KernelDriver.unavailable_reason()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"kernel driver unavailable in CI: {problem}")
        pytest.skip(problem)


def _lower(driver: KernelDriver) -> str:
    """The top lower directory, seen through the executor's root (its mount namespace)."""
    return f"/proc/{driver.executor_pid}/root/tmp/unionspec/l0"


@pytest.mark.parametrize("change", ["mode", "user-xattr", "same-size-data", "opaque-marker"])
def test_the_kept_lowers_are_used_only_while_unchanged(change: str) -> None:
    _kernel()
    driver = KernelDriver()
    try:
        driver.mount(StackSpec((LAYER,)), Options())
        driver.view()
        _, first = driver.images()
        driver.run_and_observe(ops.Stat("a", False))
        driver.view()
        assert driver.images()[1] is first  # unchanged: the lowers kept at the first look
        CHANGES[change](_lower(driver))
        driver.run_and_observe(ops.Stat("a", False))
        driver.view()
        again = driver.images()[1]
        assert again is not first
        assert again != first  # decoded again, with the change
    finally:
        driver.close()


def _first(root: str, wanted: Callable[[os.stat_result], bool]) -> str | None:
    for name in sorted(os.listdir(root)):
        st = os.lstat(f"{root}/{name}")
        if wanted(st):
            return f"{root}/{name}"
    return None


def _flip_first_byte(path: str) -> None:
    with open(path, "rb") as f:
        first = f.read(1)
    _rewrite(path, bytes([first[0] ^ 1]))


#: Changes the machine test makes to whatever the drawn top lower holds.
MACHINE_CHANGES: dict[str, tuple[Callable[[os.stat_result], bool], Callable[[str], None]]] = {
    "mode": (lambda st: not stat.S_ISLNK(st.st_mode), lambda p: os.chmod(p, 0o641)),
    "user-xattr": (
        lambda st: stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode),
        lambda p: os.setxattr(p, "user.planted", b"1"),
    ),
    "same-size-data": (
        lambda st: stat.S_ISREG(st.st_mode) and st.st_size > 0,
        _flip_first_byte,
    ),
    "opaque-marker": (lambda st: stat.S_ISDIR(st.st_mode), lambda p: os.setxattr(p, OPAQUE, b"y")),
}


class ChangesTopLower(KernelDriver):
    """The kernel driver, and its top lower changed behind its back (through the
    executor's root) before the second step of every example: after the first look kept
    the decoded lowers."""

    change = "mode"

    def mount(self, stack: StackSpec, options: Options) -> None:
        self.steps = 0
        super().mount(stack, options)

    def run_and_observe(self, op: ops.Op):  # type: ignore[override]
        self.steps += 1
        if self.steps == 2:
            wanted, change = MACHINE_CHANGES[self.change]
            path = _first(_lower(self), wanted)
            if path is not None:
                change(path)
        return super().run_and_observe(op)


#: Operations whose outcome cannot show the change (a Read of the changed file would
#: diverge first, as its outcome, before the comparison of the lowers is reached): what is
#: tested here is that comparison, the one the digest and the inotify watch serve.
BLIND = Feature("lowers-only", "mkdir and rmdir", frozenset({"mkdir", "rmdir"}), None)


@pytest.mark.parametrize("change", sorted(MACHINE_CHANGES))
def test_the_machine_reports_a_lower_changed_after_the_first_look(change: str) -> None:
    _kernel()
    driver = ChangesTopLower()
    driver.change = change
    run = settings(
        max_examples=50,
        stateful_step_count=5,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # found is enough here; no shrinking
    )
    try:
        with pytest.raises(Diverged, match=r"lower0:"):
            run_machine(driver, Options(), run, BLIND)
    finally:
        driver.close()
