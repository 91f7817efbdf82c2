"""The shared-memory pool (``cache`` kind ``shm``): owner and readers in real processes, and prefix budgets."""

from __future__ import annotations

import mmap
import os
import shutil
import stat
import tempfile
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxon_core.errors import InvalidArgumentError, StorageFullError, StoreClosedError, StoreInitFailedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import PrefixBudgetedCache, PrefixUsage
from fluxon_plugins.shm_cache import ShmCacheConfig, ShmPoolOwner, ShmPoolReader
from fluxon_plugins.shm_cache.layout import PoolLayout, encode_key, key_digest, suffix_size
from tests.support.shm_child import ShmChild
from tests.support.shm_values import make_value, value_seed

PAGE = 4096
ONE_PAGE_VALUE = 3984  # value + key (up to 80 bytes) + 32-byte trailer fit one 4 KiB page: charged exactly PAGE


@pytest.fixture
def pool_dir() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="fx", dir="/dev/shm")
    try:
        yield os.path.join(root, "pool")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def children() -> Iterator[list[ShmChild]]:
    started: list[ShmChild] = []
    try:
        yield started
    finally:
        for child in started:
            child.close()


def spawn(children: list[ShmChild]) -> ShmChild:
    child = ShmChild()
    children.append(child)
    return child


def owner_at(path: str, capacity: int | str = "64MiB", **options: object) -> ShmPoolOwner:
    return ShmPoolOwner(ShmCacheConfig(path=path, capacity=capacity, **options))  # type: ignore[arg-type]


def reader_at(path: str, **options: object) -> ShmPoolReader:
    return ShmPoolReader(ShmCacheConfig(path=path, role="reader", **options))  # type: ignore[arg-type]


def as_bytes(view: memoryview | None) -> bytes:
    assert view is not None, "value is absent"
    return bytes(view)


def files_in(path: str) -> list[str]:
    return sorted(os.listdir(path))


class DirectLink:
    """An owner link calling the owner in-process (the KV layer does this over RPC)."""

    def __init__(self, owner: ShmPoolOwner) -> None:
        self.owner = owner

    def adopt(self, key: str, token: str) -> None:
        self.owner.adopt(key, token)

    def delete(self, key: str) -> bool:
        return self.owner.delete(key)


# -- basic behaviour -------------------------------------------------------------------------


def test_put_get_delete_contains(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.put("/fluxon_fs_cache/demo/a/b.txt@123-456/0", [b"hello", bytearray(b" "), memoryview(b"world")])
        assert as_bytes(owner.get("/fluxon_fs_cache/demo/a/b.txt@123-456/0")) == b"hello world"
        assert owner.contains("/fluxon_fs_cache/demo/a/b.txt@123-456/0")
        assert owner.size("/fluxon_fs_cache/demo/a/b.txt@123-456/0") == 11
        owner.put("empty", [])
        assert as_bytes(owner.get("empty")) == b""
        owner.put("empty", [b"now full"])
        assert as_bytes(owner.get("empty")) == b"now full"
        assert owner.get("missing") is None and not owner.contains("missing")
        assert owner.delete("empty") is True
        assert owner.delete("empty") is False
        assert owner.get("empty") is None
        stats = owner.stats()
        assert stats["entries"] == 1 and stats["used_bytes"] == PAGE
        assert (stats["hits"], stats["misses"]) == (3, 2)


def test_registry_builds_owner_and_reader_and_names_bad_options(pool_dir: str) -> None:
    backends = get_backends()
    with pytest.raises(StoreInitFailedError, match="no shared-memory pool"):
        backends.create("cache", "shm", {"path": pool_dir, "role": "reader"})
    owner = backends.create("cache", "shm", {"path": pool_dir, "capacity": "1MiB"})
    try:
        assert isinstance(owner, ShmPoolOwner) and owner.stats()["capacity_bytes"] == 1024**2
        reader = backends.create("cache", "shm", ShmCacheConfig(path=pool_dir, role="reader"))
        assert isinstance(reader, ShmPoolReader)
        owner.put("k", [b"v"])
        assert as_bytes(reader.get("k")) == b"v"
        assert reader.stats()["capacity_bytes"] == 1024**2
        reader.close()
        with pytest.raises(StoreInitFailedError, match="already has a live owner"):
            backends.create("cache", "shm", {"path": pool_dir, "capacity": "1MiB"})
    finally:
        owner.close()
    with pytest.raises(InvalidArgumentError, match=r"cache\.shm\.capacity must be > 0 for role owner"):
        backends.create("cache", "shm", ShmCacheConfig(path=pool_dir))
    with pytest.raises(ValueError, match=r"path must be an absolute path"):
        backends.create("cache", "shm", {"path": "relative/pool", "capacity": 4096})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(max_size=200), value=st.binary(max_size=300))
def test_arbitrary_keys_round_trip_through_hashed_names(pool_dir: str, key: str, value: bytes) -> None:
    with owner_at(pool_dir) as owner, reader_at(pool_dir) as reader:
        owner.put(key, [value])
        assert as_bytes(reader.get(key)) == value
        name = key_digest(encode_key(key)).hex()
        assert files_in(PoolLayout(pool_dir).values_dir) == [name]
        with open(os.path.join(PoolLayout(pool_dir).values_dir, name), "rb") as handle:
            assert encode_key(key) in handle.read()  # the original key is kept inside for verification


def test_non_string_and_oversized_keys_are_rejected(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        with pytest.raises(InvalidArgumentError, match="must be a str"):
            owner.put(b"bytes-key", [b"v"])  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="at most 4096 bytes"):
            owner.put("k" * 5000, [b"v"])


def test_streaming_writer_commits_exact_size_and_leaves_nothing_on_abort(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        with owner.open_writer("streamed", 10) as writer:
            writer.write(b"01234")
            writer.write(b"56789")
        assert as_bytes(owner.get("streamed")) == b"0123456789"
        with (
            pytest.raises(InvalidArgumentError, match="declared as 4 bytes but 5"),
            owner.open_writer("over", 4) as writer,
        ):
            writer.write(b"12345")
        with (
            pytest.raises(InvalidArgumentError, match="declared as 4 bytes but only 2"),
            owner.open_writer("short", 4) as writer,
        ):
            writer.write(b"12")
        assert not owner.contains("over") and not owner.contains("short")
        assert owner.stats()["reserved_bytes"] == 0 and owner.stats()["used_bytes"] == PAGE
        assert files_in(PoolLayout(pool_dir).staging_dir) == []


# -- readers in other processes --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_external_reader_process_reads_what_the_owner_wrote(pool_dir: str, children: list[ShmChild]) -> None:
    with owner_at(pool_dir) as owner:
        owner.put("small", [make_value(1, 1000)])
        owner.put("large", [make_value(2, 3 * 1024 * 1024)])
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        assert reader.call("check", key="small")["seed"] == 1
        assert reader.call("check", key="large")["seed"] == 2
        assert reader.call("check", key="absent")["seed"] is None
        owner.put("small", [make_value(3, 1000)])
        owner.delete("large")
        assert reader.call("check", key="small")["seed"] == 3
        assert reader.call("check", key="large")["seed"] is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [2000, 256 * 1024], ids=["copied", "mapped"])
def test_replace_is_atomic_for_a_reader_in_another_process(pool_dir: str, children: list[ShmChild], size: int) -> None:
    values = [make_value(seed, size) for seed in range(30)]
    with owner_at(pool_dir) as owner:
        owner.put("hot", [values[0]])
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        stop = threading.Event()
        errors: list[BaseException] = []

        def replace_forever() -> None:
            turn = 0
            try:
                while not stop.is_set():
                    turn += 1
                    owner.put("hot", [values[turn % len(values)]])
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        writer = threading.Thread(target=replace_forever)
        writer.start()
        try:
            # every value read is checked against its digest in the child; a torn one fails the call
            result = reader.call("read_loop", key="hot", distinct=20, timeout_s=60)
        finally:
            stop.set()
            writer.join()
        assert not errors
        assert result["distinct"] >= 20, result


@pytest.mark.timeout(60)
def test_views_held_by_a_reader_survive_replace_delete_and_eviction(pool_dir: str, children: list[ShmChild]) -> None:
    with owner_at(pool_dir, capacity=4 * 1024 * 1024) as owner:
        owner.put("a", [make_value(10, 1024 * 1024)])
        owner.put("b", [make_value(20, 1024 * 1024)])
        owner.put("c", [make_value(30, 5000)])
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        assert [reader.call("hold", key=k)["seed"] for k in ("a", "b", "c")] == [10, 20, 30]
        owner.put("a", [make_value(11, 1024 * 1024)])  # replaced
        owner.delete("c")  # deleted
        owner.put("big", [make_value(40, 3 * 1024 * 1024)])  # evicts b (and more)
        assert not owner.contains("b")
        assert reader.call("check_held")["seeds"] == [10, 20, 30]
        assert [reader.call("check", key=k)["seed"] for k in ("a", "b", "c", "big")] == [None, None, None, 40]


# -- budget and LRU --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_lru_eviction_order_counts_owner_and_reader_gets(pool_dir: str, children: list[ShmChild]) -> None:
    with owner_at(pool_dir, capacity=4 * PAGE) as owner:
        for seed, key in enumerate("abcd"):
            owner.put(key, [make_value(seed, ONE_PAGE_VALUE)])
        assert owner.get("a") is not None  # recency: b c d a
        owner.put("e", [make_value(5, ONE_PAGE_VALUE)])  # evicts b
        assert owner.keys() == ["c", "d", "a", "e"]
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        reader.call("touch", key="c")  # a read in another process: d a e c
        owner.put("f", [make_value(6, ONE_PAGE_VALUE)])  # evicts d, not c
        assert owner.keys() == ["a", "e", "c", "f"]
        stats = owner.stats()
        assert (stats["entries"], stats["used_bytes"], stats["evictions"]) == (4, 4 * PAGE, 2)
        assert reader.call("stats")["stats"]["evictions"] == 2


def test_value_larger_than_capacity_is_storage_full_and_changes_nothing(pool_dir: str) -> None:
    with owner_at(pool_dir, capacity=4 * PAGE) as owner:
        owner.put("keep", [make_value(1, ONE_PAGE_VALUE)])
        with pytest.raises(StorageFullError, match="capacity is 16384"):
            owner.put("huge", [bytes(4 * PAGE)])
        with pytest.raises(StorageFullError):
            owner.open_writer("huge", 4 * PAGE)
        owner.put(
            "exactly-full", [bytes(3 * PAGE - suffix_size(len("exactly-full")))]
        )  # value + key + trailer: 3 pages
        assert owner.contains("keep") and owner.stats()["used_bytes"] == 4 * PAGE
        assert owner.stats()["evictions"] == 0
        assert files_in(PoolLayout(pool_dir).staging_dir) == []


def test_replacing_a_value_in_a_full_pool_does_not_evict_that_key(pool_dir: str) -> None:
    with owner_at(pool_dir, capacity=2 * PAGE) as owner:
        owner.put("x", [make_value(1, ONE_PAGE_VALUE)])
        owner.put("y", [make_value(2, ONE_PAGE_VALUE)])
        owner.put("y", [make_value(3, ONE_PAGE_VALUE)])
        assert owner.keys() == ["x", "y"] and owner.stats()["evictions"] == 0
        owner.put("x", [make_value(4, 2 * PAGE - 128)])  # needs y's room too
        assert owner.keys() == ["x"] and value_seed(as_bytes(owner.get("x"))) == 4


# -- zero copy ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_large_get_is_a_read_only_view_of_the_shared_mapping(pool_dir: str) -> None:
    size = 64 * 1024 * 1024
    with owner_at(pool_dir, capacity="128MiB") as owner, reader_at(pool_dir) as reader:
        owner.put("big", [make_value(7, size)])
        tracemalloc.start()
        try:
            view = reader.get("big")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert view is not None and len(view) == size
        assert peak < 1024 * 1024, f"get allocated {peak} bytes"
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1  # type: ignore[index]
        again = reader.get("big")
        assert again is view  # cached: no reopen, same mapping
        name = key_digest(b"big").hex()
        with open("/proc/self/maps", encoding="utf-8") as maps:
            assert any(line.rstrip().endswith(os.path.join("values", name)) for line in maps)
        assert value_seed(view) == 7
        owner_view = owner.get("big")
        assert owner_view is not None and owner_view.readonly and owner.get("big") is owner_view


# -- writes from readers -----------------------------------------------------------------------


def test_reader_writes_are_staged_and_adopted_by_the_owner(pool_dir: str) -> None:
    with owner_at(pool_dir, capacity=4 * PAGE) as owner, reader_at(pool_dir) as reader:
        with pytest.raises(InvalidArgumentError, match="needs an owner link"):
            reader.put("k", [b"v"])
        reader.set_owner_link(DirectLink(owner))
        reader.put("k", [b"from ", b"reader"])
        assert as_bytes(owner.get("k")) == b"from reader" and as_bytes(reader.get("k")) == b"from reader"
        assert reader.delete("k") is True and reader.get("k") is None and not owner.contains("k")

        with (
            reader.stage("other", [b"x"]) as staged,
            pytest.raises(InvalidArgumentError, match="written for another key"),
        ):
            owner.adopt("k", staged.token)
        with reader.stage("huge", [bytes(5 * PAGE)]) as staged, pytest.raises(StorageFullError):
            owner.adopt("huge", staged.token)
        with pytest.raises(InvalidArgumentError, match="32 lowercase hex"):
            owner.adopt("k", "../values/x")
        with pytest.raises(InvalidArgumentError, match="does not exist"):
            owner.adopt("k", "0" * 32)
        assert files_in(PoolLayout(pool_dir).staging_dir) == []
        assert owner.stats()["used_bytes"] == 0


# -- crashes -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_owner_killed_mid_write_then_restarted_sweeps_and_accounts_from_zero(
    pool_dir: str, children: list[ShmChild]
) -> None:
    layout = PoolLayout(pool_dir)
    first = spawn(children)
    first.call("owner", path=pool_dir, capacity=8 * 1024 * 1024)
    first.call("put", key="k1", seed=1, size=1024 * 1024)
    first.call("put", key="k2", seed=2, size=ONE_PAGE_VALUE)
    attached = spawn(children)
    attached.call("reader", path=pool_dir)
    assert attached.call("hold", key="k1")["seed"] == 1
    writer = spawn(children)
    writer.call("reader", path=pool_dir)
    writer.call("stage", key="k3", seed=3, size=ONE_PAGE_VALUE)  # named in staging/, never adopted
    first.call("begin_write", key="k4", seed=4, size=2 * 1024 * 1024, written=1024 * 1024)  # then blocks on stdin
    assert len(files_in(layout.values_dir)) == 2
    assert len(files_in(layout.staging_dir)) == 1  # the half-written k4 has no name at all
    first.kill()
    writer.kill()

    with owner_at(pool_dir, capacity=8 * 1024 * 1024) as second:
        assert files_in(layout.values_dir) == [] and files_in(layout.staging_dir) == []
        stats = second.stats()
        assert (stats["used_bytes"], stats["entries"], stats["generation"]) == (0, 0, 2)
        assert attached.call("check", key="k1")["seed"] is None  # the old generation is gone for readers
        assert attached.call("check_held")["seeds"] == [1]  # but a view it held stays intact
        fresh = spawn(children)
        fresh.call("reader", path=pool_dir)
        assert fresh.call("check", key="k2")["seed"] is None
        second.put("k1", [make_value(5, ONE_PAGE_VALUE)])
        assert fresh.call("check", key="k1")["seed"] == 5
        assert second.stats()["used_bytes"] == PAGE


@pytest.mark.timeout(60)
def test_reader_killed_with_a_staged_and_a_half_written_value_leaves_nothing(
    pool_dir: str, children: list[ShmChild]
) -> None:
    layout = PoolLayout(pool_dir)
    with owner_at(pool_dir) as owner:
        owner.put("k1", [make_value(1, 1024 * 1024)])
        before = owner.stats()
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        reader.call("hold", key="k1")
        reader.call("stage", key="k2", seed=2, size=1024 * 1024)
        reader.call("begin_write", key="k3", seed=3, size=1024 * 1024, written=4096)  # then blocks on stdin
        assert owner.sweep() == 0  # a live writer's staged value is left alone
        assert len(files_in(layout.staging_dir)) == 1
        reader.kill()
        assert owner.sweep() == 1
        assert files_in(layout.staging_dir) == []
        assert files_in(layout.values_dir) == [key_digest(b"k1").hex()]
        after = owner.stats()
        assert (after["used_bytes"], after["entries"]) == (before["used_bytes"], before["entries"])
        assert sorted(os.listdir(pool_dir)) == ["owner.lock", "pool.ctl", "staging", "touch.log", "values"]


def test_closed_owner_removes_values_and_refuses_new_readers(pool_dir: str) -> None:
    owner = owner_at(pool_dir)
    reader = reader_at(pool_dir)
    owner.put("k", [make_value(1, 100_000)])
    held = reader.get("k")
    owner.close()
    owner.close()
    assert files_in(PoolLayout(pool_dir).values_dir) == []
    assert held is not None and value_seed(held) == 1
    assert reader.get("k") is None and not reader.owner_alive()
    with pytest.raises(StoreClosedError):
        owner.get("k")
    with pytest.raises(StoreInitFailedError, match="closed by its owner"):
        reader_at(pool_dir)
    reader.close()
    reader.close()
    with pytest.raises(StoreClosedError):
        reader.get("k")


def test_a_forked_child_neither_keeps_the_pool_locked_nor_wipes_it(pool_dir: str) -> None:
    owner = owner_at(pool_dir)
    owner.put("k", [b"v"])
    release_r, release_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: try to act as the owner, report, then block until released
        try:
            owner.close()
            os.write(done_w, b"1" if owner.contains("k") else b"0")
        except StoreClosedError:
            os.write(done_w, b"c")
        os.read(release_r, 1)
        os._exit(0)
    try:
        assert os.read(done_r, 1) == b"c"
        assert as_bytes(owner.get("k")) == b"v"  # the child's close did not wipe the pool
        owner.close()
        with owner_at(pool_dir) as successor:  # the live child does not hold the ownership lock
            assert successor.stats()["generation"] == 2
    finally:
        os.write(release_w, b"x")
        os.waitpid(pid, 0)
        for fd in (release_r, release_w, done_r, done_w):
            os.close(fd)


def test_capacity_beyond_the_filesystem_is_refused(pool_dir: str) -> None:
    with pytest.raises(StoreInitFailedError, match=r"exceeds the \d+-byte filesystem holding"):
        owner_at(pool_dir, capacity="1000TiB")
    with owner_at(pool_dir):  # the refused owner left the pool claimable
        pass


@pytest.mark.parametrize("size", [3000, 300_000], ids=["copied", "mapped"])
def test_read_into_copies_a_range_from_files_and_from_cached_views(pool_dir: str, size: int) -> None:
    value = make_value(9, size)
    with owner_at(pool_dir) as owner, reader_at(pool_dir) as reader:
        owner.put("k", [value])
        for pool in (reader, owner):
            out = bytearray(1000)
            assert pool.read_into("k", out) == 1000 and out == value[:1000]  # from the file
            assert pool.get("k") is not None
            assert pool.read_into("k", memoryview(out)[:10], offset=size - 4) == 4  # from the cached view
            assert out[:4] == value[-4:]
            assert pool.read_into("k", out, offset=size + 5) == 0
            assert pool.read_into("absent", out) is None
            with pytest.raises(InvalidArgumentError, match="writable buffer"):
                pool.read_into("k", bytes(10))  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError, match="offset must be >= 0"):
                pool.read_into("k", out, offset=-1)
        reader_fresh = reader_at(pool_dir)
        out = bytearray(size + 10)
        assert reader_fresh.read_into("k", out, offset=7) == size - 7 and out[: size - 7] == value[7:]
        reader_fresh.close()


# -- prefix budgets: LRU within a key prefix, exact accounting ----------------------------------

A, B = "/c/a/", "/c/b/"


def put_page(owner: ShmPoolOwner, key: str, seed: int = 0) -> None:
    owner.put(key, [make_value(seed, ONE_PAGE_VALUE)])


def keys_under(owner: ShmPoolOwner, prefix: str) -> list[str]:
    present = owner.keys()  # least recently used first
    return [key for key in present if key.startswith(prefix)]


def test_a_prefix_over_its_budget_evicts_its_own_least_recent_values_only(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        assert isinstance(owner, PrefixBudgetedCache)
        owner.set_prefix_budget(A, 3 * PAGE)
        owner.set_prefix_budget(B, 2 * PAGE)
        for n in range(2):
            put_page(owner, f"{B}{n}")
        put_page(owner, "/unbudgeted")
        for n in range(5):
            put_page(owner, f"{A}{n}")
        assert keys_under(owner, A) == [f"{A}2", f"{A}3", f"{A}4"]
        assert keys_under(owner, B) == [f"{B}0", f"{B}1"] and owner.contains("/unbudgeted")
        assert owner.prefix_usage() == {
            A: PrefixUsage(budget_bytes=3 * PAGE, used_bytes=3 * PAGE, entries=3, evictions=2),
            B: PrefixUsage(budget_bytes=2 * PAGE, used_bytes=2 * PAGE, entries=2, evictions=0),
        }
        assert owner.stats()["evictions"] == 2 and owner.stats()["used_bytes"] == 6 * PAGE


@pytest.mark.timeout(60)
def test_reads_make_a_value_the_most_recent_of_its_prefix(pool_dir: str, children: list[ShmChild]) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, 3 * PAGE)
        for n in range(3):
            put_page(owner, f"{A}{n}")
        assert owner.get(f"{A}0") is not None  # owner read: 1 2 0
        reader = spawn(children)
        reader.call("reader", path=pool_dir)
        reader.call("touch", key=f"{A}1")  # a read in another process: 2 0 1
        put_page(owner, f"{A}3")
        assert keys_under(owner, A) == [f"{A}0", f"{A}1", f"{A}3"]


def test_a_value_larger_than_its_prefix_budget_is_storage_full_and_changes_nothing(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, 2 * PAGE)
        put_page(owner, f"{A}keep")
        with pytest.raises(StorageFullError, match="has a budget of 8192 bytes"):
            owner.put(f"{A}huge", [bytes(2 * PAGE)])
        with pytest.raises(StorageFullError, match="budget"):
            owner.open_writer(f"{A}huge", 2 * PAGE)
        assert keys_under(owner, A) == [f"{A}keep"] and owner.prefix_usage()[A].evictions == 0
        owner.put("/elsewhere", [bytes(2 * PAGE)])  # other keys only answer to the pool's capacity


def test_writes_in_progress_hold_room_in_their_prefix(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, 2 * PAGE)
        first = owner.open_writer(f"{A}0", ONE_PAGE_VALUE)
        second = owner.open_writer(f"{A}1", ONE_PAGE_VALUE)
        with pytest.raises(StorageFullError, match="held by writes in progress"):
            owner.open_writer(f"{A}2", ONE_PAGE_VALUE)
        second.abort()
        with first:
            first.write(make_value(1, ONE_PAGE_VALUE))
        put_page(owner, f"{A}2")
        put_page(owner, f"{A}3")  # evicts 0, the least recent
        assert keys_under(owner, A) == [f"{A}2", f"{A}3"]
        assert owner.prefix_usage()[A] == PrefixUsage(2 * PAGE, 2 * PAGE, 2, 1)


def test_a_new_budget_takes_over_present_values_and_a_lower_one_evicts_at_once(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        for n in range(4):
            put_page(owner, f"{A}{n}")
        owner.set_prefix_budget(A, 8 * PAGE)
        assert owner.prefix_usage()[A] == PrefixUsage(8 * PAGE, 4 * PAGE, 4, 0)
        owner.set_prefix_budget(A, 8 * PAGE)  # the same budget again (every mount sets it): nothing happens
        owner.set_prefix_budget(A, 2 * PAGE)
        assert keys_under(owner, A) == [f"{A}2", f"{A}3"]
        assert owner.prefix_usage()[A] == PrefixUsage(2 * PAGE, 2 * PAGE, 2, 2)


def test_budgeted_prefixes_must_be_disjoint_and_budgets_positive(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, PAGE)
        with pytest.raises(InvalidArgumentError, match="overlaps"):
            owner.set_prefix_budget("/c/", PAGE)
        with pytest.raises(InvalidArgumentError, match="overlaps"):
            owner.set_prefix_budget(A + "sub/", PAGE)
        for bad in (0, -1, True, 1.5):
            with pytest.raises(InvalidArgumentError, match="positive int"):
                owner.set_prefix_budget(B, bad)  # type: ignore[arg-type]
        owner.set_prefix_budget("/c/ab/", PAGE)  # shares characters, not a prefix: fine


PREFIX_OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "delete", "budget"]),
        st.sampled_from([A, B, "/x/"]),
        st.integers(0, 5),
        st.integers(1, 4),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=PREFIX_OPS)
def test_prefix_usage_always_matches_the_values_present_and_stays_within_budget(pool_dir: str, ops: list) -> None:
    with owner_at(pool_dir, capacity=8 * PAGE) as owner:
        owner.set_prefix_budget(A, 3 * PAGE)
        owner.set_prefix_budget(B, 2 * PAGE)
        for op, prefix, n, pages in ops:
            key = f"{prefix}{n}"
            if op == "put":
                try:
                    owner.put(key, [bytes(pages * PAGE - suffix_size(len(key.encode())))])
                except StorageFullError:
                    pass
            elif op == "get":
                owner.get(key)
            elif op == "delete":
                owner.delete(key)
            elif prefix != "/x/":
                owner.set_prefix_budget(prefix, pages * PAGE)
            for budgeted, usage in owner.prefix_usage().items():
                present = keys_under(owner, budgeted)
                assert usage.entries == len(present)
                assert usage.used_bytes == sum(charged(owner, key) for key in present)
                assert usage.used_bytes <= usage.budget_bytes
            assert owner.stats()["used_bytes"] <= 8 * PAGE


def charged(owner: ShmPoolOwner, key: str) -> int:
    size = owner.size(key)
    assert size is not None
    return -(-(size + suffix_size(len(key.encode()))) // PAGE) * PAGE


# -- file modes and damaged value files --------------------------------------------------------


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_pool_files_are_private_to_the_owner_user(pool_dir: str) -> None:
    # The finding: pool directories were 0755 and pool.ctl 0644, open to every user of the host.
    layout = PoolLayout(pool_dir)
    old_umask = os.umask(0o022)
    try:
        with owner_at(pool_dir) as owner, reader_at(pool_dir) as reader:
            owner.put("k", [make_value(1, 1000)])
            private = (layout.root, layout.values_dir, layout.staging_dir)
            private += (layout.control_path, layout.touch_path, layout.lock_path)
            assert {path: _mode(path) for path in private} == {
                layout.root: 0o700,
                layout.values_dir: 0o700,
                layout.staging_dir: 0o700,
                layout.control_path: 0o600,
                layout.touch_path: 0o600,
                layout.lock_path: 0o600,
            }
            assert _mode(layout.value_path(key_digest(encode_key("k")))) == 0o400  # nobody writes into a value
            assert value_seed(as_bytes(reader.get("k"))) == 1  # a reader of the same user still reads
    finally:
        os.umask(old_umask)


def test_an_existing_pool_left_open_by_an_older_version_is_tightened(pool_dir: str) -> None:
    layout = PoolLayout(pool_dir)
    with owner_at(pool_dir):
        pass
    for path in (layout.root, layout.values_dir, layout.staging_dir):
        os.chmod(path, 0o755)
    for path in (layout.control_path, layout.touch_path, layout.lock_path):
        os.chmod(path, 0o644)
    with owner_at(pool_dir) as owner, reader_at(pool_dir) as reader:
        assert {_mode(p) for p in (layout.root, layout.values_dir, layout.staging_dir)} == {0o700}
        assert {_mode(p) for p in (layout.control_path, layout.touch_path, layout.lock_path)} == {0o600}
        owner.put("k", [make_value(2, 1000)])
        assert value_seed(as_bytes(reader.get("k"))) == 2


def _value_file(pool_dir: str, key: str) -> str:
    path = PoolLayout(pool_dir).value_path(key_digest(encode_key(key)))
    os.chmod(path, 0o600)  # value files are read-only; whoever damages one must be root or chmod it first
    return path


SMALL_VALUE = 5000
LARGE_VALUE = 3 * 1024 * 1024


def _reader_holding_v(owner: ShmPoolOwner, pool_dir: str, children: list[ShmChild], size: int) -> ShmChild:
    """Values ``v`` (seed 1) and ``cold`` (seed 2); a reader process that loaded (and cached) ``v`` only."""
    owner.put("v", [make_value(1, size)])
    owner.put("cold", [make_value(2, size)])
    reader = spawn(children)
    reader.call("reader", path=pool_dir)
    assert reader.call("check", key="v")["seed"] == 1
    return reader


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [SMALL_VALUE, LARGE_VALUE], ids=["copied", "mapped"])
def test_a_value_truncated_under_a_reader_is_a_miss_not_a_crash(
    pool_dir: str, children: list[ShmChild], size: int
) -> None:
    # The finding: truncating a value file a reader had mapped killed the reader with SIGBUS on
    # its next get (the cached mapping was returned without a look at the file).
    with owner_at(pool_dir) as owner:
        reader = _reader_holding_v(owner, pool_dir, children, size)
        os.truncate(_value_file(pool_dir, "v"), size // 2)
        # A small value was copied (and checked) when loaded: that private copy is still right.
        still_cached = 1 if size == SMALL_VALUE else None
        assert reader.call("check", key="v")["seed"] == still_cached
        assert reader.call("read_into", key="v", size=size)["seed"] == still_cached
        os.truncate(_value_file(pool_dir, "cold"), 100)  # damaged before this reader ever loaded it
        assert reader.call("check", key="cold")["seed"] is None
        assert reader.call("read_into", key="cold", size=size)["seed"] is None
        assert reader.proc.poll() is None, "the reader died"
        assert owner.get("v") is None and not owner.contains("v")  # the owner drops the damaged value
        owner.put("v", [make_value(3, size)])  # a new value under the key reads normally
        assert reader.call("check", key="v")["seed"] == 3
        assert reader.call("read_into", key="v", size=size)["seed"] == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [SMALL_VALUE, LARGE_VALUE], ids=["copied", "mapped"])
@pytest.mark.parametrize("how", ["write", "mmap"])
def test_a_value_overwritten_in_place_is_a_miss_not_wrong_bytes(
    pool_dir: str, children: list[ShmChild], size: int, how: str
) -> None:
    # The finding: bytes written into a value file in place were served as if they were the value.
    with owner_at(pool_dir) as owner:
        reader = _reader_holding_v(owner, pool_dir, children, size)
        for key in ("v", "cold"):
            with open(_value_file(pool_dir, key), "r+b") as handle:
                if how == "write":
                    handle.seek(size // 2)
                    handle.write(b"\xff" * 64)
                else:
                    with mmap.mmap(handle.fileno(), 0) as mapping:
                        mapping[size // 2 : size // 2 + 64] = b"\xff" * 64
        still_cached = 1 if size == SMALL_VALUE else None  # a small value's private copy is still right
        assert reader.call("check", key="v")["seed"] == still_cached
        assert reader.call("read_into", key="v", size=size)["seed"] == still_cached
        assert reader.call("check", key="cold")["seed"] is None
        assert reader.call("read_into", key="cold", size=size)["seed"] is None
        owner.put("v", [make_value(3, size)])
        assert reader.call("check", key="v")["seed"] == 3


def test_a_small_value_overwritten_with_its_seal_restored_still_fails_its_checksum(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner, reader_at(pool_dir) as reader:
        owner.put("v", [make_value(1, SMALL_VALUE)])
        path = _value_file(pool_dir, "v")
        seal = os.stat(path).st_mtime_ns
        with open(path, "r+b") as handle:
            handle.seek(100)
            handle.write(b"\x00" * 8)
        os.utime(path, ns=(seal, seal))  # a deliberate cover-up of the mtime
        assert reader.get("v") is None
        assert reader.read_into("v", bytearray(SMALL_VALUE)) is None
