"""Messages that cross the RPC layer, independent of the transport that carries them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

Buffer = bytes | bytearray | memoryview


@attrs.frozen
class RpcMessage:
    """A request or reply: a small JSON-serialisable ``meta`` mapping plus zero-copy bulk ``frames``."""

    meta: Mapping[str, Any] = attrs.field(factory=dict)
    frames: tuple[Buffer, ...] = ()


@attrs.frozen
class RpcCall:
    """What a handler receives: the addressed path, who called, their auth token and the message."""

    path: str
    caller: str
    auth: str
    message: RpcMessage
    deadline_monotonic: float
