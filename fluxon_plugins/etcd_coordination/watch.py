"""A prefix watch on its own etcd watch stream, resubscribed after failures without losing events.

pyetcd's ``Watcher`` multiplexes watches on a stream it cannot terminate (its reader thread
outlives ``close()`` until the whole channel closes), so each watch here opens its own stream
through pyetcd's generated gRPC stub and cancels it outright. The stream remembers the revision
after the last event delivered; when it breaks (etcd restarted, network error) it is reopened from
that revision, so no event is missed or repeated — unless etcd compacted that history away in the
meantime, which is logged as a warning and the watch continues from the current revision.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
from pyetcd import etcdrpc
from pyetcd.etcdrpc import kv_pb2

from fluxon_core.coordination_watch import WatchSubscription
from fluxon_core.errors import ApiError, ApiTimeoutError
from fluxon_core.etcd_connection import EtcdConnection
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.coordination.etcd.watch")

_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 1.0


class EtcdPrefixWatch:
    """Delivers every change to keys in ``[watch_key, range_end)`` (raw etcd bytes) to ``subscription``.

    The constructor returns once etcd confirmed the watch, so every change made afterwards is
    delivered; it raises :class:`ApiTimeoutError` (naming the last error) when that takes longer than
    the connection's ``timeout_s``. ``strip`` bytes of namespace are removed from reported keys.
    """

    def __init__(
        self,
        connection: EtcdConnection,
        watch_key: bytes,
        range_end: bytes,
        *,
        strip: int,
        subscription: WatchSubscription,
    ) -> None:
        self._connection = connection
        self._watch_key = watch_key
        self._range_end = range_end
        self._strip = strip
        self._subscription = subscription
        self._next_revision = 0  # 0 = "from now" until the first stream is confirmed
        self._stop = threading.Event()
        self._established = threading.Event()
        self._call_lock = threading.Lock()
        self._call: Any = None
        self._last_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"fluxon-etcd-watch-{watch_key[-24:].decode(errors='replace')}", daemon=True
        )
        self._thread.start()
        if not self._established.wait(connection.timeout_s):
            self.cancel()
            raise ApiTimeoutError(
                f"etcd watch on {watch_key!r} was not confirmed within {connection.timeout_s}s at "
                f"{', '.join(connection.endpoints)}; last error: {self._last_error}"
            )

    def cancel(self) -> None:
        """Stop deliveries and close the stream; idempotent, and safe from inside the callback."""
        self._subscription.cancel()
        self._stop.set()
        with self._call_lock:
            call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def _run(self) -> None:
        delay = _RETRY_MIN_S
        while not self._stop.is_set():
            stream_done = threading.Event()
            call = None
            try:
                call = self._open(stream_done)
                with self._call_lock:
                    self._call = call
                if self._stop.is_set():
                    break
                for response in call:
                    if not self._handle(response):
                        break
                    delay = _RETRY_MIN_S
            except (grpc.RpcError, ApiError) as exc:
                if self._stop.is_set():
                    break
                self._last_error = exc
                log.debug(
                    "etcd watch on %r broke: %s; resubscribing from revision %d",
                    self._watch_key,
                    exc,
                    self._next_revision,
                )
            finally:
                stream_done.set()
                if call is not None:
                    call.cancel()
            self._stop.wait(delay)
            delay = min(delay * 2, _RETRY_MAX_S)

    def _open(self, stream_done: threading.Event) -> Any:
        create = etcdrpc.WatchCreateRequest(
            key=self._watch_key, range_end=self._range_end, start_revision=self._next_revision
        )

        def requests() -> Iterator[etcdrpc.WatchRequest]:
            yield etcdrpc.WatchRequest(create_request=create)
            # Keep the request side open for as long as the stream lives.
            stream_done.wait()

        return etcdrpc.WatchStub(self._connection.channel()).Watch(requests())

    def _handle(self, response: Any) -> bool:
        """Process one watch response; False when the stream must be reopened."""
        if response.compact_revision:
            log.warning(
                "etcd watch on %r: history before revision %d was compacted; changes between revision %d "
                "and now were missed, continuing from now",
                self._watch_key,
                response.compact_revision,
                self._next_revision,
            )
            self._next_revision = 0
            return False
        if response.created:
            if self._next_revision == 0:
                self._next_revision = response.header.revision + 1
            self._established.set()
        if response.canceled:
            self._last_error = RuntimeError(f"watch cancelled by etcd: {response.cancel_reason}")
            return False
        for event in response.events:
            key = bytes(event.kv.key)[self._strip :].decode("utf-8", errors="replace")
            value = None if event.type == kv_pb2.Event.DELETE else bytes(event.kv.value)
            self._next_revision = max(self._next_revision, event.kv.mod_revision + 1)
            self._subscription.deliver(key, value)
        return True
