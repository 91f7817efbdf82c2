"""Content cache (pieces keyed by version) and per-process metadata cache of a mount (FS.md §5)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_fs.export.ops import FileStat, WriteSessionInfo
from fluxon_fs.patcher import InMemoryPieceCache, MountOptions, piece_key
from tests.support.mount_harness import Mounted, mounted_export, read_bytes

KiB = 1024


class FakeClock:
    """A monotonic clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mnt(tmp_path: Path, clock: FakeClock) -> Iterator[Mounted]:
    options = MountOptions(piece_bytes=64 * KiB, readahead_pieces=2, stale_window_ms=1000, metadata_cache_ttl_ms=5000)
    with mounted_export(tmp_path, options=options) as mounted:
        mounted.export.metadata.clock = clock
        yield mounted


def test_small_file_is_one_call_at_open_and_none_the_second_time(mnt: Mounted) -> None:
    mnt.real("s.txt").write_bytes(b"small")
    assert read_bytes(mnt.path("s.txt")) == b"small"
    assert mnt.ops.calls == {"read_chunk": 1}
    mnt.ops.reset()
    assert read_bytes(mnt.path("s.txt")) == b"small"
    assert mnt.ops.calls == {}


def test_listing_then_reading_needs_one_call_per_file(mnt: Mounted) -> None:
    for i in range(5):
        mnt.real(f"f{i}").write_bytes(b"x" * i)
    contents = [read_bytes(os.path.join(mnt.mount, name)) for name in sorted(os.listdir(mnt.mount))]
    assert contents == [b"x" * i for i in range(5)]
    assert mnt.ops.calls == {"list_dir": 1, "read_chunk": 4}  # the empty file needs no read


def test_large_file_pieces_are_cached_by_version(mnt: Mounted) -> None:
    data = os.urandom(10 * 64 * KiB + 5)
    mnt.real("big.bin").write_bytes(data)
    with open(mnt.path("big.bin"), "rb") as f:
        parts = []
        while chunk := f.read(10_000):
            parts.append(chunk)
    assert b"".join(parts) == data
    assert mnt.ops.calls["read_chunk"] == 11  # each piece exactly once, readahead included
    version = f"{len(data)}-{mnt.real('big.bin').stat().st_mtime_ns}"
    for index in range(11):
        assert mnt.cache.get(piece_key("demo", "big.bin", version, index)) is not None
    mnt.ops.reset()
    assert read_bytes(mnt.path("big.bin")) == data
    assert mnt.ops.calls == {}


def test_readahead_runs_in_the_background(tmp_path: Path) -> None:
    threads: set[str] = set()
    options = MountOptions(piece_bytes=16 * KiB, readahead_pieces=4)
    with mounted_export(tmp_path, options=options) as mnt:
        inner_read = mnt.ops.inner.read_chunk

        def recording_read(*args: object) -> object:
            threads.add(threading.current_thread().name)
            return inner_read(*args)

        mnt.ops.inner.read_chunk = recording_read
        data = os.urandom(40 * 16 * KiB)
        mnt.real("r.bin").write_bytes(data)
        with open(mnt.path("r.bin"), "rb", buffering=0) as f:
            assert b"".join(iter(lambda: f.read(4 * KiB), b"")) == data
        assert any(name.startswith("fluxon-fs-io") for name in threads)
        assert mnt.ops.calls["read_chunk"] == 40


def test_another_mount_sharing_the_cache_reads_pieces_from_it(tmp_path: Path) -> None:
    shared = InMemoryPieceCache(64 * 1024 * KiB)
    options = MountOptions(piece_bytes=64 * KiB)
    data = os.urandom(8 * 64 * KiB)
    with mounted_export(tmp_path, options=options, piece_cache=shared, mount_name="first") as first:
        first.real("f.bin").write_bytes(data)
        first.real("small").write_bytes(b"small")
        assert read_bytes(first.path("f.bin")) == data
        assert read_bytes(first.path("small")) == b"small"
    # A second "process" on the host: fresh metadata, same pool, same export content.
    with mounted_export(
        tmp_path, options=options, piece_cache=shared, mount_name="second", export_root=first.root
    ) as second:
        assert read_bytes(second.path("f.bin")) == data
        assert read_bytes(second.path("small")) == b"small"
        assert second.ops.calls == {"stat": 2}  # the pool's version hints: stat, then every piece from the pool


def test_stale_window_bounds_trust_in_a_cached_version(mnt: Mounted, clock: FakeClock) -> None:
    mnt.real("v.txt").write_bytes(b"one")
    assert read_bytes(mnt.path("v.txt")) == b"one"
    mnt.real("v.txt").write_bytes(b"two, changed elsewhere")
    clock.advance(0.5)
    assert read_bytes(mnt.path("v.txt")) == b"one"  # within stale_window_ms: no call at all
    clock.advance(0.6)
    mnt.ops.reset()
    assert read_bytes(mnt.path("v.txt")) == b"two, changed elsewhere"
    assert mnt.ops.calls == {"stat": 1, "read_chunk": 1}  # revalidated, new version fetched
    clock.advance(2)
    mnt.ops.reset()
    assert read_bytes(mnt.path("v.txt")) == b"two, changed elsewhere"
    assert mnt.ops.calls == {"stat": 1}  # revalidated, same version: served from the cache


def test_metadata_is_cached_for_the_ttl(mnt: Mounted, clock: FakeClock) -> None:
    mnt.real("m.txt").write_bytes(b"12345")
    assert os.path.getsize(mnt.path("m.txt")) == 5
    assert os.path.isfile(mnt.path("m.txt"))
    assert not os.path.exists(mnt.path("absent"))
    assert not os.path.exists(mnt.path("absent"))
    assert mnt.ops.calls == {"stat": 2}
    mnt.real("m.txt").write_bytes(b"123")
    mnt.real("absent").write_bytes(b"")
    clock.advance(4)
    assert os.path.getsize(mnt.path("m.txt")) == 5
    assert not os.path.exists(mnt.path("absent"))
    clock.advance(2)
    assert os.path.getsize(mnt.path("m.txt")) == 3
    assert os.path.exists(mnt.path("absent"))
    os.listdir(mnt.mount)
    mnt.real("late").write_bytes(b"")
    clock.advance(1)
    assert "late" not in os.listdir(mnt.mount)
    clock.advance(5)
    assert "late" in os.listdir(mnt.mount)


def test_own_changes_invalidate_metadata_at_once(mnt: Mounted) -> None:
    assert os.listdir(mnt.mount) == []
    assert not os.path.exists(mnt.path("d"))
    os.mkdir(mnt.path("d"))
    assert os.path.isdir(mnt.path("d")) and os.listdir(mnt.mount) == ["d"]
    with open(mnt.path("d/f"), "wb") as f:
        f.write(b"abc")
    assert os.listdir(mnt.path("d")) == ["f"] and os.path.getsize(mnt.path("d/f")) == 3
    with open(mnt.path("d/f"), "ab") as f:
        f.write(b"de")
        f.flush()
        assert os.path.getsize(mnt.path("d/f")) == 5
    os.rename(mnt.path("d"), mnt.path("e"))
    assert not os.path.exists(mnt.path("d/f")) and os.path.getsize(mnt.path("e/f")) == 5
    os.truncate(mnt.path("e/f"), 1)
    assert os.path.getsize(mnt.path("e/f")) == 1
    os.unlink(mnt.path("e/f"))
    assert not os.path.exists(mnt.path("e/f")) and os.listdir(mnt.path("e")) == []
    os.rmdir(mnt.path("e"))
    assert os.listdir(mnt.mount) == []


def test_same_size_rewrite_with_the_same_mtime_is_never_served_stale(mnt: Mounted) -> None:
    path = mnt.path("same.txt")
    with open(path, "wb") as f:
        f.write(b"AAAA")
    os.utime(path, ns=(5_000_000_000, 5_000_000_000))
    assert read_bytes(path) == b"AAAA"  # cached under version 4-5000000000
    with open(path, "wb") as f:
        f.write(b"BBBB")
    os.utime(path, ns=(5_000_000_000, 5_000_000_000))  # same size and mtime: same version
    assert read_bytes(path) == b"BBBB"


def test_in_memory_piece_cache_is_bounded_lru() -> None:
    cache = InMemoryPieceCache(10)
    cache.put("a", b"1234")
    cache.put("b", b"5678")
    assert cache.get("a") == b"1234"  # a is now most recent
    cache.put("c", b"90")
    cache.put("d", b"xyz")  # over budget: evicts b (least recent)
    assert cache.get("b") is None and cache.get("a") == b"1234" and cache.used_bytes <= 10
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None
    cache.delete("a")
    assert cache.get("a") is None
    with pytest.raises(ValueError):
        InMemoryPieceCache(0)
    assert piece_key("demo", "a/b.txt", "3-17", 2) == "/fluxon_fs_cache/demo/a/b.txt@3-17/2"


def test_missing_answers_below_a_path_that_becomes_a_file_are_forgotten(mnt: Mounted) -> None:
    assert not os.path.exists(mnt.path("d/a"))
    with pytest.raises(FileNotFoundError):
        read_bytes(mnt.path("d/a"))
    with open(mnt.path("d"), "wb"):
        pass
    with pytest.raises(NotADirectoryError):
        os.stat(mnt.path("d/a"))
    with pytest.raises(NotADirectoryError):
        read_bytes(mnt.path("d/a"))


def test_a_followed_stat_never_answers_for_the_link_itself(mnt: Mounted) -> None:
    mnt.real("target.txt").write_bytes(b"t")
    os.symlink("target.txt", mnt.real("link"))
    assert read_bytes(mnt.path("link")) == b"t"
    assert os.path.isfile(mnt.path("link"))
    assert os.path.islink(mnt.path("link"))
    assert stat.S_ISLNK(os.lstat(mnt.path("link")).st_mode)
    assert stat.S_ISREG(os.stat(mnt.path("link")).st_mode)
    entry = next(e for e in os.scandir(mnt.mount) if e.name == "link")
    assert entry.is_symlink() and entry.is_file() and not entry.is_file(follow_symlinks=False)
    assert not os.path.islink(mnt.path("target.txt"))


class FrozenMtimeOps:
    """Every stat reports the same mtime: each same-size change keeps the version (a coarse clock)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name == "close":
            return attribute

        def frozen(*args: Any, **kwargs: Any) -> Any:
            return _freeze(attribute(*args, **kwargs))

        return frozen


def _freeze(value: Any) -> Any:
    if isinstance(value, FileStat):
        return attrs.evolve(value, mtime_ns=7_000_000_000)
    if isinstance(value, WriteSessionInfo):
        return attrs.evolve(value, stat=_freeze(value.stat))
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    return value


def test_changed_pieces_of_a_same_size_rewrite_are_dropped_and_only_they(mnt: Mounted) -> None:
    mnt.ops.inner = FrozenMtimeOps(mnt.ops.inner)
    piece = 64 * KiB
    data = bytearray(os.urandom(10 * piece))
    mnt.real("same.bin").write_bytes(data)
    assert read_bytes(mnt.path("same.bin")) == data
    with open(mnt.path("same.bin"), "r+b") as f:
        f.seek(3 * piece + 10)
        f.write(b"X" * 100)
        f.flush()
        f.seek(7 * piece - 1)
        f.write(b"YY")  # straddles pieces 6 and 7
    data[3 * piece + 10 : 3 * piece + 110] = b"X" * 100
    data[7 * piece - 1 : 7 * piece + 1] = b"YY"
    mnt.ops.reset()
    assert read_bytes(mnt.path("same.bin")) == data
    assert mnt.ops.calls["read_chunk"] == 3  # pieces 3, 6 and 7; the rest is still valid in the cache


def test_a_file_renamed_over_another_of_the_same_version_is_not_served_stale(mnt: Mounted) -> None:
    mnt.ops.inner = FrozenMtimeOps(mnt.ops.inner)  # the two saves share size and timestamp tick
    with open(mnt.path("config.json"), "wb") as f:
        f.write(b'{"v": 1}')
    assert read_bytes(mnt.path("config.json")) == b'{"v": 1}'
    with open(mnt.path("config.json.tmp"), "wb") as f:
        f.write(b'{"v": 2}')
    os.replace(mnt.path("config.json.tmp"), mnt.path("config.json"))
    assert read_bytes(mnt.path("config.json")) == b'{"v": 2}'
