"""The agent's end of the same-host write channel: an abstract ``AF_UNIX`` listener.

Each accepted connection gets a thread that serves its requests one at a time (a client keeps
one connection per payload in flight). A request is authorised exactly like the
``session_write`` RPC — the same ``authorize`` hook, with the caller's token, against the path
the session writes (:func:`~fluxon_fs.export.serving.rpc_service.run_authorized`) — before the
fd it carries is even looked at, and is counted in the same ``fluxon_fs_ops_total`` series.

Bounds: at most ``max_connections`` connections (more are closed at once; their clients use the
RPC path), a connection idle for ``idle_timeout_s`` is closed, a header above
:data:`~.protocol.MAX_HEADER_BYTES` or with more than one fd is refused, and every received fd is
closed after its request, whatever happened.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export.same_host.protocol import (
    MAX_HEADER_BYTES,
    SameHostAddress,
    WriteRequest,
    decode_request,
    encode_reply,
)
from fluxon_fs.export.same_host.sealed_payload import SealedPayload
from fluxon_fs.export.same_host.shared_chunk import SUPPORTED
from fluxon_fs.export.serving.rpc_service import Authorize, OpCounter, ServableExportOps, run_authorized
from fluxon_fs.export.wire import OPS, op_path

log = get_logger("fluxon.fs.agent.same_host")

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_IDLE_TIMEOUT_S = 60.0
_SESSION_WRITE = OPS["session_write"]
_NO_MESSAGE = RpcMessage()


class SealedWriteOps(ServableExportOps, Protocol):
    """Export ops that can write a session from a :class:`SealedPayload`."""

    def session_write_sealed(self, session_id: str, offset: int, data: SealedPayload) -> None:
        """``session_write`` with the payload copied from the sealed memfd."""
        ...


class SameHostWriteServer:
    """Serves ``session_write`` with sealed-memfd payloads for ``exports``; :meth:`close` stops it."""

    def __init__(
        self,
        exports: Mapping[str, SealedWriteOps],
        authorize: Authorize,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        call_timeout_s: float = 30.0,
    ) -> None:
        self._exports = dict(exports)
        self._authorize = authorize
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._call_timeout_s = call_timeout_s
        self._counter = OpCounter(_SESSION_WRITE.name)
        """Counts in the same series as the ``session_write`` RPC."""
        name = f"fluxon-fs-agent-{secrets.token_hex(16)}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self._listener.bind("\0" + name)
        self._listener.listen(max_connections)
        self.address = SameHostAddress(name, os.getpid(), os.getuid())
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept_forever, name="fluxon-fs-same-host", daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        """Stop accepting, end every connection (requests running finish first); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections)
        _shutdown(self._listener)
        self._acceptor.join(5)
        self._listener.close()
        for conn in connections:
            _shutdown(conn)

    # -- connections ------------------------------------------------------------------------------

    def _accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._closed or len(self._connections) >= self._max_connections:
                    conn.close()
                    continue
                self._connections.add(conn)
            threading.Thread(
                target=self._serve_connection, args=(conn,), name="fluxon-fs-same-host-conn", daemon=True
            ).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(self._idle_timeout_s)
        try:
            while True:
                try:
                    header, fds, flags, _ = socket.recv_fds(conn, MAX_HEADER_BYTES, 1)
                except OSError:  # idle timeout, reset, or shut down by close()
                    return
                if not header and not fds:
                    return  # the client closed the connection
                try:
                    reply = encode_reply(self._serve_request(header, fds, flags))
                finally:
                    for fd in fds:
                        os.close(fd)
                try:
                    conn.send(reply)
                except OSError:
                    return
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _serve_request(self, header: bytes, fds: list[int], flags: int) -> BaseException | None:
        """Run one request; returns the error to answer with (None: written)."""
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise InvalidArgumentError(
                    f"same-host write: a request is one header of at most {MAX_HEADER_BYTES} bytes and one fd"
                )
            request = decode_request(header)
            if len(fds) != 1:
                raise InvalidArgumentError(f"same-host write: expected 1 payload fd, got {len(fds)}")
            self._counter.run(self._write, request, fds[0])
        except Exception as exc:
            if not isinstance(exc, (OSError, InvalidArgumentError)) and log.isEnabledFor(10):
                log.debug("same-host write refused: %r", exc)
            return exc
        return None

    def _write(self, request: WriteRequest, payload_fd: int) -> None:
        ops = self._exports.get(request.export_name)
        if ops is None:
            raise InvalidArgumentError(f"same-host write: this agent serves no export {request.export_name!r}")
        path = op_path(request.export_name, _SESSION_WRITE.name)
        call = RpcCall(path, request.caller, request.auth, _NO_MESSAGE, time.monotonic() + self._call_timeout_s)

        def write(session_id: str, offset: int, data: int) -> None:
            # Reached only once the caller is authorised on the session's path.
            ops.session_write_sealed(session_id, offset, SealedPayload.check(data, request.length))

        args = {"session_id": request.session_id, "offset": request.offset, "data": payload_fd}
        run_authorized(call, request.export_name, _SESSION_WRITE, ops, self._authorize, args, write)


def start_same_host_writes(exports: Mapping[str, SealedWriteOps], authorize: Authorize) -> SameHostWriteServer | None:
    """A running channel for ``exports``, or None where the platform has none (the RPC path serves alone)."""
    if not SUPPORTED:
        return None
    try:
        return SameHostWriteServer(exports, authorize)
    except OSError as exc:
        log.warning("no same-host write channel (%s); clients write over RPC", exc)
        return None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
