"""Options of ``kind: zmq``."""

from __future__ import annotations

import attrs

from fluxon_core.config import ByteSize, config_field
from fluxon_core.config.fields import non_empty, positive


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
