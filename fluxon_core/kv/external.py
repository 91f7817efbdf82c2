"""An external client: attached to its host's owner through ``shared.json``, reading the owner's pool
directly (zero-copy) and sending writes and cluster questions to the owner."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fluxon_core.addresses import HostAddress, advertised_endpoint
from fluxon_core.errors import ApiError, KeyNotFoundError, NetworkError, StoreInitFailedError
from fluxon_core.kv.auth import RpcAuthenticator, SecretFileError, secret_from_hex
from fluxon_core.kv.config import KvClientSettings
from fluxon_core.kv.member_session import MemberSession
from fluxon_core.kv.node_rpc import NodeRpc, resolver_via
from fluxon_core.kv.pool import ReaderPool, StagedPoolValue, attach_reader_pool, reader_pool_block
from fluxon_core.kv.protocol import MemberInfo, OwnerPath, pid_namespace, prefix_usage_from_meta
from fluxon_core.kv.rpc_link import AuthedRpc
from fluxon_core.kv.shared_json import SharedInfo, SharedJsonError, read_shared_json, shared_json_path
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import PrefixUsage, RpcServer, Transport
from fluxon_core.rpc import decode_error
from fluxon_core.rpc_types import Buffer, RpcMessage

log = get_logger("fluxon.kv.external")

RPC_WORKER_THREADS = 4
_RETRY_INTERVAL_S = 0.05


@attrs.frozen
class OwnerAttachment:
    """A live owner found through ``shared.json``."""

    info: SharedInfo
    rpc: AuthedRpc


def _pid_gone(info: SharedInfo) -> bool:
    if info.owner_pid_namespace != pid_namespace():
        return False  # another pid namespace: the pid means nothing here, rely on the RPC probe
    try:
        os.kill(info.owner_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def attach_to_owner(settings: KvClientSettings, transport: Transport, timeout_s: float) -> OwnerAttachment:
    """Wait up to ``timeout_s`` for ``shared.json`` to name an owner that answers; StoreInitFailedError otherwise."""
    spec = settings.fluxonkv_spec
    path = shared_json_path(spec.cluster_file_dir)
    deadline = time.monotonic() + timeout_s
    problem = "nothing checked yet"
    while True:
        rpc: AuthedRpc | None = None
        try:
            info = read_shared_json(path)
            if info.cluster_name != spec.cluster_name:
                problem = f"it belongs to cluster {info.cluster_name!r}"
            elif _pid_gone(info):
                problem = (
                    f"it names owner {info.owner_instance_key!r} (pid {info.owner_pid}), which is no longer running"
                )
            else:
                authenticator = RpcAuthenticator(secret_from_hex(info.cluster_secret, str(path)))
                rpc = AuthedRpc(authenticator, caller=settings.instance_key, transport=transport)
                remaining = max(0.05, min(1.0, deadline - time.monotonic()))
                answer = rpc.call(
                    info.owner_endpoint,
                    OwnerPath.ATTACH,
                    {"instance_key": settings.instance_key},
                    timeout_s=remaining,
                ).meta
                if answer.get("generation") == info.owner_generation:
                    return OwnerAttachment(info, rpc)
                problem = f"owner at {info.owner_endpoint} answered as another generation (it is restarting)"
        except (SharedJsonError, SecretFileError) as exc:
            problem = str(exc)
        except ApiError as exc:
            problem = f"the owner it names did not answer: {exc}"
        if rpc is not None:
            rpc.close()
        if time.monotonic() >= deadline:
            raise StoreInitFailedError(
                f"external client {settings.instance_key!r} found no live owner of cluster {spec.cluster_name!r} "
                f"within {timeout_s:.1f}s: looked for {path} ({problem}). Check: is start_kv_and_fs_svc.py "
                f"(or the owner process) still running? Do CLUSTER_NAME ({spec.cluster_name!r}), "
                f"SHARED_MEMORY_PATH ({spec.pool_root!r}) and SHARED_FILE_PATH ({spec.file_root!r}) match the owner's?"
            )
        time.sleep(_RETRY_INTERVAL_S)


class ExternalNode:
    """The store operations of an external client."""

    def __init__(self, settings: KvClientSettings, transport: Transport, role: str = "external") -> None:
        self.settings = settings
        self.transport = transport
        self.instance_key = settings.instance_key
        self.role = role
        self.generation = time.time_ns()
        self.timeout_s = settings.fluxonkv_spec.rpc_timeout_ms / 1000
        self.owner: SharedInfo
        self.rpc: AuthedRpc
        self.reader: ReaderPool
        self.server: RpcServer
        self.node_rpc: NodeRpc
        self.session: MemberSession
        self._endpoint = ""
        self._lost: str | None = None
        self._close_lock = threading.Lock()
        self._closed = False
        self._started: list[str] = []

    def start(self) -> None:
        """Attach (bounded wait), map the pool, serve this member's endpoint, register with the master."""
        timeout_s = self.settings.fluxonkv_spec.attach_timeout_ms / 1000
        attachment = attach_to_owner(self.settings, self.transport, timeout_s)
        self.owner = attachment.info
        self.rpc = attachment.rpc
        self._started.append("rpc")
        try:
            origin = str(shared_json_path(self.settings.fluxonkv_spec.cluster_file_dir))
            pool_block = reader_pool_block(self.settings.pool, self.owner.pool_kind, origin)
            self.reader = attach_reader_pool(pool_block, self.owner.pool_path)
            self._started.append("reader")
            self.server = self.rpc.bind(f"tcp://{self.owner.rpc_host}:0", {}, worker_threads=RPC_WORKER_THREADS)
            self._started.append("server")
            self._endpoint = advertised_endpoint(self.server.endpoint, self.owner.rpc_advertise_host)
            self.node_rpc = NodeRpc(self.instance_key, self.rpc, self.server, resolver_via(self.call_master))
            self.session = MemberSession(
                MemberInfo(
                    self.instance_key,
                    self.generation,
                    self.role,
                    self._endpoint,
                    owner_key=self.owner.owner_instance_key,
                ),
                self.call_master,
            )
            self.session.register()
            self._started.append("session")
            self.session.start()
        except StoreInitFailedError:
            self.close()
            raise
        except ApiError as exc:
            self.close()
            raise StoreInitFailedError(
                f"external client {self.instance_key!r} attached to owner {self.owner.owner_instance_key!r} "
                f"but could not join the cluster: {exc}"
            ) from exc
        except BaseException:
            self.close()
            raise
        log.info(
            "external %s attached to owner %s (generation %d) of cluster %s",
            self.instance_key,
            self.owner.owner_instance_key,
            self.owner.owner_generation,
            self.owner.cluster_name,
        )

    @property
    def endpoint(self) -> str:
        """This client's own advertised endpoint (serving its ``rpc_register`` handlers)."""
        return self._endpoint

    @property
    def host_address(self) -> HostAddress:
        """What this host's roles bind and advertise (from the owner's shared.json)."""
        return self.owner.host_address

    # -- liveness ---------------------------------------------------------------------------------

    def check_alive(self) -> None:
        """NetworkError when the owner this client attached to is gone (the client must be recreated)."""
        if self._lost is None and not self.reader.owner_alive():
            self._lost = (
                f"owner {self.owner.owner_instance_key!r} (pid {self.owner.owner_pid}, generation "
                f"{self.owner.owner_generation}) of cluster {self.owner.cluster_name!r} is gone; close this store "
                "and call new_store again once an owner runs"
            )
            log.error("%s", self._lost)
        if self._lost is not None:
            raise NetworkError(self._lost)

    def call_owner(
        self, path: str, meta: Mapping[str, Any], frames: Sequence[Buffer] = (), timeout_s: float | None = None
    ) -> RpcMessage:
        """Call an owner path (after checking the owner still lives)."""
        self.check_alive()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self.rpc.call(self.owner.owner_endpoint, path, meta, frames, timeout_s=timeout)
        except NetworkError:
            self.check_alive()
            raise

    def call_master(self, path: str, meta: Mapping[str, Any], timeout_s: float | None = None) -> RpcMessage:
        """Call a master path through the owner's proxy."""
        return self.call_owner(OwnerPath.proxy(path), meta, timeout_s=timeout_s)

    # -- store operations -------------------------------------------------------------------------

    def put(
        self, key: str, parts: Sequence[Buffer], size: int, *, reject_if_exists: bool, lease_id: int | None
    ) -> None:
        """Stage the value in the pool, then have the owner adopt and commit it."""
        self.check_alive()
        staged = self.reader.stage(key, parts)
        try:
            self.call_owner(
                OwnerPath.PUT,
                {
                    "key": key,
                    "token": staged.token,
                    "size": size,
                    "reject_if_exists": reject_if_exists,
                    "lease_id": lease_id,
                },
            )
        finally:
            staged.release()

    def put_many(self, items: Sequence[tuple[str, Sequence[Buffer], int]]) -> list[Exception | None]:
        """Stage every value in the pool, then have the owner adopt and commit them in one call."""
        self.check_alive()
        results: list[Exception | None] = [None] * len(items)
        staged: list[tuple[int, StagedPoolValue]] = []
        try:
            for index, (key, parts, _) in enumerate(items):
                try:
                    staged.append((index, self.reader.stage(key, parts)))
                except ApiError as exc:
                    results[index] = exc
            if staged:
                answer = self.call_owner(
                    OwnerPath.PUT_MANY,
                    {"items": [[items[index][0], value.token, items[index][2]] for index, value in staged]},
                ).meta.get("results")
                if not isinstance(answer, list) or len(answer) != len(staged):
                    raise NetworkError(f"put_many: malformed owner answer {answer!r}")
                for (index, _), result in zip(staged, answer, strict=True):
                    results[index] = None if isinstance(result, int) else decode_error(result)
        finally:
            for _, value in staged:
                value.release()
        return results

    def get(self, key: str) -> Buffer:
        """The pool's copy (zero-copy), or the owner fetches it from a peer."""
        self.check_alive()
        view = self.reader.get(key)
        if view is not None:
            return view
        reply = self.call_owner(OwnerPath.GET, {"key": key})
        if not reply.frames:
            raise KeyNotFoundError(f"key {key!r} not found")
        return reply.frames[0]

    def get_local(self, key: str) -> Buffer | None:
        """The pool's copy (zero-copy), or None; never a call."""
        self.check_alive()
        return self.reader.get(key)

    def remove(self, key: str) -> None:
        """Delete ``key`` on every host."""
        self.call_owner(OwnerPath.REMOVE, {"key": key})

    def exists(self, key: str) -> bool:
        """True when ``key`` exists in the cluster."""
        self.check_alive()
        if self.reader.contains(key):
            return True
        return bool(self.call_owner(OwnerPath.EXISTS, {"key": key}).meta.get("exists"))

    def size(self, key: str) -> int:
        """Stored size of ``key`` in bytes."""
        self.check_alive()
        local = self.reader.size(key)
        if local is not None:
            return local
        return int(self.call_owner(OwnerPath.SIZE, {"key": key}).meta["size"])

    def set_prefix_budget(self, prefix: str, max_bytes: int) -> None:
        """Ask the owner to cap the bytes its pool holds under ``prefix``."""
        self.call_owner(OwnerPath.PREFIX_BUDGET, {"prefix": prefix, "max_bytes": max_bytes})

    def prefix_usage(self) -> dict[str, PrefixUsage]:
        """The owner's budgeted prefixes and what its pool holds under each."""
        return prefix_usage_from_meta(self.call_owner(OwnerPath.PREFIX_USAGE, {}).meta)

    @property
    def pool_owner_key(self) -> str:
        """The owner whose pool this client reads."""
        return self.owner.owner_instance_key

    def stats(self) -> dict[str, int]:
        """The pool's statistics as this reader sees them."""
        return dict(self.reader.stats())

    def close(self) -> None:
        """Leave the cluster (if the owner still lives) and release everything; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        started = set(self._started)
        owner_alive = "reader" in started and self._lost is None and self.reader.owner_alive()
        if "session" in started:
            self.session.stop(leave=owner_alive)
        if "server" in started:
            self.server.close()
        if "reader" in started:
            self.reader.close()
        if "rpc" in started:
            self.rpc.close()
