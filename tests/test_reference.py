"""The reference engine's rules, one by one, on small hand-built stacks."""

from __future__ import annotations

import pytest

from reference import ops
from reference.layer import (
    DirSpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    LayerSpec,
    StackSpec,
    SymlinkSpec,
    WhiteoutSpec,
)
from reference.options import Options
from reference.outcome import Err, Ok
from reference.overlay import Overlay

RW = Options()
REDIRECT = Options(redirect_dir=True)
INDEX = Options(index=True)
METACOPY = Options(redirect_dir=True, metacopy=True)
RO = Options(read_only=True)


def mount(*layers: dict, options: Options = RW) -> Overlay:
    return Overlay(StackSpec(tuple(LayerSpec(tuple(d.items())) for d in layers)), options)


def only(fs: Overlay, op: ops.Op):
    """The single outcome the reference allows for ``op``."""
    allowed = fs.apply(op)
    assert len(allowed) == 1, allowed
    return next(iter(allowed))


def upper(fs: Overlay) -> dict:
    image, _ = fs.images()
    assert image is not None
    return image.entries


def test_topmost_layer_wins_and_directories_merge() -> None:
    fs = mount(
        {"a": FileSpec(b"top"), "d/x": FileSpec(b"x")},
        {"a": FileSpec(b"bottom"), "d/y": FileSpec(b"y"), "c": FileSpec(b"c")},
    )
    assert only(fs, ops.Read("a")) == Ok(b"top")
    assert only(fs, ops.Readdir("d")) == Ok(("x", "y"))
    assert only(fs, ops.Readdir("")) == Ok(("a", "c", "d"))


def test_a_file_hides_a_directory_below_it_and_the_reverse() -> None:
    fs = mount({"a": FileSpec(b"f"), "b": DirSpec()}, {"a/x": FileSpec(), "b": FileSpec(b"g")})
    assert only(fs, ops.Stat("a")).value.kind == "file"
    assert only(fs, ops.Readdir("b")) == Ok(())


def test_lower_whiteout_and_opaque_directory_hide_names_below() -> None:
    fs = mount(
        {"a": WhiteoutSpec(), "d": DirSpec(opaque=True), "d/x": FileSpec()},
        {"a": FileSpec(), "d/y": FileSpec()},
    )
    assert only(fs, ops.Stat("a")) == Err("ENOENT")
    assert only(fs, ops.Readdir("d")) == Ok(("x",))


def test_reading_does_not_copy_up() -> None:
    fs = mount({"a": FileSpec(b"data", xattrs=(("user.a", b"1"),))})
    only(fs, ops.Read("a"))
    only(fs, ops.GetXattr("a", "user.a"))
    assert upper(fs) == {}


def test_open_for_write_copies_the_whole_file_once() -> None:
    fs = mount({"d/a": FileSpec(b"0123456789", mode=0o640, uid=1000)})
    assert only(fs, ops.Write("d/a", b"AB", offset=2)) == Ok(2)
    entries = upper(fs)
    assert entries["d/a"].data == b"01AB456789"
    assert entries["d/a"].mode == 0o640 and entries["d/a"].uid == 1000
    assert entries["d"].kind == "dir" and not entries["d"].opaque
    first = fs.images()[0].inodes["d/a"]
    only(fs, ops.Write("d/a", b"Z"))
    assert fs.images()[0].inodes["d/a"] == first


def test_unlink_of_a_lower_name_leaves_a_whiteout_and_upper_only_names_leave_none() -> None:
    fs = mount({"a": FileSpec()})
    only(fs, ops.Unlink("a"))
    assert upper(fs)["a"].kind == "whiteout"
    only(fs, ops.Write("n", b"", flags=("O_CREAT",)))
    only(fs, ops.Unlink("n"))
    assert "n" not in upper(fs)
    assert only(fs, ops.Unlink("a")) == Err("ENOENT")


def test_rmdir_of_a_directory_holding_only_whiteouts_succeeds() -> None:
    fs = mount({"d/x": FileSpec()})
    assert fs.apply(ops.Rmdir("d")) == {Err("ENOTEMPTY"), Err("EEXIST")}
    only(fs, ops.Unlink("d/x"))
    assert only(fs, ops.Rmdir("d")) == Ok()
    assert upper(fs)["d"].kind == "whiteout" and "d/x" not in upper(fs)


def test_mkdir_over_a_whiteout_is_opaque_and_elsewhere_is_not() -> None:
    fs = mount({"d/x": FileSpec()})
    only(fs, ops.Unlink("d/x"))
    only(fs, ops.Rmdir("d"))
    only(fs, ops.Mkdir("d"))
    only(fs, ops.Mkdir("e"))
    assert upper(fs)["d"].opaque and not upper(fs)["e"].opaque
    assert only(fs, ops.Readdir("d")) == Ok(())


@pytest.mark.parametrize(("options", "expected"), [(RW, Err("EXDEV")), (REDIRECT, Ok())])
def test_renaming_a_lower_directory_needs_redirect_dir(options: Options, expected) -> None:
    fs = mount({"d/x": FileSpec(b"x")}, options=options)
    assert only(fs, ops.Rename("d", "e")) == expected
    if expected == Ok():
        assert upper(fs)["e"].redirect == "d"
        assert upper(fs)["d"].kind == "whiteout"
        assert only(fs, ops.Read("e/x")) == Ok(b"x")


def test_cross_directory_redirect_is_absolute() -> None:
    fs = mount({"d/x": FileSpec(b"x"), "p": DirSpec()}, options=REDIRECT)
    only(fs, ops.Rename("d", "p/e"))
    assert upper(fs)["p/e"].redirect == "/d"
    only(fs, ops.Remount())
    assert only(fs, ops.Read("p/e/x")) == Ok(b"x")


def test_pure_upper_directories_always_rename() -> None:
    fs = mount({"x": FileSpec()})
    only(fs, ops.Mkdir("n"))
    assert only(fs, ops.Rename("n", "m")) == Ok()


@pytest.mark.parametrize(("options", "shared"), [(RW, False), (INDEX, True)])
def test_copy_up_breaks_lower_hardlinks_unless_index(options: Options, shared: bool) -> None:
    fs = mount({"a": FileSpec(b"old"), "b": HardlinkSpec("a")}, options=options)
    only(fs, ops.Write("a", b"new", flags=("O_TRUNC",)))
    view = fs.view()
    assert (view.entries["b"].data == b"new") is shared
    assert (view.inodes["a"] == view.inodes["b"]) is shared
    assert view.entries["a"].nlink == (2 if shared else 1)
    assert view.entries["b"].nlink == 2


def test_metacopy_copies_metadata_on_chmod_and_data_on_write() -> None:
    fs = mount({"a": FileSpec(b"lower data")}, options=METACOPY)
    only(fs, ops.Chmod("a", 0o600))
    entry = upper(fs)["a"]
    assert entry.metacopy and entry.data is None and entry.mode == 0o600
    assert only(fs, ops.Read("a")) == Ok(b"lower data")
    only(fs, ops.Write("a", b"L", flags=()))
    entry = upper(fs)["a"]
    assert not entry.metacopy and entry.data == b"Lower data"


@pytest.mark.parametrize(
    "op",
    [
        ops.Write("a", b"x"),
        ops.Truncate("a", 0),
        ops.Mkdir("n"),
        ops.Unlink("a"),
        ops.Rmdir("d"),
        ops.Rename("a", "b"),
        ops.Link("a", "n"),
        ops.Symlink("a", "n"),
        ops.Chmod("a", 0o600),
        ops.Chown("a", 1, 1),
        ops.SetXattr("a", "user.a", b""),
        ops.Mkfifo("n"),
    ],
)
def test_every_write_without_upper_is_erofs(op: ops.Op) -> None:
    fs = mount({"a": FileSpec(b"x"), "d": DirSpec()}, {"b": FileSpec()}, options=RO)
    assert only(fs, op) == Err("EROFS")


def test_eexist_comes_before_erofs_for_a_new_name() -> None:
    fs = mount({"a": FileSpec()}, {}, options=RO)
    assert only(fs, ops.Mkdir("a")) == Err("EEXIST")


def test_st_ino_is_stable_across_copy_up() -> None:
    fs = mount({"a": FileSpec(b"x"), "d/f": FileSpec()})
    before = fs.view().inodes
    only(fs, ops.Chmod("a", 0o600))
    only(fs, ops.Write("d/g", b"", flags=("O_CREAT",)))
    after = fs.view().inodes
    assert after["a"] == before["a"] and after["d"] == before["d"]


def test_symlinks_resolve_inside_the_mount() -> None:
    fs = mount({"esc": SymlinkSpec("/etc"), "up": SymlinkSpec("../../.."), "a": FileSpec(b"in")})
    assert only(fs, ops.Write("esc/passwd", b"x", flags=("O_CREAT",))) == Err("ENOENT")
    assert only(fs, ops.Readdir("up")) == Ok(("a", "esc", "up"))
    assert only(fs, ops.Read("up/a")) == Ok(b"in")


def test_symlink_loops_give_eloop() -> None:
    fs = mount({"a": SymlinkSpec("b"), "b": SymlinkSpec("a")})
    assert only(fs, ops.Read("a")) == Err("ELOOP")


def test_user_xattrs_exist_only_on_files_and_directories() -> None:
    fs = mount({"p": FifoSpec()})
    assert only(fs, ops.SetXattr("p", "user.a", b"1")) == Err("EPERM")
    assert only(fs, ops.GetXattr("p", "user.a")) == Err("ENODATA")


def test_removing_a_missing_xattr_does_not_copy_up() -> None:
    fs = mount({"a": FileSpec()})
    assert only(fs, ops.RemoveXattr("a", "user.a")) == Err("ENODATA")
    assert upper(fs) == {}


def test_rename_over_a_name_of_the_same_inode_does_nothing_with_index() -> None:
    fs = mount({"a": FileSpec(b"x"), "b": HardlinkSpec("a")}, options=INDEX)
    assert only(fs, ops.Rename("a", "b")) == Ok()
    assert upper(fs) == {}


def test_unreachable_whiteout_in_an_unmerged_directory_is_listed() -> None:
    fs = mount({"d/a": WhiteoutSpec(), "d/b": FileSpec()}, {})
    linux, allowed = fs.step(ops.Readdir("d"))
    assert linux == Ok(("a", "b"))
    # readdir.c ovl_iterate lists it; a driver that leaves it out conforms too
    assert allowed == {Ok(("a", "b")), Ok(("b",))}
    assert fs.view().entries["d/a"].kind == "unreachable"
    assert only(fs, ops.Stat("d/a")) == Err("ENOENT")
