"""``new_store`` and ``KvClient``: the KV API of KV.md §3-4.

A store is an *owner* (``contribute_to_cluster_pool_size.dram > 0``: it creates the host's pool and
serves the other processes) or an *external client* (it attaches to the host's owner). Both offer
the same API; every operation returns a :class:`~fluxon_core.result.Result` holding a typed
:class:`~fluxon_core.errors.ApiError` on failure and never raises for an expected failure.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from fluxon_core.addresses import HostAddress
from fluxon_core.config import ConfigError
from fluxon_core.errors import (
    ApiError,
    InvalidArgumentError,
    KeyNotFoundError,
    StoreClosedError,
    StoreInitFailedError,
)
from fluxon_core.kv.auth import RpcAuthenticator
from fluxon_core.kv.config import FluxonKvClientConfig, KvClientSettings, load_client_settings
from fluxon_core.kv.node_rpc import BytesHandler, DictHandler, MessageHandler, NodeRpc
from fluxon_core.kv.protocol import MasterPath
from fluxon_core.kv.rpc_link import AuthedRpc
from fluxon_core.kv.value_codec import Value, decode_value, encode_value, encoded_size
from fluxon_core.log_setup import configure_logging, get_logger, level_from_env
from fluxon_core.monitoring import disable_sinks_in_process
from fluxon_core.protocols import PrefixUsage, Transport
from fluxon_core.result import Result
from fluxon_core.rpc import select_transport
from fluxon_core.rpc_types import Buffer, RpcMessage

log = get_logger("fluxon.kv.client")

T = TypeVar("T")
MAX_KEY_BYTES = 4096
DEFAULT_RPC_TIMEOUT_MS = 10_000
_FUTURE_WORKERS = 4


class StoreNode(Protocol):
    """What :class:`KvClient` needs from an owner or an external node."""

    instance_key: str
    generation: int
    node_rpc: NodeRpc
    rpc: AuthedRpc
    transport: Transport

    @property
    def endpoint(self) -> str: ...
    @property
    def host_address(self) -> HostAddress: ...

    def put(
        self, key: str, parts: Sequence[Buffer], size: int, *, reject_if_exists: bool, lease_id: int | None
    ) -> None: ...
    def put_many(self, items: Sequence[tuple[str, Sequence[Buffer], int]]) -> list[Exception | None]: ...
    def get(self, key: str) -> Buffer: ...
    def get_local(self, key: str) -> Buffer | None: ...
    def remove(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def call_master(self, path: str, meta: Mapping[str, Any], timeout_s: float | None = None) -> RpcMessage: ...
    def set_prefix_budget(self, prefix: str, max_bytes: int) -> None: ...
    def prefix_usage(self) -> dict[str, PrefixUsage]: ...
    @property
    def pool_owner_key(self) -> str: ...
    def check_alive(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class MemHolder:
    """A value read from the store; bytes fields of :meth:`access` may be zero-copy views into the pool.

    Keep the holder (or the views) only as long as needed: a view of a large value keeps its
    pool memory alive even after the key is overwritten or removed.
    """

    __slots__ = ("_blob", "_decoded")

    def __init__(self, blob: Buffer) -> None:
        self._blob = memoryview(blob)
        self._decoded: dict[str, Value] | None = None

    def access(self) -> dict[str, Value]:
        """The stored dict; decoded once, bytes fields as read-only ``memoryview`` slices."""
        if self._decoded is None:
            self._decoded = decode_value(self._blob)
        return dict(self._decoded)

    def raw(self) -> memoryview:
        """The encoded blob."""
        return self._blob

    @property
    def nbytes(self) -> int:
        """Size of the encoded blob."""
        return self._blob.nbytes

    def release(self) -> None:
        """Drop the references this holder keeps (views already handed out stay valid)."""
        self._decoded = None
        self._blob = memoryview(b"")


class KvFuture(Generic[T]):
    """The pending result of :meth:`KvClient.put` / :meth:`KvClient.get`."""

    def __init__(self, future: concurrent.futures.Future[Result[T]]) -> None:
        self._future = future

    def wait(self, timeout_s: float | None = None) -> Result[T]:
        """The Result once done; an ApiTimeoutError Result if ``timeout_s`` passes first."""
        from fluxon_core.errors import ApiTimeoutError

        try:
            return self._future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            return Result.err(ApiTimeoutError(f"operation not finished within {timeout_s}s"))

    def done(self) -> bool:
        """True when the result is available."""
        return self._future.done()


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"key must be at most {MAX_KEY_BYTES} bytes of UTF-8")
    return key


def _as_api_error(error: Exception | None) -> ApiError | None:
    if error is None or isinstance(error, ApiError):
        return error
    return ApiError(f"{type(error).__name__}: {error}")


def _check_timeout_ms(timeout_ms: Any) -> float:
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0:
        raise InvalidArgumentError(f"timeout_ms must be a positive number, got {timeout_ms!r}")
    return float(timeout_ms) / 1000


class KvClient:
    """A store handle (owner or external client). Thread-safe; close it (or use ``with``) when done."""

    def __init__(self, node: StoreNode, settings: KvClientSettings, config: FluxonKvClientConfig) -> None:
        self._node = node
        self._settings = settings
        self._config = config
        self._closed = False
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        _open_clients.add(self)

    # -- identity ---------------------------------------------------------------------------------

    def instance_key(self) -> str:
        """This process's name in the cluster."""
        return self._settings.instance_key

    def get_cluster_name(self) -> str:
        """The cluster this store belongs to."""
        return self._settings.fluxonkv_spec.cluster_name

    def config(self) -> FluxonKvClientConfig:
        """The config this store was built from."""
        return self._config

    def is_owner(self) -> bool:
        """True when this store contributes the host's pool."""
        return self._settings.is_owner

    def generation(self) -> int:
        """This store's generation (a restart under the same instance_key gets a new one)."""
        return self._node.generation

    def endpoint(self) -> str:
        """This member's RPC endpoint (where ``rpc_register`` handlers are served)."""
        return self._node.endpoint

    def host_address(self) -> HostAddress:
        """What this host's roles bind and advertise: the owner's ``fluxonkv_spec.rpc_host`` and
        ``rpc_advertise_host`` (an external client reads them from ``shared.json``).

        Servers a process runs next to its store (an fs agent's export endpoint) follow it by default.
        """
        return self._node.host_address

    def transport(self) -> Transport:
        """The RPC transport this store uses (its config's ``transport`` block).

        Code that builds its own RPC servers or clients next to a store (the FS roles, the patcher)
        takes them from here, so they follow the store's config.
        """
        return self._node.transport

    def pool_stats(self) -> dict[str, int]:
        """Capacity, usage, entries, hits, misses and evictions of the host's pool."""
        self._check_open()
        return self._node.stats()

    def pool_owner(self) -> str:
        """Instance key of the owner whose pool this store uses (one per host; itself for an owner)."""
        self._check_open()
        return self._node.pool_owner_key

    def set_prefix_budget(self, prefix: str, max_bytes: int) -> Result[None]:
        """Cap the bytes this host's pool holds under keys starting with ``prefix``.

        The budget lives in the pool (the owner's accounting), so it is one budget for every process
        of the host, whichever of them stores the values. A put under the prefix first evicts the
        prefix's own least recently used values until it fits; budgeted prefixes must not overlap.
        Setting it again with another size changes it (a smaller one evicts at once); the last
        setter wins. InvalidArgumentError for a bad prefix or size, or a pool kind without budgets.
        """

        def set_budget() -> None:
            if not isinstance(prefix, str) or not prefix:
                raise InvalidArgumentError(f"prefix must be a non-empty string, got {prefix!r}")
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
                raise InvalidArgumentError(f"max_bytes must be a positive int, got {max_bytes!r}")
            self._node.set_prefix_budget(prefix, max_bytes)

        return self._run(set_budget)

    def prefix_usage(self) -> Result[dict[str, PrefixUsage]]:
        """Every budgeted prefix of this host's pool: its budget, charged bytes, values and evictions."""
        return self._run(self._node.prefix_usage)

    # -- plumbing ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self._settings.instance_key!r} is closed")

    def _run(self, fn: Callable[[], T]) -> Result[T]:
        try:
            self._check_open()
            return Result.ok(fn())
        except ApiError as exc:
            return Result.err(exc)

    def _submit(self, fn: Callable[[], Result[T]]) -> KvFuture[T]:
        with self._lock:
            if self._closed:
                future: concurrent.futures.Future[Result[T]] = concurrent.futures.Future()
                future.set_result(Result.err(StoreClosedError(f"store {self._settings.instance_key!r} is closed")))
                return KvFuture(future)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    _FUTURE_WORKERS, thread_name_prefix=f"fluxon-kv[{self._settings.instance_key}]"
                )
            return KvFuture(self._executor.submit(fn))

    # -- values -----------------------------------------------------------------------------------

    def put_blocking(
        self, key: str, value: Mapping[str, Any], *, reject_if_exists: bool = False, lease_id: int | None = None
    ) -> Result[None]:
        """Store ``value`` (a flat dict of int/float/bool/str/bytes) under ``key``; last writer wins.

        ``reject_if_exists`` fails with KeyAlreadyExistsError when the key exists; ``lease_id`` (from
        :meth:`grant_lease`) removes the key when that lease ends.
        """

        def put() -> None:
            _check_key(key)
            if lease_id is not None and (isinstance(lease_id, bool) or not isinstance(lease_id, int)):
                raise InvalidArgumentError(f"lease_id must be an int from grant_lease, got {lease_id!r}")
            parts = encode_value(value)
            self._node.put(key, parts, encoded_size(parts), reject_if_exists=bool(reject_if_exists), lease_id=lease_id)

        return self._run(put)

    def put_many_blocking(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> Result[list[ApiError | None]]:
        """Store several ``(key, value)`` pairs with one call to the owner and one commit at the kv master.

        Like :meth:`put_blocking` for each (last writer wins, no ``reject_if_exists``, no lease), but
        each value may fail alone: the Result holds, per item, None or the error that kept it out.
        An error Result means none was stored (bad input, the owner or master unreachable).
        """

        def put_many() -> list[ApiError | None]:
            encoded = []
            for key, value in items:
                parts = encode_value(value)
                encoded.append((_check_key(key), parts, encoded_size(parts)))
            return [_as_api_error(error) for error in self._node.put_many(encoded)]

        return self._run(put_many)

    def get_blocking(self, key: str) -> Result[MemHolder]:
        """The value of ``key``; KeyNotFoundError when absent."""
        return self._run(lambda: MemHolder(self._node.get(_check_key(key))))

    def get_local_blocking(self, key: str) -> Result[MemHolder]:
        """The value of ``key`` if this host's pool holds it, without asking any other process.

        A miss (KeyNotFoundError) says nothing about other hosts: :meth:`get_blocking` would ask
        the host's owner, which may fetch the value from a peer. For a caller that has a cheaper
        way to the data than a cluster lookup, e.g. a mount whose agent answers in one call.
        """

        def get_local() -> MemHolder:
            blob = self._node.get_local(_check_key(key))
            if blob is None:
                raise KeyNotFoundError(f"key {key!r} not in this host's pool")
            return MemHolder(blob)

        return self._run(get_local)

    def put(
        self, key: str, value: Mapping[str, Any], *, reject_if_exists: bool = False, lease_id: int | None = None
    ) -> KvFuture[None]:
        """:meth:`put_blocking` in the background; ``wait()`` on the future gives its Result."""
        return self._submit(lambda: self.put_blocking(key, value, reject_if_exists=reject_if_exists, lease_id=lease_id))

    def get(self, key: str) -> KvFuture[MemHolder]:
        """:meth:`get_blocking` in the background."""
        return self._submit(lambda: self.get_blocking(key))

    def remove(self, key: str) -> Result[None]:
        """Delete ``key`` on every host; KeyNotFoundError when absent."""
        return self._run(lambda: self._node.remove(_check_key(key)))

    def is_exist(self, key: str) -> Result[bool]:
        """True when ``key`` exists anywhere in the cluster."""
        return self._run(lambda: self._node.exists(_check_key(key)))

    def get_size(self, key: str) -> Result[int]:
        """Stored (encoded) size of ``key`` in bytes; KeyNotFoundError when absent."""
        return self._run(lambda: self._node.size(_check_key(key)))

    def count_prefix(self, prefix: str) -> Result[int]:
        """How many keys of the cluster start with ``prefix``."""

        def count() -> int:
            if not isinstance(prefix, str):
                raise InvalidArgumentError(f"prefix must be a string, got {prefix!r}")
            return int(self._node.call_master(MasterPath.COUNT_PREFIX, {"prefix": prefix}).meta["count"])

        return self._run(count)

    # -- leases -----------------------------------------------------------------------------------

    def grant_lease(self, ttl_ms: int) -> Result[int]:
        """A lease for ``put(..., lease_id=)``: its keys are removed when it is revoked or not kept alive."""

        def grant() -> int:
            _check_timeout_ms(ttl_ms)
            return int(self._node.call_master(MasterPath.LEASE_GRANT, {"ttl_ms": int(ttl_ms)}).meta["lease_id"])

        return self._run(grant)

    def keep_alive_lease(self, lease_id: int) -> Result[None]:
        """Renew a lease; KeyNotFoundError when it already ended."""
        return self._run(lambda: self._call_master_ok(MasterPath.LEASE_KEEPALIVE, {"lease_id": lease_id}))

    def revoke_lease(self, lease_id: int) -> Result[None]:
        """End a lease now, removing its keys."""
        return self._run(lambda: self._call_master_ok(MasterPath.LEASE_REVOKE, {"lease_id": lease_id}))

    def _call_master_ok(self, path: str, meta: Mapping[str, Any]) -> None:
        self._node.call_master(path, meta)

    def cluster_status(self) -> Result[dict[str, Any]]:
        """The kv master's view: cluster name, master, and every member with its role and pool stats."""
        return self._run(lambda: dict(self._node.call_master(MasterPath.STATUS, {}).meta))

    def cluster_authenticator(self) -> RpcAuthenticator:
        """Signs and checks cluster-member call tokens (the secret this store joined the cluster with)."""
        return self._node.rpc.authenticator

    # -- node-to-node RPC -------------------------------------------------------------------------

    def rpc_register(self, path: str, handler: DictHandler) -> Result[None]:
        """Serve ``path``: ``handler(from_instance_key, dict) -> dict`` (JSON-able dicts)."""
        return self._run(lambda: self._node.node_rpc.register_dict(path, handler))

    def rpc_register_bytes(self, path: str, handler: BytesHandler) -> Result[None]:
        """Serve ``path``: ``handler(from_instance_key, bytes) -> bytes``."""
        return self._run(lambda: self._node.node_rpc.register_bytes(path, handler))

    def rpc_register_message(self, path: str, handler: MessageHandler) -> Result[None]:
        """Serve ``path`` with a handler of the raw :class:`~fluxon_core.rpc_types.RpcCall` (meta + frames)."""
        return self._run(lambda: self._node.node_rpc.register_message(path, handler))

    def rpc_unregister(self, path: str) -> Result[None]:
        """Stop serving ``path``."""
        return self._run(lambda: self._node.node_rpc.unregister(path))

    def rpc_call(
        self, instance_key: str, path: str, payload: Mapping[str, Any], timeout_ms: float = DEFAULT_RPC_TIMEOUT_MS
    ) -> Result[dict[str, Any]]:
        """Call a dict handler on member ``instance_key``; errors (handler exception, unknown node or
        path, timeout) come back as error Results."""
        return self._run(
            lambda: self._node.node_rpc.call_dict(instance_key, path, payload, _check_timeout_ms(timeout_ms))
        )

    def rpc_call_bytes(
        self, instance_key: str, path: str, payload: bytes, timeout_ms: float = DEFAULT_RPC_TIMEOUT_MS
    ) -> Result[bytes]:
        """Call a bytes handler on member ``instance_key``."""
        return self._run(
            lambda: self._node.node_rpc.call_bytes(instance_key, path, payload, _check_timeout_ms(timeout_ms))
        )

    def rpc_call_message(
        self, instance_key: str, path: str, message: RpcMessage, timeout_ms: float = DEFAULT_RPC_TIMEOUT_MS
    ) -> Result[RpcMessage]:
        """Call a message handler on member ``instance_key`` (meta + zero-copy frames both ways)."""
        return self._run(
            lambda: self._node.node_rpc.call_message(instance_key, path, message, _check_timeout_ms(timeout_ms))
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Leave the cluster and release everything; idempotent. An owner also removes its pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        try:
            self._node.close()
        finally:
            _open_clients.discard(self)
        log.info("store %s closed", self._settings.instance_key)

    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> KvClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "owner" if self._settings.is_owner else "external"
        state = "closed" if self._closed else "open"
        return f"<KvClient {self._settings.instance_key!r} {kind} of {self.get_cluster_name()!r} ({state})>"


_open_clients: weakref.WeakSet[KvClient] = weakref.WeakSet()


@atexit.register
def _close_forgotten_stores() -> None:
    for client in list(_open_clients):
        try:
            client.close()
        except Exception as exc:  # interpreter shutdown: report and go on
            log.warning("closing %r at exit: %s", client, exc)


def _honour_fluxon_log() -> None:
    """Apply ``FLUXON_LOG`` in client processes too; keep the application's own logging setup if it has one."""
    logger = logging.getLogger("fluxon")
    if logger.handlers or logging.getLogger().handlers:
        logger.setLevel(level_from_env())
    else:
        configure_logging()


def new_store(
    cfg: FluxonKvClientConfig | KvClientSettings | Mapping[str, Any] | str | os.PathLike[str],
    *,
    role: str | None = None,
) -> Result[KvClient]:
    """Create an owner store (``dram > 0``) or attach an external client to the host's owner.

    The config's ``transport`` block becomes the process's transport (see
    :func:`fluxon_core.rpc.select_transport`), used by this store and by later RPC of the process.
    ``role`` labels the member in ``fluxon status`` (default ``owner`` / ``external``). Fails with
    InvalidArgumentError for a bad config and StoreInitFailedError when the store cannot start,
    e.g. when no owner appears within ``fluxonkv_spec.attach_timeout_ms``.
    """
    try:
        _honour_fluxon_log()
    except ValueError as exc:
        return Result.err(InvalidArgumentError(str(exc)))
    try:
        settings = load_client_settings(cfg)
    except (ConfigError, ValueError, TypeError) as exc:
        return Result.err(InvalidArgumentError(f"invalid FluxonKvClientConfig: {exc}"))
    if isinstance(cfg, FluxonKvClientConfig):
        config = cfg
    elif isinstance(cfg, Mapping):
        config = FluxonKvClientConfig(cfg)
    else:
        config = FluxonKvClientConfig.from_settings(settings)
    if settings.test_spec_config.disable_observability:
        disable_sinks_in_process()
    node: StoreNode
    try:
        transport = select_transport(settings.transport)
        if settings.is_owner:
            from fluxon_core.kv.owner.node import OwnerNode

            owner = OwnerNode(settings, transport, role or "owner")
            owner.start()
            node = owner
        else:
            from fluxon_core.kv.external import ExternalNode

            external = ExternalNode(settings, transport, role or "external")
            external.start()
            node = external
    except StoreInitFailedError as exc:
        return Result.err(exc)
    except ApiError as exc:
        return Result.err(StoreInitFailedError(f"store {settings.instance_key!r} could not start: {exc}"))
    except (OSError, ValueError) as exc:
        return Result.err(StoreInitFailedError(f"store {settings.instance_key!r} could not start: {exc}"))
    return Result.ok(KvClient(node, settings, config))


def as_kv_client(store: Any, what: str = "store") -> KvClient:
    """``store`` as a native :class:`KvClient`.

    Accepts a ``KvClient`` or an adapter exposing one as ``native_store`` (the guide-compatible
    client of ``fluxon_py`` does); anything else is a TypeError naming ``what``.
    """
    native = getattr(store, "native_store", store)
    if not isinstance(native, KvClient):
        raise TypeError(
            f"{what} must be a store created by new_store(FluxonKvClientConfig(...)); got {type(store).__name__}"
        )
    return native
