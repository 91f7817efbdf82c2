"""A cap on the connections one server socket keeps, enforced from libzmq's socket monitor.

libzmq has no per-socket connection limit (``ZMQ_MAXSOCKETS`` counts zmq sockets of a context, not
the TCP or Unix connections a bound socket accepts), and it accepts every connection at once in its
I/O thread. So the cap watches the socket monitor: ``EVENT_ACCEPTED`` and ``EVENT_DISCONNECTED``
carry the connection's file descriptor, which keeps an exact set of live connections. When an accept
takes the set above the cap, the newest connections are ``shutdown(2)``: libzmq's engine then reads
end-of-stream, tears the connection down and closes the descriptor itself (closing it from here
would pull it out from under libzmq). A descriptor is only shut down after checking that it still is
a socket accepted on this server's address: between the event and the shutdown, libzmq may have
closed it and the process reused the number.

What this bounds: descriptors and per-connection memory of accepted connections to about the cap,
plus connections in the short window between accept and shutdown. What it does not: a peer can
still make the kernel complete TCP handshakes (the listen backlog) and can reconnect at once after
being shut out, costing an accept and a shutdown each time; and once the cap is full of idle
connections, new clients are refused until some leave (connections already established keep
working). libzmq drops a connection that has not finished the ZMTP handshake within
``ZMQ_HANDSHAKE_IVL`` (30 s by default), so only peers that complete it can hold a slot for long.
"""

from __future__ import annotations

import resource
import socket
import threading

import zmq
from zmq.utils.monitor import recv_monitor_message

from fluxon_core.log_setup import get_logger
from fluxon_plugins.zmq_transport.throttled_log import ThrottledWarning

log = get_logger("fluxon.rpc.zmq")

_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED
_JOIN_TIMEOUT_S = 2.0


def effective_connection_limit(configured: int) -> int:
    """``configured``, lowered to half the soft open-files limit so connections cannot use up every descriptor."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft // 2))


def listening_address(last_endpoint: str) -> tuple[int, object] | None:
    """(address family, what ``getsockname`` of an accepted socket returns) for a bound endpoint, or None.

    For tcp the port is compared (an accepted socket reports the concrete local address of a wildcard
    bind); for ipc the socket path (``@name`` is Linux's abstract namespace, reported with a NUL).
    """
    scheme, _, rest = last_endpoint.partition("://")
    if scheme == "tcp":
        port = rest.rpartition(":")[2]
        return (socket.AF_INET, int(port)) if port.isdigit() else None
    if scheme == "ipc":
        return socket.AF_UNIX, "\0" + rest[1:] if rest.startswith("@") else rest
    return None


class ConnectionCap:
    """Keeps the connections accepted by ``sock`` at or below ``limit`` (see the module docstring).

    Create it before the socket is used by other threads; call :meth:`stop` only once no other
    thread uses the socket any more (it touches the socket to end monitoring).
    """

    def __init__(self, sock: zmq.Socket, limit: int, last_endpoint: str) -> None:
        self.limit = limit
        self._label = last_endpoint
        self._warning = ThrottledWarning(log)
        self._sock = sock
        self._address = listening_address(last_endpoint)
        self._live: dict[int, None] = {}  # accepted descriptors, oldest first
        self._closing: set[int] = set()  # shut down here, DISCONNECTED not seen yet
        self._lock = threading.Lock()
        self.refused = 0
        """Connections shut down for being above the cap (a running total)."""
        self._thread: threading.Thread | None = None
        if self._address is None:
            log.info("RPC server %s: no connection cap on this kind of endpoint", last_endpoint)
            return
        self._monitor = sock.get_monitor_socket(_EVENTS)
        self._thread = threading.Thread(
            target=self._watch, name=f"fluxon-rpc[{last_endpoint}]-connections", daemon=True
        )
        self._thread.start()

    @property
    def connections(self) -> int:
        """Connections accepted and not yet gone, including those being shut down."""
        with self._lock:
            return len(self._live)

    def stop(self) -> None:
        """End monitoring and its thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._sock.disable_monitor()  # libzmq sends EVENT_MONITOR_STOPPED, which ends the thread
        except zmq.ZMQError:
            pass
        thread.join(_JOIN_TIMEOUT_S)

    def _watch(self) -> None:
        monitor = self._monitor
        try:
            while True:
                event = recv_monitor_message(monitor)
                while True:  # apply every event already queued before deciding whom to shut out
                    if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                        return
                    self._apply(event["event"], event["value"])
                    try:
                        event = recv_monitor_message(monitor, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                self._enforce()
        except zmq.ZMQError as exc:  # the context is terminating
            log.debug("connection monitor stops: %s", exc)
        finally:
            monitor.close(linger=0)

    def _apply(self, event: int, fd: int) -> None:
        with self._lock:
            if event == zmq.EVENT_ACCEPTED:
                self._live[fd] = None
            elif event == zmq.EVENT_DISCONNECTED:
                self._live.pop(fd, None)
                self._closing.discard(fd)

    def _enforce(self) -> None:
        with self._lock:
            excess = len(self._live) - len(self._closing) - self.limit
            if excess <= 0:
                return
            victims = [fd for fd in reversed(self._live) if fd not in self._closing][:excess]
            self._closing.update(victims)
        for fd in victims:
            if self._shut_down(fd):
                self.refused += 1
        self._warning.warn(
            "RPC server %s: connections above max_connections %d are shut out (%d so far)",
            self._label,
            self.limit,
            self.refused,
        )

    def _shut_down(self, fd: int) -> bool:
        """shutdown(2) ``fd`` if it still is a connection accepted on this server's address."""
        assert self._address is not None
        family, local = self._address
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # closed meanwhile, or reused for something that is not a socket
            return False
        try:
            if (sock.family == socket.AF_UNIX) != (family == socket.AF_UNIX):
                return False
            name = sock.getsockname()
            if family == socket.AF_UNIX:
                name = name.decode(errors="surrogateescape") if isinstance(name, bytes) else name
                if name != local:
                    return False
            elif name[1] != local:
                return False
            sock.shutdown(socket.SHUT_RDWR)
            return True
        except OSError:
            return False
        finally:
            sock.detach()  # the descriptor stays libzmq's
