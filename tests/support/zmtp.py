"""A ZMTP 3.0 peer over a plain TCP socket, to send what a zmq library never would.

An attacker does not use libzmq: it can announce a frame of any length, stop in the middle of a
frame, or send parts without end. :class:`RawZmtpPeer` does the NULL-mechanism handshake as a
DEALER and then writes frames exactly as told. Only the framing of ZMTP 3.0 (RFC 23) is needed:
a flags byte (bit 0 more, bit 1 long, bit 2 command), a 1-byte or 8-byte big-endian length, the body.
"""

from __future__ import annotations

import socket
import struct

_MORE = 0x01
_LONG = 0x02
_COMMAND = 0x04

_GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
"""Signature, version 3.0, mechanism NULL, not as-server, filler: the 64-byte ZMTP 3.0 greeting."""


def frame_header(length: int, *, more: bool = False, command: bool = False) -> bytes:
    """The flags and length that announce a frame of ``length`` bytes (any value up to 2**64-1)."""
    flags = (_MORE if more else 0) | (_COMMAND if command else 0)
    if length < 256:
        return bytes([flags, length])
    return bytes([flags | _LONG]) + struct.pack(">Q", length)


def _ready_command(socket_type: bytes) -> bytes:
    name = b"READY"
    prop = bytes([len(b"Socket-Type")]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    body = bytes([len(name)]) + name + prop
    return frame_header(len(body), command=True) + body


class RawZmtpPeer:
    """One TCP connection to ``tcp://host:port`` speaking ZMTP as a DEALER; a context manager."""

    def __init__(self, endpoint: str, *, timeout_s: float = 5.0, handshake: bool = True) -> None:
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sent = 0
        if handshake:
            self.send_raw(_GREETING + _ready_command(b"DEALER"))
            self._recv_exact(len(_GREETING))
            flags, body = self._recv_frame()
            if not flags & _COMMAND or not body.startswith(b"\x05READY"):
                raise ConnectionError(f"unexpected handshake reply {body[:32]!r}")

    def __enter__(self) -> RawZmtpPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is; raises OSError once the server has dropped the connection."""
        self.sock.sendall(data)
        self.sent += len(data)

    def send_frame(self, body: bytes, *, more: bool = False) -> None:
        """One complete frame."""
        self.send_raw(frame_header(len(body), more=more) + body)

    def send_message(self, parts: list[bytes]) -> None:
        """A multipart message (an empty list sends nothing)."""
        for index, part in enumerate(parts):
            self.send_frame(part, more=index < len(parts) - 1)

    def recv_message(self) -> list[bytes]:
        """The next message (commands such as heartbeats are skipped); socket.timeout when none comes."""
        parts: list[bytes] = []
        while True:
            flags, body = self._recv_frame()
            if flags & _COMMAND:
                continue
            parts.append(body)
            if not flags & _MORE:
                return parts

    def close(self) -> None:
        """Close the connection (an unfinished frame stays unfinished)."""
        self.sock.close()

    def _recv_frame(self) -> tuple[int, bytes]:
        flags = self._recv_exact(1)[0]
        if flags & _LONG:
            (length,) = struct.unpack(">Q", self._recv_exact(8))
        else:
            length = self._recv_exact(1)[0]
        return flags, self._recv_exact(length)

    def _recv_exact(self, count: int) -> bytes:
        chunks = []
        while count:
            chunk = self.sock.recv(count)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)
