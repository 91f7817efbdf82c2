"""A mount served by a separate fs agent process behaves like a local directory (FS.md §3-§4).

Everything goes through ``open()``/``os.*``/``pathlib``/``shutil``/``glob`` on the mount; what the
agent holds is checked on its own directory (a local path here, which the interceptor passes through).
The cluster starts once for the module (:mod:`tests.support.mount_e2e`); each test works in a fresh
subdirectory of the export that the mount has never seen.
"""

# ruff: noqa: SIM115 - open() without a context manager is part of the behaviour under test

from __future__ import annotations

import builtins
import errno
import glob
import importlib.util
import io
import os
import pathlib
import shutil
import stat as stat_module
import sys
import types
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mount_e2e import MountE2E, mount_e2e_fixture, new_patcher

e2e = mount_e2e_fixture()

MiB = 1024 * 1024


class Area:
    """A fresh directory of the ``demo`` export: its mount path and its agent-side path."""

    def __init__(self, env: MountE2E, name: str) -> None:
        self.env = env
        self.name = name

    def m(self, relpath: str = "") -> str:
        """Mount path."""
        return self.env.path(f"{self.name}/{relpath}" if relpath else self.name)

    def r(self, relpath: str = "") -> Path:
        """Agent-side path."""
        return self.env.real(f"{self.name}/{relpath}" if relpath else self.name)

    def rel(self, relpath: str = "") -> str:
        """Export-relative path."""
        return f"{self.name}/{relpath}" if relpath else self.name


@pytest.fixture
def area(e2e: MountE2E) -> Area:
    name = f"t-{uuid.uuid4().hex[:10]}"
    e2e.real(name).mkdir()
    return Area(e2e, name)


def read(path: object, mode: str = "rb", **kwargs: object) -> object:
    with open(path, mode, **kwargs) as f:  # type: ignore[call-overload]
        return f.read()


def agent_tree(root: Path) -> dict[str, bytes | None]:
    """Entries below an agent-side directory: bytes for files, None for directories."""
    found: dict[str, bytes | None] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(top, name), root)] = None
        for name in files:
            found[os.path.relpath(os.path.join(top, name), root)] = Path(top, name).read_bytes()
    return found


# -- files ---------------------------------------------------------------------------------------


def test_write_read_append_and_truncate_on_open(area: Area) -> None:
    with open(area.m("f.bin"), "wb") as f:
        assert f.write(b"hello ") == 6
        assert f.write(b"world") == 5
    assert area.r("f.bin").read_bytes() == b"hello world"
    assert read(area.m("f.bin")) == b"hello world"
    with open(area.m("f.bin"), "ab") as f:
        assert f.tell() == 11
        f.write(b"!!")
    assert area.r("f.bin").read_bytes() == b"hello world!!"
    assert read(area.m("f.bin")) == b"hello world!!"

    f = open(area.m("f.bin"), "wb")
    try:
        assert area.r("f.bin").read_bytes() == b""  # truncated at open, before any write or close
    finally:
        f.close()
    assert read(area.m("f.bin")) == b"" and os.path.getsize(area.m("f.bin")) == 0

    big = os.urandom(3 * MiB + 4321)
    with open(area.m("big.bin"), "wb") as f:
        f.write(big[:MiB])
        f.write(big[MiB:])
    assert area.r("big.bin").read_bytes() == big
    assert read(area.m("big.bin")) == big


def test_flush_makes_written_bytes_visible_at_the_agent_before_close(area: Area) -> None:
    with open(area.m("log.bin"), "wb") as f:
        f.write(b"first")
        assert area.r("log.bin").read_bytes() == b""  # still in this process's buffer
        f.flush()
        assert area.r("log.bin").read_bytes() == b"first"
        f.write(b"+second")
        f.flush()
        assert area.r("log.bin").read_bytes() == b"first+second"
        f.write(b"+third")
    assert area.r("log.bin").read_bytes() == b"first+second+third"
    with open(area.m("log.txt"), "a", encoding="utf-8") as text:
        text.write("line 1\n")
        text.flush()
        assert area.r("log.txt").read_bytes() == b"line 1\n"
    with open(area.m("raw.bin"), "wb", buffering=0) as raw:
        raw.write(b"abc")
        raw.flush()
        assert area.r("raw.bin").read_bytes() == b"abc"


def test_exclusive_create(area: Area) -> None:
    with open(area.m("x.txt"), "x") as f:
        f.write("new")
    assert area.r("x.txt").read_bytes() == b"new"
    with pytest.raises(FileExistsError) as caught:
        open(area.m("x.txt"), "x")
    assert caught.value.errno == errno.EEXIST and caught.value.filename == area.m("x.txt")
    assert area.r("x.txt").read_bytes() == b"new"  # untouched
    with open(area.m("y.bin"), "xb+") as f:
        f.write(b"12345")
        f.seek(1)
        assert f.read(3) == b"234"


def test_text_mode_encoding_and_newlines(area: Area) -> None:
    with open(area.m("u16.txt"), "w", encoding="utf-16") as f:
        f.write("héllo wörld\n")
    assert area.r("u16.txt").read_bytes() == "héllo wörld\n".encode("utf-16")
    assert read(area.m("u16.txt"), "r", encoding="utf-16") == "héllo wörld\n"

    with open(area.m("crlf.txt"), "w", encoding="utf-8", newline="\r\n") as f:
        f.write("a\nb\n")
    assert area.r("crlf.txt").read_bytes() == b"a\r\nb\r\n"
    assert read(area.m("crlf.txt"), "r", encoding="utf-8") == "a\nb\n"  # universal newlines
    assert read(area.m("crlf.txt"), "r", encoding="utf-8", newline="") == "a\r\nb\r\n"
    with open(area.m("crlf.txt"), encoding="utf-8") as f:
        assert f.readline() == "a\n" and list(f) == ["b\n"]

    area.r("latin.txt").write_bytes("café".encode("latin-1"))
    assert read(area.m("latin.txt"), "r", encoding="latin-1") == "café"
    with pytest.raises(UnicodeDecodeError):
        read(area.m("latin.txt"), "r", encoding="utf-8")
    assert read(area.m("latin.txt"), "r", encoding="utf-8", errors="replace") == "caf\ufffd"


def test_seek_tell_and_update_modes(area: Area) -> None:
    data = bytes(range(256)) * (5 * 4096 + 3)  # > 1 MiB: read in pieces
    area.r("s.bin").write_bytes(data)
    with open(area.m("s.bin"), "rb") as f:
        assert f.seek(0, os.SEEK_END) == len(data) and f.tell() == len(data)
        assert f.read() == b""
        f.seek(MiB - 3)
        assert f.read(6) == data[MiB - 3 : MiB + 3] and f.tell() == MiB + 3
        f.seek(-10, os.SEEK_CUR)
        assert f.read(10) == data[MiB - 7 : MiB + 3]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        buffer = bytearray(100)
        f.seek(200)
        assert f.readinto(buffer) == 100 and bytes(buffer) == data[200:300]
        with pytest.raises(OSError) as caught:
            f.seek(-1)
        assert caught.value.errno == errno.EINVAL
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
    with open(area.m("s.bin"), "r+b") as f:
        f.seek(10)
        f.write(b"XYZ")
        assert f.tell() == 13
        f.seek(8)
        assert f.read(7) == data[8:10] + b"XYZ" + data[13:15]
    expected = data[:10] + b"XYZ" + data[13:]
    assert area.r("s.bin").read_bytes() == expected
    with open(area.m("s.bin"), "a+b") as f:
        f.write(b"END")
        f.seek(0)
        assert f.read(4) == expected[:4]
    with open(area.m("s.bin"), "w+b") as f:
        f.write(b"0123456789")
        f.truncate(4)
        f.seek(0)
        assert f.read() == b"0123"
    assert area.r("s.bin").read_bytes() == b"0123"


def test_reads_see_the_file_as_of_open(area: Area) -> None:
    area.r("v.bin").write_bytes(b"version one")
    with open(area.m("v.bin"), "rb") as reader:
        with open(area.m("v.bin"), "wb") as writer:
            writer.write(b"two")
        assert reader.read() == b"version one"
    assert read(area.m("v.bin")) == b"two"


# -- metadata ------------------------------------------------------------------------------------


def test_stat_getsize_exists_match_the_agent(area: Area) -> None:
    area.r("d").mkdir()
    area.r("d/f").write_bytes(b"12345")
    os.utime(area.r("d/f"), ns=(1_600_000_000_123_456_789, 1_700_000_000_987_654_321))
    remote, local = os.stat(area.m("d/f")), os.stat(area.r("d/f"))
    for field in ("st_mode", "st_size", "st_mtime_ns", "st_atime_ns", "st_uid", "st_gid", "st_nlink", "st_ino"):
        assert getattr(remote, field) == getattr(local, field), field
    assert remote.st_dev != local.st_dev  # a mount is its own device
    assert os.path.getsize(area.m("d/f")) == 5
    assert os.path.getmtime(area.m("d/f")) == local.st_mtime
    assert os.path.exists(area.m("d/f")) and os.path.isfile(area.m("d/f")) and not os.path.isdir(area.m("d/f"))
    assert os.path.isdir(area.m("d")) and not os.path.isfile(area.m("d"))
    assert stat_module.S_ISDIR(os.lstat(area.m("d")).st_mode)
    assert not os.path.exists(area.m("nope")) and not os.path.isfile(area.m("nope"))
    p = pathlib.Path(area.m("d/f"))
    assert p.exists() and p.is_file() and p.stat().st_size == 5 and not p.is_dir()
    assert os.path.samefile(area.m("d/f"), area.m("d/./f"))


def test_listdir_scandir_iterdir(area: Area) -> None:
    area.r("sub").mkdir()
    area.r("a.txt").write_bytes(b"a")
    area.r("b.bin").write_bytes(b"bbb")
    assert sorted(os.listdir(area.m())) == ["a.txt", "b.bin", "sub"]
    assert sorted(os.listdir(os.fsencode(area.m()))) == [b"a.txt", b"b.bin", b"sub"]
    with os.scandir(area.m()) as entries:
        seen = {e.name: (e.path, e.is_dir(), e.is_file(), e.is_symlink(), e.stat().st_size) for e in entries}
    assert seen == {
        "a.txt": (area.m("a.txt"), False, True, False, 1),
        "b.bin": (area.m("b.bin"), False, True, False, 3),
        "sub": (area.m("sub"), True, False, False, os.stat(area.r("sub")).st_size),
    }
    assert sorted(p.name for p in pathlib.Path(area.m()).iterdir()) == ["a.txt", "b.bin", "sub"]
    assert os.listdir(area.m("sub")) == []
    with pytest.raises(NotADirectoryError) as caught:
        os.listdir(area.m("a.txt"))
    assert caught.value.filename == area.m("a.txt")


def test_namespace_operations_reach_the_agent(area: Area) -> None:
    os.mkdir(area.m("d"))
    assert area.r("d").is_dir()
    os.makedirs(area.m("d/e/f"))
    assert area.r("d/e/f").is_dir()
    os.makedirs(area.m("d/e/f"), exist_ok=True)
    with pytest.raises(FileExistsError):
        os.mkdir(area.m("d"))
    with pytest.raises(OSError) as caught:
        os.rmdir(area.m("d"))
    assert caught.value.errno == errno.ENOTEMPTY and caught.value.filename == area.m("d")
    os.rmdir(area.m("d/e/f"))
    assert not area.r("d/e/f").exists()

    pathlib.Path(area.m("d/one.txt")).write_text("1")
    os.rename(area.m("d/one.txt"), area.m("d/two.txt"))
    assert not area.r("d/one.txt").exists() and area.r("d/two.txt").read_bytes() == b"1"
    pathlib.Path(area.m("d/three.txt")).write_text("3")
    os.replace(area.m("d/three.txt"), area.m("d/two.txt"))  # replaces the existing target
    assert area.r("d/two.txt").read_bytes() == b"3" and not area.r("d/three.txt").exists()
    os.rename(area.m("d/e"), area.m("moved"))
    assert area.r("moved").is_dir() and not area.r("d/e").exists()
    assert pathlib.Path(area.m("d/two.txt")).rename(area.m("d/four.txt")) == pathlib.Path(area.m("d/four.txt"))
    pathlib.Path(area.m("d/five.txt")).write_bytes(b"5")
    pathlib.Path(area.m("d/five.txt")).replace(area.m("d/four.txt"))
    assert area.r("d/four.txt").read_bytes() == b"5"

    os.chmod(area.m("d/four.txt"), 0o640)
    assert stat_module.S_IMODE(area.r("d/four.txt").stat().st_mode) == 0o640
    assert stat_module.S_IMODE(os.stat(area.m("d/four.txt")).st_mode) == 0o640
    os.utime(area.m("d/four.txt"), ns=(1_000_000_001, 2_000_000_002))
    assert area.r("d/four.txt").stat().st_mtime_ns == 2_000_000_002
    assert os.stat(area.m("d/four.txt")).st_mtime_ns == 2_000_000_002
    os.utime(area.m("d/four.txt"), (10, 20.5))
    assert area.r("d/four.txt").stat().st_mtime_ns == 20_500_000_000
    os.utime(area.m("d/four.txt"))  # now
    assert area.r("d/four.txt").stat().st_mtime > 1_000_000_000

    os.unlink(area.m("d/four.txt"))
    assert not area.r("d/four.txt").exists()
    pathlib.Path(area.m("d/six")).touch()
    assert area.r("d/six").read_bytes() == b""
    pathlib.Path(area.m("d/six")).unlink()
    assert not area.r("d/six").exists()
    area.r("d/seven").write_bytes(b"1234567")
    os.truncate(area.m("d/seven"), 3)
    assert area.r("d/seven").read_bytes() == b"123"
    os.remove(area.m("d/seven"))
    assert not area.r("d/seven").exists()
    pathlib.Path(area.m("p/q")).mkdir(parents=True)
    assert area.r("p/q").is_dir()


MISSING_CALLS: dict[str, Callable[[str], object]] = {
    "open r": lambda p: open(p),
    "open rb": lambda p: open(p, "rb"),
    "open r+b": lambda p: open(p, "r+b"),
    "open w": lambda p: open(p, "w"),  # the parent is missing
    "open x": lambda p: open(p, "x"),
    "stat": os.stat,
    "lstat": os.lstat,
    "listdir": os.listdir,
    "scandir": os.scandir,
    "unlink": os.unlink,
    "remove": os.remove,
    "rmdir": os.rmdir,
    "mkdir": os.mkdir,
    "chmod": lambda p: os.chmod(p, 0o600),
    "truncate": lambda p: os.truncate(p, 0),
    "read_bytes": lambda p: pathlib.Path(p).read_bytes(),
    "read_text": lambda p: pathlib.Path(p).read_text(),
    "write_text": lambda p: pathlib.Path(p).write_text("x"),
    "getsize": os.path.getsize,
    "getmtime": os.path.getmtime,
    "iterdir": lambda p: list(pathlib.Path(p).iterdir()),
}


def failure(call: object, root: str, relpath: str) -> tuple[object, ...]:
    """How ``call(root/relpath)`` fails, with file names relative to ``root``."""
    try:
        call(f"{root}/{relpath}")  # type: ignore[operator]
    except OSError as exc:
        names = [os.path.relpath(n, root) if isinstance(n, str) else n for n in (exc.filename, exc.filename2)]
        return (type(exc), exc.errno, *names)
    raise AssertionError(f"{call} on {root}/{relpath} did not fail")


def test_missing_paths_raise_with_errno_and_the_mount_path(area: Area, tmp_path: Path) -> None:
    relpath = "no/such/file.txt"
    missing = area.m(relpath)
    for what, call in MISSING_CALLS.items():
        assert failure(call, area.m(), relpath) == failure(call, str(tmp_path), relpath), what
        with pytest.raises(FileNotFoundError) as caught:
            call(missing)
        assert caught.value.errno == errno.ENOENT and caught.value.filename == missing, what
        assert relpath in str(caught.value)
    with pytest.raises(FileNotFoundError) as caught:
        os.rename(missing, area.m("other"))
    assert caught.value.filename == missing and caught.value.filename2 == area.m("other")
    with pytest.raises(FileNotFoundError) as caught:
        open(pathlib.Path(missing))
    assert caught.value.filename == missing
    bytes_path = os.fsencode(missing)
    with pytest.raises(FileNotFoundError) as caught:
        os.stat(bytes_path)
    assert caught.value.filename == bytes_path
    assert not os.path.exists(missing)
    with pytest.raises(IsADirectoryError) as is_dir:
        open(area.m())
    assert is_dir.value.errno == errno.EISDIR and is_dir.value.filename == area.m()
    with pytest.raises(IsADirectoryError):
        open(area.m(), "wb")
    area.r("file").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        os.stat(area.m("file/below"))


def test_os_open_is_refused_on_the_mount_and_works_locally(area: Area, tmp_path: Path) -> None:
    area.r("f").write_bytes(b"remote")
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(OSError) as caught:
            os.open(area.m("f"), flags)
        assert caught.value.errno == errno.ENOTSUP and caught.value.filename == area.m("f")
    local = tmp_path / "local.bin"
    fd = os.open(local, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"local") == 5
    finally:
        os.close(fd)
    assert local.read_bytes() == b"local"
    assert area.r("f").read_bytes() == b"remote"


# -- confinement ---------------------------------------------------------------------------------


def test_symlinks_are_followed_only_inside_the_export(area: Area, e2e: MountE2E) -> None:
    secret = e2e.base / "outside-secret.txt"  # outside every export root
    secret.write_bytes(b"TOP SECRET")
    area.r("inside.txt").write_bytes(b"inside")
    os.symlink("inside.txt", area.r("ok-link"))
    os.symlink("/etc/passwd", area.r("abs-link"))
    os.symlink("/etc", area.r("etc-dir"))
    climb = os.path.relpath(secret, area.r())
    assert ".." in climb
    os.symlink(climb, area.r("climb-link"))
    os.symlink(str(secret), area.r("secret-abs"))

    assert stat_module.S_ISLNK(os.lstat(area.m("ok-link")).st_mode)
    assert read(area.m("ok-link")) == b"inside"
    assert os.stat(area.m("ok-link")).st_size == 6
    passwd = Path("/etc/passwd").read_bytes()

    def read_text(path: str) -> str:
        return pathlib.Path(path).read_text()

    for name in ("abs-link", "climb-link", "secret-abs"):
        path = area.m(name)
        for reader in (read, read_text):
            with pytest.raises(PermissionError) as caught:
                leaked = reader(path)
                pytest.fail(f"{name} was read through the mount: {leaked!r}")
            assert caught.value.errno == errno.EACCES and caught.value.filename == path
        with pytest.raises(PermissionError):
            os.stat(path)
        assert not os.path.exists(path)  # like a dangling link
        assert stat_module.S_ISLNK(os.lstat(path).st_mode)  # the link itself is visible
    for name in ("climb-link", "secret-abs"):  # links to our own file: a write must not reach it
        for mode in ("wb", "ab", "r+b"):
            with pytest.raises(PermissionError):
                open(area.m(name), mode)
    with pytest.raises(PermissionError):
        os.listdir(area.m("etc-dir"))
    with pytest.raises(PermissionError):
        read(area.m("etc-dir/passwd"))
    assert secret.read_bytes() == b"TOP SECRET"
    assert Path("/etc/passwd").read_bytes() == passwd


def test_dotdot_leaves_the_mount_and_crafted_dotdot_is_refused_by_the_agent(area: Area, e2e: MountE2E) -> None:
    local = e2e.base / "beside.txt"
    local.write_bytes(b"local file beside the mount")
    assert read(f"{e2e.mount}/../beside.txt") == b"local file beside the mount"  # just a local path
    assert pathlib.Path(f"{e2e.mount}/../beside.txt").stat().st_size == len(b"local file beside the mount")
    area.r("f").write_bytes(b"in export")

    ops = e2e.direct_ops()
    assert ops.read_chunk(area.rel("f"), 0, 100)[1] == b"in export"  # the crafted channel works
    outside = os.path.relpath(local, e2e.export_dir)  # ../../.. from the export root
    crafted = [
        lambda p: ops.stat(p),
        lambda p: ops.read_chunk(p, 0, 100),
        lambda p: ops.list_dir(p),
        lambda p: ops.session_open(p, create=True, exclusive=False, truncate=True),
        lambda p: ops.write_chunk(p, 0, b"x"),
        lambda p: ops.truncate(p, 0),
        lambda p: ops.mkdir(p),
        lambda p: ops.unlink(p),
        lambda p: ops.chmod(p, 0o777),
        lambda p: ops.utime(p, None),
        lambda p: ops.rename(area.rel("f"), p),
        lambda p: ops.rename(p, area.rel("g")),
    ]
    for path in (outside, f"{area.name}/../../{outside}", "..", "/etc/passwd", f"{area.name}/../f"):
        for call in crafted:
            with pytest.raises(PermissionError) as caught:
                call(path)
            assert caught.value.errno == errno.EACCES
    assert local.read_bytes() == b"local file beside the mount"
    assert area.r("f").read_bytes() == b"in export"


def test_lstat_of_a_symlink_after_stat_still_reports_the_link(area: Area) -> None:
    area.r("target").write_bytes(b"t")
    os.symlink("target", area.r("link"))
    assert os.stat(area.m("link")).st_size == 1
    assert stat_module.S_ISLNK(os.lstat(area.m("link")).st_mode)
    assert os.path.islink(area.m("link"))


def test_dotdot_climbing_out_through_an_existing_remote_directory(area: Area, e2e: MountE2E) -> None:
    (e2e.base / "beside.txt").write_bytes(b"beside")
    area.r("sub").mkdir()
    assert os.path.isdir(area.m("sub"))
    assert read(area.m("sub/../../../beside.txt")) == b"beside"


def test_every_replaced_call_reaches_a_local_path_spelled_through_the_mount(area: Area, e2e: MountE2E) -> None:
    side = e2e.base / f"side-{area.name}"
    side.mkdir()
    area.r("sub").mkdir()
    area.r("f").write_bytes(b"remote")
    out = area.m("sub/../../..") + f"/side-{area.name}"  # goes below the mount, then out to `side`

    with open(f"{out}/a", "wb") as f:
        assert f.name == f"{out}/a"  # the caller's spelling, as a local open shows it
        f.write(b"local")
    assert (side / "a").read_bytes() == b"local"
    fd = os.open(os.fsencode(f"{out}/b"), os.O_WRONLY | os.O_CREAT, 0o640)
    os.close(fd)
    assert os.stat(f"{out}/b").st_ino == os.lstat(Path(f"{out}/b")).st_ino == (side / "b").stat().st_ino
    os.symlink("a", f"{out}/link")
    assert os.readlink(f"{out}/link") == "a"
    os.link(f"{out}/a", f"{out}/hard")
    assert os.statvfs(out).f_bsize > 0
    os.chown(f"{out}/a", os.getuid(), os.getgid())
    os.chmod(f"{out}/a", 0o600)
    os.truncate(f"{out}/a", 2)
    os.utime(f"{out}/a", ns=(5_000_000_000, 5_000_000_000))
    assert os.access(f"{out}/a", os.R_OK) and not os.access(area.m("missing/../../x"), os.F_OK)
    assert (side / "a").stat().st_mtime_ns == 5_000_000_000 and (side / "a").read_bytes() == b"lo"
    os.mkdir(f"{out}/d")
    os.rename(f"{out}/a", f"{out}/d/a")
    os.replace(f"{out}/d/a", str(side / "a"))  # redirected source, plain local destination
    with pytest.raises(OSError) as crossing:  # local to remote: across devices, as for a plain local path
        os.rename(f"{out}/a", area.m("a"))
    assert crossing.value.errno == errno.EXDEV
    with pytest.raises(OSError) as crossing:
        os.rename(area.m("f"), f"{out}/f")
    assert crossing.value.errno == errno.EXDEV
    assert sorted(os.listdir(out)) == ["a", "b", "d", "hard", "link"]
    assert sorted(os.listdir(os.fsencode(out))) == [b"a", b"b", b"d", b"hard", b"link"]
    with os.scandir(out) as entries:
        assert sorted(e.name for e in entries if e.is_dir()) == ["d"]
    assert pathlib.Path(out, "a").exists() and pathlib.Path(out, "d").is_dir()
    pathlib.Path(out, "t").touch()
    assert (side / "t").is_file()
    shutil.rmtree(f"{out}/d")
    os.unlink(f"{out}/t")
    os.remove(f"{out}/hard")
    assert sorted(p.name for p in side.iterdir()) == ["a", "b", "link"]
    cwd = os.getcwd()
    try:
        os.chdir(out)
        assert os.getcwd() == str(side)
        assert read("a") == b"lo"
    finally:
        os.chdir(cwd)
    # errors name the caller's path, like a local walk's
    with pytest.raises(FileNotFoundError) as missing:
        os.stat(f"{out}/nothing")
    assert missing.value.filename == f"{out}/nothing"
    with pytest.raises(NotADirectoryError) as not_dir:
        os.listdir(area.m("f/../../../x"))
    assert not_dir.value.filename == area.m("f/../../../x")
    # a path relative to a directory descriptor is the kernel's to walk, as written
    base_fd = os.open(e2e.base, os.O_RDONLY)
    try:
        with pytest.raises(FileNotFoundError):
            os.stat(f"mnt/{area.name}/sub/../../../side-{area.name}/a", dir_fd=base_fd)
    finally:
        os.close(base_fd)
    shutil.rmtree(side)


def test_dotdot_after_a_missing_directory_is_not_found(area: Area) -> None:
    area.r("f").write_bytes(b"f")
    with pytest.raises(FileNotFoundError):
        read(area.m("missing/../f"))


def test_utime_errors_look_like_local_ones(area: Area, tmp_path: Path) -> None:
    assert failure(os.utime, area.m(), "missing") == failure(os.utime, str(tmp_path), "missing")


# -- install / uninstall -------------------------------------------------------------------------

ALIAS_MODULE = """
import os
from os import stat, listdir, rename
from os.path import exists, getsize
from builtins import open as builtin_open
from shutil import rmtree
"""

RESTORED = [
    (builtins, "open"),
    (io, "open"),
    (os, "stat"),
    (os, "lstat"),
    (os, "listdir"),
    (os, "scandir"),
    (os, "mkdir"),
    (os, "rmdir"),
    (os, "unlink"),
    (os, "remove"),
    (os, "rename"),
    (os, "replace"),
    (os, "chmod"),
    (os, "utime"),
    (os, "open"),
    (os, "truncate"),
    (shutil, "rmtree"),
    (pathlib.Path, "touch"),
]


def load_module(name: str, directory: Path, source: str) -> types.ModuleType:
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_install_patches_preloaded_aliases_and_uninstall_restores_originals(
    e2e: MountE2E, area: Area, tmp_path: Path
) -> None:
    area.r("f.txt").write_bytes(b"remote!")
    mount = tmp_path / "own-mount"
    with e2e.suspended():  # the module's patcher is uninstalled: everything is original again
        originals = {(owner, name): vars(owner)[name] for owner, name in RESTORED}
        assert os.stat is originals[(os, "stat")] and builtins.open is io.open
        aliases = load_module("fx_mount_e2e_aliases", tmp_path, ALIAS_MODULE)
        try:
            assert aliases.stat is os.stat
            patcher = new_patcher(e2e.store, e2e.section)
            patcher.install()
            try:
                patcher.mount_remote_dir(local_mount_dir_abs=str(mount), export_name="demo")
                remote = f"{mount}/{area.rel('f.txt')}"
                assert aliases.stat is os.stat is not originals[(os, "stat")]
                assert aliases.builtin_open is builtins.open is not originals[(builtins, "open")]
                assert aliases.stat(remote).st_size == 7
                assert aliases.getsize(remote) == 7 and aliases.exists(remote)
                assert aliases.listdir(f"{mount}/{area.rel()}") == ["f.txt"]
                with aliases.builtin_open(remote, "rb") as f:
                    assert f.read() == b"remote!"
                assert all(vars(owner)[name] is not originals[(owner, name)] for owner, name in RESTORED)
            finally:
                patcher.uninstall()
            for (owner, name), original in originals.items():
                assert vars(owner)[name] is original, f"{owner!r}.{name} not restored"
            assert aliases.stat is originals[(os, "stat")]
            assert aliases.listdir is originals[(os, "listdir")]
            assert aliases.rename is originals[(os, "rename")]
            assert aliases.builtin_open is originals[(builtins, "open")]
            assert aliases.rmtree is originals[(shutil, "rmtree")]
            assert os.listdir(mount) == []  # the mount directory is an empty local directory again
            with pytest.raises(FileNotFoundError):
                aliases.stat(f"{mount}/{area.rel('f.txt')}")
        finally:
            sys.modules.pop("fx_mount_e2e_aliases", None)
    assert read(area.m("f.txt")) == b"remote!"  # the module's mount is back


# -- across mounts -------------------------------------------------------------------------------


def test_rename_across_mounts_or_to_local_is_exdev_and_shutil_move_copies(
    area: Area, e2e: MountE2E, tmp_path: Path
) -> None:
    aux = e2e.path(area.name, export="aux")
    e2e.real(area.name, export="aux").mkdir()
    area.r("f.bin").write_bytes(b"payload")
    local = tmp_path / "local.bin"
    local.write_bytes(b"local payload")
    for src, dst in [
        (area.m("f.bin"), f"{aux}/f.bin"),
        (area.m("f.bin"), str(tmp_path / "f.bin")),
        (str(local), area.m("local.bin")),
    ]:
        for how in (os.rename, os.replace):
            with pytest.raises(OSError) as caught:
                how(src, dst)
            assert caught.value.errno == errno.EXDEV
            assert (caught.value.filename, caught.value.filename2) == (src, dst)
    assert area.r("f.bin").read_bytes() == b"payload" and local.read_bytes() == b"local payload"

    assert shutil.move(area.m("f.bin"), f"{aux}/f.bin") == f"{aux}/f.bin"
    assert e2e.real(f"{area.name}/f.bin", export="aux").read_bytes() == b"payload"
    assert not area.r("f.bin").exists()
    shutil.move(f"{aux}/f.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"payload"
    assert not e2e.real(f"{area.name}/f.bin", export="aux").exists()
    shutil.move(local, area.m("local.bin"))
    assert area.r("local.bin").read_bytes() == b"local payload" and not local.exists()

    area.r("tree/sub").mkdir(parents=True)
    area.r("tree/sub/x").write_bytes(b"x")
    area.r("tree/y").write_bytes(b"yy")
    shutil.move(area.m("tree"), f"{aux}/tree")
    assert agent_tree(e2e.real(f"{area.name}/tree", export="aux")) == {"sub": None, "sub/x": b"x", "y": b"yy"}
    assert not area.r("tree").exists()


def test_copytree_rmtree_glob_walk(area: Area, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "a" / "b").mkdir(parents=True)
    (source / "top.txt").write_bytes(b"top")
    (source / "a" / "one.py").write_bytes(b"print(1)")
    (source / "a" / "b" / "two.py").write_bytes(b"print(2)")
    (source / "a" / "b" / "data.bin").write_bytes(os.urandom(2 * MiB + 17))
    expected = agent_tree(source)

    shutil.copytree(source, area.m("copy"))
    assert agent_tree(area.r("copy")) == expected
    shutil.copytree(area.m("copy"), tmp_path / "back")
    assert agent_tree(tmp_path / "back") == expected
    shutil.copyfile(area.m("copy/top.txt"), area.m("copy/top2.txt"))
    assert area.r("copy/top2.txt").read_bytes() == b"top"
    shutil.copy2(area.m("copy/a/one.py"), tmp_path / "one.py")
    assert (tmp_path / "one.py").read_bytes() == b"print(1)"

    walked = sorted(
        (os.path.relpath(top, area.m("copy")), sorted(d), sorted(f)) for top, d, f in os.walk(area.m("copy"))
    )
    assert walked == sorted(
        (os.path.relpath(top, area.r("copy")), sorted(d), sorted(f)) for top, d, f in os.walk(area.r("copy"))
    )
    bottom_up = [os.path.relpath(top, area.m("copy")) for top, _, _ in os.walk(area.m("copy"), topdown=False)]
    assert bottom_up[-1] == "."

    def globbed(root: str, pattern: str, recursive: bool = False) -> list[str]:
        return sorted(os.path.relpath(p, root) for p in glob.glob(f"{root}/{pattern}", recursive=recursive))

    for pattern, recursive in [("*", False), ("*/*.py", False), ("**/*.py", True), ("a/b/*", False), ("**", True)]:
        assert globbed(area.m("copy"), pattern, recursive) == globbed(str(area.r("copy")), pattern, recursive), pattern
    assert globbed(area.m("copy"), "**/*.py", recursive=True) == ["a/b/two.py", "a/one.py"]
    assert sorted(p.name for p in pathlib.Path(area.m("copy")).glob("**/*.py")) == ["one.py", "two.py"]
    assert sorted(p.name for p in pathlib.Path(area.m("copy")).rglob("*.bin")) == ["data.bin"]

    shutil.rmtree(area.m("copy"))
    assert not area.r("copy").exists() and not os.path.exists(area.m("copy"))
    with pytest.raises(FileNotFoundError):
        shutil.rmtree(area.m("copy"))
    shutil.rmtree(area.m("copy"), ignore_errors=True)


def test_pathlib_round_trip(area: Area) -> None:
    p = pathlib.Path(area.m("dir/file.txt"))
    p.parent.mkdir()
    assert p.write_text("héllo", encoding="utf-8") == 5
    assert area.r("dir/file.txt").read_bytes() == "héllo".encode()
    assert p.read_text(encoding="utf-8") == "héllo" and p.read_bytes() == "héllo".encode()
    assert p.write_bytes(b"\x00\x01") == 2 and p.read_bytes() == b"\x00\x01"
    assert p.exists() and p.is_file() and p.parent.is_dir() and p.stat().st_size == 2
    with p.open("a") as f:
        f.write("z")
    assert area.r("dir/file.txt").read_bytes() == b"\x00\x01z"
    p.unlink()
    assert not p.exists() and not area.r("dir/file.txt").exists()
    with pytest.raises(FileNotFoundError):
        p.unlink()
    p.unlink(missing_ok=True)
