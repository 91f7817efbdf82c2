"""The client's end of the same-host write channel: connections to one agent, checked before use.

A connection is only used once ``SO_PEERCRED`` of the listening socket reports the pid and uid the
agent named in its ``session_open`` answer: the address is an abstract socket name, which another
process could take over once the agent is gone, and the caller's token must reach the agent only.
An address that cannot be reached or does not prove itself (another host, another network
namespace, a stale name) makes the channel unusable for good; the caller writes over RPC. A
connection that breaks during a request is dropped and the request goes over RPC too — a
``session_write`` may be sent twice, it writes the same bytes at the same offset.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from fluxon_core.errors import ApiTimeoutError
from fluxon_core.log_setup import get_logger
from fluxon_fs.export.same_host.protocol import SameHostAddress, WriteRequest, encode_request, raise_reply
from fluxon_fs.export.same_host.shared_chunk import SUPPORTED, SharedChunk

log = get_logger("fluxon.fs.patcher.same_host")

DEFAULT_TIMEOUT_S = 30.0
"""Deadline of one request (as the RPC path's)."""
_PEERCRED = struct.Struct("3i")
_REPLY_BYTES = 64 * 1024


class SameHostWriter:
    """Sends write payloads held in :class:`SharedChunk` s to the agent at ``address``; thread-safe."""

    def __init__(self, address: SameHostAddress, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._idle: list[socket.socket] = []
        self._usable: bool | None = None
        """None until the first connection was tried."""
        self._pid = os.getpid()
        """A forked child does not use its parent's connections."""

    def usable(self) -> bool:
        """Whether the agent is reachable here and proved who it is (tried once, remembered)."""
        if self._usable is None:
            conn = self._connect()
            if conn is not None:
                self._give_back(conn)
        return bool(self._usable)

    def write(
        self, export_name: str, session_id: str, offset: int, chunk: SharedChunk, length: int, *, auth: str, caller: str
    ) -> bool:
        """Write ``chunk[:length]`` at ``offset``; False when the channel could not carry it (use RPC).

        Raises what the agent raised (``OSError`` with the export-relative path, ``PermissionDeniedError``,
        ...) and :class:`ApiTimeoutError` when no answer came within the deadline.
        """
        conn = self._take()
        if conn is None:
            return False
        header = encode_request(WriteRequest(export_name, session_id, offset, length, auth, caller))
        try:
            socket.send_fds(conn, [header], [chunk.memfd])
            reply = conn.recv(_REPLY_BYTES)
        except TimeoutError:
            conn.close()
            raise ApiTimeoutError(f"same-host write to the agent: no answer within {self._timeout_s:g} s") from None
        except OSError as exc:
            conn.close()
            log.info("same-host write connection broke (%s); this payload goes over RPC", exc)
            return False
        if not reply:
            conn.close()
            return False  # the agent closed the connection (idle, full or stopping): RPC this time
        self._give_back(conn)
        raise_reply(reply)
        return True

    def close(self) -> None:
        """Close idle connections (requests running keep theirs until they end)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._usable = False
        for conn in idle:
            conn.close()

    def _take(self) -> socket.socket | None:
        with self._lock:
            if self._usable is False or os.getpid() != self._pid:
                return None
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, conn: socket.socket) -> None:
        with self._lock:
            if self._usable:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> socket.socket | None:
        """A new connection to the proven agent, or None (and the channel unusable) when it is not there."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            conn.connect("\0" + self.address.name)
            pid, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError as exc:
            conn.close()
            self._unusable(f"cannot connect ({exc.strerror})")
            return None
        if (pid, uid) != (self.address.pid, self.address.uid):
            conn.close()
            self._unusable(f"the socket belongs to pid {pid} uid {uid}, not the agent (pid {self.address.pid})")
            return None
        conn.settimeout(self._timeout_s)
        with self._lock:
            if self._usable is None:
                self._usable = True
        return conn

    def _unusable(self, why: str) -> None:
        with self._lock:
            first = self._usable is not False
            self._usable = False
        if first:
            log.info("same-host write channel %s not used: %s; writing over RPC", self.address.name, why)


_writers_lock = threading.Lock()
_writers: dict[SameHostAddress, SameHostWriter] = {}


def usable_writer(address: SameHostAddress | None) -> SameHostWriter | None:
    """This process's writer for ``address`` when the channel works from here, else None."""
    if address is None or not SUPPORTED:
        return None
    with _writers_lock:
        writer = _writers.get(address)
        if writer is None:
            writer = _writers[address] = SameHostWriter(address)
    return writer if writer.usable() else None


def _forget_in_child() -> None:
    # A forked child must not share its parent's connections (requests and replies would mix).
    global _writers_lock
    _writers_lock = threading.Lock()
    _writers.clear()


os.register_at_fork(after_in_child=_forget_in_child)
