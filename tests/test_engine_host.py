"""Host safety (issue 17, item 5): the real engines keep their state in the sandbox.

A container's whole life on docker and on podman (image, create, start, an operation,
stop, remove, engine closed), then the host's engine paths and its cgroup tree are what
they were before: dockerd runs its own containerd (never the host's), /run, /etc/docker
and /var/lib/containers seen by the engines are the sandbox's own, and the cgroups the
containers got are removed with the executor."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from adapters.engines.real import DockerEngine, PodmanEngine
from reference import ops
from reference.container import ContainerSpec
from reference.layer import FileSpec, LayerSpec, StackSpec
from tests.host import require

#: Where an engine left state on the host before (issue 17).
ENGINE_PATHS = ("/etc/docker", "/run/docker", "/run/runc", "/run/containerd",
                "/var/lib/containers", "/run/containers", "/var/lib/docker")
CGROUPS = Path("/sys/fs/cgroup")


def _tree(root: str) -> set[tuple[str, int]]:
    """Every path under ``root`` with its mtime (nothing when it does not exist)."""
    found: set[tuple[str, int]] = set()
    if not os.path.lexists(root):
        return found
    found.add((root, os.lstat(root).st_mtime_ns))
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            try:
                found.add((path, os.lstat(path).st_mtime_ns))
            except OSError:
                continue
    return found


def _cgroups() -> set[str]:
    """Every cgroup directory (all hierarchies)."""
    return {parent for parent, _, _ in os.walk(CGROUPS)}


def _of_another_run(path: str, ours: int) -> bool:
    """Under the cgroup parent of another live engine executor (a run beside this one)."""
    for part in path.split("/"):
        match = re.fullmatch(r"unionspec-(\d+)", part)
        if match and int(match[1]) != ours and os.path.exists(f"/proc/{match[1]}"):
            return True
    return False


@pytest.mark.parametrize("engine_class", [DockerEngine, PodmanEngine], ids=["docker", "podman"])
def test_an_engine_leaves_no_state_and_no_cgroup_on_the_host(engine_class) -> None:
    require(engine_class, engine_class.engine)
    paths_before = {path: _tree(path) for path in ENGINE_PATHS}
    cgroups_before = _cgroups()
    engine = engine_class()
    ours = engine.executor_pid
    try:
        engine.start_image(StackSpec((LayerSpec((("f", FileSpec(b"x")),)),)))
        engine.create("a", ContainerSpec())
        engine.start("a")
        engine.run("a", ops.Read(path="f"))
        engine.stop("a")
        engine.remove("a")
    finally:
        engine.close()
    for path in ENGINE_PATHS:
        assert _tree(path) == paths_before[path], path
    assert {c for c in _cgroups() - cgroups_before if not _of_another_run(c, ours)} == set()


def test_the_cgroups_of_a_killed_engine_executor_go_at_the_next_start() -> None:
    """A SIGKILLed engine executor cannot remove its cgroup parent; the next engine start
    removes every ``unionspec-<PID>`` cgroup whose PID is gone, and no other."""
    from adapters.sandbox.engine_executor import remove_stale_cgroups

    if not os.access(CGROUPS, os.W_OK):
        pytest.skip("the cgroup tree is not writable here (not root)")
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    stale, live = CGROUPS / f"unionspec-{gone}", CGROUPS / f"unionspec-{os.getpid()}"
    try:
        (stale / "child").mkdir(parents=True)
        live.mkdir()
        remove_stale_cgroups()
        assert not stale.exists()
        assert live.exists()
    finally:
        for path in (stale / "child", stale, live):
            if path.exists():
                path.rmdir()


def test_removing_cgroups_refuses_a_name_not_ours(tmp_path, monkeypatch) -> None:
    """remove_cgroups walks a cgroup parent and rmdirs every empty cgroup under it: a name
    that is not ``unionspec-<PID>`` (an empty one is the cgroup root itself) is refused and
    nothing is removed."""
    from adapters.sandbox import engine_executor as _engine_executor

    root = tmp_path / "cgroup"
    for path in ("host/service", "unified", "cpu/host", "unionspec-x"):
        (root / path).mkdir(parents=True)
    monkeypatch.setattr(_engine_executor, "CGROUP_ROOT", str(root))
    before = {parent for parent, _, _ in os.walk(root)}
    for name in ("", ".", "/", "host", "unionspec-x", "unionspec-1/..", "unionspec-1/../host"):
        with pytest.raises(ValueError, match="not a unionspec cgroup parent"):
            _engine_executor.remove_cgroups(name)
    assert {parent for parent, _, _ in os.walk(root)} == before


def test_an_engine_that_failed_to_start_removes_only_its_own_cgroups(monkeypatch) -> None:
    """When the engine's start fails before the daemon is up, the executor's shutdown (run
    by the executor's ``close`` and again by run_executor) removes its own cgroup parent
    only, never the cgroup root (a failed start used to leave the parent empty)."""
    from adapters.sandbox import engine_executor as _engine_executor

    def broken() -> None:
        raise OSError("no overlay here")

    removed: list[str] = []
    monkeypatch.setattr(_engine_executor, "private_host_paths", broken)
    monkeypatch.setattr(_engine_executor, "remove_cgroups", removed.append)
    monkeypatch.setattr(_engine_executor.EngineExecutor, "cli", lambda *a, **k: 1 / 0)
    executor = _engine_executor.EngineExecutor(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(OSError, match="no overlay"):
            executor.do_engine("docker")
        executor.shutdown()
        executor.shutdown()
    finally:
        os.close(executor.own_ns)
        os.close(executor.real_root)
    assert set(removed) <= {f"unionspec-{os.getpid()}"}
