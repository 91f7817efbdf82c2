"""The ``zmq`` transport: one zmq context shared by the servers and clients it creates."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import zmq

from fluxon_core.log_setup import get_logger
from fluxon_core.rpc_types import RpcCall
from fluxon_plugins.zmq_transport.client import ZmqRpcClient
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.server import ServerLimits, ZmqRpcServer

log = get_logger("fluxon.rpc.zmq")

_TERM_TIMEOUT_S = 2.0

# Contexts whose term() could not finish (a socket still held by a stuck thread) are kept here so
# that pyzmq's Context.__del__ never runs a second, unbounded term() on them later (that blocked
# a whole test session at exit).
_ABANDONED_CONTEXTS: list[zmq.Context] = []


def _terminate_bounded(context: zmq.Context) -> bool:
    """term() in a helper thread for at most _TERM_TIMEOUT_S; True when it finished."""
    if context.closed:
        return True
    terminator = threading.Thread(target=context.term, name="fluxon-zmq-term", daemon=True)
    terminator.start()
    terminator.join(_TERM_TIMEOUT_S)
    if terminator.is_alive():
        _ABANDONED_CONTEXTS.append(context)
        return False
    return True


def _abandon_unclosed(context: zmq.Context) -> None:
    """A transport was garbage-collected without close(): end its context without blocking the collector."""
    if not context.closed:
        _ABANDONED_CONTEXTS.append(context)
        threading.Thread(target=context.destroy, kwargs={"linger": 0}, name="fluxon-zmq-gc", daemon=True).start()


class ZmqTransport:
    """:class:`fluxon_core.protocols.Transport` over pyzmq: ``ipc://`` on one host, ``tcp://`` across hosts."""

    def __init__(self, config: ZmqTransportConfig | None = None) -> None:
        self.config = config if config is not None else ZmqTransportConfig()
        self._context = zmq.Context(io_threads=self.config.io_threads)
        self._lock = threading.Lock()
        self._servers: set[ZmqRpcServer] = set()
        self._clients: set[ZmqRpcClient] = set()
        self._closed = False
        self._finalizer = weakref.finalize(self, _abandon_unclosed, self._context)
        self._finalizer.atexit = False  # at exit, stores still leave the cluster over this context

    def bind_server(
        self,
        bind_address: str,
        *,
        worker_threads: int = 8,
        authenticate: Callable[[RpcCall], None] | None = None,
    ) -> ZmqRpcServer:
        """Bind a server at ``ipc://path``, ``tcp://host:port`` or ``tcp://host:0`` (any free port).

        Its ``endpoint`` is the concrete address to connect to: the chosen port for ``:0``, and the
        ``advertise_host`` option (default: the host's primary address) in place of a wildcard host.
        """
        server = ZmqRpcServer(
            self._context,
            bind_address,
            worker_threads=worker_threads,
            authenticate=authenticate,
            zero_copy_min=self.config.zero_copy_min_bytes,
            inline_handler_s=self.config.inline_handler_ms / 1000,
            advertise_host=self.config.advertise_host,
            limits=ServerLimits(
                max_request_bytes=self.config.max_request_bytes,
                max_reply_bytes=self.config.max_reply_bytes,
                max_connections=self.config.max_connections,
                max_queued_calls=self.config.max_queued_calls,
                max_queued_bytes=self.config.max_queued_bytes,
            ),
            on_close=self._forget_server,
        )
        with self._lock:
            self._servers.add(server)
        return server

    def new_client(self) -> ZmqRpcClient:
        """A client that many threads may share (each thread gets its own sockets)."""
        client = ZmqRpcClient(
            self._context,
            self.config.zero_copy_min_bytes,
            max_request_bytes=self.config.max_request_bytes,
            max_reply_bytes=self.config.max_reply_bytes,
            on_close=self._forget_client,
            connect_timeout_s=self.config.connect_timeout_ms / 1000,
        )
        with self._lock:
            self._clients.add(client)
        return client

    def close(self) -> None:
        """Close every server and client made here, then the zmq context; idempotent.

        Call it once in-flight calls have returned: a socket still in use keeps the context open.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            servers, clients = list(self._servers), list(self._clients)
        for server in servers:
            server.close()
        for client in clients:
            client.close()
        self._finalizer.detach()
        # term() waits for every socket of the context; one still held by a thread stuck in a
        # handler or a call must not hang the caller, so wait a bounded time and move on.
        if not _terminate_bounded(self._context):
            log.warning("zmq transport: sockets still open %.0fs after close(); leaving the context", _TERM_TIMEOUT_S)

    def _forget_server(self, server: ZmqRpcServer) -> None:
        with self._lock:
            self._servers.discard(server)

    def _forget_client(self, client: ZmqRpcClient) -> None:
        with self._lock:
            self._clients.discard(client)
