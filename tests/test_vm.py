"""The kernel driver in a VM on another kernel (adapters.vm): a smoke test that boots
Debian 12's 6.1 kernel, mounts overlay there and runs one scenario, then checks that
nothing is left behind. Slow under software emulation (a boot is a minute or more on a
loaded machine), so it is kept to one boot.

The kernel comes from the cache (``unionspec kernels fetch 6.1``); when it is not there it
is fetched (Debian 12's suites only) if ``$CI`` or ``$UNIONSPEC_FETCH_KERNELS`` is set,
else the test is skipped with the reason (in CI a skip fails, so it cannot rot).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from adapters import registry
from conformance import kernels
from conformance.scenarios import SCENARIOS, run_scenario
from reference.options import MATRIX

BOOKWORM = ("bookworm", "bookworm-security")


def _kernel_61() -> Path:
    found = sorted(kernels.kernels_dir().glob(f"6.1.*/{kernels.UNPACKED}"))
    if found:
        return found[-1].parent
    if not (os.environ.get("CI") or os.environ.get("UNIONSPEC_FETCH_KERNELS")):
        pytest.skip("no 6.1 kernel in the cache: run `unionspec kernels fetch 6.1`")
    if shutil.which("apt-get") is None:
        pytest.fail("fetching a Debian kernel needs apt-get")
    return kernels.fetch(["6.1"], suites=BOOKWORM)[0]


def _qemu_pids() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("qemu-system"):
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu is not installed")
def test_a_vm_on_debian_12s_kernel_mounts_overlay_and_runs_a_scenario() -> None:
    from adapters.vm import machine

    name = registry.add_kernel_image(str(_kernel_61()))
    before = _qemu_pids()
    driver = registry.factory(name)()
    try:
        vm = driver.vm
        assert vm.release.startswith("6.1.") and name == f"kernel@{vm.release}"
        assert vm.pid in _qemu_pids() - before
        scenario = next(s for s in SCENARIOS if s.applies(MATRIX[0]))
        run_scenario(driver, scenario, MATRIX[0], None)  # raises on a divergence
    finally:
        driver.close()
        machine.close_all()
        registry.KERNEL_IMAGES.pop(name, None)
    assert vm.proc is not None and vm.proc.poll() is not None  # qemu reaped
    assert not vm.dir.exists()
    assert _qemu_pids() <= before
