"""The fs master's handler table behind the typed link, in one process (no KV plane)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from fluxon_core.errors import ApiError, InvalidArgumentError, PermissionDeniedError
from fluxon_core.result import Result
from fluxon_fs.auth.service import ServiceCredential
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.fs_master.cache_usage import CacheUsageRegistry, ExportCacheUsage
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.handlers.cache import CacheUsageHandlers
from fluxon_fs.fs_master.handlers.config import ConfigHandlers
from fluxon_fs.fs_master.handlers.registry import RegistryHandlers
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.fs_master.mount_registry import MountRegistry
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.calls import CALLS, CALLS_BY_PATH
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import EXPORT_REGISTRY_PATH, TRANSFER_RENEW_PATH
from fluxon_fs.master_api.records import (
    CacheUsageReport,
    ExportCacheFigures,
    ExportHeartbeat,
    ExportPoolFigures,
    ExportRegistration,
    ExportSnapshotQuery,
    ExportUnregistration,
    MountRemoval,
    MountReport,
    UserAccessQuery,
)

SERVICE = ServiceCredential(os.urandom(32))


class LoopbackStore:
    """The KvClient methods the master and its link use; payloads go through JSON like on the wire."""

    def __init__(self, caller: str) -> None:
        self.caller = caller
        self.handlers: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {}

    def instance_key(self) -> str:
        return self.caller

    def rpc_register(self, path: str, handler: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Result[None]:
        self.handlers[path] = handler
        return Result.ok()

    def rpc_call(self, _instance_key: str, path: str, payload: Any, _timeout_ms: float) -> Result[dict[str, Any]]:
        try:
            reply = self.handlers[path](self.caller, json.loads(json.dumps(payload)))
        except ApiError as exc:
            return Result.err(exc)
        return Result.ok(json.loads(json.dumps(reply)))


@pytest.fixture
def master():
    exports = ExportRegistry(FsCacheConfig(exports={"demo": ExportCacheConfig("/data/demo")}))
    mounts = MountRegistry()
    table = HandlerTable(SERVICE)
    ConfigHandlers(exports).register_paths(table)
    RegistryHandlers(exports, mounts, {"token-of-alice": "alice"}.get).register_paths(table)
    CacheUsageHandlers(CacheUsageRegistry()).register_paths(table)
    for call in CALLS:  # the access and transfer domains need stores; the end-to-end tests cover them
        if call.path.startswith(("/fluxon_fs/auth/", "/fluxon_fs/transfer/")):
            table.add(call, lambda _caller, _request: None)
    store = LoopbackStore("agent-a")
    table.serve(store)
    return table, store, exports, mounts


def link_to(store: LoopbackStore, service: ServiceCredential | None = SERVICE) -> FsMasterLink:
    return FsMasterLink(store, "fs-master", service=service)  # type: ignore[arg-type]


def signed(payload: dict[str, Any], call: Any, caller: str = "agent-a") -> dict[str, Any]:
    return {**payload, "service_auth": SERVICE.authenticator.token(caller, call.signed_name)}


def test_an_agent_registers_heartbeats_and_leaves_through_the_typed_link(master):
    _table, store, exports, _mounts = master
    assert set(store.handlers) == set(CALLS_BY_PATH)
    link = link_to(store)

    before = link.export_snapshot(ExportSnapshotQuery())
    registered = link.register_export(ExportRegistration("tcp://h:1", {"demo": "/data/demo", "extra": "/data/x"}))
    assert registered.version != before.version and registered.lease_ttl_s == exports.lease_ttl_s
    snapshot = link.export_snapshot(ExportSnapshotQuery(before.version))
    assert not snapshot.unchanged and snapshot.exports is not None and snapshot.cache is not None
    assert [agent.endpoint for agent in snapshot.exports["extra"].agents] == ["tcp://h:1"]
    assert snapshot.cache.exports["extra"].remote_root_dir_abs == "/data/x"
    assert link.export_snapshot(ExportSnapshotQuery(snapshot.version)).unchanged
    assert link.heartbeat_export(ExportHeartbeat()).known
    assert link.unregister_export(ExportUnregistration()).removed
    assert not link.heartbeat_export(ExportHeartbeat()).known


def test_mounts_are_reported_and_removed(master):
    _table, store, _exports, mounts = master
    link = link_to(store)
    assert link.report_mount(MountReport("/mnt/a", "demo", token="token-of-alice", host="h1", pid=7)).ok
    [mount] = mounts.mounts()
    assert (mount.client_instance_key, mount.local_mount_dir_abs, mount.username, mount.pid) == (
        "agent-a",
        "/mnt/a",
        "alice",
        7,
    )
    assert link.remove_mount(MountRemoval("/mnt/a")).removed
    assert mounts.mounts() == []


def test_serving_needs_one_handler_for_every_call(master):
    table, _store, exports, _mounts = master
    with pytest.raises(ValueError, match="already has a handler"):
        table.add(calls.EXPORT_SNAPSHOT, lambda _caller, _query: None)
    partial = HandlerTable(SERVICE)
    ConfigHandlers(exports).register_paths(partial)
    with pytest.raises(ValueError, match=TRANSFER_RENEW_PATH):
        partial.serve(LoopbackStore("agent-a"))


def test_a_malformed_payload_is_refused_before_any_handler_runs(master):
    table, _store, exports, _mounts = master
    version = exports.snapshot().version
    with pytest.raises(
        InvalidArgumentError, match=r"/fluxon_fs/export_registry request: exports\['x'\] must be a string"
    ):
        table.handle(
            EXPORT_REGISTRY_PATH,
            "agent-a",
            signed({"op": "register", "endpoint": "tcp://h:1", "exports": {"x": 1}}, calls.REGISTER_EXPORT),
        )
    with pytest.raises(InvalidArgumentError, match="cannot serve export 'x': must be an absolute path"):
        table.handle(
            EXPORT_REGISTRY_PATH,
            "agent-a",
            signed({"op": "register", "endpoint": "tcp://h:1", "exports": {"x": "rel"}}, calls.REGISTER_EXPORT),
        )
    assert exports.snapshot().version == version


def test_service_only_calls_need_a_service_token_of_the_caller_for_that_call(master):
    table, store, exports, _mounts = master
    version = exports.snapshot().version
    member = link_to(store, service=None)  # a mounting process: KV member, no service secret
    for attempt in (
        lambda: member.register_export(ExportRegistration("tcp://evil:1", {"demo": "/data/demo"})),
        lambda: member.heartbeat_export(ExportHeartbeat()),
        lambda: member.user_access(UserAccessQuery("admin")),
    ):
        with pytest.raises(PermissionDeniedError, match="service auth token"):
            attempt()
    forged = ServiceCredential(os.urandom(32))  # a secret of its own does not help
    with pytest.raises(PermissionDeniedError):
        link_to(store, service=forged).register_export(ExportRegistration("tcp://evil:1", {"demo": "/data/demo"}))
    # A token for one call is no good for another on the same path, or for another caller.
    heartbeat_token = SERVICE.authenticator.token("agent-a", calls.HEARTBEAT_EXPORT.signed_name)
    register = {"op": "register", "endpoint": "tcp://evil:1", "exports": {"demo": "/data/demo"}}
    with pytest.raises(PermissionDeniedError):
        table.handle(EXPORT_REGISTRY_PATH, "agent-a", {**register, "service_auth": heartbeat_token})
    with pytest.raises(PermissionDeniedError):
        table.handle(EXPORT_REGISTRY_PATH, "agent-b", signed(register, calls.REGISTER_EXPORT, caller="agent-a"))
    assert exports.snapshot().version == version
    # The member may still read the snapshot and report its own mounts.
    assert member.export_snapshot(ExportSnapshotQuery()).version == version


def test_the_service_secret_rotates_with_rolling_restarts() -> None:
    old, new = os.urandom(32), os.urandom(32)
    store = LoopbackStore("agent-a")

    def master_with(credential: ServiceCredential) -> None:
        table = HandlerTable(credential)
        exports = ExportRegistry(FsCacheConfig(exports={"demo": ExportCacheConfig("/data/demo")}))
        RegistryHandlers(exports, MountRegistry(), {}.get).register_paths(table)
        ConfigHandlers(exports).register_paths(table)
        CacheUsageHandlers(CacheUsageRegistry()).register_paths(table)
        for call in CALLS:
            if call.path.startswith(("/fluxon_fs/auth/", "/fluxon_fs/transfer/")):
                table.add(call, lambda _caller, _request: None)
        table.serve(store)

    def registers(agent: ServiceCredential) -> bool:
        try:
            link_to(store, service=agent).register_export(ExportRegistration("tcp://h:1", {"demo": "/data/demo"}))
        except PermissionDeniedError:
            return False
        return True

    # Phase 1: everyone signs with the old secret and also accepts the new one.
    master_with(ServiceCredential(old, [new]))
    assert registers(ServiceCredential(old, [new])) and registers(ServiceCredential(new, [old]))
    # Phase 2 (rolling): processes restarted on the new secret still talk to those not yet restarted.
    master_with(ServiceCredential(new, [old]))
    assert registers(ServiceCredential(old, [new])) and registers(ServiceCredential(new))
    # Phase 3: the old secret is dropped everywhere and stops working.
    master_with(ServiceCredential(new))
    assert registers(ServiceCredential(new)) and not registers(ServiceCredential(old))


def test_cache_usage_adds_hits_and_misses_and_keeps_the_latest_usage_of_each_host_pool():
    now = [100.0]
    usage = CacheUsageRegistry(clock=lambda: now[0])
    table = HandlerTable(SERVICE)
    CacheUsageHandlers(usage).register_paths(table)
    for call in CALLS:
        if call is not calls.REPORT_CACHE_USAGE:
            table.add(call, lambda _caller, _request: None)
    store = LoopbackStore("client-1")
    table.serve(store)
    link = link_to(store)

    def pool(used: int) -> ExportPoolFigures:
        return ExportPoolFigures(budget_bytes=8 << 20, used_bytes=used, entries=used >> 20, evictions=0)

    link.report_cache_usage(CacheUsageReport("o1", "h1", 30.0, {"demo": ExportCacheFigures(3, 2, pool(2 << 20))}))
    link.report_cache_usage(CacheUsageReport("o1", "h1", 30.0, {"demo": ExportCacheFigures(4, 0, pool(5 << 20))}))
    link.report_cache_usage(CacheUsageReport("o2", "h2", 5.0, {"demo": ExportCacheFigures(0, 1, pool(1 << 20))}))
    link.report_cache_usage(CacheUsageReport("o2", "h2", 5.0, {"aux": ExportCacheFigures(1, 0)}))
    demo = usage.exports()["demo"]
    assert (demo.hits, demo.misses, demo.hit_rate) == (7, 3, 0.7)
    assert [(p.pool_owner, p.used_bytes) for p in demo.pools] == [("o1", 5 << 20), ("o2", 1 << 20)]
    assert demo.used_bytes == 6 << 20
    assert usage.exports()["aux"] == ExportCacheUsage(hits=1, misses=0, pools=())
    assert usage.totals() == (8, 3)

    now[0] += 10  # o2's report stood for 5 s; o1's for 30 s
    demo = usage.exports()["demo"]
    assert [p.pool_owner for p in demo.pools] == ["o1"] and (demo.hits, demo.misses) == (7, 3)
