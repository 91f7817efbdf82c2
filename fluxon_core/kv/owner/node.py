"""The owner: the host's pool, its replicas, its registration with the master, ``shared.json`` and the
RPC endpoints external clients (local ``ipc://``) and peers (``tcp://``) use."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fluxon_core.addresses import HostAddress, advertised_endpoint
from fluxon_core.errors import ApiError, InvalidArgumentError, NetworkError, StoreInitFailedError
from fluxon_core.kv.auth import (
    RpcAuthenticator,
    SecretFileError,
    read_secret_file,
    secret_from_hex,
)
from fluxon_core.kv.config import KvClientSettings, default_secret_file
from fluxon_core.kv.coordination import create_coordinator, etcd_block
from fluxon_core.kv.member_session import MemberSession
from fluxon_core.kv.node_rpc import NodeRpc, resolver_via
from fluxon_core.kv.owner.master_link import MasterLink
from fluxon_core.kv.owner.replicas import LocalReplicas
from fluxon_core.kv.pool import OwnerPool, create_owner_pool, owner_pool_block, prefix_budgets_of
from fluxon_core.kv.protocol import (
    PROXIED_MASTER_PATHS,
    MemberInfo,
    OwnerPath,
    is_unregistered_member_error,
    meta_int,
    meta_str,
    pid_namespace,
    prefix_usage_to_meta,
    secret_key,
)
from fluxon_core.kv.rpc_link import AuthedRpc, Handler, reply
from fluxon_core.kv.shared_json import (
    PROTOCOL_VERSION,
    SharedInfo,
    remove_shared_json_if_ours,
    shared_json_path,
    write_shared_json,
)
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Coordinator, PrefixUsage, RpcServer, Transport
from fluxon_core.rpc import encode_error
from fluxon_core.rpc_types import Buffer, RpcCall, RpcMessage
from fluxon_core.single_owner import hold_single_owner_lock

log = get_logger("fluxon.kv.owner")

OWNER_LOCK_NAME = "owner.lock"
OWNER_SOCKET_NAME = "owner.sock"
_MAX_IPC_PATH = 100
RPC_WORKER_THREADS = 8
_FORWARD_MARGIN_S = 0.1


class OwnerNode:
    """Everything an owner store runs; :meth:`start` brings it up, :meth:`close` takes it down."""

    def __init__(self, settings: KvClientSettings, transport: Transport, role: str = "owner") -> None:
        self.settings = settings
        self.transport = transport
        self.pool_block = owner_pool_block(settings.pool)
        self.spec = settings.fluxonkv_spec
        self.instance_key = settings.instance_key
        self.role = role
        self.generation = time.time_ns()
        self.timeout_s = self.spec.rpc_timeout_ms / 1000
        self.shared_json = shared_json_path(self.spec.cluster_file_dir)
        self._closers: list[Callable[[], None]] = []
        self._closed = False
        self._close_lock = threading.Lock()
        self.coordinator: Coordinator | None = None
        self.pool: OwnerPool
        self.rpc: AuthedRpc
        self.master: MasterLink
        self.replicas: LocalReplicas
        self.node_rpc: NodeRpc
        self.session: MemberSession
        self.peer_server: RpcServer
        self.peer_endpoint = ""
        """The advertised cluster-reachable endpoint (``rpc_advertise_host`` in place of the bound host when set)."""
        self.local_endpoint = ""

    # -- start ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the pool, register with the master, serve, then publish ``shared.json``."""
        try:
            self._start()
        except BaseException:
            self.close(leave=False)
            raise

    def _start(self) -> None:
        spec = self.spec
        deadline = time.monotonic() + (spec.master_connect_timeout_ms or spec.attach_timeout_ms) / 1000
        self.coordinator = self._create_coordinator()
        if self.coordinator is not None:
            self._closers.append(self.coordinator.close)
        authenticator = RpcAuthenticator(self._cluster_secret(deadline))
        self.rpc = AuthedRpc(authenticator, caller=self.instance_key, transport=self.transport)
        self._closers.append(self.rpc.close)
        self._claim_file_dir()
        pool_path = str(spec.cluster_pool_dir / "pool")
        try:
            self.pool = create_owner_pool(
                self.pool_block, pool_path, self.settings.contribute_to_cluster_pool_size.dram
            )
        except ApiError as exc:
            raise StoreInitFailedError(
                f"owner {self.instance_key!r} could not create its pool at {pool_path}: {exc}"
            ) from exc
        self._closers.append(self.pool.close)
        self.master = MasterLink(
            self.rpc,
            spec.cluster_name,
            address=spec.master_address,
            coordinator=self.coordinator,
            timeout_s=self.timeout_s,
        )
        self._closers.append(self.master.close)
        self.replicas = LocalReplicas(
            self.pool, self._call_master_as_member, self.rpc, self._identity, peer_timeout_s=self.timeout_s
        )
        self._closers.append(self.replicas.close)
        handlers = self._handlers()
        self.peer_server = self.rpc.bind(
            f"tcp://{self.settings.rpc_host}:0", handlers, worker_threads=RPC_WORKER_THREADS
        )
        self._closers.append(self.peer_server.close)
        self.peer_endpoint = advertised_endpoint(self.peer_server.endpoint, spec.rpc_advertise_host)
        self.local_endpoint = self._bind_local(handlers)
        self.node_rpc = NodeRpc(self.instance_key, self.rpc, self.peer_server, resolver_via(self.call_master))
        self.session = MemberSession(
            MemberInfo(self.instance_key, self.generation, self.role, self.peer_endpoint),
            self.call_master,
            stats=self.stats,
            on_forgotten=self._on_forgotten,
            on_master_restarted=self.replicas.announce,
        )
        remaining = max(0.1, deadline - time.monotonic())
        self.master.wait_reachable(remaining, lambda attempt_s: self.session.register(attempt_s))
        self.session.start()
        self._publish_shared_json(authenticator)
        log.info(
            "owner %s (generation %d) ready: %s pool %s (%d bytes), local %s, peer %s, master %s",
            self.instance_key,
            self.generation,
            self.pool_block.kind,
            pool_path,
            self.settings.contribute_to_cluster_pool_size.dram,
            self.local_endpoint,
            self.peer_endpoint,
            self.master.endpoint,
        )

    def _create_coordinator(self) -> Coordinator | None:
        spec = self.spec
        if spec.etcd_addresses is not None:
            return create_coordinator(etcd_block(spec.etcd_addresses))
        if spec.coordination is not None and spec.coordination.kind != "local":
            return create_coordinator(spec.coordination)
        return None

    def _cluster_secret(self, deadline: float) -> bytes:
        spec = self.spec
        try:
            if spec.cluster_secret_file is not None:
                return read_secret_file(spec.cluster_secret_file)
            if self.coordinator is None:
                return read_secret_file(default_secret_file(spec.cluster_name))
        except SecretFileError as exc:
            raise StoreInitFailedError(
                f"owner {self.instance_key!r} has no cluster secret: {exc}. Point fluxonkv_spec.cluster_secret_file "
                "at the file the kv master created (see its cluster_secret_file)"
            ) from None
        assert self.coordinator is not None
        while True:
            try:
                raw = self.coordinator.get(secret_key(spec.cluster_name))
            except ApiError as exc:
                raw, problem = None, str(exc)
            else:
                problem = f"no secret under {secret_key(spec.cluster_name)}"
            if raw is not None:
                return secret_from_hex(raw.decode("ascii", "replace"), secret_key(spec.cluster_name))
            if time.monotonic() >= deadline:
                raise StoreInitFailedError(
                    f"owner {self.instance_key!r} found no cluster secret in the coordinator ({problem}); "
                    "is the kv master running with publish_secret, or set fluxonkv_spec.cluster_secret_file"
                )
            time.sleep(0.1)

    def _claim_file_dir(self) -> None:
        directory = self.spec.cluster_file_dir
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = hold_single_owner_lock(
            directory / OWNER_LOCK_NAME,
            f"another owner already serves cluster {self.spec.cluster_name!r} from {directory} "
            "(one owner per host and shared_file_path)",
        )
        self._closers.append(lambda: os.close(fd))

    def _bind_local(self, handlers: Mapping[str, Handler]) -> str:
        socket_path = self.spec.cluster_file_dir / OWNER_SOCKET_NAME
        if len(str(socket_path)) > _MAX_IPC_PATH:
            log.info("%s is too long for a unix socket; external clients use %s", socket_path, self.peer_endpoint)
            return self.peer_endpoint
        socket_path.unlink(missing_ok=True)  # left by a dead owner; the flock proves it is not live
        server = self.rpc.bind(f"ipc://{socket_path}", handlers, worker_threads=RPC_WORKER_THREADS)
        # closers run in reverse: the server closes while its socket file still exists, then the file goes
        self._closers.append(lambda: socket_path.unlink(missing_ok=True))
        self._closers.append(server.close)
        return server.endpoint

    def _publish_shared_json(self, authenticator: RpcAuthenticator) -> None:
        spec = self.spec
        etcd_addresses = list(spec.etcd_addresses or [])
        if not etcd_addresses and spec.coordination is not None:
            etcd_addresses = list(getattr(spec.coordination.options, "endpoints", None) or [])
        info = SharedInfo(
            protocol_version=PROTOCOL_VERSION,
            cluster_name=spec.cluster_name,
            sub_cluster=spec.sub_cluster,
            owner_instance_key=self.instance_key,
            owner_generation=self.generation,
            owner_pid=os.getpid(),
            owner_pid_namespace=pid_namespace(),
            owner_host=self.session.info.host,
            owner_endpoint=self.local_endpoint,
            owner_peer_endpoint=self.peer_endpoint,
            pool_kind=self.pool_block.kind,
            pool_path=self.pool.location,
            pool_capacity_bytes=self.settings.contribute_to_cluster_pool_size.dram,
            master_endpoint=self.master.endpoint,
            coordination_kind=spec.coordination.kind if spec.coordination else ("etcd" if etcd_addresses else "local"),
            etcd_addresses=etcd_addresses,
            rpc_host=self.settings.rpc_host,
            rpc_advertise_host=spec.rpc_advertise_host,
            large_file_paths=list(spec.large_file_paths or []),
            member_lease_ttl_ms=int(self.session.lease_ttl_s * 1000),
            cluster_secret=authenticator.secret_hex,
            written_at=time.time(),
        )
        write_shared_json(self.shared_json, info)
        self._closers.append(lambda: remove_shared_json_if_ours(self.shared_json, self.instance_key, self.generation))

    # -- the store operations (KvClient of the owner process) --------------------------------------

    def put(
        self, key: str, parts: Sequence[Buffer], size: int, *, reject_if_exists: bool, lease_id: int | None
    ) -> None:
        """Write ``parts`` as ``key`` into the pool and commit it at the master."""
        self.replicas.put(
            key, lambda: self.pool.put(key, parts), size, reject_if_exists=reject_if_exists, lease_id=lease_id
        )

    def put_many(self, items: Sequence[tuple[str, Sequence[Buffer], int]]) -> list[Exception | None]:
        """Write several ``(key, parts, size)`` values and commit them at once; per item None or its error."""
        results = self.replicas.put_many([(key, self._writer(key, parts), size) for key, parts, size in items])
        return [None if isinstance(r, int) else r for r in results]

    def _writer(self, key: str, parts: Sequence[Buffer]) -> Callable[[], None]:
        return lambda: self.pool.put(key, parts)

    def get(self, key: str) -> Buffer:
        """The stored blob (local, or fetched from a peer)."""
        return self.replicas.get(key)

    def get_local(self, key: str) -> Buffer | None:
        """The copy in this host's pool, or None (no peer is asked)."""
        return self.pool.get(key)

    def remove(self, key: str) -> None:
        """Delete ``key`` on every host."""
        self.replicas.remove(key)

    def exists(self, key: str) -> bool:
        """True when ``key`` exists in the cluster."""
        return self.replicas.exists(key)

    def size(self, key: str) -> int:
        """Stored size of ``key`` in bytes."""
        return self.replicas.size(key)

    def set_prefix_budget(self, prefix: str, max_bytes: int) -> None:
        """Cap the bytes this host's pool holds under ``prefix`` (LRU within the prefix)."""
        prefix_budgets_of(self.pool, self.pool_block.kind).set_prefix_budget(prefix, max_bytes)

    def prefix_usage(self) -> dict[str, PrefixUsage]:
        """Every budgeted prefix of this host's pool and what it holds."""
        return prefix_budgets_of(self.pool, self.pool_block.kind).prefix_usage()

    @property
    def pool_owner_key(self) -> str:
        """The owner whose pool this store uses: itself."""
        return self.instance_key

    def check_alive(self) -> None:
        """The owner is this process: always alive while open."""

    @property
    def endpoint(self) -> str:
        """The owner's cluster-reachable endpoint."""
        return self.peer_endpoint

    @property
    def host_address(self) -> HostAddress:
        """What this host's roles bind and advertise."""
        return self.settings.host_address

    # -- serving ----------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {"holder": self.instance_key, "generation": self.generation}

    def call_master(self, path: str, meta: Mapping[str, Any], timeout_s: float | None = None) -> RpcMessage:
        """Call a master path."""
        return self.master.call(path, meta, timeout_s=timeout_s)

    def _call_master_as_member(self, path: str, meta: Mapping[str, Any], timeout_s: float | None = None) -> RpcMessage:
        """Call the master; when it no longer knows this owner (it restarted), register again and retry once."""
        try:
            return self.master.call(path, meta, timeout_s=timeout_s)
        except NetworkError as exc:
            if not is_unregistered_member_error(exc):
                raise
        self.session.ensure_registered()
        return self.master.call(path, meta, timeout_s=timeout_s)

    def stats(self) -> dict[str, int]:
        """Pool statistics plus the number of committed local replicas."""
        stats = dict(self.pool.stats())
        stats["replicas"] = len(self.replicas)
        return stats

    def _on_forgotten(self) -> None:
        wiped = self.replicas.wipe()
        log.warning("owner %s was dropped by the kv master; wiped %d local replicas", self.instance_key, wiped)

    def _handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            OwnerPath.ATTACH: self._on_attach,
            OwnerPath.PUT: self._on_put,
            OwnerPath.PUT_MANY: self._on_put_many,
            OwnerPath.REMOVE: self._on_remove,
            OwnerPath.GET: self._on_get,
            OwnerPath.EXISTS: self._on_exists,
            OwnerPath.SIZE: self._on_size,
            OwnerPath.FETCH: self._on_fetch,
            OwnerPath.DROP: self._on_drop,
            OwnerPath.PREFIX_BUDGET: self._on_prefix_budget,
            OwnerPath.PREFIX_USAGE: self._on_prefix_usage,
        }
        for master_path in PROXIED_MASTER_PATHS:
            handlers[OwnerPath.proxy(master_path)] = self._forwarder(master_path)
        return handlers

    def _forwarder(self, master_path: str) -> Handler:
        def forward(call: RpcCall) -> RpcMessage:
            # answer within the caller's deadline, so a slow master surfaces as the master's error
            remaining = call.deadline_monotonic - time.monotonic() - _FORWARD_MARGIN_S
            return self.master.call(master_path, call.message.meta, timeout_s=max(0.05, remaining))

        return forward

    def _on_attach(self, call: RpcCall) -> RpcMessage:
        return reply({"owner_instance_key": self.instance_key, "generation": self.generation})

    def _on_put(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        key = meta_str(meta, "key")
        token = meta_str(meta, "token")
        lease_id = meta.get("lease_id")
        version = self.replicas.put(
            key,
            lambda: self.pool.adopt(key, token),
            meta_int(meta, "size"),
            reject_if_exists=bool(meta.get("reject_if_exists", False)),
            lease_id=lease_id if isinstance(lease_id, int) else None,
        )
        return reply({"version": version})

    def _on_put_many(self, call: RpcCall) -> RpcMessage:
        """Adopt several staged values and commit them at once: ``items`` is ``[[key, token, size], ...]``."""
        items = call.message.meta.get("items")
        if not isinstance(items, list) or not all(
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and isinstance(item[2], int)
            and not isinstance(item[2], bool)
            for item in items
        ):
            raise InvalidArgumentError(f"items must be a list of [key, token, size], got {items!r}")
        results = self.replicas.put_many([(key, self._adopter(key, token), size) for key, token, size in items])
        return reply({"results": [r if isinstance(r, int) else encode_error(r) for r in results]})

    def _adopter(self, key: str, token: str) -> Callable[[], None]:
        return lambda: self.pool.adopt(key, token)

    def _on_remove(self, call: RpcCall) -> RpcMessage:
        self.replicas.remove(meta_str(call.message.meta, "key"))
        return reply()

    def _on_get(self, call: RpcCall) -> RpcMessage:
        return reply(frames=[self.replicas.get(meta_str(call.message.meta, "key"))])

    def _on_exists(self, call: RpcCall) -> RpcMessage:
        return reply({"exists": self.replicas.exists(meta_str(call.message.meta, "key"))})

    def _on_size(self, call: RpcCall) -> RpcMessage:
        return reply({"size": self.replicas.size(meta_str(call.message.meta, "key"))})

    def _on_fetch(self, call: RpcCall) -> RpcMessage:
        version, view = self.replicas.serve_fetch(meta_str(call.message.meta, "key"))
        return reply({"version": version}, [view])

    def _on_drop(self, call: RpcCall) -> RpcMessage:
        items = []
        for item in call.message.meta.get("items") or []:
            key, below = item
            items.append((str(key), int(below)))
        return reply({"dropped": self.replicas.drop(items)})

    def _on_prefix_budget(self, call: RpcCall) -> RpcMessage:
        meta = call.message.meta
        self.set_prefix_budget(meta_str(meta, "prefix"), meta_int(meta, "max_bytes"))
        return reply()

    def _on_prefix_usage(self, call: RpcCall) -> RpcMessage:
        return reply(prefix_usage_to_meta(self.prefix_usage()))

    # -- stop -------------------------------------------------------------------------------------

    def close(self, *, leave: bool = True) -> None:
        """Leave the cluster, withdraw ``shared.json``, stop serving, remove the pool; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        session = getattr(self, "session", None)
        if session is not None:
            session.stop(leave=leave)
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # keep releasing the rest
                log.warning("owner %s: error while closing: %s", self.instance_key, exc)
        self._closers.clear()
