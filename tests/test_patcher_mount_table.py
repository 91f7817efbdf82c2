"""Mount directory rules (FS.md §2) and lexical routing of paths into mounts (and out of them with ``..``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.patcher import LocalRedirect, MountTable


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[LocalExportOps]:
    root = tmp_path / "export"
    root.mkdir()
    with LocalExportOps(str(root)) as export_ops:
        yield export_ops


def test_mount_directory_rules(tmp_path: Path, ops: LocalExportOps) -> None:
    table = MountTable()
    with pytest.raises(ValueError, match="absolute"):
        table.mount("relative/dir", ops, "demo")
    with pytest.raises(ValueError, match="must not be '/'"):
        table.mount("/", ops, "demo")
    with pytest.raises(ValueError, match="must not be '/'"):
        table.mount("//./", ops, "demo")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    with pytest.raises(ValueError, match="not empty"):
        table.mount(str(tmp_path / "full"), ops, "demo")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        table.mount(str(tmp_path / "file"), ops, "demo")
    created = tmp_path / "new" / "nested" / "mnt"
    table.mount(str(created), ops, "demo")
    assert created.is_dir()
    for overlapping, rule in [(created, "equal"), (created / "inner", "inside"), (tmp_path / "new", "contain")]:
        with pytest.raises(ValueError, match="overlaps the existing mount") as caught:
            table.mount(str(overlapping) + "/", ops, "demo")
        assert rule in str(caught.value)
    (tmp_path / "empty").mkdir()
    table.mount(str(tmp_path / "empty"), ops, "demo")  # an existing empty directory is fine
    table.mount(str(tmp_path / "new" / "nested" / "mnt2"), ops, "demo")  # a sibling is no overlap
    assert set(table.exports()) == {str(created), str(tmp_path / "empty"), str(tmp_path / "new/nested/mnt2")}
    table.unmount(str(created) + "/")
    with pytest.raises(ValueError, match="is not a mount"):
        table.unmount(str(created))
    assert created.is_dir()


def test_route_normalises_lexically(tmp_path: Path, ops: LocalExportOps) -> None:
    table = MountTable()
    mount = str(tmp_path / "mnt")
    export = table.mount(mount, ops, "demo")

    def relpath(path: object) -> str | None:
        target = table.route(path)
        if target is None:
            return None
        assert target.export is export
        return target.relpath

    (tmp_path / "export" / "a" / "b").mkdir(parents=True)
    (tmp_path / "export" / "f").write_bytes(b"")
    assert relpath(mount) == ""
    assert relpath(mount + "/") == ""
    assert relpath(mount + "/a/b.txt") == "a/b.txt"
    assert relpath(mount + "//a/./b/../c") == "a/c"
    assert relpath(mount + "/..") is None  # never below the mount: the kernel walks it as written
    assert relpath(str(tmp_path) + "/./mnt/a") == "a"
    with pytest.raises(FileNotFoundError):  # a local directory before '..' must exist too
        table.route(str(tmp_path) + "/other/../mnt/a")
    (tmp_path / "other").mkdir()
    assert relpath(str(tmp_path) + "/other/../mnt/a") == "a"
    assert relpath(mount + "x/a") is None
    # '..' needs an existing directory before it, as in the kernel's walk (checked on the export).
    with pytest.raises(FileNotFoundError) as missing:
        table.route(mount + "/missing/../f")
    assert missing.value.filename == mount + "/missing/../f"
    with pytest.raises(NotADirectoryError):
        table.route(mount + "/f/../a")
    with pytest.raises(FileNotFoundError):
        table.route(mount + "/missing/../../x")  # climbing out through a missing directory
    assert relpath(str(tmp_path / "elsewhere")) is None
    assert relpath(Path(mount) / "p") == "p"
    assert relpath(os.fsencode(mount + "/b")) == "b"
    assert table.route(os.fsencode(mount + "/b")).user_path == os.fsencode(mount + "/b")  # type: ignore[union-attr]
    assert relpath(3) is None
    assert relpath(object()) is None
    assert relpath("") is None
    assert table.route(mount + "/f/").must_be_dir  # type: ignore[union-attr]
    assert not table.route(mount + "/f").must_be_dir  # type: ignore[union-attr]


def test_route_of_relative_paths_follows_the_working_directory(tmp_path: Path, ops: LocalExportOps) -> None:
    table = MountTable()
    mount = tmp_path / "mnt"
    table.mount(str(mount), ops, "demo")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        table.refresh_cwd()
        assert table.route("mnt/a").relpath == "a"  # type: ignore[union-attr]
        assert table.route("other/a") is None
        os.chdir(mount)
        table.refresh_cwd()
        assert table.route("a").relpath == "a"  # type: ignore[union-attr]
        assert table.route(".").relpath == ""  # type: ignore[union-attr]
        assert table.route("../x") is None
        os.chdir("/")
        table.refresh_cwd()
        assert table.route(str(mount)[1:] + "/z").relpath == "z"  # type: ignore[union-attr]
        os.chdir(tmp_path / "export")
        table.refresh_cwd()
        assert table.route("a") is None
        assert table.route("../mnt/q").relpath == "q"  # type: ignore[union-attr]
    finally:
        os.chdir(cwd)


def test_route_with_mounts_sharing_no_path_component(tmp_path: Path, ops: LocalExportOps) -> None:
    elsewhere_base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/var/tmp"
    if not os.access(elsewhere_base, os.W_OK):
        pytest.skip("needs a second writable top-level directory")
    elsewhere = tempfile.mkdtemp(prefix="fxroute", dir=elsewhere_base)
    try:
        table = MountTable()
        first = table.mount(str(tmp_path / "m1"), ops, "one")
        second = table.mount(elsewhere + "/m2", ops, "two")
        assert table.local_guard == ["", ""]
        assert table.route(str(tmp_path / "m1" / "a")).export is first  # type: ignore[union-attr]
        assert table.route(elsewhere + "/m2/b").export is second  # type: ignore[union-attr]
        assert table.route(str(tmp_path / "m1x")) is None
        assert table.route("/usr/lib") is None
    finally:
        os.rmdir(elsewhere + "/m2")
        os.rmdir(elsewhere)


def test_route_redirects_a_local_path_spelled_through_a_mount(tmp_path: Path, ops: LocalExportOps) -> None:
    table = MountTable()
    mount = str(tmp_path / "mnt")
    table.mount(mount, ops, "demo")
    (tmp_path / "export" / "a" / "b").mkdir(parents=True)
    (tmp_path / "export" / "f").write_bytes(b"")
    (tmp_path / "beside").mkdir()
    (tmp_path / "lf").write_bytes(b"")

    def redirect(path: object) -> tuple[object, object]:
        target = table.route(path)
        assert isinstance(target, LocalRedirect), target
        return target.path, target.user_path

    out = str(tmp_path / "x")
    assert redirect(mount + "/a/../../x") == (out, mount + "/a/../../x")
    assert redirect(mount + "/a/b/../../.././x") == (out, mount + "/a/b/../../.././x")
    assert redirect(mount + "/a/../../x/") == (out + "/", mount + "/a/../../x/")  # still must be a directory
    assert redirect(mount + "/a/../..") == (str(tmp_path), mount + "/a/../..")
    assert redirect(os.fsencode(mount + "/a/../../x")) == (os.fsencode(out), os.fsencode(mount + "/a/../../x"))
    assert redirect(Path(mount) / "a" / ".." / ".." / "x") == (out, mount + "/a/../../x")
    assert redirect(mount + "/a/../../beside/../x") == (out, mount + "/a/../../beside/../x")
    # back into the mount again: remote after all
    target = table.route(mount + "/a/../../mnt/f")
    assert not isinstance(target, LocalRedirect) and target is not None and target.relpath == "f"
    # the walk is checked like the kernel's, remote and local components alike, on the caller's path
    for path, error in [
        (mount + "/missing/../../x", FileNotFoundError),
        (mount + "/f/../../x", NotADirectoryError),
        (mount + "/a/../../missing/../x", FileNotFoundError),
        (mount + "/a/../../lf/../x", NotADirectoryError),
        (os.fsencode(mount + "/missing/../../x"), FileNotFoundError),
    ]:
        with pytest.raises(error) as caught:
            table.route(path)
        assert caught.value.filename == path
    # paths that never go below the mount are the kernel's to walk, unchanged and unchecked
    assert table.route(mount + "/../x") is None
    assert table.route(str(tmp_path / "missing" / ".." / "x")) is None


def test_route_redirects_relative_paths_from_a_working_directory_near_a_mount(
    tmp_path: Path, ops: LocalExportOps
) -> None:
    table = MountTable()
    table.mount(str(tmp_path / "mnt"), ops, "demo")
    (tmp_path / "export" / "a").mkdir()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        table.refresh_cwd()
        target = table.route("mnt/a/../../x")
        assert isinstance(target, LocalRedirect)
        assert (target.path, target.user_path) == (str(tmp_path / "x"), "mnt/a/../../x")
        os.chdir(tmp_path / "mnt")
        table.refresh_cwd()
        target = table.route("a/../../x")
        assert isinstance(target, LocalRedirect) and target.path == str(tmp_path / "x")
        assert table.route("../x") is None
        with pytest.raises(FileNotFoundError):
            table.route("missing/../../x")
    finally:
        os.chdir(cwd)
