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

from adapters.real_engines import DockerEngine, PodmanEngine
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
