"""Installing and uninstalling the interceptor: aliases, restoration by identity, ref-counting, local paths."""

from __future__ import annotations

import builtins
import errno
import importlib.util
import io
import os
import pathlib
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_fs.patcher import Interceptor, MountTable, process_interceptor
from fluxon_fs.patcher.intercept import _replaced_attributes
from tests.support.mount_harness import mounted_export, read_bytes

ALIAS_MODULE = """
import os
from os import stat, listdir, scandir
from os.path import exists
from builtins import open as builtin_open
from shutil import rmtree
stat_ref = os.stat
"""


def load_module(name: str, directory: Path, source: str) -> types.ModuleType:
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def original_attributes() -> dict[tuple[int, str], object]:
    return {(id(owner), name): vars(owner)[name] for owner, name, _ in _replaced_attributes()}


def globals_holding(objects: set[int]) -> dict[tuple[str, str], object]:
    """Every (module, global) whose value is one of ``objects`` (by id)."""
    found = {}
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None) if isinstance(module, types.ModuleType) else None
        if isinstance(namespace, dict):
            for key, value in list(namespace.items()):
                if id(value) in objects:
                    found[(module_name, key)] = value
    return found


@pytest.fixture
def alias_module(tmp_path: Path) -> Iterator[types.ModuleType]:
    module = load_module("fx_patcher_alias_module", tmp_path, ALIAS_MODULE)
    yield module
    sys.modules.pop(module.__name__, None)


def test_install_patches_aliases_and_uninstall_restores_every_original(
    tmp_path: Path, alias_module: types.ModuleType
) -> None:
    before = original_attributes()
    originals = {id(value) for value in before.values()}
    holders_before = globals_holding(originals)
    assert ("fx_patcher_alias_module", "stat") in holders_before
    with mounted_export(tmp_path) as mnt:
        mnt.real("f.txt").write_bytes(b"remote")
        assert os.stat is not before[(id(os), "stat")]
        assert alias_module.stat is os.stat and alias_module.stat_ref is os.stat
        assert alias_module.builtin_open is builtins.open is io.open
        assert alias_module.stat(mnt.path("f.txt")).st_size == 6
        assert alias_module.listdir(mnt.mount) == ["f.txt"]
        assert alias_module.exists(mnt.path("f.txt"))
        with alias_module.builtin_open(mnt.path("f.txt"), "rb") as f:
            assert f.read() == b"remote"
        late = load_module("fx_patcher_late_module", tmp_path, "from os import listdir, lstat\n")
        assert late.listdir is os.listdir
        replacements = {id(vars(owner)[name]) for owner, name, _ in _replaced_attributes()}
        assert os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks
    try:
        assert original_attributes() == before
        for key, value in before.items():
            owner_attr = original_attributes()[key]
            assert owner_attr is value
        assert globals_holding(originals) == holders_before | {
            ("fx_patcher_late_module", "listdir"): before[(id(os), "listdir")],
            ("fx_patcher_late_module", "lstat"): before[(id(os), "lstat")],
        }
        assert globals_holding(replacements) == {}
        assert alias_module.stat is before[(id(os), "stat")]
        assert alias_module.builtin_open is before[(id(builtins), "open")]
        assert late.listdir is before[(id(os), "listdir")]
        assert all(r not in os.supports_dir_fd for r in replacements)
        assert shutil.rmtree is before[(id(shutil), "rmtree")]
    finally:
        sys.modules.pop("fx_patcher_late_module", None)


def test_install_is_reference_counted() -> None:
    interceptor = process_interceptor()
    original = os.stat
    interceptor.install()
    interceptor.install()
    assert interceptor.install_count == 2
    interceptor.uninstall()
    assert os.stat is not original and interceptor.installed
    interceptor.uninstall()
    assert os.stat is original and not interceptor.installed
    with pytest.raises(RuntimeError, match="without a matching install"):
        interceptor.uninstall()
    with interceptor:
        assert os.stat is not original
    assert os.stat is original


def test_only_one_interceptor_at_a_time() -> None:
    other = Interceptor(MountTable())
    with process_interceptor(), pytest.raises(RuntimeError, match="already installed"):
        other.install()
    with other:
        assert other.installed
    assert not other.installed


def test_mount_without_install_routes_nothing(tmp_path: Path) -> None:
    with mounted_export(tmp_path) as mnt:
        mnt.real("f").write_bytes(b"x")
        process_interceptor().uninstall()
        try:
            assert os.listdir(mnt.mount) == []  # the empty local directory
            with pytest.raises(FileNotFoundError):
                read_bytes(mnt.path("f"))
        finally:
            process_interceptor().install()
        assert read_bytes(mnt.path("f")) == b"x"


def test_local_paths_behave_exactly_as_before(tmp_path: Path) -> None:
    work = tmp_path / "local"
    work.mkdir()

    def exercise() -> list[object]:
        results: list[object] = []

        def attempt(func: object, *args: object, **kwargs: object) -> None:
            try:
                value = func(*args, **kwargs)  # type: ignore[operator]
                results.append(("ok", value if not isinstance(value, os.stat_result) else value.st_size))
            except OSError as exc:
                results.append(("err", type(exc).__name__, exc.errno, exc.filename, str(exc)))

        def write(path: Path, data: bytes) -> None:
            with open(path, "wb") as f:
                f.write(data)

        for name in ("a", "b"):
            if (work / name).exists():
                shutil.rmtree(work / name) if (work / name).is_dir() else (work / name).unlink()
        attempt(write, work / "a", b"hello")
        attempt(read_bytes, work / "a")
        attempt(os.stat, str(work / "a"))
        attempt(os.stat, bytes(work / "a"))
        attempt(os.stat, work / "missing")
        attempt(os.mkdir, work / "b")
        attempt(os.mkdir, work / "b")
        attempt(os.rename, work / "a", work / "b" / "a")
        attempt(os.listdir, work / "b")
        attempt(lambda: sorted(type(e).__name__ for e in os.scandir(work / "b")))
        attempt(os.rmdir, work / "b")
        attempt(os.utime, work / "b" / "a", ns=(1, 2))
        attempt(lambda: os.stat(work / "b" / "a").st_mtime_ns)
        fd = os.open(work / "b" / "a", os.O_RDONLY)
        attempt(lambda: os.stat(fd).st_size)
        os.close(fd)
        attempt(os.chmod, work / "b" / "a", 0o600)
        attempt(os.access, work / "b" / "a", os.R_OK)
        attempt(open, work / "nope")
        attempt(shutil.rmtree, work / "b")
        attempt(os.path.exists, work / "b")
        return results

    plain = exercise()
    with mounted_export(tmp_path):
        patched = exercise()
    assert patched == plain
    assert ("ok", ["DirEntry"]) in plain


def test_shutil_rmtree_keeps_its_fd_based_implementation_for_local_trees(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "x").mkdir(parents=True)
    (tree / "x" / "f").write_bytes(b"1")
    calls: list[str] = []
    with mounted_export(tmp_path):
        real_open = os.open

        def spy(path: object, *args: object, **kwargs: object) -> int:
            calls.append(os.fsdecode(path) if not isinstance(path, int) else str(path))  # type: ignore[arg-type]
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        os.open = spy  # type: ignore[assignment]
        try:
            shutil.rmtree(tree)
        finally:
            os.open = real_open  # type: ignore[assignment]
    assert not tree.exists()
    assert str(tree) in calls  # the standard fd-based walk ran


def test_os_functions_refused_on_mount_work_locally(tmp_path: Path) -> None:
    local = tmp_path / "l"
    local.write_bytes(b"1")
    with mounted_export(tmp_path) as mnt:
        mnt.real("r").write_bytes(b"1")
        fd = os.open(local, os.O_RDONLY)
        os.close(fd)
        os.symlink(local, tmp_path / "link")
        assert os.readlink(tmp_path / "link") == str(local)
        with pytest.raises(OSError) as caught:
            os.link(mnt.path("r"), mnt.path("hard"))
        assert caught.value.errno == errno.ENOTSUP
        assert pathlib.Path(tmp_path / "link").resolve() == local
