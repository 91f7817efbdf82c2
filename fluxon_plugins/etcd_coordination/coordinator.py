"""``kind: etcd`` — :class:`fluxon_core.protocols.Coordinator` on an etcd v3 cluster via pyetcd.

Leases are etcd leases: etcd counts TTLs in whole seconds, so ``grant_lease(ttl_s)`` asks for
``ceil(ttl_s)`` and etcd may raise it to its minimum (``1.5 x election timeout``, 2 s with etcd's
default timing). Expired leases are revoked by the etcd leader, which checks every 500 ms, so keys
disappear within about half a second after the TTL. Renewal is explicit (``keep_alive``): the holder
calls it every ``ttl / 3``; nothing is renewed in the background, so a holder that stops renewing
loses its keys.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from pyetcd.utils import prefix_range_end

from fluxon_core.coordination_watch import WatchCallback, WatchSubscription
from fluxon_core.errors import InvalidArgumentError, KeyNotFoundError
from fluxon_core.etcd_connection import EtcdConnection
from fluxon_plugins.etcd_coordination.config import EtcdCoordinatorConfig
from fluxon_plugins.etcd_coordination.watch import EtcdPrefixWatch


class EtcdCoordinator:
    """Coordinator backed by etcd: keys, leases and watches live in the etcd cluster."""

    def __init__(self, config: EtcdCoordinatorConfig) -> None:
        if not isinstance(config, EtcdCoordinatorConfig):
            raise InvalidArgumentError(f"coordinator kind 'etcd' needs EtcdCoordinatorConfig options, got {config!r}")
        self.config = config
        self._namespace = config.key_prefix.encode("utf-8")
        self._connection = EtcdConnection(config.endpoints, config.timeout_s)
        self._watches: set[EtcdPrefixWatch] = set()
        self._watches_lock = threading.Lock()

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"coordinator key must be a non-empty string, got {key!r}")
        return self._namespace + key.encode("utf-8")

    def grant_lease(self, ttl_s: float) -> int:
        """A new etcd lease of ``ceil(ttl_s)`` seconds (at least etcd's minimum TTL)."""
        if not ttl_s > 0:
            raise InvalidArgumentError(f"lease ttl_s must be > 0, got {ttl_s!r}")
        with self._connection.errors("grant lease"):
            return int(self._connection.client.lease(math.ceil(ttl_s)).id)

    def keep_alive(self, lease_id: int) -> bool:
        """Renew a lease for its full TTL; False when it already expired or was revoked."""
        with self._connection.errors(f"keep lease {lease_id} alive"):
            responses = list(self._connection.client.refresh_lease(lease_id))
        return bool(responses) and responses[0].TTL > 0

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease now, deleting its keys; an unknown or expired lease is a no-op."""
        try:
            with self._connection.errors(f"revoke lease {lease_id}"):
                self._connection.client.revoke_lease(lease_id)
        except KeyNotFoundError:
            pass

    def put(self, key: str, value: bytes, *, lease_id: int | None = None) -> None:
        """Write ``key``; bound to ``lease_id`` when given (a later put without a lease unbinds it).

        Raises :class:`KeyNotFoundError` when the lease does not exist (expired or revoked).
        """
        raw_key = self._key(key)
        with self._connection.errors(f"put {key!r}"):
            self._connection.client.put(raw_key, bytes(value), lease=lease_id or 0)

    def get(self, key: str) -> bytes | None:
        """The value of ``key`` or None."""
        raw_key = self._key(key)
        with self._connection.errors(f"get {key!r}"):
            value, _ = self._connection.client.get(raw_key)
        return None if value is None else bytes(value)

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        """All ``(key, value)`` under ``prefix`` in key order."""
        raw_prefix = self._namespace + prefix.encode("utf-8")
        strip = len(self._namespace)
        with self._connection.errors(f"list prefix {prefix!r}"):
            if raw_prefix:
                response = self._connection.client.get_prefix_response(raw_prefix)
            else:
                response = self._connection.client.get_all_response()
        return [(bytes(kv.key)[strip:].decode("utf-8", errors="replace"), bytes(kv.value)) for kv in response.kvs]

    def delete(self, key: str) -> bool:
        """Delete ``key``; True when it existed."""
        raw_key = self._key(key)
        with self._connection.errors(f"delete {key!r}"):
            return bool(self._connection.client.delete(raw_key))

    def watch_prefix(self, prefix: str, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback(key, value_or_None)`` for every change under ``prefix`` after this returns.

        Deletions by lease expiry are reported like explicit deletes. Callbacks run on the watch's
        own thread in revision order. Returns an idempotent cancel function; once it returns the
        callback is not entered again.
        """
        raw_prefix = self._namespace + prefix.encode("utf-8")
        # etcd spells "every key" as the range [b"\0", b"\0").
        watch_range = (raw_prefix, prefix_range_end(raw_prefix)) if raw_prefix else (b"\0", b"\0")
        self._connection.check_open()
        subscription = WatchSubscription(prefix, callback)
        watch = EtcdPrefixWatch(self._connection, *watch_range, strip=len(self._namespace), subscription=subscription)
        with self._watches_lock:
            self._watches.add(watch)

        def cancel() -> None:
            watch.cancel()
            with self._watches_lock:
                self._watches.discard(watch)

        return cancel

    def close(self) -> None:
        """Cancel every watch and close the connection; idempotent. Leases are left to expire."""
        with self._watches_lock:
            watches, self._watches = self._watches, set()
        for watch in watches:
            watch.cancel()
        self._connection.close()
