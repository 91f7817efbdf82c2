"""The ``tikv`` state store: the shared StateStore conformance suite plus TiKV-specific behaviour.

Every test drives the real ``tikv_client`` (TiKV's Rust client) over gRPC. In CI the other end is
the TEST DOUBLE in ``tests/support/tikv_double`` (a stand-in PD + TiKV speaking the protocol subset
the client uses — not TiKV). Set ``FLUXON_TEST_TIKV_PD=host:port`` to also run the conformance suite
against a real cluster; see docs/tikv.md for what each of the two proves.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tests.test_state_stores as conformance
from fluxon_core.config import load_config
from fluxon_core.config.errors import ConfigError
from fluxon_core.errors import ApiError, ApiTimeoutError, NetworkError, StoreClosedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import StateStore
from fluxon_plugins.tikv_state.config import TikvStateStoreConfig
from fluxon_plugins.tikv_state.store import VALUE_FORMAT_MARKER, TikvStateStore
from tests.support.poll import wait_until
from tests.support.tikv_double import TikvDouble
from tests.support.tikv_double.mvcc import KeyLocked, Mutation, MvccError, MvccStore, TxnLockNotFound, WriteConflict

REAL_PD_VARIABLE = "FLUXON_TEST_TIKV_PD"
NO_REAL_CLUSTER = f"no real TiKV cluster: set {REAL_PD_VARIABLE}=host:port (a PD endpoint) to run against one"


@pytest.fixture(scope="module")
def tikv_double() -> Iterator[TikvDouble]:
    """One TiKV test double for the module; every test works under its own key prefix."""
    double = TikvDouble()
    double.start()
    try:
        yield double
    finally:
        double.stop()


def _double_options(request: pytest.FixtureRequest, key_prefix: str) -> dict[str, Any]:
    double = request.getfixturevalue("tikv_double")
    return {
        "pd_endpoints": [double.pd_endpoint],
        "key_prefix": key_prefix,
        "scan_page_size": conformance.SCAN_PAGE_SIZE,
    }


def _real_cluster_options(request: pytest.FixtureRequest, key_prefix: str) -> dict[str, Any]:
    endpoint = os.environ[REAL_PD_VARIABLE]  # make_store skips when it is unset
    return {"pd_endpoints": [endpoint], "key_prefix": key_prefix, "scan_page_size": conformance.SCAN_PAGE_SIZE}


TIKV_BACKENDS = [
    pytest.param(conformance.StoreBackend("tikv", _double_options), id="tikv-double"),
    pytest.param(conformance.StoreBackend("tikv", _real_cluster_options), id="tikv-real-cluster"),
]


@pytest.fixture(params=TIKV_BACKENDS)
def make_store(request: pytest.FixtureRequest) -> Iterator[conformance.StoreMaker]:
    """Overrides the suite's fixture of the same name: the conformance tests below run on TiKV."""
    real_cluster = request.param.options is _real_cluster_options
    if real_cluster and not os.environ.get(REAL_PD_VARIABLE):
        pytest.skip(NO_REAL_CLUSTER)
    maker = conformance.StoreMaker(request.param, request, uuid.uuid4().hex[:10])
    yield maker
    for made in maker.made:
        made.close()
    if real_cluster and maker.made:
        _remove_test_keys(maker)


def _remove_test_keys(maker: conformance.StoreMaker) -> None:
    """A real cluster outlives the test: delete everything the test wrote under its prefixes."""
    options = maker.options()
    options["key_prefix"] = options["key_prefix"].rsplit("/", 2)[0] + "/"  # "/fx-state-<token>/"
    cleaner = conformance.create_store("tikv", options)
    try:
        while keys := [key for key, _ in cleaner.scan_prefix("", limit=128)]:
            cleaner.batch_write([], deletes=keys)
    finally:
        cleaner.close()


store = conformance.store

# The shared conformance tests, collected here again so that they run against ``make_store`` above
# (pytest resolves fixtures by name from the module that holds the test). etcd-only tests stay behind.
globals().update(
    {
        name: test
        for name, test in vars(conformance).items()
        if name.startswith("test_") and not name.startswith("test_etcd_") and callable(test)
    }
)


# -- TiKV-specific, against the double --------------------------------------------------------------


@pytest.fixture
def double_store(tikv_double: TikvDouble) -> Iterator[TikvStateStore]:
    opened = _open(tikv_double, timeout_s=5.0)
    yield opened
    opened.close()


def _open(double: TikvDouble, **options: Any) -> TikvStateStore:
    prefix = f"/fx-tikv-{uuid.uuid4().hex[:10]}/"
    created = conformance.create_store("tikv", {"pd_endpoints": [double.pd_endpoint], "key_prefix": prefix, **options})
    assert isinstance(created, TikvStateStore)
    return created


def _raw(store: TikvStateStore, key: str) -> bytes:
    return store.config.key_prefix.encode() + key.encode()


def test_registered_with_its_options_class() -> None:
    entry = get_backends().entry("state_store", "tikv")
    assert entry.config_type is TikvStateStoreConfig
    config = load_config(TikvStateStoreConfig, {"pd_endpoints": ["pd-0:2379", "pd-1:2379"]})
    assert config.key_prefix == "/fluxon_fs_transfer/default/"
    assert config.timeout_s > 0 and config.scan_page_size > 0


@pytest.mark.parametrize(
    ("options", "field", "expectation"),
    [
        ({"pd_endpoints": []}, "pd_endpoints", "must not be empty"),
        ({"pd_endpoints": ["127.0.0.1"]}, "pd_endpoints[0]", "host:port"),
        ({"pd_endpoints": ["pd:2379"], "key_prefix": "fluxon/"}, "key_prefix", "start and end with '/'"),
        ({"pd_endpoints": ["pd:2379"], "timeout_s": 0}, "timeout_s", "> 0"),
        ({"pd_endpoints": ["pd:2379"], "scan_page_size": 0}, "scan_page_size", "> 0"),
        ({"key_prefix": "/x/"}, "pd_endpoints", "required"),
    ],
)
def test_bad_options_are_rejected_naming_the_field(options: dict[str, Any], field: str, expectation: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(TikvStateStoreConfig, options)
    assert field in str(raised.value)
    assert expectation in str(raised.value)


def test_operations_travel_the_percolator_protocol(tikv_double: TikvDouble, double_store: TikvStateStore) -> None:
    before = tikv_double.log.snapshot()
    double_store.put("job", b"v1")
    assert double_store.compare_and_set("job", b"v1", b"v2") is True
    assert double_store.get("job") == b"v2"
    assert [key for key, _ in double_store.scan_prefix("")] == ["job"]
    assert double_store.delete("job") is True
    used = tikv_double.log.snapshot() - before
    for method in ("pdpb.PD/Tso", "tikvpb.Tikv/KvGet", "tikvpb.Tikv/KvScan", "tikvpb.Tikv/KvPrewrite"):
        assert used[method] > 0, f"{method} was never called: {used}"
    assert used["tikvpb.Tikv/KvCommit"] >= 3
    assert not tikv_double.log.unimplemented, tikv_double.log.unimplemented


def test_values_carry_the_format_marker_in_tikv(tikv_double: TikvDouble, double_store: TikvStateStore) -> None:
    double_store.put("empty", b"")
    timestamp = tikv_double.tso_now()
    assert tikv_double.mvcc.get(_raw(double_store, "empty"), timestamp) == VALUE_FORMAT_MARKER
    assert tikv_double.mvcc.get(_raw(double_store, "missing"), timestamp) is None


def test_foreign_value_under_the_prefix_is_reported(tikv_double: TikvDouble, double_store: TikvStateStore) -> None:
    _commit_directly(tikv_double, {_raw(double_store, "alien"): b"written by someone else"})
    with pytest.raises(ApiError, match="format marker"):
        double_store.get("alien")


def test_write_conflicts_are_retried_not_lost(tikv_double: TikvDouble, double_store: TikvStateStore) -> None:
    conflicts_before = tikv_double.log.snapshot_key_errors()["conflict"]
    calls_before = tikv_double.log.snapshot()
    threads, increments = 4, 10
    errors: list[BaseException] = []

    def increment_many() -> None:
        try:
            for _ in range(increments):
                conformance._cas_increment(double_store, "counter")
                double_store.put("last-writer", b"x")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=increment_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert double_store.get("counter") == b"%d" % (threads * increments)
    # The unconditional puts of one key from four threads must have collided at least once, and
    # every transaction that lost was rolled back rather than left to its locks' TTL.
    assert tikv_double.log.snapshot_key_errors()["conflict"] > conflicts_before
    assert (tikv_double.log.snapshot() - calls_before)["tikvpb.Tikv/KvBatchRollback"] > 0


def test_locks_of_a_crashed_writer_are_rolled_back_after_their_ttl(
    tikv_double: TikvDouble, double_store: TikvStateStore
) -> None:
    double_store.put("claim", b"old")
    # A writer prewrote a new value (primary lock, 300 ms TTL) and died before committing.
    start_ts = tikv_double.tso_now()
    tikv_double.mvcc.prewrite(
        [Mutation("put", _raw(double_store, "claim"), VALUE_FORMAT_MARKER + b"never committed")],
        primary=_raw(double_store, "claim"),
        start_ts=start_ts,
        ttl_ms=300,
    )
    before = tikv_double.log.snapshot()
    started = time.monotonic()
    assert double_store.get("claim") == b"old"
    assert time.monotonic() - started < 4.0
    assert double_store.compare_and_set("claim", b"old", b"mine") is True
    used = tikv_double.log.snapshot() - before
    # client-rust decides a dead lock's fate at its primary (KvCleanup, or KvCheckTxnStatus in newer
    # versions), then clears it with KvResolveLock.
    assert used["tikvpb.Tikv/KvCleanup"] + used["tikvpb.Tikv/KvCheckTxnStatus"] > 0, used
    assert used["tikvpb.Tikv/KvResolveLock"] > 0, used
    assert tikv_double.mvcc.lock_count_for(start_ts) == 0


def test_a_committed_primary_rolls_its_secondaries_forward(
    tikv_double: TikvDouble, double_store: TikvStateStore
) -> None:
    # The writer committed its primary key and died before committing the secondary. (This client
    # looks at a lock's primary only once the lock's TTL has run out, so the TTL is short.)
    primary, secondary = _raw(double_store, "batch/1"), _raw(double_store, "batch/2")
    start_ts = tikv_double.tso_now()
    tikv_double.mvcc.prewrite(
        [Mutation("put", primary, VALUE_FORMAT_MARKER + b"p"), Mutation("put", secondary, VALUE_FORMAT_MARKER + b"s")],
        primary=primary,
        start_ts=start_ts,
        ttl_ms=300,
    )
    tikv_double.mvcc.commit([primary], start_ts, tikv_double.tso_now())
    assert dict(double_store.scan_prefix("batch/")) == {"batch/1": b"p", "batch/2": b"s"}
    assert double_store.get("batch/2") == b"s"
    assert tikv_double.mvcc.lock_count_for(start_ts) == 0


def test_cluster_outage_raises_api_errors_and_the_store_recovers(tikv_double: TikvDouble) -> None:
    store = _open(tikv_double, timeout_s=2.0)
    try:
        store.put("job", b"before")
        with tikv_double.stopped():
            for call in (lambda: store.get("job"), lambda: store.compare_and_set("job", b"before", b"x")):
                started = time.monotonic()
                # Unreachable (NetworkError) or no answer from the client's own reconnect attempts
                # (ApiTimeoutError) -- but only after trying until the deadline, not longer.
                with pytest.raises((NetworkError, ApiTimeoutError)):
                    call()
                assert 1.5 < time.monotonic() - started < 2.0 + 2.0
        assert wait_until(lambda: store.get("job"), 20, "TiKV double usable again") == b"before"
        assert store.compare_and_set("job", b"before", b"after") is True
    finally:
        store.close()


def test_store_opens_while_the_cluster_is_down(tikv_double: TikvDouble) -> None:
    with tikv_double.stopped():
        store = _open(tikv_double, timeout_s=1.0)
        with pytest.raises(NetworkError, match="unreachable"):
            store.get("k")
    try:
        store.put("k", b"v")
        assert store.get("k") == b"v"
    finally:
        store.close()


def test_close_releases_the_client_connection(tikv_double: TikvDouble) -> None:
    # Only reads here: after a commit, client-rust's transaction heartbeat task keeps the client
    # alive for one heartbeat interval (10 s) before it notices the transaction ended (docs/tikv.md).
    baseline = tikv_double.log.active_tso_streams
    store = _open(tikv_double)
    assert store.get("k") is None
    wait_until(lambda: tikv_double.log.active_tso_streams == baseline + 1, 5, "the client's TSO stream")
    store.close()
    wait_until(lambda: tikv_double.log.active_tso_streams == baseline, 5, "the TSO stream to close")
    with pytest.raises(StoreClosedError):
        store.get("k")


def test_store_satisfies_the_protocol(double_store: StateStore) -> None:
    assert isinstance(double_store, StateStore)


def _commit_directly(double: TikvDouble, values: dict[bytes, bytes]) -> None:
    """Write committed values straight into the double's MVCC map (as another TiKV client would)."""
    start_ts = double.tso_now()
    primary = next(iter(values))
    double.mvcc.prewrite(
        [Mutation("put", key, value) for key, value in values.items()], primary=primary, start_ts=start_ts, ttl_ms=3000
    )
    double.mvcc.commit(list(values), start_ts, double.tso_now())


# -- the double's MVCC model on its own (what the tests above rely on it to enforce) --------------


def test_double_mvcc_snapshot_reads_and_write_write_conflicts() -> None:
    store = MvccStore()
    store.prewrite([Mutation("put", b"k", b"v1")], primary=b"k", start_ts=10, ttl_ms=3000)
    assert store.get(b"k", 5) is None  # a lock of a later transaction does not block an older snapshot
    with pytest.raises(MvccError) as locked:
        store.get(b"k", 12)
    assert isinstance(locked.value.errors[0], KeyLocked)
    store.commit([b"k"], start_ts=10, commit_ts=20)
    assert store.get(b"k", 19) is None
    assert store.get(b"k", 20) == b"v1"
    # A transaction that started before the commit must not overwrite it.
    with pytest.raises(MvccError) as conflict:
        store.prewrite([Mutation("put", b"k", b"v2")], primary=b"k", start_ts=15, ttl_ms=3000)
    assert isinstance(conflict.value.errors[0], WriteConflict)
    # Prewrite is all or nothing: the free key "other" was not locked either.
    with pytest.raises(MvccError):
        store.prewrite([Mutation("put", b"other", b"x"), Mutation("put", b"k", b"v2")], b"other", 16, 3000)
    assert store.get(b"other", 30) is None and store.lock_count_for(16) == 0


def test_double_mvcc_rollback_is_final_and_commit_is_idempotent() -> None:
    store = MvccStore()
    store.prewrite([Mutation("put", b"a", b"1")], primary=b"a", start_ts=10, ttl_ms=3000)
    store.rollback([b"a"], start_ts=10)
    with pytest.raises(MvccError) as late_commit:
        store.commit([b"a"], start_ts=10, commit_ts=11)
    assert isinstance(late_commit.value.errors[0], TxnLockNotFound)
    with pytest.raises(MvccError) as late_prewrite:
        store.prewrite([Mutation("put", b"a", b"1")], primary=b"a", start_ts=10, ttl_ms=3000)
    assert isinstance(late_prewrite.value.errors[0], WriteConflict)
    store.prewrite([Mutation("put", b"a", b"2")], primary=b"a", start_ts=20, ttl_ms=3000)
    store.commit([b"a"], start_ts=20, commit_ts=21)
    store.commit([b"a"], start_ts=20, commit_ts=21)  # a retried commit succeeds again
    assert store.get(b"a", 30) == b"2"


def test_a_forked_child_must_open_its_own_store(double_store: TikvStateStore) -> None:
    double_store.put("k", b"v")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_use_inherited_store, args=(double_store, results))
    child.start()
    outcome = results.get(timeout=30)
    child.join(30)
    assert outcome == "StoreClosedError", outcome
    assert double_store.get("k") == b"v"  # the parent's store is unaffected


def _use_inherited_store(store: TikvStateStore, results: Any) -> None:
    """Child body: the store object inherited through fork must refuse to work."""
    try:
        store.get("k")
        results.put("no error")
    except Exception as exc:
        results.put(type(exc).__name__)
