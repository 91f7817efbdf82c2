"""The zmq RPC client: every calling thread owns its sockets and waits for its own reply.

No thread hand-off on the call path: the calling thread sends on its own DEALER socket (one per
thread and endpoint) and blocks in ``recv`` on it with the call's remaining time as the receive
timeout. Replies carry the request id; a reply whose id is not the one awaited is the late answer
to an earlier call that timed out and is dropped, never delivered to a later call.

Sockets use ``ZMQ_IMMEDIATE``: a request is only queued once a connection exists, so a call to an
endpoint where nothing listens fails with :class:`NetworkError` — after ``connect_timeout_s`` (at
most its deadline) — instead of leaving a request queued forever. Such a request was never sent,
so the caller may safely resolve the endpoint again and retry. A call whose connection closes while
it waits for the reply (the server died) fails within a second with :class:`ApiTimeoutError` — the
outcome is unknown, as for a timeout — instead of waiting out its deadline.

Frame limits: libzmq drops a connection whose reply announces a frame above ``max_reply_bytes``
(``ZMQ_MAXMSGSIZE``) before buffering it, and a request frame above ``max_request_bytes`` is refused
here with :class:`InvalidArgumentError`: sent, the server would drop the connection and the call
would only time out.

The call path is deliberately flat (few Python calls, no enum arithmetic): on a small call the
interpreter overhead is the only cost Fluxon adds to a raw zmq round trip.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from fluxon_core.errors import ApiTimeoutError, InvalidArgumentError, NetworkError, StoreClosedError
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import BYTES_MOVED, RPC_LATENCY
from fluxon_core.rpc import DEFAULT_TIMEOUT_S, decode_error
from fluxon_core.rpc_types import RpcMessage
from fluxon_plugins.zmq_transport import wire

log = get_logger("fluxon.rpc.zmq")

SOCKETS_PER_THREAD = 64
"""A thread talking to more endpoints than this closes the socket it opened first."""

_NOBLOCK = int(zmq.NOBLOCK)
_POLLOUT = int(zmq.POLLOUT)
_RCVTIMEO = int(zmq.RCVTIMEO)
_CHECK_MS = 1000
"""While waiting for a reply, check this often that the connection still exists."""
_monotonic = time.monotonic


class _Peer:
    """One thread's DEALER socket to one endpoint, and the receive timeout currently set on it."""

    __slots__ = ("rcvtimeo_ms", "sock")

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.rcvtimeo_ms = -1


class _ThreadSockets:
    """The sockets of one calling thread (touched by that thread, or by close() while it is idle)."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread_ref = weakref.ref(thread)
        self.peers: dict[str, _Peer] = {}
        self.next_id = 1
        self.lock = threading.Lock()
        self.busy = False

    def alive(self) -> bool:
        thread = self.thread_ref()
        return thread is not None and thread.is_alive()

    def close_all(self) -> None:
        peers, self.peers = self.peers, {}
        for peer in peers.values():
            peer.sock.close(linger=0)


class ZmqRpcClient:
    """:class:`fluxon_core.protocols.RpcClient` over zmq DEALER sockets; share one instance across threads."""

    def __init__(
        self,
        context: zmq.Context,
        zero_copy_min: int,
        *,
        max_request_bytes: int,
        max_reply_bytes: int,
        on_close: Callable[[ZmqRpcClient], None],
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._context = context
        self._connect_timeout_s = connect_timeout_s
        self._zero_copy_min = zero_copy_min
        self._max_request_bytes = max_request_bytes
        self._max_reply_bytes = max_reply_bytes
        self._on_close = on_close
        self._local = threading.local()
        self._registry_lock = threading.Lock()
        self._threads: list[_ThreadSockets] = []
        self._closed = False

    def call(
        self,
        endpoint: str,
        path: str,
        message: RpcMessage,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        caller: str = "",
        auth: str = "",
    ) -> RpcMessage:
        """Send ``message`` to ``path`` at ``endpoint`` and wait at most ``timeout_s`` for the reply.

        Raises the handler's error decoded by :func:`fluxon_core.rpc.decode_error`, ApiTimeoutError
        when no reply came in time, NetworkError when no connection could be made in time or the
        endpoint is malformed, InvalidArgumentError for a meta that is not JSON-able or a frame
        above ``max_request_bytes``, and StoreClosedError after :meth:`close`.
        """
        if not timeout_s > 0:  # also refuses NaN
            raise InvalidArgumentError(f"RPC timeout_s must be a positive number of seconds, got {timeout_s!r}")
        deadline = _monotonic() + timeout_s
        try:
            state: _ThreadSockets = self._local.state
        except AttributeError:
            state = self._new_thread_state()
        with state.lock:
            if self._closed:
                raise StoreClosedError("RPC client is closed")
            state.busy = True
        try:
            peer = state.peers.get(endpoint) or self._connect(state, endpoint)
            request_id = state.next_id
            state.next_id = request_id + 1
            frames = message.frames
            sizes = [memoryview(f).nbytes for f in frames] if frames else []
            try:
                header = wire.encode_header(
                    [
                        wire.PROTOCOL_VERSION,
                        request_id,
                        path,
                        caller,
                        auth,
                        deadline - _monotonic(),
                        message.meta,
                        sizes,
                    ]
                )
            except (TypeError, ValueError) as exc:
                raise InvalidArgumentError(f"RPC meta for {path!r} is not JSON-serialisable: {exc}") from None
            if len(header) > self._max_request_bytes or (sizes and max(sizes) > self._max_request_bytes):
                raise InvalidArgumentError(
                    f"RPC request to {path!r} has a {max([len(header), *sizes])}-byte frame, above max_request_bytes "
                    f"{self._max_request_bytes} (raise transport.zmq.max_request_bytes on the caller and the server)"
                )
            sock = peer.sock
            try:
                if frames:
                    header = wire.align_bulk(header, frames, self._zero_copy_min)
                    wire.send_message(sock, (), header, frames, self._zero_copy_min, _NOBLOCK)
                else:
                    wire.send_frame(sock, header, _NOBLOCK)
            except zmq.Again:
                self._send_when_connected(sock, endpoint, header, frames, deadline)
            reply = self._await_reply(peer, endpoint, path, request_id, deadline, timeout_s)
            _record_call(path, deadline - timeout_s, frames, reply.frames)
            return reply
        finally:
            with state.lock:
                state.busy = False
                if self._closed:
                    state.close_all()

    def close(self) -> None:
        """Close every socket of every thread; idempotent. Threads in a call close theirs when it returns."""
        with self._registry_lock:
            if self._closed:
                return
            self._closed = True
            threads, self._threads = self._threads, []
        for state in threads:
            with state.lock:
                if not state.busy:
                    state.close_all()
        self._on_close(self)

    def _new_thread_state(self) -> _ThreadSockets:
        state = _ThreadSockets(threading.current_thread())
        with self._registry_lock:
            # Sockets of threads that ended are closed here: their owner can no longer use them.
            live = []
            for other in self._threads:
                if other.alive():
                    live.append(other)
                else:
                    other.close_all()
            live.append(state)
            self._threads = live
        self._local.state = state
        return state

    def _connect(self, state: _ThreadSockets, endpoint: str) -> _Peer:
        if len(state.peers) >= SOCKETS_PER_THREAD:
            oldest = next(iter(state.peers))
            state.peers.pop(oldest).sock.close(linger=0)
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_reply_bytes)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise NetworkError(f"cannot connect to RPC endpoint {endpoint!r}: {exc}") from None
        peer = state.peers[endpoint] = _Peer(sock)
        return peer

    def _send_when_connected(
        self, sock: zmq.Socket, endpoint: str, header: bytes, frames: Any, deadline: float
    ) -> None:
        """Retry the send until a connection exists (ZMQ_IMMEDIATE refused it), for at most the connect timeout."""
        started = _monotonic()
        give_up = min(deadline, started + self._connect_timeout_s)
        while True:
            remaining = give_up - _monotonic()
            if remaining <= 0 or not sock.poll(max(1, int(remaining * 1000)), _POLLOUT):
                raise NetworkError(
                    f"no connection to RPC endpoint {endpoint!r} could be made within {_monotonic() - started:.1f}s "
                    "(is the server running, and below its max_connections?); the request was not sent"
                )
            try:
                wire.send_message(sock, (), header, frames, self._zero_copy_min, _NOBLOCK)
                return
            except zmq.Again:
                continue

    def _await_reply(
        self, peer: _Peer, endpoint: str, path: str, request_id: int, deadline: float, timeout_s: float
    ) -> RpcMessage:
        sock = peer.sock
        while True:
            remaining_ms = int((deadline - _monotonic()) * 1000)
            if remaining_ms <= 0:
                raise ApiTimeoutError(f"RPC {path!r} to {endpoint} got no reply within {timeout_s:g}s")
            # The receive timeout only has to be at most the time left, and at most the connection
            # check period; a shorter one means another loop. Reusing a value within [left/4, left]
            # (or the check period itself) spares a setsockopt on most calls.
            timeout_ms = peer.rcvtimeo_ms
            if not (0 < timeout_ms <= remaining_ms and (timeout_ms == _CHECK_MS or remaining_ms <= timeout_ms * 4)):
                peer.rcvtimeo_ms = min(_CHECK_MS, max(1, remaining_ms // 2))
                sock.setsockopt(_RCVTIMEO, peer.rcvtimeo_ms)
            try:
                header_frame = sock.recv()
            except zmq.Again:
                # With ZMQ_IMMEDIATE the socket is writable only while a connection exists: none means
                # the server went away (its process died or stopped), so this reply will never come.
                if not sock.poll(0, _POLLOUT):
                    raise ApiTimeoutError(
                        f"RPC {path!r} to {endpoint}: the connection closed while waiting for the reply (did the "
                        "server stop?); whether the call ran is unknown"
                    ) from None
                continue
            try:
                header = wire.decode_header(header_frame)
            except NetworkError as exc:
                wire.drain(sock, wire.has_more(sock))
                log.warning("RPC client: dropping malformed reply from %s: %s", endpoint, exc)
                continue
            if header[0] != request_id:
                wire.drain(sock, wire.has_more(sock))  # the late reply of a call that already timed out
                continue
            if len(header) == 2:
                raise decode_error(header[1])
            try:
                _, meta, sizes = header
            except ValueError:
                meta = sizes = None
            if type(meta) is not dict:
                wire.drain(sock, wire.has_more(sock))
                raise NetworkError(f"malformed RPC reply from {endpoint}: header {header!r}")
            # Asking for the more-flag costs microseconds in pyzmq, so a small reply skips it: the
            # server never sends unannounced parts, and stray parts would fail the next id check.
            frames = wire.recv_bulk(sock, sizes, self._zero_copy_min, wire.has_more(sock)) if sizes else ()
            return RpcMessage(meta, frames)


_LATENCY = RPC_LATENCY.get()
_BYTES_OUT = BYTES_MOVED.get().labels("out")
_BYTES_IN = BYTES_MOVED.get().labels("in")
_latency_by_path: dict[str, Any] = {}


def _record_call(path: str, started: float, sent: Sequence[Any], received: Sequence[Any]) -> None:
    """Client-side latency by path and bulk bytes moved (metrics; a dict lookup and two adds)."""
    series = _latency_by_path.get(path)
    if series is None:
        series = _latency_by_path.setdefault(path, _LATENCY.labels(path, "client"))
    series.observe(_monotonic() - started)
    if sent:
        _BYTES_OUT.inc(sum(memoryview(f).nbytes for f in sent))
    if received:
        _BYTES_IN.inc(sum(memoryview(f).nbytes for f in received))
