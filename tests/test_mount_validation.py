"""Mount validation (reference/mounting.py, conformance/lockstep/mount_validation.py): the
reference's rules give what this kernel gave for every case, and the kernel, tried for
real in its executor's namespace, still gives it."""

from __future__ import annotations

import pytest

from adapters.drivers.kernel import KernelDriver, redirect_always_follow
from conformance.lockstep.mount_validation import CASES, MountCase
from reference.mounting import MountSpec, mount_result


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_reference_gives_what_the_kernel_gave(case: MountCase) -> None:
    assert mount_result(case.spec) == case.observed


def test_redirect_always_follow_decides_userxattr_with_redirect_off() -> None:
    spec = MountSpec(
        ("l0", "l1"),
        "u",
        "w",
        options=("userxattr", "redirect_dir=off"),
        dirs=("l0", "l1", "u", "w"),
    )
    assert mount_result(spec, redirect_always_follow=True) == "EINVAL"
    assert mount_result(spec, redirect_always_follow=False) == "ok"


def test_option_string_forms() -> None:
    spec = MountSpec(("a", "b"), "u", "w", data=("d",), options=("userxattr",))
    assert spec.option_string("/r") == (
        "lowerdir=/r/a:/r/b::/r/d,upperdir=/r/u,workdir=/r/w,userxattr"
    )
    new = MountSpec(("a",), data=("d",), new_api=True, datadir_first=True)
    assert new.option_string("/r") == "datadir+=/r/d,lowerdir+=/r/a"


@pytest.fixture(scope="module")
def kernel():
    reason = KernelDriver.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with KernelDriver() as driver:
        yield driver


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kernel_gives_what_the_reference_says(kernel, case: MountCase) -> None:
    expected = mount_result(case.spec, redirect_always_follow())
    assert kernel.try_mount(case.spec) == expected, case.source
