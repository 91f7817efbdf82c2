"""The directory-fd fast path of a transfer between two exports of one agent, and attacks on it.

Real directories, real :class:`LocalExportOps` on both sides, ``copy_batch`` as the worker calls it
with a :class:`LocalDirectoryCopier`. The access hook here records every check and refuses reading
anything under ``secret`` (the real hook, with users and scopes, is exercised end to end in
tests/test_transfer_security.py, whose jobs also take this path). The attacks swap entries for
symlinks after the scan — a source file, a source directory, a target directory, a target file —
pointing outside the export or into the refused folder; none of them may be followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.rpc_types import RpcCall
from fluxon_fs.export.serving.authorized_ops import AuthorizedExportOps
from fluxon_fs.export.serving.local_copy import LocalDirectoryCopier
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.transfer.batching import group_batches
from fluxon_fs.transfer.copier import TEMP_MARKER, copy_batch, scan_export_dir
from fluxon_fs.transfer.jobs import BatchResult, JobSpec
from fluxon_fs.transfer.records import ENTRY_FILE, ScanEntry
from tests.support.trees import assert_same_tree, make_tree

SECRET = b"outside the export: never copied\n"
VICTIM = b"outside the export: never overwritten\n"


class RecordingAuthorize:
    """Allows everything except reading below ``secret``; records ``(export, op, relpaths)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []

    def __call__(self, call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool) -> None:
        self.calls.append((export_name, op, tuple(relpaths)))
        for relpath in relpaths:
            if export_name == "src" and not is_write and op != "list_dir" and relpath.startswith("secret"):
                raise PermissionDeniedError(f"permission denied: may not read {relpath!r}")

    def ops(self, export_name: str) -> list[str]:
        return [op for export, op, _ in self.calls if export == export_name]


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.src, self.dst, self.outside = root / "src", root / "dst", root / "outside"
        for path in (self.src / "tree", self.dst, self.outside / "dir", self.src / "secret"):
            path.mkdir(parents=True, exist_ok=True)
        (self.outside / "secret.txt").write_bytes(SECRET)
        (self.outside / "dir" / "f.txt").write_bytes(SECRET)
        (self.outside / "victim.txt").write_bytes(VICTIM)
        (self.src / "secret" / "s.txt").write_bytes(SECRET)
        self.local_src, self.local_dst = LocalExportOps(str(self.src)), LocalExportOps(str(self.dst))
        self.authorize = RecordingAuthorize()

    def copy(self, entries: list[ScanEntry], spec: JobSpec) -> BatchResult:
        source = AuthorizedExportOps(self.local_src, "src", self.authorize, lambda: "token", caller="test")
        target = AuthorizedExportOps(self.local_dst, "dst", self.authorize, lambda: "token", caller="test")
        direct = LocalDirectoryCopier(
            self.local_src, "src", self.local_dst, "dst", self.authorize, lambda: "token", caller="test"
        )
        return copy_batch(spec, entries, source, target, direct=direct)

    def scan(self) -> list[ScanEntry]:
        return list(scan_export_dir(self.local_src, "tree"))

    def close(self) -> None:
        self.local_src.close()
        self.local_dst.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def spec(**overrides: object) -> JobSpec:
    values: dict = {"source_export": "src", "source_dir": "tree", "target_export": "dst", "target_prefix": "in"}
    values.update(overrides)
    return JobSpec(**values)


def no_secret_in(root: Path) -> bool:
    return all(SECRET not in p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_tree_is_copied_exactly_with_one_access_check_per_directory_and_step(world: World) -> None:
    make_tree(world.src / "tree", files=60)
    entries = world.scan()
    result = world.copy(entries, spec())
    assert result.errors == () and result.files_copied == sum(e.kind == ENTRY_FILE for e in entries)
    assert_same_tree(world.src / "tree", world.dst / "in" / "tree")
    directories_with_files = {e.relpath.rpartition("/")[0] for e in entries if e.kind == ENTRY_FILE}
    # One read check per source directory (not per file), covering all its files; no per-file read calls.
    reads = [paths for export, op, paths in world.authorize.calls if export == "src" and op == "read_chunk"]
    assert len(reads) == len(directories_with_files)
    assert sum(len(paths) for paths in reads) == result.files_copied
    assert world.authorize.ops("dst").count("session_open") == len(directories_with_files)
    assert not list((world.dst / "in").rglob(f"*{TEMP_MARKER}*"))


def test_skip_existing_keeps_identical_files_on_the_fast_path(world: World) -> None:
    make_tree(world.src / "tree", files=20)
    entries = world.scan()
    world.copy(entries, spec())
    again = world.copy(entries, spec(conflict_policy="skip_existing"))
    assert again.errors == () and again.files_copied == 0 and again.files_skipped == 20


def test_a_large_file_is_copied_in_chunks_with_progress(world: World, tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024 + 7)
    (world.src / "tree" / "big.bin").write_bytes(data)
    os.chmod(world.src / "tree" / "big.bin", 0o604)
    entries = world.scan()
    result = world.copy(entries, spec())
    assert result.files_copied == 1 and result.bytes_copied == len(data)
    copied = world.dst / "in" / "tree" / "big.bin"
    assert copied.read_bytes() == data
    assert copied.stat().st_mode & 0o7777 == 0o604
    assert copied.stat().st_mtime_ns == (world.src / "tree" / "big.bin").stat().st_mtime_ns


@pytest.mark.parametrize("link", ["/ABSOLUTE/secret.txt", "../../outside/secret.txt", "../secret/s.txt"])
def test_a_source_file_swapped_for_a_symlink_after_the_scan_is_not_followed(world: World, link: str) -> None:
    (world.src / "tree" / "ok.txt").write_text("fine\n")
    (world.src / "tree" / "f.txt").write_text("harmless at scan time\n")
    entries = world.scan()
    (world.src / "tree" / "f.txt").unlink()
    (world.src / "tree" / "f.txt").symlink_to(link.replace("/ABSOLUTE", str(world.outside)))
    result = world.copy(entries, spec())
    assert result.files_copied == 1 and len(result.errors) == 1, result
    assert "tree/f.txt" in result.errors[0]
    assert not (world.dst / "in" / "tree" / "f.txt").exists()
    assert (world.dst / "in" / "tree" / "ok.txt").read_text() == "fine\n"
    assert no_secret_in(world.dst)


@pytest.mark.parametrize("link", ["/ABSOLUTE/dir", "../../../outside/dir", "../../secret"])
def test_a_source_directory_swapped_for_a_symlink_after_the_scan_is_not_followed(world: World, link: str) -> None:
    (world.src / "tree" / "sub" / "deeper").mkdir(parents=True)
    (world.src / "tree" / "sub" / "deeper" / "f.txt").write_text("harmless\n")
    (world.src / "tree" / "sub" / "deeper" / "s.txt").write_text("harmless\n")
    entries = world.scan()
    for name in ("f.txt", "s.txt"):
        (world.src / "tree" / "sub" / "deeper" / name).unlink()
    (world.src / "tree" / "sub" / "deeper").rmdir()
    (world.src / "tree" / "sub" / "deeper").symlink_to(link.replace("/ABSOLUTE", str(world.outside)))
    result = world.copy(entries, spec())
    assert result.files_copied == 0 and len(result.errors) == 2, result
    assert no_secret_in(world.dst)


@pytest.mark.parametrize("link", ["/ABSOLUTE", "../../../outside"])
def test_a_target_directory_that_is_a_symlink_out_of_the_export_is_not_written_through(world: World, link: str) -> None:
    (world.src / "tree" / "f.txt").write_text("new\n")
    entries = world.scan()
    (world.dst / "in").mkdir()
    (world.dst / "in" / "tree").symlink_to(link.replace("/ABSOLUTE", str(world.outside)))
    before = sorted(p.name for p in world.outside.iterdir())
    result = world.copy(entries, spec())
    assert result.files_copied == 0 and result.errors, result
    assert sorted(p.name for p in world.outside.iterdir()) == before


def test_a_target_file_that_is_a_symlink_is_replaced_not_written_through(world: World) -> None:
    (world.src / "tree" / "f.txt").write_text("new content\n")
    entries = world.scan()
    (world.dst / "in" / "tree").mkdir(parents=True)
    (world.dst / "in" / "tree" / "f.txt").symlink_to(world.outside / "victim.txt")
    result = world.copy(entries, spec())
    assert result.errors == () and result.files_copied == 1
    target = world.dst / "in" / "tree" / "f.txt"
    assert not target.is_symlink() and target.read_text() == "new content\n"
    assert (world.outside / "victim.txt").read_bytes() == VICTIM


def test_batches_of_a_scanned_tree_copy_like_one(world: World) -> None:
    make_tree(world.src / "tree", files=50)
    for entries, _ in group_batches(world.scan(), 40_000):
        assert world.copy(entries, spec()).errors == ()
    assert_same_tree(world.src / "tree", world.dst / "in" / "tree")
