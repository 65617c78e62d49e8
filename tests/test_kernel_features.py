"""The kernel features that depend on the release (reference/kernel_features.py) and their
probes (adapters/vm/probes.py): the data, the probes on this host's kernel, and that a
disagreement between the two is named. The probes on older kernels run in the VM
(tests/test_vm.py on 6.1; docs/kernels.md for the matrix)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.sandbox.namespace import PROJECT_ROOT, _private_namespace
from reference import kernel_features
from reference.kernel_features import disagreements, expected, version_of


@pytest.mark.parametrize(
    ("release", "lowerdir_add", "tmpfs_xattrs"),
    [
        ("6.1.0-57-amd64", False, False),
        ("6.6.30-amd64", None, True),  # lowerdir+ went into some 6.6.y releases
        ("6.7.12-amd64", False, True),
        ("6.8.0", True, True),
        ("6.12.118+deb12-amd64", True, True),
        ("7.2.13+deb14-amd64", True, True),
    ],
)
def test_each_feature_is_expected_from_the_release_it_appeared_in(
    release: str, lowerdir_add: bool | None, tmpfs_xattrs: bool
) -> None:
    assert expected("lowerdir+", release) is lowerdir_add
    assert expected("tmpfs-user-xattrs", release) is tmpfs_xattrs


def test_a_release_string_gives_its_series_and_nonsense_is_refused() -> None:
    assert version_of("6.12.118+deb12-amd64") == (6, 12)
    with pytest.raises(ValueError, match="not a kernel release"):
        version_of("vmlinuz")


def test_an_observation_the_data_contradicts_is_named() -> None:
    """A seeded fault: a kernel that had lowerdir+ on 6.1, or lacked it on 6.12."""
    assert disagreements("6.1.0-57-amd64", {"lowerdir+": False}) == []
    [line] = disagreements("6.1.0-57-amd64", {"lowerdir+": True})
    assert "lowerdir+: present on 6.1.0-57-amd64" in line and "6.8" in line
    [line] = disagreements("6.12.1", {"tmpfs-user-xattrs": False})
    assert "absent" in line and "6.6" in line
    assert disagreements("6.6.30", {"lowerdir+": True}) == []  # backported: either
    [line] = disagreements("6.12.1", {"teleport": True})
    assert "not in reference/kernel_features.py" in line


def test_every_feature_has_a_probe_and_its_sources() -> None:
    from adapters.vm.probes import PROBES

    assert set(PROBES) == set(kernel_features.BY_NAME)
    for feature in kernel_features.FEATURES:
        assert feature.commit and feature.source and feature.since


def test_the_probes_on_this_hosts_kernel_agree_with_the_reference(tmp_path: Path) -> None:
    """Run in a private mount namespace (the probes mount), as the VM's agent runs them."""
    script = "import json, sys; from adapters.vm.probes import observe; " \
        "print(json.dumps(observe(sys.argv[1])))"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=60, preexec_fn=_private_namespace(os.getpid()), check=True,
    )  # fmt: skip
    observed = json.loads(done.stdout)
    assert set(observed) == set(kernel_features.BY_NAME), done.stderr
    assert disagreements(os.uname().release, observed) == []
    assert list(tmp_path.iterdir()) == []  # each probe's directory removed
