"""Prefix-watch subscriptions whose callbacks stop for good once cancelled.

The building blocks of :meth:`fluxon_core.protocols.Coordinator.watch_prefix`, shared by coordinator
plugins (``local``, ``etcd``, third-party ones): a subscription serialises deliveries with its
cancellation, so after ``cancel()`` returns (from any thread other than the one running the
callback) the callback is never entered again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.coordination.watch")

WatchCallback = Callable[[str, bytes | None], None]
"""``callback(key, value)``; ``value`` is None when the key was deleted (explicitly or by lease expiry)."""


class WatchSubscription:
    """One ``watch_prefix`` registration: its prefix, its callback and whether it is still live."""

    def __init__(self, prefix: str, callback: WatchCallback) -> None:
        self.prefix = prefix
        self._callback = callback
        # Re-entrant so a callback may cancel its own subscription.
        self._lock = threading.RLock()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` ran."""
        return self._cancelled

    def matches(self, key: str) -> bool:
        """True when ``key`` lies under this subscription's prefix."""
        return key.startswith(self.prefix)

    def deliver(self, key: str, value: bytes | None) -> None:
        """Run the callback unless cancelled; a raising callback is logged and the watch stays live."""
        with self._lock:
            if self._cancelled:
                return
            try:
                self._callback(key, value)
            except Exception:
                log.exception("watch callback for prefix %r failed on key %r", self.prefix, key)

    def cancel(self) -> None:
        """Stop deliveries; waits for a delivery running in another thread to finish. Idempotent."""
        with self._lock:
            self._cancelled = True


_Event = tuple[WatchSubscription, str, bytes | None]


class CallbackDispatcher:
    """A single thread that runs watch callbacks in the order events were submitted.

    Callbacks never run while the submitter holds its own locks, so a callback may call back into
    the coordinator. A slow callback delays the ones queued after it.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, subscription: WatchSubscription, key: str, value: bytes | None) -> None:
        """Queue one event for ``subscription``."""
        self._queue.put((subscription, key, value))

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the events already queued; waits unless called from a callback."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            subscription, key, value = event
            subscription.deliver(key, value)
