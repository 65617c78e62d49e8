"""Open descriptors (issue 18): the reference's rules, each outcome as this kernel (6.18)
gave it, and the same program run on the kernel by the executor (all option sets)."""

from __future__ import annotations

import os

import pytest

from adapters.drivers.kernel import KernelDriver
from reference import ops
from reference.layer import DirSpec, FifoSpec, FileSpec, HardlinkSpec, LayerSpec, StackSpec
from reference.options import MATRIX, Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay

STACK = StackSpec(
    (
        LayerSpec(
            (
                ("f", FileSpec(b"lower")),
                ("g", FileSpec(b"gee")),
                ("d", DirSpec()),
                ("p", FifoSpec()),
                ("h", FileSpec(b"hh")),
                ("h2", HardlinkSpec("h")),
            )
        ),
    )
)
#: (operation, its outcome on the kernel with index=off) in order.
PROGRAM: list[tuple[ops.Op, object]] = [
    (ops.Open("f"), Ok(0)),
    (ops.Open("g"), Ok(1)),
    (ops.Open("d"), Ok(2)),
    (ops.Open("p"), Ok(3)),  # O_PATH: no pipe end
    (ops.Open("h"), Ok(4)),
    (ops.Write("f", b"UP"), Ok(2)),
    (ops.ReadFd(0), Ok(b"UPwer")),  # opened before the copy-up, reads the copy
    (ops.Truncate("g", 1), Ok(None)),
    (ops.ReadFd(1), Ok(b"g")),
    (ops.ReadFd(2), Err("EISDIR")),
    (ops.ReadFd(3), Err("EBADF")),
    (ops.WriteFd(0, b"x"), Err("EBADF")),
    (ops.Open("f", "O_RDWR"), Ok(5)),
    (ops.WriteFd(5, b"ZZ", 3), Ok(2)),
    (ops.WriteFd(5, b"", 9), Ok(0)),  # nothing written: the file does not grow
    (ops.ReadFd(0), Ok(b"UPwZZ")),
    (ops.Unlink("f"), Ok(None)),
    (ops.ReadFd(5), Ok(b"UPwZZ")),  # an unlinked file stays readable
    (ops.WriteFd(5, b"after"), Ok(5)),
    (ops.ReadFd(0), Ok(b"after")),
    (ops.Open("d", "O_RDWR"), Err("EISDIR")),
    (ops.Write("h2", b"H2"), Ok(2)),
    (ops.ReadFd(4), Ok(b"hh")),  # index=off: the copy-up of h2 broke the link
    (ops.Close(1), Ok(None)),
    (ops.ReadFd(1), Err("EBADF")),
    (ops.Close(1), Err("EBADF")),
    (ops.Remount(), Ok(None)),
    (ops.ReadFd(0), Err("EBADF")),  # a remount closes them
    (ops.Open("g"), Ok(6)),  # numbers are not reused
    (ops.ReadFd(6), Ok(b"g")),
]


def test_the_reference_gives_the_kernels_outcomes() -> None:
    fs = Overlay(STACK, Options())
    for op, expected in PROGRAM:
        assert fs.step(op)[0] == expected, op


def test_an_open_for_writing_on_a_read_only_mount_is_erofs() -> None:
    fs = Overlay(StackSpec((STACK.lowers[0], LayerSpec())), Options(read_only=True))
    assert fs.step(ops.Open("f", "O_RDWR"))[0] == Err("EROFS")
    assert fs.step(ops.Open("p", "O_RDWR"))[0] == Ok(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel driver needs root")
@pytest.mark.parametrize("options", MATRIX, ids=[o.label for o in MATRIX])
def test_the_kernel_agrees_with_the_reference(options: Options) -> None:
    reason = KernelDriver.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # read-only: a second lower; data-only: an (empty) data-only layer below
    extra = options.read_only or options.data_only
    stack = StackSpec((*STACK.lowers, LayerSpec())) if extra else STACK
    driver = KernelDriver(timeout=30.0)
    try:
        driver.mount(stack, options)
        fs = Overlay(stack, options)
        for op, _ in PROGRAM:
            assert driver.run(op) == fs.step(op)[0], op
    finally:
        driver.close()
