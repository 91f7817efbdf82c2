"""``kind: local`` — an in-process :class:`fluxon_core.protocols.Coordinator`, no external service.

The kv master uses it when no etcd is configured: the master is then the membership authority,
members register with it over RPC and the master records them here under leases that it renews
on their behalf.

Semantics (the same as the etcd coordinator, see ``docs/coordination.md``):

* A lease expires ``ttl_s`` after it was granted or last kept alive (monotonic clock). A reaper
  thread sleeps until the earliest lease deadline, so an expired lease's keys are deleted as soon as
  the thread is scheduled after the deadline — milliseconds on an idle host. ``keep_alive`` on a
  lease past its deadline expires it on the spot and returns False.
* Watch callbacks run on one dispatcher thread, in mutation order, never under the store's lock.
* Lease ids start at a random 62-bit offset so that a member holding an id from a previous master
  generation cannot renew an unrelated lease of the new one.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Callable

import attrs

from fluxon_core.coordination_watch import CallbackDispatcher, WatchCallback, WatchSubscription
from fluxon_core.errors import InvalidArgumentError, KeyNotFoundError, StoreClosedError
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.coordination.local")


@attrs.define
class _Lease:
    ttl_s: float
    deadline: float
    keys: set[str] = attrs.field(factory=set)


@attrs.define
class _Entry:
    value: bytes
    lease_id: int | None


class LocalCoordinator:
    """Thread-safe in-process key space with leases and prefix watches."""

    def __init__(self, options: None = None) -> None:
        if options is not None:
            raise InvalidArgumentError(f"coordinator kind 'local' takes no options, got {options!r}")
        self._lock = threading.Lock()
        self._reaper_wakeup = threading.Condition(self._lock)
        self._entries: dict[str, _Entry] = {}
        self._leases: dict[int, _Lease] = {}
        self._deadline_heap: list[tuple[float, int]] = []
        self._lease_ids = itertools.count(secrets.randbits(62) + 1)
        self._subscriptions: list[WatchSubscription] = []
        self._closed = False
        self._dispatcher = CallbackDispatcher("fluxon-local-coord-watch")
        self._reaper = threading.Thread(target=self._reap_loop, name="fluxon-local-coord-reaper", daemon=True)
        self._reaper.start()

    # -- leases ---------------------------------------------------------------------------------

    def grant_lease(self, ttl_s: float) -> int:
        """A new lease id that expires ``ttl_s`` seconds after its last keep-alive."""
        if not ttl_s > 0:
            raise InvalidArgumentError(f"lease ttl_s must be > 0, got {ttl_s!r}")
        with self._lock:
            self._check_open()
            lease_id = next(self._lease_ids)
            deadline = time.monotonic() + ttl_s
            self._leases[lease_id] = _Lease(ttl_s=float(ttl_s), deadline=deadline)
            heapq.heappush(self._deadline_heap, (deadline, lease_id))
            self._reaper_wakeup.notify()
            return lease_id

    def keep_alive(self, lease_id: int) -> bool:
        """Renew a lease for another ``ttl_s``; False when it already expired or was revoked."""
        with self._lock:
            self._check_open()
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            now = time.monotonic()
            if lease.deadline <= now:
                self._expire_locked(lease_id)
                return False
            lease.deadline = now + lease.ttl_s
            return True

    def revoke(self, lease_id: int) -> None:
        """Expire a lease now, deleting its keys; an unknown or expired lease is a no-op."""
        with self._lock:
            self._check_open()
            self._expire_locked(lease_id)

    # -- keys -----------------------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease_id: int | None = None) -> None:
        """Write ``key``; bound to ``lease_id`` when given (a later put without a lease unbinds it).

        Raises :class:`KeyNotFoundError` when the lease does not exist (expired or revoked).
        """
        _check_key(key)
        data = bytes(value)
        with self._lock:
            self._check_open()
            if lease_id is not None:
                lease = self._leases.get(lease_id)
                if lease is None or lease.deadline <= time.monotonic():
                    raise KeyNotFoundError(f"lease {lease_id} not found (expired or revoked); grant a new one")
            previous = self._entries.get(key)
            if previous is not None and previous.lease_id is not None and previous.lease_id in self._leases:
                self._leases[previous.lease_id].keys.discard(key)
            self._entries[key] = _Entry(data, lease_id)
            if lease_id is not None:
                self._leases[lease_id].keys.add(key)
            self._publish_locked(key, data)

    def get(self, key: str) -> bytes | None:
        """The value of ``key`` or None."""
        with self._lock:
            self._check_open()
            entry = self._entries.get(key)
            return None if entry is None else entry.value

    def get_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        """All ``(key, value)`` under ``prefix`` in key order."""
        with self._lock:
            self._check_open()
            found = [(key, entry.value) for key, entry in self._entries.items() if key.startswith(prefix)]
        found.sort()
        return found

    def delete(self, key: str) -> bool:
        """Delete ``key``; True when it existed."""
        with self._lock:
            self._check_open()
            return self._delete_locked(key)

    # -- watches --------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback(key, value_or_None)`` for every change under ``prefix`` after this returns.

        Returns an idempotent cancel function; once it returns the callback is not entered again.
        """
        subscription = WatchSubscription(prefix, callback)
        with self._lock:
            self._check_open()
            self._subscriptions.append(subscription)

        def cancel() -> None:
            subscription.cancel()
            with self._lock:
                if subscription in self._subscriptions:
                    self._subscriptions.remove(subscription)

        return cancel

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel watches, stop the reaper and dispatcher threads and drop all state; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
            self._entries.clear()
            self._leases.clear()
            self._deadline_heap.clear()
            self._reaper_wakeup.notify()
        for subscription in subscriptions:
            subscription.cancel()
        self._dispatcher.close()
        if threading.current_thread() is not self._reaper:
            self._reaper.join(5.0)

    # -- internals ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("local coordinator is closed")

    def _publish_locked(self, key: str, value: bytes | None) -> None:
        for subscription in self._subscriptions:
            if subscription.matches(key):
                self._dispatcher.submit(subscription, key, value)

    def _delete_locked(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        if entry.lease_id is not None and entry.lease_id in self._leases:
            self._leases[entry.lease_id].keys.discard(key)
        self._publish_locked(key, None)
        return True

    def _expire_locked(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        for key in sorted(lease.keys):
            self._delete_locked(key)

    def _reap_loop(self) -> None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                while self._deadline_heap and self._deadline_heap[0][0] <= now:
                    _, lease_id = heapq.heappop(self._deadline_heap)
                    lease = self._leases.get(lease_id)
                    if lease is None:
                        continue
                    if lease.deadline <= now:
                        log.debug("lease %d expired; deleting %d keys", lease_id, len(lease.keys))
                        self._expire_locked(lease_id)
                    else:
                        # Renewed since this heap entry was pushed: wait for its new deadline.
                        heapq.heappush(self._deadline_heap, (lease.deadline, lease_id))
                timeout = self._deadline_heap[0][0] - now if self._deadline_heap else None
                self._reaper_wakeup.wait(timeout)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"coordinator key must be a non-empty string, got {key!r}")
