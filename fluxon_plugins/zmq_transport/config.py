"""Options of ``kind: zmq``."""

from __future__ import annotations

import attrs

from fluxon_core.config import ByteSize, config_field
from fluxon_core.config.fields import non_empty, positive

MiB = 1024 * 1024

DEFAULT_MAX_REQUEST_BYTES = 72 * MiB
"""The FS's largest frame (a 64 MiB ``read_chunk`` answer; writes travel in 8 MiB chunks) plus headroom."""

DEFAULT_MAX_REPLY_BYTES = 1024 * MiB
"""Replies carry whole KV values fetched from another host and whole directory listings."""


@attrs.frozen
class ZmqTransportConfig:
    """Options of the ``zmq`` transport; every field has a default, so the block may be omitted."""

    io_threads: int = config_field(
        doc="libzmq I/O threads of the transport's context (one moves several GB/s).", default=1, check=positive
    )
    zero_copy_min_bytes: ByteSize = config_field(
        doc="bulk frames of at least this size are sent and received without copying.",
        default=ByteSize(64 * 1024),
    )
    connect_timeout_ms: int = config_field(
        doc="a call fails with NetworkError when no connection to its endpoint is made within this long (at most "
        "its deadline), so a caller holding the endpoint of a process that restarted elsewhere resolves it again "
        "instead of waiting out the whole deadline.",
        default=2000,
        check=positive,
    )
    advertise_host: str | None = config_field(
        doc="host written into a server's endpoint when it binds a wildcard address (tcp://0.0.0.0:..., tcp://*:...); "
        "default: the host's primary address (the roles' own advertise settings take precedence).",
        default=None,
        check=non_empty,
    )
    inline_handler_ms: float = config_field(
        doc="a handler runs on the thread that received the call; after this long another thread takes over "
        "receiving so a slow handler does not hold up other calls.",
        default=5.0,
        check=positive,
    )
    max_request_bytes: ByteSize = config_field(
        doc="largest frame a server accepts in a request (header or one bulk frame). libzmq drops the connection "
        "of a peer that announces a larger frame before buffering any of it; a client refuses to send one with "
        "InvalidArgumentError. Default 72 MiB: the FS moves at most 64 MiB per frame. See docs/rpc-limits.md.",
        default=ByteSize(DEFAULT_MAX_REQUEST_BYTES),
        check=positive,
    )
    max_reply_bytes: ByteSize = config_field(
        doc="largest frame a client accepts in a reply (a KV value read from another host travels as one frame); "
        "a server answers InvalidArgumentError instead of sending a larger one. Set the same value on every "
        "process of a cluster.",
        default=ByteSize(DEFAULT_MAX_REPLY_BYTES),
        check=positive,
    )
    max_connections: int = config_field(
        doc="connections one server keeps at once; a connection above it is shut down as soon as it is accepted. "
        "Lowered to half the process's open-files limit (ulimit -n) when that is smaller.",
        default=1024,
        check=positive,
    )
    max_queued_calls: int = config_field(
        doc="calls of slow handlers that may wait for a server thread; the next one is answered ServerBusyError "
        "at once.",
        default=1024,
        check=positive,
    )
    max_queued_bytes: ByteSize = config_field(
        doc="bytes (header and bulk frames) the calls waiting for a server thread may hold together; a call "
        "that would exceed it is answered ServerBusyError at once.",
        default=ByteSize(1024 * MiB),
        check=positive,
    )
