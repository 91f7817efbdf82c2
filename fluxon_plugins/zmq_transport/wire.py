"""The zmq wire format: one small JSON header frame followed by the bulk frames, untouched.

Request  ``[header, *bulk]`` with header ``[1, id, path, caller, auth, seconds_left, meta, sizes]``
Reply    ``[header, *bulk]`` with header ``[id, meta, sizes]``, or ``[id, error]`` without bulk

``1`` is the protocol version, ``meta`` the JSON object of :class:`~fluxon_core.rpc_types.RpcMessage`,
``sizes`` the byte length of every bulk frame and ``error`` the dict of
:func:`fluxon_core.rpc.encode_error`. The server's ROUTER socket prepends the peer identity frame.

Why this shape: headers are JSON arrays, not objects, because unpacking one array is measurably
cheaper than eight key lookups on every call; the deadline travels as *seconds left* because the
monotonic clocks of two hosts are unrelated; listing the bulk sizes up front lets the receiver take
small frames as ``bytes`` and large ones zero-copy as a ``memoryview`` over the ``zmq.Frame``.
A header followed by a large frame may end in JSON whitespace: see :func:`align_bulk`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket

from fluxon_core.errors import NetworkError
from fluxon_core.rpc_types import Buffer

PROTOCOL_VERSION = 1
REQUEST_FIELDS = 8

# The Cython send, without the Python wrapper pyzmq adds for DRAFT routing ids: a small call is
# dominated by per-call interpreter overhead.
send_frame: Callable[..., Any] = _BackendSocket.send

_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)

try:
    # orjson is ~10x faster than the json module; on a small call the four header
    # encodes/decodes would otherwise be a noticeable part of the round trip.
    import orjson

    def encode_header(header: list[Any]) -> bytes:
        """The header frame; a meta value that is not JSON-able raises TypeError/ValueError."""
        return orjson.dumps(header, option=orjson.OPT_NON_STR_KEYS)

    _loads: Callable[[Buffer], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    _encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def encode_header(header: list[Any]) -> bytes:
        """The header frame; a meta value that is not JSON-able raises TypeError/ValueError."""
        return _encode_json(header).encode()

    def _loads(frame: Buffer) -> Any:
        return json.loads(bytes(frame))


def decode_header(frame: Buffer) -> list[Any]:
    """The header array; anything but a JSON array starting with an integer is a NetworkError."""
    try:
        header = _loads(frame)
    except (UnicodeDecodeError, ValueError) as exc:
        raise NetworkError(f"malformed RPC header: {exc}") from None
    if type(header) is not list or not header or type(header[0]) is not int:
        raise NetworkError(f"malformed RPC header: {bytes(frame[:200])!r}")
    return header


_PAYLOAD_ALIGNMENT = 32
_PAYLOAD_OFFSET = 16


def _frame_overhead(size: int) -> int:
    """Bytes ZMTP 3 puts before a frame's payload: a flags byte plus a 1- or 8-byte length."""
    return 2 if size < 256 else 9


def align_bulk(header: bytes, frames: Sequence[Buffer], zero_copy_min: int) -> bytes:
    """``header`` padded with JSON whitespace so the first large bulk frame lands well in the receiver.

    libzmq receives a large frame by copying what its 8 KiB read batch already holds and reading
    the rest straight into the message; where the payload starts in the stream decides the
    alignment of that direct read. Measured here (benchmarks/bench_rpc.py, libzmq 4.3, x86-64):
    payloads starting 16 bytes past a 32-byte boundary move up to 1.7x faster than unlucky offsets,
    which is also where a raw ``REQ`` message ``[b"put", data]`` puts them.
    """
    if not frames:
        return header
    first = memoryview(frames[0]).nbytes
    if first < zero_copy_min:
        return header
    length = len(header)
    for _ in range(2):  # padding may push the header past 255 bytes, which lengthens its frame prefix
        offset = _frame_overhead(length) + length + _frame_overhead(first)
        length += (_PAYLOAD_OFFSET - offset) % _PAYLOAD_ALIGNMENT
    return header + b" " * (length - len(header))


def send_message(
    sock: zmq.Socket,
    prefix: Sequence[bytes],
    header: bytes,
    frames: Sequence[Buffer],
    zero_copy_min: int,
    flags: int = 0,
) -> None:
    """Send ``[*prefix, header, *frames]`` as one message; large frames go without a copy."""
    for part in prefix:
        send_frame(sock, part, flags | _SNDMORE)
    if not frames:
        send_frame(sock, header, flags)
        return
    send_frame(sock, header, flags | _SNDMORE)
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        more = _SNDMORE if index < last else 0
        send_frame(sock, frame, flags | more, memoryview(frame).nbytes < zero_copy_min)


def recv_bulk(sock: zmq.Socket, sizes: Any, zero_copy_min: int, more: bool) -> tuple[Buffer, ...]:
    """Receive the bulk frames announced by ``sizes``; ``more`` is the header frame's more-flag.

    Frames of at least ``zero_copy_min`` bytes come back as ``memoryview`` over the received
    ``zmq.Frame``, smaller ones as ``bytes``. A count or size mismatch drains the rest of the
    message and raises NetworkError. (Frames carry their more-flag; asking the socket for
    ``ZMQ_RCVMORE`` instead costs an enum lookup in pyzmq on every call.)
    """
    if not sizes:
        if more:
            drain(sock, more)
            raise NetworkError("RPC message carries bulk frames its header did not announce")
        return ()
    if type(sizes) is not list:
        drain(sock, more)
        raise NetworkError(f"malformed RPC header: frame sizes {sizes!r} is not a list")
    frames: list[Buffer] = []
    for size in sizes:
        if not more:
            raise NetworkError(f"RPC message announced {len(sizes)} bulk frames, got {len(frames)}")
        frame = sock.recv(copy=False)
        more = frame.more
        data = frame.buffer if type(size) is int and size >= zero_copy_min else frame.bytes
        if len(data) != size:
            drain(sock, more)
            raise NetworkError(f"RPC bulk frame {len(frames)} has {len(data)} bytes, header said {size!r}")
        frames.append(data)
    if more:
        drain(sock, more)
        raise NetworkError(f"RPC message carries more bulk frames than the {len(sizes)} announced")
    return tuple(frames)


def has_more(sock: zmq.Socket) -> bool:
    """Whether the part just received (as bytes, not as a Frame) has more parts after it."""
    return bool(sock.getsockopt(_RCVMORE))


def drain(sock: zmq.Socket, more: bool) -> None:
    """Discard the remaining parts of a message whose last part read had the more-flag ``more``."""
    while more:
        more = sock.recv(copy=False).more
