"""Serving the fs master protocol: typed handlers by call, one RPC handler per path."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fluxon_core.kv import KvClient
from fluxon_fs.auth.service import ServiceCredential
from fluxon_fs.master_api.calls import CALLS, CALLS_BY_PATH, Call
from fluxon_fs.master_api.codec import call_of, decode_request, split_service_auth, to_wire

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")

Handler = Callable[[str, RequestT], ReplyT]
"""``handler(caller_instance_key, request) -> reply``."""


class HandlerTable:
    """The handler of every call; a request is decoded, checked, handled and its reply encoded here only.

    A call marked ``service_only`` runs only when its request carries a service token of the caller
    for that call (:mod:`fluxon_fs.auth.service`): a member of the KV plane that is not an fs master or
    fs agent — a mounting process — is refused before its request is decoded.
    """

    def __init__(self, service: ServiceCredential) -> None:
        self._handlers: dict[Call[Any, Any], Handler[Any, Any]] = {}
        self._service = service

    def add(self, call: Call[RequestT, ReplyT], handler: Handler[RequestT, ReplyT]) -> None:
        """Serve ``call`` with ``handler``."""
        if call in self._handlers:
            raise ValueError(f"{call.path} ({call.request.__name__}) already has a handler")
        self._handlers[call] = handler

    def handle(self, path: str, caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The encoded reply to ``payload`` received on ``path`` from ``caller``."""
        token, fields = split_service_auth(payload)
        named = call_of(path, fields)
        if named.service_only:
            # Checked before the fields are decoded: an unauthenticated caller gets no further.
            self._service.verify(token, caller, named.signed_name)
        call, request = decode_request(path, fields)
        return to_wire(self._handlers[call](caller, request))

    def serve(self, store: KvClient) -> None:
        """Register every path on ``store``; each call of the protocol must have its handler."""
        missing = [f"{call.path} ({call.request.__name__})" for call in CALLS if call not in self._handlers]
        if missing:
            raise ValueError(f"no handler for {', '.join(missing)}")
        for path in CALLS_BY_PATH:
            store.rpc_register(path, functools.partial(self.handle, path)).unwrap(f"cannot serve {path}")
