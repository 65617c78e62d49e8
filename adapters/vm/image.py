"""A kernel to boot (its image, release and modules) and the VM's initramfs.

``--kernel-image PATH`` is a ``vmlinuz`` file or an unpacked Debian kernel package
(:mod:`conformance.certify.kernels`): the image is ``boot/vmlinuz-<release>`` (Debian 12, 13) or
``usr/lib/modules/<release>/vmlinuz`` (Debian 14); the modules are
``[usr/]lib/modules/<release>`` in the same tree, or ``--kernel-modules DIR``.

The initramfs is made here, in Python (cpio ``newc``): the host's ``busybox`` (static), an
init script and the modules the VM needs, decompressed, in dependency order (read from each
module's ``depends=`` modinfo: the unpacked packages have no ``modules.dep``, which depmod
makes at install time). A module that is not there as a file is taken to be built in.
"""

from __future__ import annotations

import lzma
import os
import re
import shlex
import shutil
import stat
import zlib
from pathlib import Path

import attrs

from adapters.base import AdapterError

#: What the VM loads: the virtio transport and console (the channel), 9p (the host's
#: root), virtio_blk, crc32c and ext4 (the layers' disk: tmpfs has user xattrs only since 6.6),
#: overlay and fuse (the drivers under test).
WANTED = (
    "virtio_pci", "virtio_console", "9pnet_virtio", "9p", "virtio_blk", "crc32c_generic", "ext4",
    "overlay", "fuse",
)
BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")


class ImageError(AdapterError, ValueError):
    """The path is not a kernel we can boot (one line for the user)."""


@attrs.frozen
class KernelImage:
    vmlinuz: Path
    release: str
    modules: Path | None

    @property
    def label(self) -> str:
        return f"kernel@{self.release}"


def _release_of(vmlinuz: Path) -> str:
    """The release a bzImage says it is: its header's kernel_version string (boot
    protocol, Documentation/arch/x86/boot.rst: at 0x200 + the u16 at 0x20e)."""
    with open(vmlinuz, "rb") as f:
        head = f.read(0x10000)
    if head[0x202:0x206] != b"HdrS":
        raise ImageError(f"{vmlinuz} is not an x86 bzImage")
    offset = int.from_bytes(head[0x20E:0x210], "little") + 0x200
    return head[offset : offset + 256].split(b" ", 1)[0].split(b"\0", 1)[0].decode()


def find(
    path: str | os.PathLike[str], modules: str | os.PathLike[str] | None = None
) -> KernelImage:
    """The kernel at ``path`` (module doc)."""
    root = Path(path)
    if root.is_dir():
        images = sorted(root.glob("boot/vmlinuz-*")) + sorted(
            root.glob("usr/lib/modules/*/vmlinuz")
        )
        images += sorted(root.glob("lib/modules/*/vmlinuz"))
        if not images:
            raise ImageError(f"{root}: no boot/vmlinuz-* nor [usr/]lib/modules/*/vmlinuz in it")
        vmlinuz = images[0]
    elif root.is_file():
        vmlinuz, root = root, root.parent.parent
    else:
        raise ImageError(f"{path}: no such kernel image or directory")
    release = _release_of(vmlinuz)
    if modules is None:
        for candidate in (root / "lib/modules" / release, root / "usr/lib/modules" / release):
            if (candidate / "kernel").is_dir():
                modules = candidate
                break
    elif not Path(modules).is_dir():
        raise ImageError(f"{modules}: no such modules directory")
    return KernelImage(vmlinuz.resolve(), release, Path(modules).resolve() if modules else None)


def find_all(
    paths: list[str], modules: str | os.PathLike[str] | None = None
) -> tuple[KernelImage, ...]:
    """The kernels at ``paths`` (``--kernel-image``), ``modules`` those of the one kernel;
    an ImageError (one line) for a path that is no kernel or a release given twice."""
    found = tuple(find(path, modules) for path in paths)
    if len({image.release for image in found}) != len(found):
        raise ImageError("the same kernel release is given twice")
    return found


def _load(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        raise ImageError(f"{path}: zstd-compressed modules are not supported")
    if path.name.endswith(".gz"):
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    return data


def _depends(module: bytes) -> list[str]:
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", module)
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def modules_in_order(
    modules: Path | None, wanted: tuple[str, ...] = WANTED
) -> list[tuple[str, bytes]]:
    """The wanted modules and what they depend on, dependencies first: (name, .ko bytes)."""
    if modules is None:
        return []
    files: dict[str, Path] = {}
    for ko in (modules / "kernel").rglob("*.ko*"):
        files[ko.name.split(".ko", 1)[0].replace("-", "_")] = ko
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name not in files:  # not a file: built in
            return
        seen.add(name)
        data = _load(files[name])
        for dep in _depends(data):
            visit(dep)
        order.append((name, data))

    for name in wanted:
        visit(name)
    return order


INIT = """#!/bin/busybox sh
# unionspec VM init: load the modules, mount the host's root (read-only, 9p), run the agent.
B=/bin/busybox
$B mkdir -p /proc /sys /dev /host
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules/order); do
  $B insmod /modules/$m.ko || echo "unionspec-vm: insmod $m failed"
done
if $B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host; then
  $B mount -t proc proc /host/proc
  $B mount -t sysfs sys /host/sys
  $B mount -t devtmpfs dev /host/dev
  # the host's /tmp stays as it is (read-only): the project and its .venv may live there
  # (CI clones under /tmp); each executor mounts its own scratch over /tmp
  $B mount -t tmpfs run /host/run
  $B mkdir -p /host/run/tmp
  export TMPDIR=/run/tmp
  # the layers' disk (seen: on 6.1 tmpfs refuses user.* xattrs, ENOTSUP; ext2 has them)
  $B mkdir -p /host/run/unionspec-scratch
  $B mke2fs -q /dev/vda >/dev/null && $B mount -t ext4 /dev/vda /host/run/unionspec-scratch \
    || echo "unionspec-vm: no scratch disk"
  export UNIONSPEC_SCRATCH=/run/unionspec-scratch
  echo "unionspec-vm: up: $($B uname -r) at $($B cut -d" " -f1 /proc/uptime) s"
  $B chroot /host /bin/sh -c {command}
  echo "unionspec-vm: agent exited: $?"
else
  echo "unionspec-vm: cannot mount the host's root over 9p"
fi
$B poweroff -f
"""


class _Cpio:
    """A cpio archive in the ``newc`` format (the kernel's initramfs format,
    Documentation/driver-api/early-userspace/buffer-format.rst)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.parts += [header, encoded, b"\0" * (-(len(header) + len(encoded)) % 4)]
        self.parts += [data, b"\0" * (-len(data) % 4)]

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def initramfs(image: KernelImage, python: str, project: str) -> bytes:
    """The VM's initramfs: busybox, the init that runs ``python -m adapters.vm.guest`` in
    ``project`` (chroot of the host's root), the modules."""
    busybox = next((p for p in BUSYBOX if os.path.exists(p)), None) or shutil.which("busybox")
    if busybox is None:
        raise ImageError("the VM needs a static busybox (apt-get install busybox-static)")
    command = shlex.quote(
        f"cd {shlex.quote(project)} && exec {shlex.quote(python)} -m adapters.vm.guest"
    )
    archive = _Cpio()
    for directory in ("bin", "dev", "modules"):
        archive.add(directory, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, Path(busybox).read_bytes())
    archive.add("init", stat.S_IFREG | 0o755, INIT.format(command=command).encode())
    modules = modules_in_order(image.modules)
    for name, data in modules:
        archive.add(f"modules/{name}.ko", stat.S_IFREG | 0o644, data)
    order = "".join(f"{name}\n" for name, _ in modules)
    archive.add("modules/order", stat.S_IFREG | 0o644, order.encode())
    return archive.finish()
