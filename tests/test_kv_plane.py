"""The KV plane with real processes: a kv master, owners on two simulated hosts, external clients.

Every test runs against both coordination backends: ``local`` (the master's in-memory registry)
and ``etcd`` (a real etcd server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import yaml

from fluxon_core.errors import (
    ApiTimeoutError,
    InvalidArgumentError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    NetworkError,
    RemoteHandlerError,
    StorageFullError,
    StoreClosedError,
    StoreInitFailedError,
    UnknownPathError,
)
from fluxon_core.kv import MemHolder, new_store
from fluxon_core.rpc_types import RpcMessage
from tests.support.etcd_server import free_port
from tests.support.kv_cluster import KvCluster, kv_cluster
from tests.support.poll import wait_until

COORDINATION = [pytest.param("local", id="local"), pytest.param("etcd", id="etcd", marks=pytest.mark.etcd)]


def _etcd_endpoint(request: pytest.FixtureRequest, kind: str) -> str | None:
    return request.getfixturevalue("etcd_server").endpoint if kind == "etcd" else None


@pytest.fixture(scope="module", params=COORDINATION)
def plane(request: pytest.FixtureRequest) -> Iterator[KvCluster]:
    """Master + owner o1 on host h1 + owner o2 on host h2, shared by the non-destructive tests."""
    with kv_cluster(_etcd_endpoint(request, request.param)) as cluster:
        cluster.start_master()
        cluster.start_owner("o1", "h1")
        cluster.start_owner("o2", "h2")
        yield cluster


@pytest.fixture(params=COORDINATION)
def fresh(request: pytest.FixtureRequest) -> Iterator[KvCluster]:
    """A cluster of its own, with only the master started."""
    with kv_cluster(_etcd_endpoint(request, request.param)) as cluster:
        cluster.start_master()
        yield cluster


def unique(prefix: str) -> str:
    return f"/{prefix}/{os.urandom(4).hex()}"


def value_of(result) -> dict:
    holder = result.unwrap("get failed")
    assert isinstance(holder, MemHolder)
    return holder.access()


def test_two_externals_on_one_owner_share_the_pool(plane: KvCluster):
    a = plane.external("a-" + os.urandom(3).hex(), "h1")
    b = plane.external("b-" + os.urandom(3).hex(), "h1")
    key = unique("same-host")
    payload = os.urandom(300_000)
    assert a.put_blocking(key, {"n": 7, "f": 1.5, "ok": True, "s": "text", "data": payload}).is_ok()
    value = value_of(b.get_blocking(key))
    assert value["n"] == 7 and value["f"] == 1.5 and value["ok"] is True and value["s"] == "text"
    assert isinstance(value["data"], memoryview) and value["data"] == payload
    assert b.is_exist(key).unwrap() is True
    assert b.get_size(key).unwrap() > len(payload)
    assert a.put_blocking(key, {"n": 8}).is_ok()  # last writer wins
    assert value_of(b.get_blocking(key)) == {"n": 8}
    assert b.remove(key).is_ok()
    assert isinstance(a.get_blocking(key).unwrap_error(), KeyNotFoundError)
    assert a.is_exist(key).unwrap() is False
    assert isinstance(a.remove(key).unwrap_error(), KeyNotFoundError)
    assert isinstance(a.get_size(key).unwrap_error(), KeyNotFoundError)


def test_values_cross_hosts_through_the_master(plane: KvCluster):
    on_h1 = plane.external("x1-" + os.urandom(3).hex(), "h1")
    on_h2 = plane.external("x2-" + os.urandom(3).hex(), "h2")
    key = unique("cross-host")
    assert on_h1.put_blocking(key, {"v": 1, "data": b"A" * 100_000}).is_ok()
    assert on_h2.is_exist(key).unwrap() is True
    entries_before = on_h2.pool_stats()["entries"]
    value = value_of(on_h2.get_blocking(key))  # fetched from o1 by o2, kept in h2's pool
    assert value["v"] == 1 and bytes(value["data"]) == b"A" * 100_000
    assert on_h2.pool_stats()["entries"] == entries_before + 1
    # an overwrite on h2 invalidates h1's copy before it returns
    assert on_h2.put_blocking(key, {"v": 2}).is_ok()
    assert value_of(on_h1.get_blocking(key)) == {"v": 2}
    # a remove on h1 reaches h2
    assert on_h1.remove(key).is_ok()
    assert isinstance(on_h2.get_blocking(key).unwrap_error(), KeyNotFoundError)
    assert on_h2.is_exist(key).unwrap() is False


def test_a_large_value_crosses_hosts_within_the_transport_limits(plane: KvCluster):
    # The fetch from o1 to o2 carries the whole value as one reply frame (max_reply_bytes, default
    # 1 GiB); the default transport limits must let a value of tens of MiB through.
    on_h1 = plane.external("l1-" + os.urandom(3).hex(), "h1")
    on_h2 = plane.external("l2-" + os.urandom(3).hex(), "h2")
    key = unique("large")
    payload = os.urandom(40 * 1024 * 1024)
    assert on_h1.put_blocking(key, {"data": payload}).is_ok()
    assert bytes(value_of(on_h2.get_blocking(key))["data"]) == payload
    assert on_h1.remove(key).is_ok()


def test_put_many_commits_a_batch_readable_everywhere_and_an_item_fails_alone(plane: KvCluster):
    on_h1 = plane.external("m1-" + os.urandom(3).hex(), "h1")
    on_h2 = plane.external("m2-" + os.urandom(3).hex(), "h2")
    keys = [unique("many") for _ in range(5)]
    budget_prefix = unique("many-budget") + "/"
    assert on_h1.set_prefix_budget(budget_prefix, 8192).is_ok()
    items = [(key, {"n": n, "data": os.urandom(10_000)}) for n, key in enumerate(keys)]
    items.append((budget_prefix + "too-big", {"data": os.urandom(100_000)}))  # above its prefix's budget
    errors = on_h1.put_many_blocking(items).unwrap("put_many failed")
    assert errors[:5] == [None] * 5
    assert isinstance(errors[5], StorageFullError), errors[5]
    for n, key in enumerate(keys):
        assert isinstance(on_h2.get_local_blocking(key).unwrap_error(), KeyNotFoundError)  # not on h2's pool yet
        assert value_of(on_h2.get_blocking(key))["n"] == n  # committed: a peer fetches it from o1
        assert value_of(on_h2.get_local_blocking(key))["n"] == n  # now h2 holds a copy
    assert isinstance(on_h2.get_blocking(budget_prefix + "too-big").unwrap_error(), KeyNotFoundError)
    # a batch overwrite invalidates the other host's copies like single puts do
    assert on_h1.put_many_blocking([(keys[0], {"n": 100})]).unwrap() == [None]
    assert value_of(on_h2.get_blocking(keys[0])) == {"n": 100}
    for key in keys:
        assert on_h1.remove(key).is_ok()


def test_put_many_refuses_a_staged_value_under_another_key(plane: KvCluster):
    """An attacker with the cluster secret stages a value for one key and asks the owner to adopt it
    as another: the owner refuses that item and stores the honest one of the same batch."""
    client = plane.external("m3-" + os.urandom(3).hex(), "h1")
    node = client._node  # crafted request: no KvClient method sends this
    honest, victim = unique("honest"), unique("victim")
    staged_honest = node.reader.stage(honest, [b"fine"])
    staged_other = node.reader.stage(unique("other"), [b"evil"])
    try:
        answer = node.call_owner(
            "/fluxon_kv/owner/put_many",
            {"items": [[honest, staged_honest.token, 4], [victim, staged_other.token, 4]]},
        ).meta["results"]
    finally:
        staged_honest.release()
        staged_other.release()
    assert isinstance(answer[0], int)
    assert isinstance(answer[1], dict) and "another key" in answer[1]["message"], answer
    assert bytes(client.get_blocking(honest).unwrap().raw()) == b"fine"
    assert isinstance(client.get_blocking(victim).unwrap_error(), KeyNotFoundError)
    assert client.remove(honest).is_ok()


def test_count_prefix_is_cluster_wide(plane: KvCluster):
    on_h1 = plane.external("c1-" + os.urandom(3).hex(), "h1")
    on_h2 = plane.external("c2-" + os.urandom(3).hex(), "h2")
    prefix = unique("count") + "/"
    for i in range(3):
        assert on_h1.put_blocking(f"{prefix}{i}", {"i": i}).is_ok()
    for i in range(3, 5):
        assert on_h2.put_blocking(f"{prefix}{i}", {"i": i}).is_ok()
    assert on_h1.count_prefix(prefix).unwrap() == 5
    assert on_h2.count_prefix(prefix + "4").unwrap() == 1
    assert isinstance(on_h1.count_prefix(3).unwrap_error(), InvalidArgumentError)  # type: ignore[arg-type]


def test_reject_if_exists_and_lease_bound_keys(plane: KvCluster):
    client = plane.external("l-" + os.urandom(3).hex(), "h1")
    other_host = plane.external("l2-" + os.urandom(3).hex(), "h2")
    key = unique("options")
    assert client.put_blocking(key, {"a": 1}, reject_if_exists=True).is_ok()
    assert isinstance(client.put_blocking(key, {"a": 2}, reject_if_exists=True).unwrap_error(), KeyAlreadyExistsError)
    assert isinstance(
        other_host.put_blocking(key, {"a": 3}, reject_if_exists=True).unwrap_error(), KeyAlreadyExistsError
    )
    assert value_of(other_host.get_blocking(key)) == {"a": 1}

    lease = client.grant_lease(60_000).unwrap()
    leased = unique("leased")
    assert client.put_blocking(leased, {"x": 1}, lease_id=lease).is_ok()
    assert client.keep_alive_lease(lease).is_ok()
    assert client.revoke_lease(lease).is_ok()
    assert isinstance(other_host.get_blocking(leased).unwrap_error(), KeyNotFoundError)
    assert isinstance(client.get_blocking(leased).unwrap_error(), KeyNotFoundError)
    assert isinstance(client.keep_alive_lease(lease).unwrap_error(), KeyNotFoundError)
    assert isinstance(client.put_blocking(leased, {"x": 1}, lease_id=lease).unwrap_error(), InvalidArgumentError)

    short = client.grant_lease(1000).unwrap()
    expiring = unique("expiring")
    assert client.put_blocking(expiring, {"x": 1}, lease_id=short).is_ok()
    wait_until(
        lambda: isinstance(client.get_blocking(expiring).error(), KeyNotFoundError), 10, "the lease's key to vanish"
    )


def test_futures_and_input_validation(plane: KvCluster):
    client = plane.external("f-" + os.urandom(3).hex(), "h2")
    prefix = unique("futures")
    puts = [client.put(f"{prefix}/{i}", {"i": i}) for i in range(8)]
    assert all(f.wait(10).is_ok() for f in puts)
    gets = [client.get(f"{prefix}/{i}") for i in range(8)]
    assert [value_of(f.wait(10))["i"] for f in gets] == list(range(8))
    assert isinstance(client.get(f"{prefix}/missing").wait(10).unwrap_error(), KeyNotFoundError)
    assert isinstance(client.put_blocking("", {"a": 1}).unwrap_error(), InvalidArgumentError)
    assert isinstance(client.put_blocking(prefix, {"a": [1]}).unwrap_error(), InvalidArgumentError)
    assert isinstance(client.get_blocking(5).unwrap_error(), InvalidArgumentError)  # type: ignore[arg-type]


def test_node_to_node_rpc_by_instance_key(plane: KvCluster):
    server_key = "srv-" + os.urandom(3).hex()
    server = plane.external(server_key, "h1")
    caller = plane.external("cli-" + os.urandom(3).hex(), "h2")
    release = threading.Event()

    def boom(_frm: str, _payload: dict) -> dict:
        raise ValueError("handler exploded")

    def slow(_frm: str, _payload: dict) -> dict:
        release.wait(10)
        return {}

    assert server.rpc_register("/test/echo", lambda frm, p: {"from": frm, "got": p}).is_ok()
    assert server.rpc_register_bytes("/test/upper", lambda frm, data: data.upper()).is_ok()
    assert server.rpc_register("/test/boom", boom).is_ok()
    assert server.rpc_register("/test/slow", slow).is_ok()
    try:
        answer = caller.rpc_call(server_key, "/test/echo", {"x": [1, 2]}).unwrap()
        assert answer == {"from": caller.instance_key(), "got": {"x": [1, 2]}}
        assert caller.rpc_call_bytes(server_key, "/test/upper", b"abc").unwrap() == b"ABC"
        error = caller.rpc_call(server_key, "/test/boom", {}).unwrap_error()
        assert isinstance(error, RemoteHandlerError) and "handler exploded" in str(error)
        assert isinstance(caller.rpc_call(server_key, "/test/none", {}).unwrap_error(), UnknownPathError)
        assert isinstance(caller.rpc_call("nobody-here", "/test/echo", {}).unwrap_error(), NetworkError)
        started = time.monotonic()
        assert isinstance(caller.rpc_call(server_key, "/test/slow", {}, timeout_ms=300).unwrap_error(), ApiTimeoutError)
        assert time.monotonic() - started < 5
        assert isinstance(server.rpc_register("/fluxon_kv/x", boom).unwrap_error(), InvalidArgumentError)
        # the message variant carries meta and bulk frames both ways
        assert server.rpc_register_message(
            "/test/frames",
            lambda call: RpcMessage(
                meta={"n": len(call.message.frames)}, frames=(bytes(call.message.frames[0])[::-1],)
            ),
        ).is_ok()
        answer_message = caller.rpc_call_message(
            server_key, "/test/frames", RpcMessage(frames=(b"abc" * 100_000,))
        ).unwrap()
        assert answer_message.meta["n"] == 1 and bytes(answer_message.frames[0]) == (b"abc" * 100_000)[::-1]
        assert server.rpc_unregister("/test/frames").is_ok()
        assert isinstance(
            caller.rpc_call_message(server_key, "/test/frames", RpcMessage(frames=(b"x",))).unwrap_error(),
            UnknownPathError,
        )
        # owners are members too
        assert isinstance(caller.rpc_call("o1", "/test/echo", {}).unwrap_error(), UnknownPathError)
    finally:
        release.set()


def test_an_owner_store_in_process(plane: KvCluster):
    owner = new_store(plane.owner_config("o3-" + os.urandom(3).hex(), "h3", dram="16MiB")).unwrap("new_store failed")
    plane.clients.append(owner)
    remote = plane.external("r-" + os.urandom(3).hex(), "h1")
    key = unique("owner-store")
    assert owner.is_owner() and owner.put_blocking(key, {"data": b"z" * 200_000}).is_ok()
    assert bytes(value_of(remote.get_blocking(key))["data"]) == b"z" * 200_000
    other = unique("from-h1")
    assert remote.put_blocking(other, {"v": 1}).is_ok()
    assert value_of(owner.get_blocking(other)) == {"v": 1}
    assert owner.pool_stats()["capacity_bytes"] == 16 * 1024**2


def test_closed_store_refuses_and_close_is_idempotent(plane: KvCluster):
    config = plane.external_config("closing-" + os.urandom(3).hex(), "h1")
    with new_store(config).unwrap("new_store failed") as client:
        assert client.put_blocking(unique("closing"), {"a": 1}).is_ok()
    client.close()
    assert client.closed()
    assert isinstance(client.get_blocking("/x").unwrap_error(), StoreClosedError)
    assert isinstance(client.put("/x", {"a": 1}).wait(5).unwrap_error(), StoreClosedError)


def test_eviction_under_a_small_budget():
    # pool behaviour, the same with either coordination backend: local only
    with kv_cluster() as cluster:
        cluster.start_master()
        cluster.start_owner("small", "h1", dram="1MiB")
        client = cluster.external("writer", "h1")
        keys = [f"/evict/{i:03d}" for i in range(24)]
        for key in keys:  # each value costs 25 pages of the 256-page budget
            assert client.put_blocking(key, {"data": os.urandom(100_000)}).is_ok(), key
        stats = client.pool_stats()
        assert stats["used_bytes"] <= stats["capacity_bytes"] == 1024**2
        assert stats["evictions"] >= 14
        assert value_of(client.get_blocking(keys[-1]))["data"].nbytes == 100_000
        assert isinstance(client.get_blocking(keys[0]).unwrap_error(), KeyNotFoundError)
        # the master forgets evicted replicas: only what the pool still holds is counted
        wait_until(lambda: client.count_prefix("/evict/").unwrap() <= 10, 10, "evicted keys to leave the routes")
        assert isinstance(
            client.put_blocking("/evict/huge", {"data": b"x" * 2_000_000}).unwrap_error(), StorageFullError
        )


def test_a_prefix_budget_is_one_budget_for_every_process_of_the_host(plane: KvCluster):
    first, second = plane.external("budget-1", "h1"), plane.external("budget-2", "h1")
    elsewhere = plane.external("budget-3", "h2")
    assert (first.pool_owner(), second.pool_owner(), elsewhere.pool_owner()) == ("o1", "o1", "o2")
    value_pages = 25  # 100 kB + encoding, key and trailer in 4 KiB pages
    budget = 2 * value_pages * 4096 + 1000
    assert first.set_prefix_budget("/budget/a/", budget).is_ok()
    for n, client in enumerate([first, first, second, second]):  # the second process never set a budget
        assert client.put_blocking(f"/budget/a/{n}", {"data": os.urandom(100_000)}).is_ok()
    assert second.put_blocking("/budget/other", {"data": os.urandom(100_000)}).is_ok()
    usage = second.prefix_usage().unwrap()["/budget/a/"]
    assert (usage.budget_bytes, usage.used_bytes, usage.entries, usage.evictions) == (
        budget,
        2 * value_pages * 4096,
        2,
        2,
    )
    assert value_of(second.get_blocking("/budget/a/3"))["data"].nbytes == 100_000
    assert second.is_exist("/budget/other").unwrap()
    assert "/budget/a/" not in elsewhere.prefix_usage().unwrap()  # the budget belongs to h1's pool
    for prefix, size in (("/budget/", 4096), ("/budget/b/", 0), ("", 4096)):
        assert isinstance(first.set_prefix_budget(prefix, size).unwrap_error(), InvalidArgumentError), prefix


def test_owner_killed_then_restarted(fresh: KvCluster):
    fresh.start_owner("o1", "h1")
    fresh.start_owner("o2", "h2")
    local = fresh.external("local", "h1")
    remote = fresh.external("remote", "h2")
    assert local.put_blocking("/only-on-h1", {"v": 1}).is_ok()
    assert value_of(remote.get_blocking("/only-on-h1")) == {"v": 1}  # now replicated to h2 too
    assert local.put_blocking("/single-copy", {"v": 2}).is_ok()
    assert remote.count_prefix("/").unwrap() == 2
    pool_dir = fresh.shm_root / "h1" / fresh.cluster_name / "pool" / "values"
    assert len(os.listdir(pool_dir)) == 2

    fresh.kill_owner("o1")
    started = time.monotonic()
    error = local.get_blocking("/only-on-h1").unwrap_error()
    assert isinstance(error, NetworkError) and "is gone" in str(error), error
    assert isinstance(local.put_blocking("/x", {"v": 1}).unwrap_error(), NetworkError)
    assert time.monotonic() - started < 2
    # within the lease TTL the master drops o1's replicas: the single copy is gone, the replica survives
    wait_until(lambda: remote.count_prefix("/").unwrap() == 1, 10, "o1's routes to be dropped")
    assert isinstance(remote.get_blocking("/single-copy").unwrap_error(), KeyNotFoundError)
    assert value_of(remote.get_blocking("/only-on-h1")) == {"v": 1}

    # shared.json still names the dead owner: a new client does not attach to it, and waits for a new one
    error = new_store(fresh.external_config("impatient", "h1", attach_timeout_ms=300)).unwrap_error()
    assert isinstance(error, StoreInitFailedError) and "no longer running" in str(error)
    waiting: list = []
    waiter = threading.Thread(
        target=lambda: waiting.append(new_store(fresh.external_config("patient", "h1", attach_timeout_ms=30_000)))
    )
    waiter.start()

    fresh.start_owner("o1", "h1")
    assert os.listdir(pool_dir) == []  # the new generation swept the old pool files
    waiter.join(40)
    fresh.clients.append(waiting[0].unwrap("new_store failed"))
    again = fresh.clients[-1]
    assert isinstance(again.get_blocking("/single-copy").unwrap_error(), KeyNotFoundError)
    assert value_of(again.get_blocking("/only-on-h1")) == {"v": 1}  # fetched from h2
    assert isinstance(local.get_blocking("/only-on-h1").unwrap_error(), NetworkError)  # the old client stays broken


def test_new_store_without_an_owner_fails_within_the_bound(tmp_path):
    config = {
        "instance_key": "lonely",
        "fluxonkv_spec": {
            "cluster_name": "nobody_home",
            "shared_memory_path": str(tmp_path / "shm"),
            "shared_file_path": str(tmp_path / "files"),
            "attach_timeout_ms": 400,
        },
    }
    started = time.monotonic()
    result = new_store(config)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3
    error = result.unwrap_error()
    assert isinstance(error, StoreInitFailedError)
    text = str(error)
    assert str(tmp_path / "files" / "nobody_home" / "shared.json") in text
    for hint in ("start_kv_and_fs_svc.py", "CLUSTER_NAME", "SHARED_MEMORY_PATH", "SHARED_FILE_PATH", "does not exist"):
        assert hint in text
    with pytest.raises(Exception, match=r"^new_store failed: StoreInitFailedError: "):
        result.unwrap("new_store failed")


def test_a_restarted_master_learns_the_routes_again(fresh: KvCluster):
    fixed_port = {} if fresh.etcd_endpoint else {"port": free_port()}
    fresh.restart_master(**fixed_port)  # owners of local coordination need a master address that survives
    fresh.start_owner("o1", "h1")
    fresh.start_owner("o2", "h2")
    on_h1 = fresh.external("a", "h1")
    on_h2 = fresh.external("b", "h2")
    assert on_h1.put_blocking("/r/replicated", {"v": 1}).is_ok()
    assert value_of(on_h2.get_blocking("/r/replicated")) == {"v": 1}
    assert on_h1.put_blocking("/r/single", {"v": 2}).is_ok()

    fresh.restart_master(**fixed_port)
    # owners notice the new generation on their next keep-alive and announce their replicas
    wait_until(lambda: on_h2.count_prefix("/r/").unwrap() == 2, 20, "the routes to be announced again")
    assert value_of(on_h2.get_blocking("/r/single")) == {"v": 2}
    assert on_h2.put_blocking("/r/replicated", {"v": 3}).is_ok()
    assert value_of(on_h1.get_blocking("/r/replicated")) == {"v": 3}
    wait_until(
        lambda: isinstance(on_h1.rpc_call("b", "/nothing", {}).error(), UnknownPathError),
        10,
        "external b to be registered again (so it resolves, then lacks the path)",
    )


def test_a_newer_generation_takes_an_instance_key_over(plane: KvCluster):
    twin = "twin-" + os.urandom(3).hex()
    key = unique("twin")
    first = plane.external(twin, "h1")
    assert first.put_blocking(key, {"v": 1}).is_ok()
    second = plane.external(twin, "h1")  # same name, later start: a new generation
    assert second.rpc_register("/twin/who", lambda frm, p: {"generation": second.generation()}).is_ok()
    observer = plane.external("observer-" + os.urandom(3).hex(), "h2")
    answer = observer.rpc_call(twin, "/twin/who", {}).unwrap()
    assert answer == {"generation": second.generation()} and second.generation() > first.generation()
    assert value_of(observer.get_blocking(key)) == {"v": 1}  # values belong to the owner, not the writer


def test_an_unreachable_holder_is_expelled_and_wipes_its_copies(fresh: KvCluster):
    fresh.start_owner("o1", "h1")
    fresh.start_owner("o2", "h2")
    on_h1 = fresh.external("a", "h1")
    on_h2 = fresh.external("b", "h2")
    assert on_h1.put_blocking("/p/k", {"v": 1}).is_ok()
    assert value_of(on_h2.get_blocking("/p/k")) == {"v": 1}
    frozen = fresh.owners["o2"]
    frozen.send_signal(signal.SIGSTOP)  # a partitioned host: alive, but deaf
    try:
        started = time.monotonic()
        assert on_h1.remove("/p/k").is_ok()  # the master gives up on o2 after holder_call_timeout_ms
        assert time.monotonic() - started < 10
    finally:
        frozen.send_signal(signal.SIGCONT)
    # back on the network, o2 learns it was dropped and wipes its copies before registering again
    wait_until(
        lambda: isinstance(on_h2.get_blocking("/p/k").error(), KeyNotFoundError), 15, "o2 to wipe its stale copy"
    )
    assert on_h2.put_blocking("/p/k2", {"v": 2}).is_ok()
    assert value_of(on_h1.get_blocking("/p/k2")) == {"v": 2}


def test_a_forgotten_store_is_closed_at_exit(plane: KvCluster):
    from fluxon_core.runtime.commands import fetch_status

    name = "forgetful-" + os.urandom(3).hex()
    key = unique("forgotten")
    config = plane.root / f"{name}.yaml"
    config.write_text(yaml.safe_dump(plane.external_config(name, "h1")))
    script = (
        "import sys; from fluxon_core.kv import FluxonKvClientConfig, new_store; "
        "s = new_store(FluxonKvClientConfig.from_file(sys.argv[1])).unwrap('new_store failed'); "
        "s.put_blocking(sys.argv[2], {'v': 1}).unwrap(); print('up', flush=True)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(config), key], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "up", done.stderr
    members = {m["instance_key"] for m in fetch_status(workdir=str(plane.root / "master"))["members"]}
    assert name not in members  # it left at exit instead of waiting for its lease to lapse
    assert value_of(plane.external("later-" + os.urandom(3).hex(), "h1").get_blocking(key)) == {"v": 1}
