"""StateStore conformance: every ``state_store`` kind behaves the same through the registry.

To cover another backend (``tikv``, the third-party ``memory`` example), append a
:class:`StoreBackend` to ``BACKENDS``: its ``options`` function returns the YAML options block for a
given ``key_prefix`` (two calls in one test must reach the same underlying database).
Backend-specific behaviour (etcd's transaction size limit and outages) follows at the end.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core.config import load_config
from fluxon_core.errors import ApiError, InvalidArgumentError, StoreClosedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import StateStore
from tests.support.poll import wait_until

# Small pages so that every scan in this suite crosses page boundaries.
SCAN_PAGE_SIZE = 7


@attrs.frozen
class StoreBackend:
    """How the suite reaches one state-store kind."""

    kind: str
    options: Callable[[pytest.FixtureRequest, str], dict[str, Any]]
    """``(request, key_prefix) -> options block``; may pull fixtures (a server, tmp_path) from ``request``."""
    shared_between_processes: bool = True
    """False for in-memory backends: the multi-process race is skipped."""


def _sqlite_options(request: pytest.FixtureRequest, key_prefix: str) -> dict[str, Any]:
    db_path = request.getfixturevalue("tmp_path") / "state" / "transfer.db"
    return {"path": str(db_path), "key_prefix": key_prefix, "scan_page_size": SCAN_PAGE_SIZE}


def _etcd_options(request: pytest.FixtureRequest, key_prefix: str) -> dict[str, Any]:
    server = request.getfixturevalue("etcd_server")
    return {"endpoints": [server.endpoint], "key_prefix": key_prefix, "scan_page_size": SCAN_PAGE_SIZE}


BACKENDS = [
    pytest.param(StoreBackend("sqlite", _sqlite_options), id="sqlite"),
    pytest.param(StoreBackend("etcd", _etcd_options), id="etcd", marks=pytest.mark.etcd),
]


def create_store(kind: str, options: dict[str, Any]) -> StateStore:
    """Parse ``options`` like a YAML block and build the store through the plugin registry."""
    registry = get_backends()
    return registry.create("state_store", kind, load_config(registry.entry("state_store", kind).config_type, options))


@attrs.define
class StoreMaker:
    """Builds stores of one backend for one test; ``name`` selects a key_prefix namespace."""

    backend: StoreBackend
    request: pytest.FixtureRequest
    token: str
    made: list[StateStore] = attrs.field(factory=list)

    def options(self, name: str = "a") -> dict[str, Any]:
        return self.backend.options(self.request, f"/fx-state-{self.token}/{name}/")

    def __call__(self, name: str = "a") -> StateStore:
        store = create_store(self.backend.kind, self.options(name))
        self.made.append(store)
        return store


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreMaker]:
    maker = StoreMaker(request.param, request, uuid.uuid4().hex[:10])
    yield maker
    for store in maker.made:
        store.close()


@pytest.fixture
def store(make_store: StoreMaker) -> StateStore:
    return make_store()


# -- get / put / delete / compare-and-set ---------------------------------------------------------


def test_put_get_delete(store: StateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.get("job/1") is None
    store.put("job/1", b"v1")
    store.put("job/1", b"v2")
    assert store.get("job/1") == b"v2"
    assert store.delete("job/1") is True
    assert store.delete("job/1") is False
    assert store.get("job/1") is None


def test_compare_and_set_semantics(store: StateStore) -> None:
    # expected None means "absent"
    assert store.compare_and_set("k", None, b"first") is True
    assert store.compare_and_set("k", None, b"second") is False
    assert store.get("k") == b"first"
    # replace only on an exact match
    assert store.compare_and_set("k", b"wrong", b"x") is False
    assert store.compare_and_set("k", b"first", b"second") is True
    assert store.get("k") == b"second"
    # value None deletes
    assert store.compare_and_set("k", b"second", None) is True
    assert store.get("k") is None
    # an absent key matches neither a value nor the empty value; the empty value is not absence
    assert store.compare_and_set("k", b"second", b"x") is False
    assert store.compare_and_set("k", b"", b"x") is False
    assert store.get("k") is None
    store.put("e", b"")
    assert store.compare_and_set("e", None, b"x") is False
    assert store.compare_and_set("e", b"", b"y") is True
    assert store.get("e") == b"y"
    # deleting an absent key "from absent" succeeds and leaves it absent
    assert store.compare_and_set("never", None, None) is True
    assert store.get("never") is None


def test_binary_values_round_trip(store: StateStore) -> None:
    values = {
        "all-bytes": bytes(range(256)),
        "empty": b"",
        "nul": b"\x00",
        "large": random.Random(7).randbytes(512 * 1024),
    }
    for key, value in values.items():
        store.put(key, value)
    store.put("from-bytearray", bytearray(b"\xff\x00ba"))
    store.put("from-memoryview", memoryview(b"\x01\x02\x03")[1:])
    for key, value in values.items():
        assert store.get(key) == value
    assert store.get("from-bytearray") == b"\xff\x00ba"
    assert store.get("from-memoryview") == b"\x02\x03"
    assert dict(store.scan_prefix("")) == {**values, "from-bytearray": b"\xff\x00ba", "from-memoryview": b"\x02\x03"}
    assert store.compare_and_set("all-bytes", bytes(range(256)), b"\x00\x00") is True


def test_same_key_prefix_shares_records_across_instances(make_store: StoreMaker) -> None:
    panel, prescan = make_store("shared"), make_store("shared")
    prescan.put("scan/1", b"record")
    assert panel.get("scan/1") == b"record"
    assert panel.compare_and_set("scan/1", b"record", b"claimed") is True
    assert prescan.get("scan/1") == b"claimed"


def test_data_survives_reopening(make_store: StoreMaker) -> None:
    first = make_store("durable")
    first.put("k", b"v")
    first.close()
    assert make_store("durable").get("k") == b"v"


# -- prefix scans ---------------------------------------------------------------------------------

SCAN_KEYS = ["a", "a/", "a/1", "a/10", "a/2", "a/b/c", "a0", "ab", "b", "é", "é/x", "中/1", "z\x00", "~"]


def test_scan_prefix_is_in_utf8_key_order(store: StateStore) -> None:
    shuffled = list(SCAN_KEYS)
    random.Random(3).shuffle(shuffled)
    for key in shuffled:
        store.put(key, key.encode())
    expected = sorted(SCAN_KEYS, key=lambda k: k.encode())
    assert [key for key, _ in store.scan_prefix("")] == expected
    assert list(store.scan_prefix("a/")) == [(k, k.encode()) for k in ["a/", "a/1", "a/10", "a/2", "a/b/c"]]
    assert [key for key, _ in store.scan_prefix("é")] == ["é", "é/x"]
    assert list(store.scan_prefix("nothing/")) == []


def test_scan_prefix_limit(store: StateStore) -> None:
    keys = [f"batch/{i:04d}" for i in range(3 * SCAN_PAGE_SIZE + 2)]
    for key in keys:
        store.put(key, b"x")
    store.put("batch0", b"outside")
    assert [k for k, _ in store.scan_prefix("batch/", limit=3)] == keys[:3]
    assert [k for k, _ in store.scan_prefix("batch/", limit=SCAN_PAGE_SIZE + 1)] == keys[: SCAN_PAGE_SIZE + 1]
    assert [k for k, _ in store.scan_prefix("batch/", limit=1000)] == keys
    assert [k for k, _ in store.scan_prefix("batch/")] == keys
    assert list(store.scan_prefix("batch/", limit=0)) == []


def test_scan_streams_while_the_caller_deletes(store: StateStore) -> None:
    keys = [f"q/{i:03d}" for i in range(2 * SCAN_PAGE_SIZE + 3)]
    for key in keys:
        store.put(key, key.encode())
    visited = []
    for key, value in store.scan_prefix("q/"):
        assert value == key.encode()
        visited.append(key)
        assert store.delete(key) is True
    assert visited == keys
    assert list(store.scan_prefix("q/")) == []


def test_key_prefixes_are_separate_namespaces(make_store: StoreMaker) -> None:
    blue, green = make_store("blue"), make_store("green")
    blue.put("job", b"blue")
    green.put("job", b"green")
    blue.batch_write([("batch/1", b"b1")])
    assert blue.get("job") == b"blue"
    assert green.get("job") == b"green"
    assert list(green.scan_prefix("")) == [("job", b"green")]
    assert list(blue.scan_prefix("")) == [("batch/1", b"b1"), ("job", b"blue")]
    assert green.compare_and_set("batch/1", None, b"g1") is True
    assert blue.delete("job") is True
    assert green.get("job") == b"green"
    assert blue.get("batch/1") == b"b1"


# -- batch writes ---------------------------------------------------------------------------------


def test_batch_write_applies_puts_then_deletes(store: StateStore) -> None:
    store.put("old", b"1")
    store.put("gone", b"2")
    store.batch_write([("n/1", b"a"), ("n/2", b"b"), ("n/1", b"c"), ("both", b"x")], deletes=["gone", "both", "absent"])
    assert dict(store.scan_prefix("")) == {"n/1": b"c", "n/2": b"b", "old": b"1"}
    store.batch_write([], [])
    assert store.get("old") == b"1"


def test_failed_batch_write_changes_nothing(store: StateStore) -> None:
    store.put("keep", b"1")
    with pytest.raises((TypeError, InvalidArgumentError)):
        store.batch_write([("x/1", b"a"), ("x/2", None), ("x/3", b"c")], deletes=["keep"])  # type: ignore[list-item]
    assert store.get("keep") == b"1"
    assert list(store.scan_prefix("x/")) == []


def test_batch_write_is_seen_whole_or_not_at_all(store: StateStore) -> None:
    rounds = 150
    keys = ["atom/a", "atom/b", "atom/c"]
    store.batch_write([(key, b"0") for key in keys])
    snapshots: list[dict[str, bytes]] = []
    writer_done = threading.Event()

    def writer() -> None:
        for i in range(1, rounds + 1):
            # Alternate an extra key in and out so deletes are part of the batches too.
            extra = ([("atom/d", b"%d" % i)], []) if i % 2 else ([], ["atom/d"])
            store.batch_write([(key, b"%d" % i) for key in keys] + extra[0], deletes=extra[1])
        writer_done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not writer_done.is_set():
        snapshots.append(dict(store.scan_prefix("atom/")))
    thread.join()
    snapshots.append(dict(store.scan_prefix("atom/")))
    for snapshot in snapshots:
        values = {snapshot[key] for key in keys}
        assert len(values) == 1, f"a batch was seen half-applied: {snapshot}"
        round_number = int(values.pop())
        assert ("atom/d" in snapshot) == (round_number % 2 == 1), snapshot
    assert snapshots[-1]["atom/a"] == b"%d" % rounds
    assert len({s["atom/a"] for s in snapshots}) > 1, "the reader never overlapped the writer"


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_compare_and_set_from_threads(store: StateStore) -> None:
    threads, rounds, increments = 6, 15, 15
    barrier = threading.Barrier(threads)
    winners: dict[int, list[int]] = {r: [] for r in range(rounds)}
    errors: list[BaseException] = []

    def contender(ident: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait(30)
                if store.compare_and_set(f"race/{r}", None, b"%d" % ident):
                    winners[r].append(ident)
            for _ in range(increments):
                _cas_increment(store, "counter")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=contender, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    for r, won in winners.items():
        assert len(won) == 1, f"round {r} had winners {won}"
        assert store.get(f"race/{r}") == b"%d" % won[0]
    assert store.get("counter") == b"%d" % (threads * increments)


def test_concurrent_compare_and_set_from_processes(make_store: StoreMaker) -> None:
    # Spawned interpreters import the plugins afresh (about a second each on a busy machine).
    if not make_store.backend.shared_between_processes:
        pytest.skip(f"{make_store.backend.kind} is not shared between processes")
    processes, rounds, increments = 4, 10, 10
    options = make_store.options("race")
    make_store("race")  # creates the database/namespace before the children race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(
            target=_race_in_process,
            args=(make_store.backend.kind, options, ident, rounds, increments, barrier, results),
        )
        for ident in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
    assert not failures, failures
    store = make_store("race")
    for r in range(rounds):
        won = [ident for ident, rounds_won in outcomes if r in rounds_won]
        assert len(won) == 1, f"round {r} had winners {won}"
        assert store.get(f"race/{r}") == b"%d" % won[0]
    assert store.get("counter") == b"%d" % (processes * increments)


def _cas_increment(store: StateStore, key: str) -> None:
    while True:
        current = store.get(key)
        following = b"%d" % (int(current or b"0") + 1)
        if store.compare_and_set(key, current, following):
            return


def _race_in_process(
    kind: str, options: dict[str, Any], ident: int, rounds: int, increments: int, barrier: Any, results: Any
) -> None:
    """Child process body: race for every round, then increment the shared counter."""
    try:
        store = create_store(kind, options)
        won = []
        for r in range(rounds):
            barrier.wait(60)
            if store.compare_and_set(f"race/{r}", None, b"%d" % ident):
                won.append(r)
        for _ in range(increments):
            _cas_increment(store, "counter")
        store.close()
        results.put((ident, won))
    except BaseException as exc:
        results.put(f"process {ident}: {type(exc).__name__}: {exc}")
    if kind == "tikv":
        # tikv-client's Rust runtime can crash (SIGSEGV) while the interpreter finalises if its
        # background tasks still run (docs/tikv.md, "Known client behaviour"); the result is already
        # delivered, so leave without finalising.
        results.close()
        results.join_thread()
        os._exit(0)


# -- lifecycle ------------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_fail(make_store: StoreMaker) -> None:
    store = make_store()
    store.put("k", b"v")
    store.close()
    store.close()
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"w"),
        lambda: store.compare_and_set("k", b"v", b"w"),
        lambda: store.delete("k"),
        lambda: list(store.scan_prefix("")),
        lambda: store.batch_write([("k", b"w")]),
    ):
        with pytest.raises(StoreClosedError):
            call()


def test_closing_from_another_thread_releases_every_connection(make_store: StoreMaker) -> None:
    store = make_store()
    used = threading.Thread(target=lambda: store.put("from-thread", b"1"))
    used.start()
    used.join()
    store.put("from-main", b"2")
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join()
    with pytest.raises(StoreClosedError):
        store.get("from-main")
    assert make_store().get("from-thread") == b"1"


# -- sqlite only ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_files_are_created_owner_only(tmp_path: Path) -> None:
    # The finding: transfer_state.db was created 0644, readable by every user of the host.
    db = tmp_path / "state" / "transfer_state.db"
    old_umask = os.umask(0o022)
    try:
        store = create_store("sqlite", {"path": str(db)})
        store.put("job/1", b"record")
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        assert {path.name: _mode(path) for path in files} == {path.name: 0o600 for path in files}
        assert store.get("job/1") == b"record"
        store.close()
    finally:
        os.umask(old_umask)


def test_sqlite_existing_world_readable_database_is_tightened_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "transfer_state.db"
    store = create_store("sqlite", {"path": str(db)})
    store.put("job/1", b"record")
    store.close()
    db.chmod(0o644)  # as an older version left it
    with caplog.at_level(logging.WARNING, logger="fluxon.state"):
        reopened = create_store("sqlite", {"path": str(db)})
    try:
        assert _mode(db) == 0o600
        assert f"{db} was mode 0644; made it owner-only (0600)" in caplog.text
        assert reopened.get("job/1") == b"record"  # the data is untouched
    finally:
        reopened.close()


# -- etcd only ------------------------------------------------------------------------------------


@pytest.fixture
def etcd_store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    options = _etcd_options(request, f"/fx-state-{uuid.uuid4().hex[:10]}/")
    store = create_store("etcd", {**options, "timeout_s": 2.0})
    yield store
    store.close()


@pytest.mark.etcd
def test_etcd_batch_write_beyond_max_txn_ops_is_rejected_whole(etcd_store: StateStore) -> None:
    limit = etcd_store.config.max_txn_ops  # type: ignore[attr-defined]
    etcd_store.batch_write([(f"full/{i:04d}", b"x") for i in range(limit)])
    assert len(list(etcd_store.scan_prefix("full/"))) == limit
    with pytest.raises(InvalidArgumentError, match="max_txn_ops"):
        etcd_store.batch_write([(f"over/{i:04d}", b"x") for i in range(limit)], deletes=["full/0000"])
    assert list(etcd_store.scan_prefix("over/")) == []
    assert etcd_store.get("full/0000") == b"x"


@pytest.mark.etcd
def test_etcd_server_limit_is_reported_when_options_overstate_it(request: pytest.FixtureRequest) -> None:
    options = _etcd_options(request, f"/fx-state-{uuid.uuid4().hex[:10]}/")
    store = create_store("etcd", {**options, "max_txn_ops": 1000})  # the test server keeps etcd's 128
    try:
        with pytest.raises(InvalidArgumentError, match="too many operations"):
            store.batch_write([(f"k/{i:04d}", b"x") for i in range(129)])
        assert list(store.scan_prefix("k/")) == []
    finally:
        store.close()


@pytest.mark.etcd
def test_etcd_outage_raises_api_errors_and_the_store_recovers(etcd_server: Any, etcd_store: StateStore) -> None:
    etcd_store.put("job", b"before")
    with etcd_server.stopped():
        for call in (lambda: etcd_store.get("job"), lambda: etcd_store.compare_and_set("job", b"before", b"x")):
            with pytest.raises(ApiError):
                call()
    assert wait_until(lambda: etcd_store.get("job"), 15, "etcd usable again") == b"before"
    assert etcd_store.compare_and_set("job", b"before", b"after") is True
