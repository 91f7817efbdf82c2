"""What the same-host write channel says: the agent's address and the request and reply messages.

One request is one ``SOCK_SEQPACKET`` message: a small JSON header plus exactly one fd (the sealed
memfd holding the payload at offset 0). One reply is one message: ``{}`` or ``{"error": ...}``
with the error encoded as the RPC layer encodes it, so it comes back typed.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.rpc import decode_error, encode_error

MAX_HEADER_BYTES = 16 * 1024
"""Largest request header (names, offset, token); a longer message is refused."""
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
"""Largest payload of one request (as the RPC path's largest request frame)."""


@attrs.frozen
class SameHostAddress:
    """Where an agent's channel listens and who must answer there.

    ``name`` is an abstract ``AF_UNIX`` name (no leading NUL here), random per agent run and scoped
    to the agent's network namespace; ``pid``/``uid`` are what ``SO_PEERCRED`` must report for the
    listening socket before a client sends anything (a process that took the name over after the
    agent exited is not the agent).
    """

    name: str
    pid: int
    uid: int

    def to_wire(self) -> dict[str, Any]:
        """The JSON form carried in a ``session_open`` answer."""
        return {"name": self.name, "pid": self.pid, "uid": self.uid}

    @classmethod
    def from_wire(cls, value: Any) -> SameHostAddress | None:
        """Inverse of :meth:`to_wire`; None for anything malformed (the client then uses the RPC path)."""
        if not isinstance(value, dict):
            return None
        name, pid, uid = value.get("name"), value.get("pid"), value.get("uid")
        if not (isinstance(name, str) and name and _is_int(pid) and _is_int(uid)):
            return None
        return cls(name, pid, uid)


@attrs.frozen
class WriteRequest:
    """One ``session_write`` over the channel (the payload is the fd that travels with it)."""

    export_name: str
    session_id: str
    offset: int
    length: int
    auth: str
    caller: str


def encode_request(request: WriteRequest) -> bytes:
    """The header of ``request``."""
    return json.dumps(attrs.asdict(request), separators=(",", ":")).encode()


def decode_request(header: bytes) -> WriteRequest:
    """The request in ``header``; anything malformed is an :class:`InvalidArgumentError` naming the field."""
    try:
        fields = json.loads(header)
    except ValueError:
        raise InvalidArgumentError("same-host write: the header is not JSON") from None
    if not isinstance(fields, dict):
        raise InvalidArgumentError("same-host write: the header is not an object")
    checks = {
        "export_name": lambda v: isinstance(v, str) and v != "",
        "session_id": lambda v: isinstance(v, str) and v != "",
        "offset": lambda v: _is_int(v) and v >= 0,
        "length": lambda v: _is_int(v) and 0 < v <= MAX_PAYLOAD_BYTES,
        "auth": lambda v: isinstance(v, str),
        "caller": lambda v: isinstance(v, str),
    }
    for field, valid in checks.items():
        if not valid(fields.get(field)):
            raise InvalidArgumentError(f"same-host write: bad or missing {field}: {fields.get(field)!r}")
    return WriteRequest(**{field: fields[field] for field in checks})


def encode_reply(error: BaseException | None) -> bytes:
    """The reply: success, or ``error`` typed as the RPC layer sends it."""
    return b"{}" if error is None else json.dumps({"error": encode_error(error)}).encode()


def raise_reply(reply: bytes) -> None:
    """Return on success; raise the agent's error (a malformed reply is a NetworkError)."""
    try:
        fields = json.loads(reply)
    except ValueError:
        fields = None
    if fields == {}:
        return
    raise decode_error(fields.get("error") if isinstance(fields, dict) else fields)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
