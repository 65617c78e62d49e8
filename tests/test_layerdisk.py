"""adapters.sandbox.layerdisk: writing layers and decoding them.

The decoder is tested on pyfakefs for what pyfakefs can model (regular files, directories,
symlinks, hardlinks, xattrs of any namespace including trusted.overlay.*). pyfakefs cannot
make character devices (its mknod only makes regular files) or report st_rdev, so whiteouts,
FIFOs and the write/decode round trip run on a real temporary directory (root only: the
trusted.* markers, mknod and chown need it).
"""

from __future__ import annotations

import os
import stat

import pytest

from adapters.sandbox.layerdisk import (
    METACOPY,
    OPAQUE,
    REDIRECT,
    TRUSTED,
    USER,
    USERXATTR_FORMAT,
    WHITEOUT,
    DiskFormat,
    escaped,
    read_layer,
    unescaped,
    write_layer,
)
from reference.layer import (
    DirSpec,
    FifoSpec,
    FileSpec,
    HardlinkSpec,
    Inode,
    Kind,
    LayerSpec,
    SymlinkSpec,
    WhiteoutSpec,
    build,
    new_dir,
)
from reference.overlay import image
from reference.view import DiskEntry, LayerImage

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (trusted.* xattrs, mknod)")


def same_up_to_inode_numbers(actual: LayerImage, expected: LayerImage) -> None:
    assert actual.entries == expected.entries
    assert actual.links == expected.links
    assert actual.inodes.keys() == expected.inodes.keys()
    renaming: dict[int, int] = {}
    for path, ino in expected.inodes.items():
        assert renaming.setdefault(ino, actual.inodes[path]) == actual.inodes[path], path
    assert len(set(renaming.values())) == len(renaming), "two identities share an inode"


# --- decoder on pyfakefs ------------------------------------------------------------------


def test_decode_files_dirs_symlinks_and_markers(fs):
    fs.create_dir("/layer/d")
    fs.create_file("/layer/d/f", contents=b"hello", st_mode=stat.S_IFREG | 0o640)
    os.chown("/layer/d/f", 7, 8)
    os.setxattr("/layer/d/f", "user.b", b"2")
    os.setxattr("/layer/d/f", "user.a", b"1")
    os.setxattr("/layer/d/f", "trusted.overlay.origin", b"\x00fh")  # ignored
    os.setxattr("/layer/d/f", "security.selinux", b"x")  # not user.*: ignored
    os.setxattr("/layer/d", OPAQUE, b"y")
    os.setxattr("/layer/d", "trusted.overlay.impure", b"y")  # ignored
    fs.create_dir("/layer/moved")
    os.setxattr("/layer/moved", REDIRECT, b"/old/place")
    os.symlink("../somewhere", "/layer/link")

    img = read_layer("/layer")

    assert set(img.entries) == {"d", "d/f", "moved", "link"}
    f = img.entries["d/f"]
    assert f == DiskEntry(
        kind="file",
        mode=0o640,
        uid=7,
        gid=8,
        data=b"hello",
        xattrs=(("user.a", b"1"), ("user.b", b"2")),
    )
    assert img.entries["d"].opaque and img.entries["d"].redirect is None
    assert img.entries["moved"].redirect == "/old/place"
    assert not img.entries["moved"].opaque
    assert img.entries["link"].kind == "symlink"
    assert img.entries["link"].target == "../somewhere"
    assert img.entries["link"].xattrs == ()
    assert img.links == frozenset()
    assert set(img.inodes) == {"d", "d/f", "moved", "link"}


def test_decode_opaque_needs_value_y(fs):
    fs.create_dir("/layer/d")
    os.setxattr("/layer/d", OPAQUE, b"x")  # the "x" form marks xattr-whiteout parents
    entry = read_layer("/layer").entries["d"]
    assert not entry.opaque and entry.xwhiteouts


def test_decode_xattr_whiteout_and_its_marked_parent(fs):
    fs.create_dir("/layer/d")
    fs.create_file("/layer/d/gone")
    os.setxattr("/layer/d/gone", WHITEOUT, b"")
    os.setxattr("/layer/d", OPAQUE, b"x")
    fs.create_file("/layer/unmarked-parent-wh")
    os.setxattr("/layer/unmarked-parent-wh", WHITEOUT, b"")
    img = read_layer("/layer")
    assert img.entries["d/gone"] == DiskEntry(kind="whiteout", xattr_whiteout=True)
    assert img.entries["unmarked-parent-wh"] == DiskEntry(kind="whiteout", xattr_whiteout=True)
    assert img.entries["d"].xwhiteouts and not img.entries["d"].opaque
    assert "d/gone" not in img.inodes  # a whiteout has no identity, whatever its form


def test_decode_whiteout_xattr_on_a_file_with_data_is_a_file(fs):
    """util.c ovl_path_check_xwhiteout_xattr: only a zero-size regular file (obs XW.3)."""
    fs.create_file("/layer/f", contents=b"abc")
    os.setxattr("/layer/f", WHITEOUT, b"")
    entry = read_layer("/layer").entries["f"]
    assert entry.kind == "file" and entry.data == b"abc" and entry.xattrs == ()


def test_escaped_names_round_trip():
    assert escaped("trusted.overlay.foo") == "trusted.overlay.overlay.foo"
    assert escaped("user.overlay.foo") == "user.overlay.foo"  # not the namespace
    assert escaped("user.overlay.foo", USER) == "user.overlay.overlay.foo"
    assert escaped("trusted.overlayfoo") == "trusted.overlayfoo"  # no dot: ordinary
    for prefix in (TRUSTED, USER):
        for name in (prefix + "a", prefix + "overlay.b", "user.c", "security.d"):
            assert unescaped(escaped(name, prefix), prefix) == name
        assert unescaped(prefix + "opaque", prefix) is None  # a marker


def test_decode_escaped_xattrs_trusted(fs):
    fs.create_file("/layer/f")
    os.setxattr("/layer/f", "trusted.overlay.overlay.foo", b"1")  # the object's own
    os.setxattr("/layer/f", "trusted.overlay.origin", b"fh")  # a marker: ignored
    os.setxattr("/layer/f", "user.overlay.opaque", b"y")  # ordinary without userxattr
    assert read_layer("/layer").entries["f"].xattrs == (
        ("trusted.overlay.foo", b"1"),
        ("user.overlay.opaque", b"y"),
    )


def test_decode_userxattr_markers(fs):
    """userxattr: every marker is user.overlay.* (doc "Permission model", obs U.*);
    trusted.overlay.* names are then ordinary xattrs of the object."""
    fs.create_dir("/layer/d")
    os.setxattr("/layer/d", USER + "opaque", b"y")
    os.setxattr("/layer/d", "trusted.overlay.opaque", b"x")
    fs.create_dir("/layer/r")
    os.setxattr("/layer/r", USER + "redirect", b"/old")
    os.setxattr("/layer/r", USER + "opaque", b"x")
    fs.create_file("/layer/m", contents=b"\0\0")
    os.setxattr("/layer/m", USER + "metacopy", b"")
    os.setxattr("/layer/m", USER + "origin", b"fh")
    os.setxattr("/layer/m", USER + "overlay.mine", b"v")
    os.setxattr("/layer/m", "user.plain", b"p")
    fs.create_file("/layer/w")
    os.setxattr("/layer/w", USER + "whiteout", b"")
    fs.create_file("/layer/not-here")
    os.setxattr("/layer/not-here", WHITEOUT, b"")  # the trusted form: not a marker here
    img = read_layer("/layer", USERXATTR_FORMAT)
    assert img.entries["d"].opaque and not img.entries["d"].xwhiteouts
    assert img.entries["d"].xattrs == (("trusted.overlay.opaque", b"x"),)
    assert img.entries["r"].redirect == "/old" and img.entries["r"].xwhiteouts
    m = img.entries["m"]
    assert m.metacopy and m.data is None
    assert m.xattrs == (("user.overlay.mine", b"v"), ("user.plain", b"p"))
    assert img.entries["w"] == DiskEntry(kind="whiteout", xattr_whiteout=True)
    assert img.entries["not-here"].kind == "file"
    assert img.entries["not-here"].xattrs == (("trusted.overlay.whiteout", b""),)
    # the same layer read as a root overlay: the user.overlay.* names are content
    plain = read_layer("/layer")
    assert not plain.entries["d"].opaque and plain.entries["w"].kind == "file"
    assert ("user.overlay.metacopy", b"") in plain.entries["m"].xattrs


def test_private_prefixes_still_apply_with_a_prefix(fs):
    fs.create_file("/layer/f")
    os.setxattr("/layer/f", "user.fuseoverlayfs.origin", b"x")
    fmt = DiskFormat(private_xattrs=("user.fuseoverlayfs.",), prefix=USER)
    assert read_layer("/layer", fmt).entries["f"].xattrs == ()


def test_decode_metacopy_has_no_data(fs):
    fs.create_file("/layer/m", contents=b"\0" * 10)
    os.setxattr("/layer/m", METACOPY, b"")
    os.setxattr("/layer/m", REDIRECT, b"n")
    entry = read_layer("/layer").entries["m"]
    assert entry.metacopy and entry.data is None and entry.redirect == "n"


def test_decode_hardlinks_within_the_tree(fs):
    fs.create_file("/layer/a", contents=b"x")
    fs.create_dir("/layer/sub")
    os.link("/layer/a", "/layer/sub/b")
    os.link("/layer/a", "/layer/c")
    fs.create_file("/layer/single", contents=b"y")
    img = read_layer("/layer")
    assert img.links == frozenset({frozenset({"a", "sub/b", "c"})})
    assert img.inodes["a"] == img.inodes["sub/b"] == img.inodes["c"] != img.inodes["single"]


def test_decode_empty_layer(fs):
    fs.create_dir("/layer")
    assert read_layer("/layer") == LayerImage(entries={}, links=frozenset(), inodes={})


# --- real directory -----------------------------------------------------------------------

EVERY_KIND = LayerSpec(
    (
        ("f", FileSpec(b"data", mode=0o4751, uid=12, gid=34, xattrs=(("user.k", b"v"),))),
        ("empty", FileSpec()),
        ("d", DirSpec(mode=0o1770, uid=5, gid=6, xattrs=(("user.d", b"dv"),))),
        ("d/inner", FileSpec(b"in")),
        ("ro", DirSpec(mode=0o500)),
        ("ro/child", FileSpec(b"c", mode=0o000)),
        ("o", DirSpec(opaque=True)),
        ("o/x", FileSpec(b"x")),
        ("s", SymlinkSpec("/abs/target")),
        ("dangling", SymlinkSpec("../../nowhere")),
        ("p", FifoSpec(mode=0o620)),
        ("w", WhiteoutSpec()),
        ("d/w2", WhiteoutSpec()),
        ("h", HardlinkSpec("f")),
        ("d/h2", HardlinkSpec("f")),
        ("deep/er/file", FileSpec(b"deep")),
    )
)


@needs_root
def test_round_trip_every_kind(tmp_path):
    root = build(EVERY_KIND)
    target = str(tmp_path / "layer")
    write_layer(root, target)
    same_up_to_inode_numbers(read_layer(target), image(root))

    # and what is on disk is the overlayfs form
    w = os.lstat(target + "/w")
    assert stat.S_ISCHR(w.st_mode) and w.st_rdev == os.makedev(0, 0)
    assert stat.S_ISFIFO(os.lstat(target + "/p").st_mode)
    assert os.getxattr(target + "/o", OPAQUE) == b"y"
    assert os.stat(target + "/f").st_nlink == 3
    assert stat.S_IMODE(os.stat(target + "/ro").st_mode) == 0o500


@needs_root
def test_round_trip_markers_set_on_inodes(tmp_path):
    root = new_dir(0o711)
    moved = root.entries["moved"] = Inode(Kind.DIR, mode=0o755, redirect="/elsewhere")
    moved.entries["f"] = Inode(Kind.FILE, data=b"abc")
    root.entries["meta"] = Inode(Kind.FILE, mode=0o600, metacopy=True, redirect="old")
    target = str(tmp_path / "upper")
    write_layer(root, target)
    img = read_layer(target)
    same_up_to_inode_numbers(img, image(root))
    assert img.entries["meta"].data is None and img.entries["meta"].metacopy
    assert os.getxattr(target + "/meta", METACOPY) == b""
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o711


@needs_root
def test_write_into_existing_empty_directory(tmp_path):
    write_layer(build(LayerSpec((("a", FileSpec(b"1")),))), str(tmp_path))
    assert read_layer(str(tmp_path)).entries["a"].data == b"1"


@needs_root
def test_decode_ignores_other_char_devices_as_whiteouts(tmp_path):
    os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(tmp_path / "wh", stat.S_IFCHR, os.makedev(0, 0))
    os.chown(tmp_path / "wh", 3, 3)
    img = read_layer(str(tmp_path))
    assert img.entries["null"].kind == "chardev"
    assert img.entries["wh"] == DiskEntry(kind="whiteout")
    assert "wh" not in img.inodes and "null" in img.inodes


EVERY_MARKER = LayerSpec(
    (
        ("d", DirSpec()),
        ("d/xw", WhiteoutSpec(xattr=True)),
        ("d/cw", WhiteoutSpec()),
        ("u", DirSpec()),
        ("u/xw", WhiteoutSpec(xattr=True, marked=False)),
        ("o", DirSpec(opaque=True)),
        ("o/xw", WhiteoutSpec(xattr=True)),  # an opaque dir stays "y"
        ("top-xw", WhiteoutSpec(xattr=True)),  # marks the layer's root "x"
        ("f", FileSpec(b"1", xattrs=(("user.overlay.mine", b"v"), ("user.a", b"2")))),
        ("g", FileSpec(b"2", xattrs=(("trusted.overlay.nested", b"n"),))),
    )
)


@needs_root
@pytest.mark.parametrize("prefix", [TRUSTED, USER], ids=["trusted", "user"])
def test_round_trip_every_marker_form(tmp_path, prefix):
    root = build(EVERY_MARKER)
    root.entries["moved"] = Inode(Kind.DIR, mode=0o755, redirect="/elsewhere")
    root.entries["meta"] = Inode(Kind.FILE, mode=0o600, metacopy=True, redirect="/blob")
    target = str(tmp_path / "layer")
    write_layer(root, target, prefix)
    fmt = DiskFormat(prefix=prefix)
    same_up_to_inode_numbers(read_layer(target, fmt), image(root))
    on_disk = {
        n: os.getxattr(target + "/" + p, n)
        for p in ("d", "o")
        for n in os.listxattr(target + "/" + p)
    }
    assert os.getxattr(target + "/d", prefix + "opaque") == b"x"
    assert os.getxattr(target + "/o", prefix + "opaque") == b"y"
    assert os.getxattr(target, prefix + "opaque") == b"x"
    assert prefix + "opaque" not in os.listxattr(target + "/u")
    assert on_disk  # the markers are in the prefix's namespace, nowhere else
    xw = os.lstat(target + "/d/xw")
    assert stat.S_ISREG(xw.st_mode) and xw.st_size == 0
    assert os.listxattr(target + "/d/xw") == [prefix + "whiteout"]
    stored = set(os.listxattr(target + "/f"))
    if prefix == USER:
        assert stored == {"user.overlay.overlay.mine", "user.a"}
        assert set(os.listxattr(target + "/g")) == {"trusted.overlay.nested"}
    else:
        assert stored == {"user.overlay.mine", "user.a"}
        assert set(os.listxattr(target + "/g")) == {"trusted.overlay.overlay.nested"}
    assert os.getxattr(target + "/meta", prefix + "metacopy") == b""
    assert os.getxattr(target + "/moved", prefix + "redirect") == b"/elsewhere"
