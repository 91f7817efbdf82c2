"""Typed interfaces every backend kind implements.

Plugins return objects satisfying these :class:`typing.Protocol` classes from the factories they
register (see :mod:`fluxon_core.hookspecs`). They are ``runtime_checkable`` so the registry can
refuse an object that is obviously the wrong shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from fluxon_core.rpc_types import RpcCall, RpcMessage

if TYPE_CHECKING:
    from fluxon_core.access.access_keys import AccessKeyRecord, NewAccessKey, SigningKeyGrant
    from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
    from fluxon_core.access.records import ScopeAccessRecord, ScopeMode, UserAccess, UserRecord

Buffer = bytes | bytearray | memoryview


@runtime_checkable
class RpcServer(Protocol):
    """A bound RPC endpoint dispatching calls to handlers by path."""

    @property
    def endpoint(self) -> str:
        """The address clients connect to (``ipc://…`` or ``tcp://host:port``)."""
        ...

    def register(self, path: str, handler: Callable[[RpcCall], RpcMessage]) -> None:
        """Serve ``path`` with ``handler``; a handler raising becomes a typed error reply."""
        ...

    def unregister(self, path: str) -> None:
        """Stop serving ``path``."""
        ...

    def close(self) -> None:
        """Stop serving and release sockets and threads; idempotent."""
        ...


@runtime_checkable
class RpcClient(Protocol):
    """Thread-safe request/response client."""

    def call(
        self,
        endpoint: str,
        path: str,
        message: RpcMessage,
        *,
        timeout_s: float = 10.0,
        caller: str = "",
        auth: str = "",
    ) -> RpcMessage:
        """Send ``message`` to ``path`` at ``endpoint`` and wait for the reply.

        Raises :class:`~fluxon_core.errors.ApiTimeoutError`, :class:`~fluxon_core.errors.UnknownPathError`,
        :class:`~fluxon_core.errors.RemoteHandlerError` or another :class:`~fluxon_core.errors.ApiError`.
        """
        ...

    def close(self) -> None:
        """Release sockets; idempotent."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Creates RPC servers and clients."""

    def bind_server(
        self,
        bind_address: str,
        *,
        worker_threads: int = 8,
        authenticate: Callable[[RpcCall], None] | None = None,
    ) -> RpcServer:
        """Bind a server (``ipc://path``, ``tcp://host:port``, ``tcp://host:0`` for any port).

        ``authenticate(call)`` runs before every handler; raising an ApiError (typically
        :class:`~fluxon_core.errors.PermissionDeniedError`) rejects the call with that error.
        """
        ...

    def new_client(self) -> RpcClient:
        """A client that many threads may share."""
        ...


@runtime_checkable
class CacheBackend(Protocol):
    """A byte-budgeted pool of immutable values with LRU eviction and zero-copy reads."""

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Store the concatenation of ``parts`` under ``key``, replacing any previous value atomically."""
        ...

    def get(self, key: str) -> memoryview | None:
        """A read-only zero-copy view of the value, or None when absent."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it was present."""
        ...

    def contains(self, key: str) -> bool:
        """True when ``key`` is present."""
        ...

    def stats(self) -> dict[str, int]:
        """At least ``capacity_bytes``, ``used_bytes``, ``entries``, ``hits``, ``misses``, ``evictions``."""
        ...

    def close(self) -> None:
        """Release mappings; idempotent."""
        ...


@attrs.frozen
class PrefixUsage:
    """What a cache holds under one key prefix that has a byte budget (charged bytes, as ``used_bytes``)."""

    budget_bytes: int
    used_bytes: int
    entries: int
    evictions: int
    """Values of the prefix evicted to keep it within its budget (or the cache within its capacity)."""


@runtime_checkable
class PrefixBudgetedCache(Protocol):
    """A :class:`CacheBackend` that also caps the bytes held under key prefixes (optional for a cache kind).

    A value whose key starts with a budgeted prefix is charged to that prefix too; storing it first
    evicts the prefix's own least recently used values until the prefix fits its budget, and only
    then, if the whole cache is full, the cache's least recently used values of any prefix. Budgeted
    prefixes must not overlap, so a key belongs to at most one.
    """

    def set_prefix_budget(self, prefix: str, max_bytes: int) -> None:
        """Cap ``prefix`` at ``max_bytes`` (set or change; a lower budget evicts at once)."""
        ...

    def prefix_usage(self) -> dict[str, PrefixUsage]:
        """Every budgeted prefix with its budget and what it holds now."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Transactional key/value store for durable job state, namespaced by a key prefix."""

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        ...

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        ...

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        ...

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order."""
        ...

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts and deletes in one transaction."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


@runtime_checkable
class AccessStore(Protocol):
    """Users, salted password hashes, scope grants, S3 access keys, the auth epoch and the token secret.

    The fs master, the panel, the ``fluxon users`` CLI and the FS authorizer program against this
    protocol; ``kind: sqlite`` (plugin ``sqlite_access``) implements it. Records come from
    :mod:`fluxon_core.access.records`. Every change bumps the store's ``auth_epoch`` in the same
    transaction, so a server caching access state only needs to re-read one number to learn that
    something changed.
    """

    def verify_password(self, username: str, password: str) -> bool:
        """True when the user exists and the password matches its stored hash."""
        ...

    def verify_credentials(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches; None otherwise, taking as long for unknown users."""
        ...

    def bootstrap(self, model: BootstrapAccessModelConfig) -> bool:
        """Write ``model`` when the store has no users; True when it did, False (no change) otherwise."""
        ...

    def add_user(self, username: str, password: str, *, can_manage_users: bool = False) -> UserRecord:
        """Create a user; an existing username is an InvalidArgumentError."""
        ...

    def remove_user(self, username: str) -> None:
        """Delete a user and its scope memberships; refuses to remove the last user who can manage users."""
        ...

    def set_password(self, username: str, new_password: str) -> UserRecord:
        """Replace the password; sessions issued before stop working within the revocation bound."""
        ...

    def set_can_manage_users(self, username: str, can_manage_users: bool) -> UserRecord:
        """Grant or withdraw user management (and access to every export); the last manager stays one."""
        ...

    def get_user(self, username: str) -> UserRecord | None:
        """One user, or None."""
        ...

    def list_users(self) -> list[UserRecord]:
        """All users by username."""
        ...

    def grant(self, export_name: str, prefix: str, mode: ScopeMode, usernames: Sequence[str]) -> ScopeAccessRecord:
        """Add ``usernames`` to the scope (export, prefix, mode), creating it when needed."""
        ...

    def revoke(
        self,
        export_name: str,
        prefix: str,
        *,
        mode: ScopeMode | str | None = None,
        usernames: Sequence[str] | None = None,
    ) -> int:
        """Remove ``usernames`` (all members when None) from the matching scopes; returns memberships removed.

        ``mode`` None matches both modes. A scope left without members is deleted.
        """
        ...

    def list_scopes(self, export_name: str | None = None) -> list[ScopeAccessRecord]:
        """Scope grants ordered by export, prefix and mode, optionally for one export."""
        ...

    def user_access(self, username: str) -> UserAccess | None:
        """What authorization needs about ``username`` in one snapshot, or None when there is no such user."""
        ...

    def create_access_key(self, username: str) -> NewAccessKey:
        """A new S3 access key of ``username``; the secret is in the result only (never listed again).

        An unknown user, or one already holding
        :data:`~fluxon_core.access.access_keys.MAX_ACCESS_KEYS_PER_USER` keys, is an InvalidArgumentError.
        """
        ...

    def list_access_keys(self, username: str | None = None) -> list[AccessKeyRecord]:
        """Access keys (without secrets) ordered by user and creation, optionally of one user."""
        ...

    def revoke_access_key(self, access_key_id: str) -> AccessKeyRecord:
        """Delete an access key; requests signed with it are refused from now on. Unknown: InvalidArgumentError."""
        ...

    def access_key_signing_key(
        self, access_key_id: str, date: str, region: str, service: str
    ) -> SigningKeyGrant | None:
        """The SigV4 signing key of ``access_key_id`` for one day (``YYYYMMDD``), region and service,
        or None when there is no such key. The secret itself never leaves the store."""
        ...

    def auth_epoch(self) -> int:
        """A number that increases with every change to users, grants or access keys."""
        ...

    def token_secret(self) -> bytes:
        """The secret session tokens are signed with, shared by every process using this store."""
        ...

    def schema_version(self) -> int:
        """The schema version the store is at."""
        ...

    def close(self) -> None:
        """Release the database; idempotent."""
        ...


@runtime_checkable
class Coordinator(Protocol):
    """Membership, leases and watches for the KV plane."""

    def grant_lease(self, ttl_s: float) -> int:
        """A new lease id that expires ``ttl_s`` after its last keep-alive."""
        ...

    def keep_alive(self, lease_id: int) -> bool:
        """Renew a lease; False when it already expired."""
        ...

    def revoke(self, lease_id: int) -> None:
        """Expire a lease now, deleting its keys."""
        ...

    def put(self, key: str, value: bytes, *, lease_id: int | None = None) -> None:
        """Write a key, optionally bound to a lease."""
        ...

    def get(self, key: str) -> bytes | None:
        """Read a key."""
        ...

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        """All keys under ``prefix``."""
        ...

    def delete(self, key: str) -> bool:
        """Delete a key; True when it existed."""
        ...

    def watch_prefix(self, prefix: str, callback: Callable[[str, bytes | None], None]) -> Callable[[], None]:
        """Call ``callback(key, value_or_None_on_delete)`` on changes; returns a cancel function."""
        ...

    def close(self) -> None:
        """Release connections and stop keep-alives; idempotent."""
        ...


@runtime_checkable
class MetricsSink(Protocol):
    """Receives counters and gauges from a role."""

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        """Record one sample; ``kind`` is ``counter`` or ``gauge``."""
        ...

    def close(self) -> None:
        """Flush and stop; idempotent."""
        ...


BACKEND_PROTOCOLS: dict[str, Any] = {
    "transport": Transport,
    "cache": CacheBackend,
    "state_store": StateStore,
    "access_store": AccessStore,
    "coordinator": Coordinator,
    "metrics_sink": MetricsSink,
}
