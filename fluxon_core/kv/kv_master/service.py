"""The kv master: membership authority and route table of the cluster-wide cache, served over RPC."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from fluxon_core.addresses import AdvertisedPeer, advertised_endpoint, network_identity
from fluxon_core.errors import (
    ApiError,
    InvalidArgumentError,
    KeyNotFoundError,
    NetworkError,
)
from fluxon_core.kv.auth import RpcAuthenticator, load_or_create_secret_file
from fluxon_core.kv.config import KvMasterConfig
from fluxon_core.kv.coordination import coordination_kind, create_coordinator
from fluxon_core.kv.kv_master.membership import Membership
from fluxon_core.kv.kv_master.reachability import registration_problem
from fluxon_core.kv.kv_master.routes import AnnouncedReplica, Invalidation, RouteTable
from fluxon_core.kv.protocol import (
    UNREGISTERED_MEMBER,
    MasterPath,
    MemberInfo,
    OwnerPath,
    key_leases_prefix,
    master_key,
    meta_int,
    meta_str,
    secret_key,
)
from fluxon_core.kv.rpc_link import AuthedRpc, reply
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import RpcServer
from fluxon_core.rpc import select_transport
from fluxon_core.rpc_types import RpcCall, RpcMessage

log = get_logger("fluxon.kv.master")


class KvMaster:
    """One kv master process's state; :meth:`start` binds it, :meth:`stop` releases everything."""

    def __init__(self, config: KvMasterConfig) -> None:
        self.config = config
        self.generation = time.time_ns()
        self.routes = RouteTable()
        self._lease_ttl_s = config.member_lease_ttl_ms / 1000
        self._holder_timeout_s = config.holder_call_timeout_ms / 1000
        secret = load_or_create_secret_file(config.secret_file())
        self.authenticator = RpcAuthenticator(secret)
        self._rpc = AuthedRpc(
            self.authenticator, caller=config.instance_key, transport=select_transport(config.transport)
        )
        self._coordinator = create_coordinator(config.coordination_block())
        self.membership = Membership(self._coordinator, config.cluster_name, self._lease_ttl_s, self._member_gone)
        self._leases_prefix = key_leases_prefix(config.cluster_name)
        self._server: RpcServer | None = None
        self._cancel_watches: list[Callable[[], None]] = []
        self._janitor: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._self_lease: int | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The advertised ``tcp://host:port`` (``advertise_host`` in place of the bound host when set)."""
        if self._server is None:
            raise RuntimeError("kv master is not started")
        return advertised_endpoint(self._server.endpoint, self.config.advertise_host)

    def _as_peer(self) -> AdvertisedPeer:
        return AdvertisedPeer(f"kv master {self.config.instance_key}", self.endpoint, network_identity())

    def start(self) -> None:
        """Bind the RPC server, watch the coordinator, publish the master's endpoint."""
        handlers = {
            MasterPath.REGISTER: self._on_register,
            MasterPath.KEEPALIVE: self._on_keepalive,
            MasterPath.LEAVE: self._on_leave,
            MasterPath.LOOKUP: self._on_lookup,
            MasterPath.COMMIT: self._on_commit,
            MasterPath.COMMIT_MANY: self._on_commit_many,
            MasterPath.ADD_REPLICA: self._on_add_replica,
            MasterPath.DROP_REPLICAS: self._on_drop_replicas,
            MasterPath.ANNOUNCE: self._on_announce,
            MasterPath.REMOVE: self._on_remove,
            MasterPath.COUNT_PREFIX: self._on_count_prefix,
            MasterPath.RESOLVE: self._on_resolve,
            MasterPath.STATUS: self._on_status,
            MasterPath.LEASE_GRANT: self._on_lease_grant,
            MasterPath.LEASE_KEEPALIVE: self._on_lease_keepalive,
            MasterPath.LEASE_REVOKE: self._on_lease_revoke,
        }
        self._cancel_watches.append(self.membership.watch())
        self._cancel_watches.append(self._coordinator.watch_prefix(self._leases_prefix, self._on_lease_record))
        address = f"tcp://{self.config.host}:{self.config.port}"
        self._server = self._rpc.bind(address, handlers, worker_threads=self.config.rpc_worker_threads)
        self._publish_self()
        for target, name in ((self._maintenance_loop, "maintenance"), (self._janitor_loop, "janitor")):
            thread = threading.Thread(target=target, name=f"fluxon-kv-master-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "kv master %s of cluster %s at %s (coordination %s, member lease %.1fs)",
            self.config.instance_key,
            self.config.cluster_name,
            self.endpoint,
            coordination_kind(self.config.coordination_block()),
            self._lease_ttl_s,
        )

    def stop(self) -> None:
        """Stop serving and release the coordinator; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._janitor.put(None)
        if self._server is not None:
            self._server.close()
        for cancel in self._cancel_watches:
            cancel()
        for thread in self._threads:
            thread.join(5.0)
        try:
            if self._self_lease is not None:
                self._coordinator.revoke(self._self_lease)
            self.membership.close()
        except Exception as exc:  # the coordinator may be unreachable at shutdown
            log.warning("releasing coordinator leases: %s", exc)
        self._coordinator.close()
        self._rpc.close()

    def _publish_self(self) -> None:
        if coordination_kind(self.config.coordination_block()) == "local":
            return  # nobody else can read an in-process coordinator
        record = {
            "instance_key": self.config.instance_key,
            "endpoint": self.endpoint,
            "generation": self.generation,
            "network": network_identity(),
        }
        self._self_lease = self._coordinator.grant_lease(self._lease_ttl_s)
        self._coordinator.put(
            master_key(self.config.cluster_name), json.dumps(record).encode(), lease_id=self._self_lease
        )
        if self.config.publish_secret:
            self._coordinator.put(secret_key(self.config.cluster_name), self.authenticator.secret_hex.encode())

    # -- background work ------------------------------------------------------------------------

    def _maintenance_loop(self) -> None:
        period = min(self._lease_ttl_s / 3, 1.0)
        while not self._stop.wait(period):
            try:
                self.membership.sweep()
                self._sweep_key_leases()
                if self._self_lease is not None and not self._coordinator.keep_alive(self._self_lease):
                    log.warning("the master's own coordinator lease expired; publishing again")
                    self._publish_self()
            except Exception as exc:  # a coordinator hiccup must not kill the loop
                log.warning("master maintenance: %s", exc)

    def _janitor_loop(self) -> None:
        while True:
            task = self._janitor.get()
            if task is None:
                return
            try:
                task()
            except Exception:
                log.exception("master background task failed")

    def _member_gone(self, info: MemberInfo, reason: str) -> None:
        lost = self.routes.drop_member(info.instance_key)
        if lost:
            log.info("%d keys lost their last replica with %s (%s)", lost, info.instance_key, reason)

    def _on_lease_record(self, record_key: str, value: bytes | None) -> None:
        if value is not None:
            return
        try:
            lease_id = int(record_key[len(self._leases_prefix) :])
        except ValueError:
            return
        self._janitor.put(lambda: self._invalidate(self.routes.remove_lease_keys(lease_id)))

    def _sweep_key_leases(self) -> None:
        bound = self.routes.lease_ids()
        if not bound:
            return
        present = {key for key, _ in self._coordinator.get_prefix(self._leases_prefix)}
        for lease_id in bound:
            if self._lease_record(lease_id) not in present:
                self._invalidate(self.routes.remove_lease_keys(lease_id))

    def _lease_record(self, lease_id: int) -> str:
        return f"{self._leases_prefix}{lease_id}"

    def _invalidate(self, invalidations: Iterable[Invalidation]) -> None:
        """Tell holders to drop superseded copies; a holder that cannot be told is expelled."""
        by_holder: dict[str, list[list[Any]]] = defaultdict(list)
        for item in invalidations:
            by_holder[item.holder].append([item.key, item.below])
        for holder, items in by_holder.items():
            info = self.membership.get(holder)
            if info is None:
                continue
            try:
                self._rpc.call(info.endpoint, OwnerPath.DROP, {"items": items}, timeout_s=self._holder_timeout_s)
            except ApiError as exc:
                log.warning("holder %s could not drop %d superseded keys (%s); expelling it", holder, len(items), exc)
                self.membership.expel(holder, f"unreachable for invalidation: {exc}")

    # -- handlers -------------------------------------------------------------------------------

    def _require_member(self, meta: Any, name: str = "holder") -> MemberInfo:
        instance_key = meta_str(meta, name)
        generation = meta_int(meta, "generation")
        info = self.membership.get(instance_key)
        if info is None or info.generation != generation:
            raise NetworkError(
                f"{UNREGISTERED_MEMBER}: member {instance_key!r} generation {generation} is not registered with "
                f"kv master {self.config.instance_key} (lease expired or master restarted); it must register again"
            )
        return info

    def _on_register(self, call: RpcCall) -> RpcMessage:
        info = MemberInfo.from_meta(call.message.meta.get("member"))
        members = [state.info for state in self.membership.states()]
        problem = registration_problem(info, self._as_peer(), members)
        if problem is not None:
            log.error("refusing member %s: %s", info.instance_key, problem)
            raise InvalidArgumentError(problem)
        self.membership.register(info)
        return reply(
            {
                "lease_ttl_ms": int(self._lease_ttl_s * 1000),
                "master_generation": self.generation,
                "master_instance_key": self.config.instance_key,
            }
        )

    def _on_keepalive(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        stats = meta.get("stats")
        known = self.membership.keepalive(
            meta_str(meta, "instance_key"), meta_int(meta, "generation"), stats if isinstance(stats, dict) else None
        )
        return reply({"known": known, "master_generation": self.generation})

    def _on_leave(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        self.membership.leave(meta_str(meta, "instance_key"), meta_int(meta, "generation"))
        return reply()

    def _on_lookup(self, call: RpcCall) -> RpcMessage:
        route = self.routes.lookup(meta_str(call.message.meta, "key"))
        if route is None:
            return reply({"found": False})
        holders = []
        for holder in route.holders:
            info = self.membership.get(holder)
            if info is not None:
                holders.append({"instance_key": holder, "endpoint": info.endpoint})
        return reply({"found": bool(holders), "version": route.version, "size": route.size, "holders": holders})

    def _on_commit(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        info = self._require_member(meta)
        lease_id = meta.get("lease_id")
        if lease_id is not None:
            if isinstance(lease_id, bool) or not isinstance(lease_id, int):
                raise InvalidArgumentError(f"lease_id must be an integer, got {lease_id!r}")
            if self._coordinator.get(self._lease_record(lease_id)) is None:
                raise InvalidArgumentError(f"lease {lease_id} does not exist (expired or revoked); grant a new one")
        version, invalidations = self.routes.commit(
            meta_str(meta, "key"),
            info.instance_key,
            meta_int(meta, "size"),
            reject_if_exists=bool(meta.get("reject_if_exists", False)),
            lease_id=lease_id,
        )
        self._invalidate(invalidations)
        return reply({"version": version})

    def _on_commit_many(self, call: RpcCall) -> RpcMessage:
        """Commit several freshly written copies of one holder at once: ``items`` is ``[[key, size], ...]``."""
        meta = call.message.meta
        info = self._require_member(meta)
        items = meta.get("items")
        if not isinstance(items, list) or not all(
            isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_size(item[1])
            for item in items
        ):
            raise InvalidArgumentError(f"items must be a list of [key, size] pairs, got {items!r}")
        versions = []
        invalidations = []
        for key, size in items:
            version, invalid = self.routes.commit(key, info.instance_key, size)
            versions.append(version)
            invalidations += invalid
        self._invalidate(invalidations)
        return reply({"versions": versions})

    def _on_add_replica(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        info = self._require_member(meta)
        accepted = self.routes.add_replica(meta_str(meta, "key"), info.instance_key, meta_int(meta, "version"))
        return reply({"accepted": accepted})

    def _on_drop_replicas(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        holder = meta_str(meta, "holder")
        for key, version in _pairs(meta.get("items")):
            self.routes.drop_replica(key, holder, version)
        return reply()

    def _on_announce(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        info = self._require_member(meta)
        replicas: list[AnnouncedReplica] = []
        stale: list[str] = []
        live_leases = {key for key, _ in self._coordinator.get_prefix(self._leases_prefix)}
        for item in meta.get("items") or []:
            try:
                key, version, size, lease_id = item
                replica = AnnouncedReplica(
                    str(key), int(version), int(size), None if lease_id is None else int(lease_id)
                )
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"announce item must be [key, version, size, lease_id], got {item!r}"
                ) from None
            if replica.lease_id is not None and self._lease_record(replica.lease_id) not in live_leases:
                stale.append(replica.key)
            else:
                replicas.append(replica)
        invalidations, superseded = self.routes.announce(info.instance_key, replicas)
        self._invalidate(invalidations)
        log.info("%s announced %d replicas (%d stale)", info.instance_key, len(replicas), len(stale) + len(superseded))
        return reply({"stale": stale + superseded})

    def _on_remove(self, call: RpcCall) -> RpcMessage:
        self._invalidate(self.routes.remove(meta_str(call.message.meta, "key")))
        return reply()

    def _on_count_prefix(self, call: RpcCall) -> RpcMessage:
        prefix = call.message.meta.get("prefix")
        if not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a string, got {prefix!r}")
        return reply({"count": self.routes.count_prefix(prefix)})

    def _on_resolve(self, call: RpcCall) -> RpcMessage:
        instance_key = meta_str(call.message.meta, "instance_key")
        info = self.membership.get(instance_key)
        if info is None:
            raise NetworkError(
                f"unknown instance_key {instance_key!r}: no live member of cluster {self.config.cluster_name!r} "
                "has that name"
            )
        return reply({"member": info.to_meta()})

    def _on_status(self, call: RpcCall) -> RpcMessage:
        return reply(self.status())

    def status(self) -> dict[str, Any]:
        """The cluster as this master sees it: itself, and every member with its pool stats and keys."""
        now = time.monotonic()
        members = []
        for state in sorted(self.membership.states(), key=lambda s: s.info.instance_key):
            record = state.info.to_meta()
            record.update(
                stats=state.stats,
                keys_held=self.routes.keys_held_by(state.info.instance_key),
                registered_at=state.registered_at,
                last_seen_s_ago=round(now - state.last_seen_monotonic, 3),
            )
            members.append(record)
        return {
            "cluster_name": self.config.cluster_name,
            "master": {
                "instance_key": self.config.instance_key,
                "endpoint": self.endpoint,
                "generation": self.generation,
                "network": network_identity(),
                "coordination": coordination_kind(self.config.coordination_block()),
                "member_lease_ttl_ms": self.config.member_lease_ttl_ms,
                "keys": len(self.routes),
            },
            "members": members,
        }

    def _on_lease_grant(self, call: RpcCall) -> RpcMessage:
        ttl_ms = meta_int(call.message.meta, "ttl_ms")
        if ttl_ms <= 0:
            raise InvalidArgumentError(f"lease ttl_ms must be > 0, got {ttl_ms}")
        lease_id = self._coordinator.grant_lease(ttl_ms / 1000)
        self._coordinator.put(self._lease_record(lease_id), b"", lease_id=lease_id)
        return reply({"lease_id": lease_id})

    def _on_lease_keepalive(self, call: RpcCall) -> RpcMessage:
        lease_id = meta_int(call.message.meta, "lease_id")
        if not self._coordinator.keep_alive(lease_id):
            raise KeyNotFoundError(f"lease {lease_id} expired or was revoked")
        return reply()

    def _on_lease_revoke(self, call: RpcCall) -> RpcMessage:
        lease_id = meta_int(call.message.meta, "lease_id")
        self._coordinator.revoke(lease_id)
        self._invalidate(self.routes.remove_lease_keys(lease_id))
        return reply()


def _pairs(items: Any) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for item in items or []:
        try:
            key, version = item
            out.append((str(key), int(version)))
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"expected [key, version] pairs, got {item!r}") from None
    return out


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
