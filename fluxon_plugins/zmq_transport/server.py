"""The zmq RPC server: handlers run on the receiving thread; receiving moves on when one is slow.

Threading model. The server owns ``worker_threads`` threads. At any moment at most one of them is
the *receiver*: it alone uses the ROUTER socket. It reads a call, runs the handler right there and
sends the reply — no hand-off between threads on the hot path (under the GIL a hand-off costs about
as much as the whole raw round trip). While no other thread owes it a reply, the receiver blocks in
``recv`` on the ROUTER itself, which is cheaper than polling two sockets.

A watchdog thread notices when the receiver has been inside one handler for longer than
``inline_handler_ms`` and hands the receiver role to an idle worker. The slow handler finishes on
its now-detached thread and passes its reply through an inproc PUSH socket to whichever thread is
receiving (which polls the ROUTER and that inproc socket while replies are owed). A path whose
handler overran is sent straight to the worker pool next time, and runs inline again once a pooled
run was quick. The watchdog only ticks while calls arrive; an idle server wakes no thread.

A call whose deadline passed before a worker picked it up is dropped: its caller already gave up.

Limits (:class:`ServerLimits`, from the transport options; docs/rpc-limits.md). libzmq drops the
connection of a peer announcing a frame above ``max_request_bytes`` before buffering it
(``ZMQ_MAXMSGSIZE``). A call bound for the worker pool is authenticated on the receiving thread
first, so unauthenticated calls never wait in the queue, and is answered ``ServerBusyError`` at once
when ``max_queued_calls`` calls or ``max_queued_bytes`` bytes already wait. Connections above
``max_connections`` are shut out (:mod:`~fluxon_plugins.zmq_transport.connection_cap`).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import zmq

from fluxon_core.addresses import primary_host_address
from fluxon_core.errors import ApiError, InvalidArgumentError, NetworkError, ServerBusyError, UnknownPathError
from fluxon_core.log_setup import get_logger
from fluxon_core.rpc import encode_error
from fluxon_core.rpc_types import Buffer, RpcCall, RpcMessage
from fluxon_plugins.zmq_transport import wire
from fluxon_plugins.zmq_transport.connection_cap import ConnectionCap, effective_connection_limit
from fluxon_plugins.zmq_transport.throttled_log import ThrottledWarning

log = get_logger("fluxon.rpc.zmq")

Handler = Callable[[RpcCall], RpcMessage]
Authenticate = Callable[[RpcCall], None]

_WILDCARD_HOSTS = ("0.0.0.0", "*", "[::]", "::")
_WATCHDOG_IDLE_S = 1.0  # the watchdog stops ticking after this long without a new call
_JOIN_TIMEOUT_S = 5.0  # close() waits this long for running handlers
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_server_ids = itertools.count(1)

_LEAD = object()  # work item: become the receiver
_STOP = object()  # work item / read result: exit


@attrs.frozen
class ServerLimits:
    """What one server accepts from its peers; the transport options of the same names."""

    max_request_bytes: int
    """Largest frame of a request (``ZMQ_MAXMSGSIZE`` of the ROUTER socket)."""
    max_reply_bytes: int
    """Largest frame of a reply this server sends; a larger one becomes an InvalidArgumentError reply."""
    max_connections: int
    """Connections kept at once (before lowering to half the open-files limit)."""
    max_queued_calls: int
    """Calls that may wait for a pool thread."""
    max_queued_bytes: int
    """Bytes the calls waiting for a pool thread may hold together."""


class _Request:
    """A received call plus the routing data its reply needs."""

    __slots__ = ("authenticated", "call", "identity", "nbytes", "request_id")

    def __init__(self, identity: bytes, request_id: int, call: RpcCall, header_bytes: int) -> None:
        self.identity = identity
        self.request_id = request_id
        self.call = call
        self.nbytes = header_bytes  # the bulk frames are added when the call is queued
        self.authenticated = False


def connectable_endpoint(last_endpoint: str, advertise_host: str | None) -> str:
    """The address clients use for a socket bound at ``last_endpoint``.

    A wildcard host is replaced by ``advertise_host``, or by the host's primary address when that is None.
    """
    scheme, sep, rest = last_endpoint.partition("://")
    if scheme != "tcp" or not sep:
        return last_endpoint
    host, _, port = rest.rpartition(":")
    if host not in _WILDCARD_HOSTS:
        return last_endpoint
    return f"tcp://{advertise_host or primary_host_address()}:{port}"


class ZmqRpcServer:
    """:class:`fluxon_core.protocols.RpcServer` on a zmq ROUTER socket."""

    def __init__(
        self,
        context: zmq.Context,
        bind_address: str,
        *,
        worker_threads: int,
        authenticate: Authenticate | None,
        zero_copy_min: int,
        inline_handler_s: float,
        advertise_host: str | None,
        limits: ServerLimits,
        on_close: Callable[[ZmqRpcServer], None],
    ) -> None:
        if isinstance(worker_threads, bool) or not isinstance(worker_threads, int) or worker_threads < 1:
            raise InvalidArgumentError(f"worker_threads must be an integer >= 1, got {worker_threads!r}")
        self._context = context
        self._authenticate = authenticate
        self._zero_copy_min = zero_copy_min
        self._inline_handler_s = inline_handler_s
        self._limits = limits
        self._max_reply_bytes = limits.max_reply_bytes  # read on every call
        self._on_close = on_close
        self._handlers: dict[str, Handler] = {}
        self._slow_paths: set[str] = set()
        # With a single thread there is nobody to take over receiving or to run pooled calls.
        self._can_detach = worker_threads > 1

        self._router = context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        # Checked by libzmq's decoder on each frame's announced length, before it allocates or reads
        # the frame: an oversized frame costs the server nothing but the dropped connection.
        self._router.setsockopt(zmq.MAXMSGSIZE, limits.max_request_bytes)
        try:
            self._router.bind(bind_address)
        except zmq.ZMQError as exc:
            self._router.close()
            raise NetworkError(f"cannot bind RPC server at {bind_address!r}: {exc}") from None
        last_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._endpoint = connectable_endpoint(last_endpoint, advertise_host)
        self._ipc_file = self._ipc_file_identity()
        self._connection_cap = ConnectionCap(
            self._router, effective_connection_limit(limits.max_connections), last_endpoint
        )
        server_id = next(_server_ids)
        # close() wakes a receiver blocked in recv() with a secret token sent to this in-process
        # endpoint of the same ROUTER (a timeout instead would cost every call a little).
        self._wake_address = f"inproc://fluxon-rpc-wake-{server_id}"
        self._router.bind(self._wake_address)
        self._stop_token = os.urandom(16)
        self._replies_address = f"inproc://fluxon-rpc-replies-{server_id}"
        self._replies = context.socket(zmq.PULL)
        self._replies.setsockopt(zmq.LINGER, 0)
        self._replies.bind(self._replies_address)

        # Guards the hand-over state below; the watchdog waits on it.
        self._lock = threading.Lock()
        self._watchdog_wakeup = threading.Condition(self._lock)
        self._closed = False
        self._receiver: int | None = None
        self._detached = 0  # replies detached threads still owe the receiver
        self._inline_path: str | None = None
        self._inline_since = 0.0
        self._last_call = 0.0
        self._watchdog_armed = False
        self._queued_calls = 0  # admitted to the pool queue, not yet picked up by a worker
        self._queued_bytes = 0
        self._busy_replies = 0
        self._busy_warning = ThrottledWarning(log)

        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        name = f"fluxon-rpc[{self._endpoint}]"
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-worker-{i}", daemon=True) for i in range(worker_threads)
        ]
        if self._can_detach:
            self._threads.append(threading.Thread(target=self._watchdog, name=f"{name}-watchdog", daemon=True))
        self._jobs.put(_LEAD)
        for thread in self._threads:
            thread.start()

    @property
    def endpoint(self) -> str:
        """The connectable address (a wildcard tcp bind reports the transport's ``advertise_host``)."""
        return self._endpoint

    @property
    def limits(self) -> ServerLimits:
        """The limits this server enforces (``max_connections`` as configured; see :attr:`max_connections`)."""
        return self._limits

    @property
    def max_connections(self) -> int:
        """The connection cap in force: ``max_connections``, or half the open-files limit when lower."""
        return self._connection_cap.limit

    @property
    def connections(self) -> int:
        """Connections accepted and not yet gone (including ones above the cap being shut out)."""
        return self._connection_cap.connections

    @property
    def queued_calls(self) -> int:
        """Calls waiting for a thread of the worker pool now."""
        return self._queued_calls

    def register(self, path: str, handler: Handler) -> None:
        """Serve ``path`` with ``handler``; a path already served is an InvalidArgumentError."""
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"RPC path must be a non-empty string, got {path!r}")
        if not callable(handler):
            raise InvalidArgumentError(f"RPC handler for {path!r} must be callable, got {handler!r}")
        with self._lock:
            if path in self._handlers:
                raise InvalidArgumentError(f"RPC path {path!r} already has a handler at {self._endpoint}")
            self._handlers[path] = handler

    def unregister(self, path: str) -> None:
        """Stop serving ``path`` (calls to it then fail with UnknownPathError); unknown paths are ignored."""
        with self._lock:
            self._handlers.pop(path, None)
            self._slow_paths.discard(path)

    def close(self) -> None:
        """Stop receiving, wait up to 5 s for running handlers, release sockets and threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._watchdog_wakeup.notify_all()
        wakers = self._wake_receiver()
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in self._threads:
            if thread is threading.current_thread():  # close() called from a handler
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("RPC server %s: %s still running a handler after close()", self._endpoint, thread.name)
        for sock in wakers:
            sock.close(linger=0)
        self._connection_cap.stop()  # uses the ROUTER: only now that no receiver does
        # A thread still stuck in a handler checks _closed before it touches a socket again.
        self._router.close(linger=0)
        self._remove_ipc_file()
        self._replies.close(linger=0)
        self._on_close(self)

    def _ipc_file_identity(self) -> tuple[str, int, int] | None:
        """(path, device, inode) of the socket file of an ``ipc://`` bind, to remove it on close."""
        if not self._endpoint.startswith("ipc://"):
            return None
        path = self._endpoint[len("ipc://") :]
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return path, stat.st_dev, stat.st_ino

    def _remove_ipc_file(self) -> None:
        """libzmq leaves the socket file behind; remove it unless another server has bound the path since."""
        if self._ipc_file is None:
            return
        path, device, inode = self._ipc_file
        try:
            stat = os.stat(path)
            if (stat.st_dev, stat.st_ino) == (device, inode):
                os.unlink(path)
        except OSError:
            pass

    def _wake_receiver(self) -> list[zmq.Socket]:
        """Interrupt the receiver, whether it blocks on the ROUTER or polls the replies socket.

        Returns the sockets used, to be closed once the threads are gone (closing them earlier
        could discard the wake-up before it is delivered).
        """
        stopper = self._context.socket(zmq.PUSH)
        stopper.connect(self._replies_address)
        stopper.send(b"")  # a one-part message on the replies socket means stop
        knock = self._context.socket(zmq.DEALER)
        knock.connect(self._wake_address)
        knock.send(self._stop_token)
        return [stopper, knock]

    # --- worker threads -------------------------------------------------------------------------

    def _worker(self) -> None:
        push: zmq.Socket | None = None
        try:
            while True:
                item = self._jobs.get()
                if item is _STOP:
                    return
                if item is _LEAD:
                    try:
                        if not self._receive():
                            return
                    except Exception:  # a receiver that dies silently would leave the server deaf
                        if self._closed:
                            return
                        log.exception("RPC server %s: the receiving thread failed; receiving restarts", self._endpoint)
                        self._jobs.put(_LEAD)
                    continue
                if push is None:
                    push = self._context.socket(zmq.PUSH)
                    push.setsockopt(zmq.LINGER, 1000)
                    push.connect(self._replies_address)
                try:
                    self._run_pooled(item, push)
                except Exception:
                    log.exception("RPC server %s: a pooled call %r failed", self._endpoint, item.call.path)
        finally:
            if push is not None:
                push.close()

    def _run_pooled(self, request: _Request, push: zmq.Socket) -> None:
        started = time.monotonic()
        with self._lock:
            self._queued_calls -= 1
            self._queued_bytes -= request.nbytes
            closed = self._closed
            if closed or started > request.call.deadline_monotonic:
                self._detached -= 1
        if closed:  # its reply could not be sent any more; close() should not wait for it
            return
        if started > request.call.deadline_monotonic:
            log.debug("dropping RPC %r: its deadline passed while queued", request.call.path)
            return
        header, frames = self._execute(request)
        with self._lock:
            if time.monotonic() - started < self._inline_handler_s / 2:
                self._slow_paths.discard(request.call.path)
            if self._closed:
                return
        wire.send_message(push, (request.identity,), header, frames, self._zero_copy_min)

    def _receive(self) -> bool:
        """Act as the receiver until the role is taken away (True) or the server closes (False).

        This loop is the hot path of every call, so the inline case is written out here rather
        than split into helpers.
        """
        me = threading.get_ident()
        with self._lock:
            if self._closed:
                return False
            self._receiver = me
        router = self._router
        recv = router.recv
        send = wire.send_frame
        lock = self._lock
        monotonic = time.monotonic
        poller = zmq.Poller()
        poller.register(router, _POLLIN)
        poller.register(self._replies, _POLLIN)
        while True:
            if self._detached:
                ready = poller.poll()
                if any(sock is not router for sock, _ in ready) and not self._forward_replies():
                    return False
                if not any(sock is router for sock, _ in ready):
                    continue
            identity = recv()
            request = self._parse_request(identity, recv(copy=False))
            if request is None:
                continue
            if request is _STOP:
                return False
            path = request.call.path
            if path in self._slow_paths and self._can_detach:
                self._enqueue(request)
                continue
            # Plain attribute stores (atomic under the GIL), since before path: the watchdog reads path first.
            self._last_call = self._inline_since = monotonic()
            self._inline_path = path
            if not self._watchdog_armed and self._can_detach:
                with lock:
                    self._watchdog_armed = True
                    self._watchdog_wakeup.notify()
            header, frames = self._execute(request)
            with lock:
                if self._closed:
                    return False
                still_receiver = self._receiver == me
                if still_receiver:
                    self._inline_path = None
            if not still_receiver:  # the watchdog gave receiving to another thread meanwhile
                self._reply_via_receiver(request.identity, header, frames)
                return True
            if frames:
                wire.send_message(router, (identity,), header, frames, self._zero_copy_min)
            else:
                send(router, identity, _SNDMORE)
                send(router, header)

    def _enqueue(self, request: _Request) -> None:
        """Queue a call for the pool, or answer it now: refused by authentication, or the queue is full.

        Authenticating here (not on the worker) keeps calls that would be refused anyway from
        taking queue places and memory.
        """
        if self._authenticate is not None:
            try:
                self._authenticate(request.call)
            except BaseException as exc:
                if not isinstance(exc, ApiError | OSError):
                    log.warning("RPC authentication of %r raised", request.call.path, exc_info=True)
                self._reply_error(request.identity, request.request_id, exc)
                return
            request.authenticated = True
        request.nbytes += sum(memoryview(f).nbytes for f in request.call.message.frames)
        limits = self._limits
        with self._lock:
            full = (
                self._queued_calls >= limits.max_queued_calls
                or self._queued_bytes + request.nbytes > limits.max_queued_bytes
            )
            if not full:
                self._queued_calls += 1
                self._queued_bytes += request.nbytes
                self._detached += 1
            waiting = self._queued_calls
        if not full:
            self._jobs.put(request)
            return
        self._busy_replies += 1
        self._reply_error(
            request.identity,
            request.request_id,
            ServerBusyError(
                f"RPC server {self._endpoint} has {waiting} calls waiting for a thread (limits: max_queued_calls "
                f"{limits.max_queued_calls}, max_queued_bytes {limits.max_queued_bytes}); retry later"
            ),
        )
        self._busy_warning.warn(
            "RPC server %s: queue of slow calls full, answering ServerBusyError (%d so far)",
            self._endpoint,
            self._busy_replies,
        )

    def _forward_replies(self) -> bool:
        """Send the replies detached threads produced; False when the stop message arrived."""
        while True:
            try:
                parts = self._replies.recv_multipart(_NOBLOCK, copy=False)
            except zmq.Again:
                return True
            if len(parts) == 1:
                return False
            with self._lock:
                self._detached -= 1
            self._router.send_multipart(parts, copy=False)

    def _reply_via_receiver(self, identity: bytes, header: bytes, frames: Sequence[Buffer]) -> None:
        """Hand a reply to whichever thread receives now, through the inproc replies socket."""
        push = self._context.socket(zmq.PUSH)
        push.connect(self._replies_address)
        wire.send_message(push, (identity,), header, frames, self._zero_copy_min)
        push.close(linger=1000)

    def _watchdog(self) -> None:
        """Hand receiving to another thread when the receiver is stuck in a handler."""
        while True:
            with self._lock:
                while not self._watchdog_armed and not self._closed:
                    self._watchdog_wakeup.wait()
                if self._closed:
                    return
            # A plain sleep is the cheapest tick (Condition.wait with a timeout allocates a lock
            # each time); close() then waits at most one tick for this thread.
            time.sleep(self._inline_handler_s)
            with self._lock:
                now = time.monotonic()
                path = self._inline_path
                if (
                    path is not None
                    and self._receiver is not None
                    and now - self._inline_since >= self._inline_handler_s
                    and not self._closed
                ):
                    self._receiver = None
                    self._inline_path = None
                    self._detached += 1
                    self._slow_paths.add(path)
                    self._jobs.put(_LEAD)
                elif path is None and now - self._last_call > _WATCHDOG_IDLE_S:
                    self._watchdog_armed = False

    # --- one call -------------------------------------------------------------------------------

    def _parse_request(self, identity: bytes, header_frame: zmq.Frame) -> Any:
        """The call whose identity and header frame were just read: a _Request, _STOP, or None.

        None means the message was malformed or already expired, and was answered or dropped.
        (A ROUTER delivers the identity plus at least one part, so the header frame always exists.)
        """
        router = self._router
        more = header_frame.more
        if header_frame.buffer == self._stop_token:
            wire.drain(router, more)
            return _STOP
        try:
            header = wire.decode_header(header_frame.buffer)
        except NetworkError as exc:
            wire.drain(router, more)
            log.warning("RPC server %s: dropping malformed call: %s", self._endpoint, exc)
            return None
        request_id = header[1] if len(header) > 1 else None
        if header[0] != wire.PROTOCOL_VERSION or len(header) != wire.REQUEST_FIELDS or type(request_id) is not int:
            wire.drain(router, more)
            if type(request_id) is int:
                self._reply_error(identity, request_id, NetworkError(f"unsupported RPC protocol: header {header!r}"))
            return None
        _, _, path, caller, auth, remaining_s, meta, sizes = header
        try:
            frames = wire.recv_bulk(router, sizes, self._zero_copy_min, more) if sizes or more else ()
            if not (
                type(path) is str
                and type(caller) is str
                and type(auth) is str
                and type(meta) is dict
                and type(remaining_s) in (int, float)
            ):
                raise NetworkError("malformed RPC header: path, caller, auth must be strings, meta an object")
        except NetworkError as exc:
            self._reply_error(identity, request_id, exc)
            return None
        if remaining_s <= 0:
            return None
        call = RpcCall(path, caller, auth, RpcMessage(meta, frames), time.monotonic() + remaining_s)
        return _Request(identity, request_id, call, len(header_frame))

    def _reply_error(self, identity: bytes, request_id: int, exc: BaseException) -> None:
        wire.send_message(self._router, (identity,), _error_header(request_id, exc), (), self._zero_copy_min)

    def _execute(self, request: _Request) -> tuple[bytes, Sequence[Buffer]]:
        """Authenticate and run the handler; the reply header and bulk frames (errors become error replies)."""
        call = request.call
        try:
            if self._authenticate is not None and not request.authenticated:
                self._authenticate(call)
            handler = self._handlers.get(call.path)
            if handler is None:
                raise UnknownPathError(f"no RPC handler for path {call.path!r} at {self._endpoint}")
            reply = handler(call)
            if not isinstance(reply, RpcMessage):
                raise TypeError(f"handler for {call.path!r} returned {type(reply).__name__}, expected RpcMessage")
            frames = reply.frames
            max_bytes = self._max_reply_bytes
            if not frames:
                header = wire.encode_header([request.request_id, reply.meta, []])
                if len(header) > max_bytes:
                    raise self._reply_too_large(call.path, len(header))
                return header, frames
            sizes = [memoryview(f).nbytes for f in frames]
            header = wire.encode_header([request.request_id, reply.meta, sizes])
            largest = max(len(header), *sizes)
            if largest > max_bytes:
                raise self._reply_too_large(call.path, largest)
            return wire.align_bulk(header, frames, self._zero_copy_min), frames
        except BaseException as exc:  # every failure must reach the caller as a typed error
            if not isinstance(exc, ApiError | OSError):
                log.warning("RPC handler for %r raised", call.path, exc_info=True)
            return _error_header(request.request_id, exc), ()

    def _reply_too_large(self, path: str, nbytes: int) -> InvalidArgumentError:
        # Sent anyway, the frame would make the caller's libzmq drop the connection (its
        # max_reply_bytes, normally the same as ours), and the caller would only see a timeout.
        return InvalidArgumentError(
            f"the reply of {path!r} at {self._endpoint} has a {nbytes}-byte frame, above max_reply_bytes "
            f"{self._limits.max_reply_bytes} (raise transport.zmq.max_reply_bytes on every process)"
        )


def _error_header(request_id: int, exc: BaseException) -> bytes:
    """The reply header carrying ``exc`` as a typed error."""
    try:
        return wire.encode_header([request_id, encode_error(exc)])
    except (TypeError, ValueError):  # an exotic filename or message that JSON cannot carry
        fallback = {"code": "remote_handler_error", "message": repr(exc), "remote_type": type(exc).__name__}
        return wire.encode_header([request_id, fallback])
