"""The kernel matrix without booting: kernel specs, the image layouts, the initramfs, the
VM channel's framing, diffs between kernels, and bad --kernel-image input. (A boot is in
tests/test_vm.py, which needs qemu and a fetched kernel.)"""

from __future__ import annotations

import json
import lzma
import stat
from pathlib import Path

import pytest

from adapters import registry
from adapters.vm import channel
from adapters.vm.image import ImageError, _Cpio, find, modules_in_order
from conformance.__main__ import main
from conformance.certify import kernels
from conformance.reports.diff import changes

OFFERED = {
    "linux-image-6.1.0-47-amd64": "6.1.170-3",
    "linux-image-6.1.0-57-amd64": "6.1.192-3",
    "linux-image-6.12.9+deb12-amd64": "6.12.9-1~deb12u1",
    "linux-image-6.12.118+deb12-amd64": "6.12.118-1~deb12u1",
    "linux-image-7.2.13+deb14-amd64": "7.2.13-1",
}


def test_a_spec_picks_the_newest_package_of_its_series() -> None:
    apt = kernels.PrivateApt(Path("/nonexistent"))
    assert kernels.resolve("6.1", apt, OFFERED) == "linux-image-6.1.0-57-amd64"
    assert kernels.resolve("6.12", apt, OFFERED) == "linux-image-6.12.118+deb12-amd64"
    assert kernels.resolve("newest", apt, OFFERED) == "linux-image-7.2.13+deb14-amd64"
    with pytest.raises(kernels.FetchError, match=r"6\.3"):
        kernels.resolve("6.3", apt, OFFERED)
    with pytest.raises(kernels.FetchError, match="not a kernel spec"):
        kernels.resolve("bogus", apt, OFFERED)
    only_bookworm = kernels.PrivateApt(Path("/nonexistent"), kernels.SUITES[:1])
    with pytest.raises(kernels.FetchError, match="no Debian kernel image package matches"):
        kernels.resolve("trixie", only_bookworm, OFFERED)


def test_a_kernel_that_cannot_be_fetched_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A setup error, as conformance.__main__ documents it: 2 (it was 1, which means a
    divergence), with one line."""

    def unreachable(specs, cache=None, suites=None):
        raise kernels.FetchError("apt-get update: could not resolve deb.debian.org")

    assert main(["kernels", "fetch", "bogus"]) == 2
    assert "not a kernel spec" in capsys.readouterr().err
    monkeypatch.setattr(kernels, "fetch", unreachable)
    assert main(["kernels", "fetch", "6.1"]) == 2
    err = capsys.readouterr().err
    assert err == "unionspec kernels: apt-get update: could not resolve deb.debian.org\n"


def test_stock_image_packages_only() -> None:
    assert kernels.IMAGE.match("linux-image-6.1.0-57-amd64")
    assert not kernels.IMAGE.match("linux-image-6.12-amd64")  # a metapackage
    assert not kernels.IMAGE.match("linux-image-amd64")


def test_the_private_apt_never_names_the_hosts_sources(tmp_path: Path) -> None:
    apt = kernels.PrivateApt(tmp_path / "apt")
    apt.prepare()
    options = " ".join(apt.options())
    assert "/etc/apt" not in options and str(tmp_path) in options
    assert "bookworm-backports" in (tmp_path / "apt" / "sources.list").read_text()


def _bzimage(path: Path, release: str) -> None:
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x300 - 0x200).to_bytes(2, "little")
    text = f"{release} (debian-kernel@lists.debian.org) #1 SMP".encode()
    head[0x300 : 0x300 + len(text)] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(head))


def _module(path: Path, depends: str, compress: bool = False) -> None:
    data = b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(data) if compress else data)


@pytest.mark.parametrize("layout", ["debian12", "debian14"])
def test_an_unpacked_package_gives_its_image_release_and_modules(
    tmp_path: Path, layout: str
) -> None:
    release = "6.1.0-57-amd64" if layout == "debian12" else "7.2.13+deb14-amd64"
    if layout == "debian12":
        _bzimage(tmp_path / "boot" / f"vmlinuz-{release}", release)
        modules = tmp_path / "lib/modules" / release
    else:
        modules = tmp_path / "usr/lib/modules" / release
        _bzimage(modules / "vmlinuz", release)
    _module(modules / "kernel/fs/overlayfs/overlay.ko.xz", "", compress=True)
    _module(modules / "kernel/fs/9p/9p.ko", "9pnet,netfs")
    _module(modules / "kernel/net/9p/9pnet.ko", "")
    _module(modules / "kernel/fs/netfs/netfs.ko", "")
    image = find(tmp_path)
    assert image.release == release and image.label == f"kernel@{release}"
    assert image.modules == modules.resolve()
    order = [name for name, _ in modules_in_order(image.modules, ("9p", "overlay"))]
    assert order == ["9pnet", "netfs", "9p", "overlay"]  # dependencies first
    data = dict(modules_in_order(image.modules, ("overlay",)))["overlay"]
    assert b"license=GPL" in data  # decompressed for busybox insmod


def test_not_a_kernel_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"not a kernel" * 100)
    with pytest.raises(ImageError, match="bzImage"):
        find(tmp_path / "vmlinuz")
    for path in (tmp_path / "vmlinuz", tmp_path / "missing", tmp_path):
        assert main(["certify", "--kernel-image", str(path), "--feature", "xattrs"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --kernel-image") and err.count("\n") == 1
    assert main(["certify", "--kernel-modules", str(tmp_path)]) == 2
    assert "needs a --kernel-image" in capsys.readouterr().err
    _bzimage(tmp_path / "boot" / "vmlinuz-6.1.0-57-amd64", "6.1.0-57-amd64")
    assert main(["certify", "--kernel-image", str(tmp_path), "--kernel-image",
                 str(tmp_path / "boot" / "vmlinuz-6.1.0-57-amd64"), "--feature", "xattrs"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --kernel-image: the same kernel release is given twice\n"


def test_the_initramfs_is_a_newc_archive_with_a_console() -> None:
    archive = _Cpio()
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("init", stat.S_IFREG | 0o755, b"#!/bin/busybox sh\n")
    data = archive.finish()
    assert data.startswith(b"070701") and b"TRAILER!!!" in data and len(data) % 4 == 0
    console = data[: data.index(b"dev/console")]
    assert console[6 + 8 * 9 : 6 + 8 * 11] == b"0000000500000001"  # rdev 5:1


def test_the_channel_cuts_any_stream_into_its_frames() -> None:
    frames = [(0, channel.HELLO, b"6.1.0"), (3, channel.DATA, b"x" * 70000)]
    frames.append((3, channel.CLOSE, b"0"))
    stream = b"".join(channel.frame(*f) for f in frames)
    reader = channel.Reader()
    got = []
    for start in range(0, len(stream), 7):
        got += reader.feed(stream[start : start + 7])
    assert got == frames and not reader.buffer


def _report(driver: str, verdicts: dict[str, str]) -> dict:
    return {
        "status": "complete",
        "cells": [
            {"id": f"{driver}/{cell}", "driver": driver, "verdict": verdict}
            for cell, verdict in verdicts.items()
        ],
    }


def test_two_kernels_reports_are_diffed_cell_by_cell(tmp_path: Path, capsys) -> None:
    old = _report("kernel@6.1.0-57-amd64", {"xattrs/ro": "conforms", "copy-up/ro": "conforms"})
    new = _report(
        "kernel@6.12.118+deb12-amd64", {"xattrs/ro": "diverges", "copy-up/ro": "conforms"}
    )
    lines, regressed = changes(old, new)
    assert regressed
    assert "REGRESSION: */xattrs/ro: conforms -> diverges" in lines
    assert not any("copy-up" in line for line in lines)
    # one report holding both kernels, compared with itself driver against driver
    both = {"status": "complete", "cells": old["cells"] + new["cells"], "schema": None}
    lines, regressed = changes(both, both, old["cells"][0]["driver"], new["cells"][0]["driver"])
    assert regressed and "REGRESSION: */xattrs/ro: conforms -> diverges" in lines
    from conformance.reports.report import SCHEMA

    both["schema"] = SCHEMA
    path = tmp_path / "both.json"
    path.write_text(json.dumps(both))
    argv = ["diff", str(path), str(path), "--old-driver", "kernel@6.1.0-57-amd64"]
    assert main([*argv, "--new-driver", "kernel@6.12.118+deb12-amd64"]) == 1
    assert main([*argv, "--new-driver", "kernel@9.9"]) == 2
    assert "no cell of driver" in capsys.readouterr().err


def test_a_diff_of_two_kernels_names_the_kernel_features_one_has() -> None:
    """From the report's environment (what each VM observed, adapters.vm.probes)."""

    def features(**observed: bool) -> dict:
        return {name.replace("_", "-"): {"observed": has} for name, has in observed.items()}

    old = _report("kernel@6.1.0-57-amd64", {"xattrs/ro": "conforms"})
    new = _report("kernel@6.12.118+deb12-amd64", {"xattrs/ro": "conforms"})
    old["environment"] = {"drivers": {"kernel@6.1.0-57-amd64": {"kernel_image": {
        "features": features(tmpfs_user_xattrs=False, lowerdir=False)}}}}
    new["environment"] = {"drivers": {"kernel@6.12.118+deb12-amd64": {"kernel_image": {
        "features": features(tmpfs_user_xattrs=True, lowerdir=False)}}}}
    lines, regressed = changes(old, new)
    assert not regressed
    assert "  kernel feature tmpfs-user-xattrs: absent -> present (appeared in 6.6: " \
        "2daf18a7884d (tmpfs,xattr: enable limited user extended attributes))" in lines
    assert not any("lowerdir" in line for line in lines)  # the same on both


def test_a_kernel_image_is_a_driver_of_the_settings_that_name_it(tmp_path: Path) -> None:
    """``kernel@<release>`` is known, made and checked only under the settings that carry its
    image: nothing is registered in the module (the same path reaches certify's and
    pytest-xdist's workers as --driver-cmd does)."""
    from adapters.settings import DriverSettings
    from adapters.vm.driver import VmKernelDriver
    from adapters.vm.image import find_all

    release = "6.1.0-57-amd64"
    _bzimage(tmp_path / "boot" / f"vmlinuz-{release}", release)
    given = DriverSettings(timeout=5.0, kernel_images=find_all([str(tmp_path)]))
    name = f"kernel@{release}"
    assert name in registry.names(given) and name not in registry.names()
    registry.check([name], given)
    with pytest.raises(registry.UnknownDriver, match=name):
        registry.check([name])
    with pytest.raises(registry.UnknownDriver, match=name):
        registry.factory(name)
    made = registry.factory(name, given)
    assert issubclass(made, VmKernelDriver) and made.image.release == release
    assert made.settings == given and made is registry.factory(name, given)
    assert registry.installed_version(name, given) == release
    with pytest.raises(ImageError, match="given twice"):
        find_all([str(tmp_path), str(tmp_path / "boot" / f"vmlinuz-{release}")])


def test_the_plugin_replaces_kernel_by_each_kernel_image(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The kernels travel in the run's settings: pytester's in-process runs leave this
    process's registry as it was (a later certify without --driver would otherwise start a
    VM on a fake image)."""
    before = registry.names()
    for release in ("6.1.0-57-amd64", "7.2.13+deb14-amd64"):
        _bzimage(tmp_path / release / "boot" / f"vmlinuz-{release}", release)
    pytester.makepyfile("def test_uses_driver(driver):\n    pass\n")
    args = ["--co", "-q", "--driver=reference", "--driver=kernel"]
    images = [f"--kernel-image={tmp_path / r}" for r in ("6.1.0-57-amd64", "7.2.13+deb14-amd64")]
    result = pytester.runpytest(*args, *images)
    result.stdout.fnmatch_lines(
        [
            "*test_uses_driver?reference?",
            "*test_uses_driver?kernel@6.1.0-57-amd64?",
            "*test_uses_driver?kernel@7.2.13+deb14-amd64?",
        ]
    )
    assert "test_uses_driver[kernel]" not in result.stdout.str()
    result = pytester.runpytest(*args, f"--kernel-image={tmp_path / 'missing'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kernel-image: *missing*"])
    assert registry.names() == before
