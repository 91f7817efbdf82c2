"""Directory and metadata operations on a mount through os.*, os.path, pathlib, shutil, glob and os.walk."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mount_harness import Mounted, mounted_export, read_bytes


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mounted]:
    with mounted_export(tmp_path) as mounted:
        yield mounted


def make_tree(mnt: Mounted) -> None:
    """a.txt, sub/b.txt, sub/deep/c.bin created on the agent side."""
    root = mnt.real()
    (root / "a.txt").write_bytes(b"aaa")
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "b.txt").write_bytes(b"bb")
    (root / "sub" / "deep" / "c.bin").write_bytes(b"c" * 10)


def test_stat_and_os_path_predicates(mnt: Mounted) -> None:
    make_tree(mnt)
    st = os.stat(mnt.path("a.txt"))
    agent = mnt.real("a.txt").stat()
    assert (st.st_size, st.st_mtime_ns, st.st_mode, st.st_ino) == (
        agent.st_size,
        agent.st_mtime_ns,
        agent.st_mode,
        agent.st_ino,
    )
    assert st.st_dev != agent.st_dev
    assert os.lstat(mnt.path("a.txt")).st_size == 3
    assert os.path.exists(mnt.path("a.txt")) and os.path.lexists(mnt.path("a.txt"))
    assert os.path.isfile(mnt.path("a.txt")) and not os.path.isdir(mnt.path("a.txt"))
    assert os.path.isdir(mnt.path("sub")) and os.path.isdir(mnt.mount)
    assert not os.path.islink(mnt.path("a.txt"))
    assert os.path.getsize(mnt.path("sub/deep/c.bin")) == 10
    assert os.path.getmtime(mnt.path("a.txt")) == agent.st_mtime
    assert not os.path.exists(mnt.path("missing"))
    assert not os.path.isdir(mnt.path("a.txt/x"))
    assert os.path.ismount(mnt.mount)
    assert os.path.samefile(mnt.path("a.txt"), mnt.path("sub/../a.txt"))
    assert os.access(mnt.path("a.txt"), os.R_OK | os.W_OK)
    assert not os.access(mnt.path("missing"), os.F_OK)
    with pytest.raises(FileNotFoundError) as caught:
        os.stat(mnt.path("missing"))
    assert caught.value.filename == mnt.path("missing")


def test_listdir_and_scandir_need_no_call_per_entry(mnt: Mounted) -> None:
    make_tree(mnt)
    mnt.ops.reset()
    assert sorted(os.listdir(mnt.mount)) == ["a.txt", "sub"]
    with os.scandir(mnt.mount) as entries:
        by_name = {entry.name: entry for entry in entries}
    assert mnt.ops.calls == {"list_dir": 1}
    a, sub = by_name["a.txt"], by_name["sub"]
    assert a.is_file() and not a.is_dir() and not a.is_symlink()
    assert sub.is_dir() and not sub.is_file()
    assert a.path == mnt.path("a.txt") and os.fspath(a) == mnt.path("a.txt")
    assert a.stat().st_size == 3 and a.inode() == mnt.real("a.txt").stat().st_ino
    assert repr(a) == "<DirEntry 'a.txt'>"
    assert os.stat(mnt.path("a.txt")).st_size == 3
    assert mnt.ops.calls == {"list_dir": 1}  # stats came with the listing
    assert [e.name for e in os.scandir(mnt.path("sub"))] == ["b.txt", "deep"]
    assert os.listdir(os.fsencode(mnt.mount)) == [b"a.txt", b"sub"]
    assert next(e.path for e in os.scandir(os.fsencode(mnt.path("sub")))) == os.fsencode(mnt.path("sub/b.txt"))
    with pytest.raises(NotADirectoryError):
        os.listdir(mnt.path("a.txt"))
    with pytest.raises(FileNotFoundError):
        os.scandir(mnt.path("nothing"))


def test_mkdir_makedirs_rmdir_unlink(mnt: Mounted) -> None:
    os.mkdir(mnt.path("d"))
    assert mnt.real("d").is_dir()
    with pytest.raises(FileExistsError):
        os.mkdir(mnt.path("d"))
    with pytest.raises(FileNotFoundError):
        os.mkdir(mnt.path("x/y"))
    os.makedirs(mnt.path("d/e/f"))
    os.makedirs(mnt.path("d/e/f"), exist_ok=True)
    with pytest.raises(FileExistsError):
        os.makedirs(mnt.path("d/e/f"))
    os.makedirs(mnt.mount, exist_ok=True)
    Path(mnt.path("d/e/f/file")).write_bytes(b"1")
    with pytest.raises(FileExistsError):
        os.makedirs(mnt.path("d/e/f/file"), exist_ok=True)
    with pytest.raises(OSError) as not_empty:
        os.rmdir(mnt.path("d"))
    assert not_empty.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        os.rmdir(mnt.path("d/e/f/file"))
    with pytest.raises(IsADirectoryError):
        os.unlink(mnt.path("d/e/f"))
    os.remove(mnt.path("d/e/f/file"))
    os.rmdir(mnt.path("d/e/f"))
    assert os.listdir(mnt.path("d/e")) == []
    with pytest.raises(FileNotFoundError):
        os.unlink(mnt.path("d/e/f/file"))
    with pytest.raises(OSError) as busy:
        os.rmdir(mnt.mount)
    assert busy.value.errno == errno.EBUSY


def test_rename_and_replace(mnt: Mounted) -> None:
    make_tree(mnt)
    os.rename(mnt.path("a.txt"), mnt.path("sub/a2.txt"))
    assert not os.path.exists(mnt.path("a.txt"))
    assert read_bytes(mnt.path("sub/a2.txt")) == b"aaa"
    os.replace(mnt.path("sub/b.txt"), mnt.path("sub/a2.txt"))
    assert read_bytes(mnt.path("sub/a2.txt")) == b"bb"
    os.rename(mnt.path("sub/deep"), mnt.path("deep2"))
    assert os.listdir(mnt.path("deep2")) == ["c.bin"]
    assert os.listdir(mnt.path("sub")) == ["a2.txt"]
    with pytest.raises(FileNotFoundError) as caught:
        os.rename(mnt.path("nope"), mnt.path("other"))
    assert (caught.value.filename, caught.value.filename2) == (mnt.path("nope"), mnt.path("other"))


def test_cross_device_renames_and_shutil_move(mnt: Mounted, tmp_path: Path) -> None:
    make_tree(mnt)
    local = tmp_path / "local.txt"
    local.write_bytes(b"local")
    for src, dst in [(mnt.path("a.txt"), str(tmp_path / "x")), (str(local), mnt.path("y"))]:
        for move in (os.rename, os.replace):
            with pytest.raises(OSError) as caught:
                move(src, dst)
            assert caught.value.errno == errno.EXDEV
            assert (caught.value.filename, caught.value.filename2) == (src, dst)
    shutil.move(mnt.path("a.txt"), str(tmp_path / "moved.txt"))
    assert (tmp_path / "moved.txt").read_bytes() == b"aaa"
    assert not os.path.exists(mnt.path("a.txt"))
    shutil.move(str(local), mnt.path("sub/from_local.txt"))
    assert mnt.real("sub/from_local.txt").read_bytes() == b"local" and not local.exists()


def test_rename_between_two_mounts_is_cross_device(tmp_path: Path) -> None:
    with mounted_export(tmp_path, mount_name="one") as one, mounted_export(tmp_path, mount_name="two") as two:
        one.real("f").write_bytes(b"1")
        with pytest.raises(OSError) as caught:
            os.rename(one.path("f"), two.path("f"))
        assert caught.value.errno == errno.EXDEV
        shutil.move(one.path("f"), two.path("g"))
        assert two.real("g").read_bytes() == b"1" and not one.real("f").exists()
        assert os.stat(one.mount).st_dev != os.stat(two.mount).st_dev


def test_chmod_utime_truncate(mnt: Mounted) -> None:
    make_tree(mnt)
    os.chmod(mnt.path("a.txt"), 0o600)
    assert stat.S_IMODE(mnt.real("a.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(mnt.path("a.txt")).st_mode) == 0o600
    os.utime(mnt.path("a.txt"), ns=(1_000_000_123, 2_000_000_456))
    assert os.stat(mnt.path("a.txt")).st_mtime_ns == 2_000_000_456
    os.utime(mnt.path("a.txt"), (10.5, 20.25))
    assert mnt.real("a.txt").stat().st_mtime_ns == 20_250_000_000
    os.utime(mnt.path("a.txt"))
    assert mnt.real("a.txt").stat().st_mtime > 1_000_000_000
    with pytest.raises(ValueError):
        os.utime(mnt.path("a.txt"), (1, 2), ns=(1, 2))
    with pytest.raises(TypeError):
        os.utime(mnt.path("a.txt"), [1, 2])
    with pytest.raises(FileNotFoundError) as missing:
        os.utime(mnt.path("missing"))
    assert missing.value.filename is None  # as CPython's os.utime
    os.truncate(mnt.path("a.txt"), 1)
    assert os.path.getsize(mnt.path("a.txt")) == 1
    assert read_bytes(mnt.path("a.txt")) == b"a"
    with pytest.raises(FileNotFoundError):
        os.chmod(mnt.path("missing"), 0o600)


def test_os_open_and_descriptor_functions_are_refused(mnt: Mounted) -> None:
    make_tree(mnt)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(OSError) as caught:
            os.open(mnt.path("a.txt"), flags)
        assert caught.value.errno == errno.ENOTSUP
        assert caught.value.filename == mnt.path("a.txt")
    with pytest.raises(OSError) as caught:
        os.symlink("a.txt", mnt.path("link"))
    assert caught.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as caught:
        os.readlink(mnt.path("a.txt"))
    assert caught.value.errno == errno.EINVAL
    assert not mnt.real("link").exists()


def test_pathlib_methods(mnt: Mounted) -> None:
    root = Path(mnt.mount)
    (root / "p" / "q").mkdir(parents=True)
    (root / "p" / "q").mkdir(parents=True, exist_ok=True)
    with pytest.raises(FileExistsError):
        (root / "p").mkdir()
    f = root / "p" / "q" / "file.txt"
    assert f.write_text("text ✓", encoding="utf-8") == 6
    assert f.read_text(encoding="utf-8") == "text ✓"
    f.write_bytes(b"bytes")
    assert f.read_bytes() == b"bytes"
    with f.open("ab") as handle:
        handle.write(b"+")
    assert f.exists() and f.is_file() and not f.is_dir() and (root / "p").is_dir()
    assert f.stat().st_size == 6
    assert not (root / "none").exists()
    assert sorted(p.name for p in (root / "p").iterdir()) == ["q"]
    (root / "p" / "other.py").touch()
    (root / "p" / "other.py").touch()
    with pytest.raises(FileExistsError):
        (root / "p" / "other.py").touch(exist_ok=False)
    assert sorted(str(p.relative_to(root)) for p in root.glob("p/*")) == ["p/other.py", "p/q"]
    assert [p.name for p in root.rglob("*.txt")] == ["file.txt"]
    assert [p.name for p in root.glob("**/*.py")] == ["other.py"]
    renamed = f.rename(root / "p" / "renamed.txt")
    assert renamed.read_bytes() == b"bytes+" and not f.exists()
    renamed.replace(root / "p" / "other.py")
    assert (root / "p" / "other.py").read_bytes() == b"bytes+"
    (root / "p" / "other.py").unlink()
    (root / "p" / "other.py").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (root / "p" / "other.py").unlink()
    assert (root / "p" / "q").resolve() == root / "p" / "q"
    (root / "p" / "q").rmdir()
    assert mnt.real("p").exists() and not mnt.real("p/q").exists()


def test_shutil_copy_and_rmtree(mnt: Mounted, tmp_path: Path) -> None:
    make_tree(mnt)
    shutil.copyfile(mnt.path("a.txt"), mnt.path("copy.txt"))
    assert mnt.real("copy.txt").read_bytes() == b"aaa"
    shutil.copy2(mnt.path("sub/b.txt"), str(tmp_path / "b_local.txt"))
    assert (tmp_path / "b_local.txt").stat().st_mtime_ns == mnt.real("sub/b.txt").stat().st_mtime_ns
    shutil.copytree(mnt.path("sub"), mnt.path("sub_copy"))
    shutil.copytree(mnt.path("sub"), str(tmp_path / "sub_local"))
    shutil.copytree(str(tmp_path / "sub_local"), mnt.path("from_local"))
    for tree in (mnt.real("sub_copy"), tmp_path / "sub_local", mnt.real("from_local")):
        assert (tree / "b.txt").read_bytes() == b"bb"
        assert (tree / "deep" / "c.bin").read_bytes() == b"c" * 10
    assert mnt.real("sub_copy/deep/c.bin").stat().st_mtime_ns == mnt.real("sub/deep/c.bin").stat().st_mtime_ns
    with pytest.raises(shutil.SameFileError):
        shutil.copyfile(mnt.path("a.txt"), mnt.path("sub/../a.txt"))
    shutil.rmtree(mnt.path("sub_copy"))
    assert not mnt.real("sub_copy").exists()
    with pytest.raises(FileNotFoundError):
        shutil.rmtree(mnt.path("sub_copy"))
    shutil.rmtree(mnt.path("sub_copy"), ignore_errors=True)
    shutil.rmtree(mnt.path("missing/../sub"), ignore_errors=True)
    assert mnt.real("sub").exists()
    failures: list[tuple[object, object]] = []
    shutil.rmtree(mnt.path("sub_copy"), onerror=lambda func, path, info: failures.append((func, path)))
    assert failures and failures[0][1] == mnt.path("sub_copy")
    shutil.rmtree(str(tmp_path / "sub_local"))  # a local tree still uses the standard implementation
    assert not (tmp_path / "sub_local").exists()


def test_glob_and_walk(mnt: Mounted) -> None:
    make_tree(mnt)
    assert sorted(glob.glob(mnt.path("*"))) == [mnt.path("a.txt"), mnt.path("sub")]
    assert glob.glob(mnt.path("**/*.bin"), recursive=True) == [mnt.path("sub/deep/c.bin")]
    assert sorted(glob.glob("**", root_dir=mnt.mount, recursive=True)) == [
        "a.txt",
        "sub",
        "sub/b.txt",
        "sub/deep",
        "sub/deep/c.bin",
    ]
    assert glob.glob(mnt.path("sub/?.txt")) == [mnt.path("sub/b.txt")]
    walked = [(top, sorted(dirs), sorted(files)) for top, dirs, files in os.walk(mnt.mount)]
    assert walked == [
        (mnt.mount, ["sub"], ["a.txt"]),
        (mnt.path("sub"), ["deep"], ["b.txt"]),
        (mnt.path("sub/deep"), [], ["c.bin"]),
    ]
    bottom_up = [top for top, _, _ in os.walk(mnt.mount, topdown=False)]
    assert bottom_up == [mnt.path("sub/deep"), mnt.path("sub"), mnt.mount]
    errors: list[OSError] = []
    assert list(os.walk(mnt.path("none"), onerror=errors.append)) == []
    assert isinstance(errors[0], FileNotFoundError)


def test_relative_paths_and_dot_dot(mnt: Mounted, tmp_path: Path) -> None:
    make_tree(mnt)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        name = os.path.basename(mnt.mount)
        assert read_bytes(f"{name}/a.txt") == b"aaa"
        assert os.listdir(name) == ["a.txt", "sub"]
        os.chdir(mnt.mount)  # the mount root exists locally (empty): relative paths now go remote
        assert sorted(os.listdir()) == ["a.txt", "sub"]
        assert sorted(os.listdir(".")) == ["a.txt", "sub"]
        assert read_bytes("sub/b.txt") == b"bb"
        assert next(e.path for e in os.scandir()) == "./a.txt"
        with pytest.raises(OSError) as caught:
            os.chdir("sub")
        assert caught.value.errno == errno.ENOTSUP
        os.chdir("/")
        assert os.path.exists(mnt.mount[1:] + "/a.txt")
    finally:
        os.chdir(cwd)
    Path(tmp_path / "outside.txt").write_bytes(b"local")
    assert read_bytes(mnt.path("../outside.txt")) == b"local"  # '..' out of the mount: local again
    assert read_bytes(mnt.path("sub/./../a.txt")) == b"aaa"
    assert not os.path.exists(mnt.path("missing/../a.txt"))  # as locally: 'missing' must exist
    with pytest.raises(NotADirectoryError):
        read_bytes(mnt.path("a.txt/../a.txt"))
    assert read_bytes(mnt.mount + "//sub//b.txt") == b"bb"
