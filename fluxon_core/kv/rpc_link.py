"""Authenticated RPC for the KV plane: every call signed, every server checking, over the configured transport."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fluxon_core.kv.auth import RpcAuthenticator
from fluxon_core.protocols import RpcServer, Transport
from fluxon_core.rpc_types import Buffer, RpcCall, RpcMessage

Handler = Callable[[RpcCall], RpcMessage]


def kv_transport() -> Transport:
    """The process-wide transport (the default ``zmq`` kind)."""
    from fluxon_core.rpc import default_transport

    transport: Transport = default_transport()
    return transport


class AuthedRpc:
    """Signs outgoing calls as ``caller`` and binds servers that refuse unsigned calls."""

    def __init__(self, authenticator: RpcAuthenticator, caller: str, transport: Transport | None = None) -> None:
        self.authenticator = authenticator
        self.caller = caller
        self._transport = transport or kv_transport()
        self._client = self._transport.new_client()

    def call(
        self,
        endpoint: str,
        path: str,
        meta: Mapping[str, Any] | None = None,
        frames: Sequence[Buffer] = (),
        *,
        timeout_s: float,
    ) -> RpcMessage:
        """Call ``path`` at ``endpoint``; typed ApiErrors propagate."""
        return self._client.call(
            endpoint,
            path,
            RpcMessage(meta=dict(meta or {}), frames=tuple(frames)),
            timeout_s=timeout_s,
            caller=self.caller,
            auth=self.authenticator.token(self.caller, path),
        )

    def bind(self, address: str, handlers: Mapping[str, Handler], *, worker_threads: int) -> RpcServer:
        """A server at ``address`` serving ``handlers``, checking every call's token first."""
        server = self._transport.bind_server(
            address, worker_threads=worker_threads, authenticate=self.authenticator.verify
        )
        for path, handler in handlers.items():
            server.register(path, handler)
        return server

    def close(self) -> None:
        """Release the client; idempotent."""
        self._client.close()


def reply(meta: Mapping[str, Any] | None = None, frames: Sequence[Buffer] = ()) -> RpcMessage:
    """A reply message."""
    return RpcMessage(meta=dict(meta or {}), frames=tuple(frames))
