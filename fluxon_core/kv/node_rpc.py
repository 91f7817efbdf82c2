"""Node-to-node RPC addressed by ``instance_key`` (``KvClient.rpc_register`` / ``rpc_call``).

Every member serves its own endpoint. A call resolves the target's endpoint through the master
(cached; dropped when the endpoint stops answering as that member) and carries the target's name,
so a call that reaches a different process on a reused address is refused and resolved again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from fluxon_core.errors import InvalidArgumentError, NetworkError, UnknownPathError
from fluxon_core.kv.protocol import RESERVED_PREFIX, MasterPath, MemberInfo, NodePath
from fluxon_core.kv.rpc_link import AuthedRpc, reply
from fluxon_core.protocols import RpcServer
from fluxon_core.rpc_types import RpcCall, RpcMessage

TARGET_FIELD = "_fluxon_to"
DictHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
BytesHandler = Callable[[str, bytes], bytes]
MessageHandler = Callable[[RpcCall], RpcMessage]
Resolver = Callable[[str], MemberInfo]


def check_user_path(path: Any) -> str:
    """A user RPC path: a string starting with '/', outside the plane's reserved prefix."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError(f"RPC path must be a string starting with '/', got {path!r}")
    if path.startswith(RESERVED_PREFIX):
        raise InvalidArgumentError(f"RPC path {path!r} is reserved for the KV plane ({RESERVED_PREFIX}…)")
    return path


class NodeRpc:
    """User handlers on this member's server, and calls to other members by name."""

    def __init__(self, instance_key: str, rpc: AuthedRpc, server: RpcServer, resolve: Resolver) -> None:
        self.instance_key = instance_key
        self._rpc = rpc
        self._server = server
        self._resolve = resolve
        self._endpoints: dict[str, str] = {}
        self._lock = threading.Lock()
        server.register(NodePath.PING, self._on_ping)

    def _on_ping(self, call: RpcCall) -> RpcMessage:
        return reply({"instance_key": self.instance_key})

    # -- serving ----------------------------------------------------------------------------------

    def _guard(self, call: RpcCall) -> None:
        target = call.message.meta.get(TARGET_FIELD)
        if target is not None and target != self.instance_key:
            raise NetworkError(f"this endpoint now serves {self.instance_key!r}, not {target!r}")

    def register_message(self, path: str, handler: MessageHandler) -> None:
        """Serve ``path`` with a handler of the raw message."""
        check_user_path(path)

        def serve(call: RpcCall) -> RpcMessage:
            self._guard(call)
            return handler(call)

        self._server.register(path, serve)

    def register_dict(self, path: str, handler: DictHandler) -> None:
        """Serve ``path`` with ``handler(from_instance_key, dict) -> dict``."""

        def serve(call: RpcCall) -> RpcMessage:
            payload = call.message.meta.get("payload")
            result = handler(call.caller, dict(payload) if isinstance(payload, Mapping) else {})
            if not isinstance(result, Mapping):
                raise InvalidArgumentError(f"handler of {path} must return a dict, returned {type(result).__name__}")
            return reply({"payload": dict(result)})

        self.register_message(path, serve)

    def register_bytes(self, path: str, handler: BytesHandler) -> None:
        """Serve ``path`` with ``handler(from_instance_key, bytes) -> bytes``."""

        def serve(call: RpcCall) -> RpcMessage:
            frames = call.message.frames
            payload = bytes(frames[0]) if frames else b""
            result = handler(call.caller, payload)
            if not isinstance(result, bytes | bytearray | memoryview):
                raise InvalidArgumentError(f"handler of {path} must return bytes, returned {type(result).__name__}")
            return reply(frames=[result])

        self.register_message(path, serve)

    def unregister(self, path: str) -> None:
        """Stop serving ``path``."""
        self._server.unregister(check_user_path(path))

    # -- calling ----------------------------------------------------------------------------------

    def _endpoint_of(self, instance_key: str) -> str:
        with self._lock:
            cached = self._endpoints.get(instance_key)
        if cached is not None:
            return cached
        endpoint = self._resolve(instance_key).endpoint
        with self._lock:
            self._endpoints[instance_key] = endpoint
        return endpoint

    def forget(self, instance_key: str) -> None:
        """Drop the cached endpoint of ``instance_key``."""
        with self._lock:
            self._endpoints.pop(instance_key, None)

    def call_message(self, instance_key: str, path: str, message: RpcMessage, timeout_s: float) -> RpcMessage:
        """Call ``path`` on member ``instance_key``; typed errors propagate."""
        check_user_path(path)
        if not isinstance(instance_key, str) or not instance_key:
            raise InvalidArgumentError(f"instance_key must be a non-empty string, got {instance_key!r}")
        meta = {**message.meta, TARGET_FIELD: instance_key}
        deadline = time.monotonic() + timeout_s
        endpoint = self._endpoint_of(instance_key)
        try:
            return self._rpc.call(endpoint, path, meta, message.frames, timeout_s=timeout_s)
        except (NetworkError, UnknownPathError) as exc:
            # The member may have restarted at another endpoint (a call to a dead endpoint fails once no
            # connection comes within the transport's connect timeout, unsent): resolve once more and
            # retry, within what is left of the deadline, only if it moved.
            self.forget(instance_key)
            fresh = self._endpoint_of(instance_key)
            remaining = deadline - time.monotonic()
            if fresh == endpoint or remaining <= 0:
                raise exc from None
        return self._rpc.call(fresh, path, meta, message.frames, timeout_s=remaining)

    def call_dict(self, instance_key: str, path: str, payload: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        """Call a dict handler."""
        if not isinstance(payload, Mapping):
            raise InvalidArgumentError(f"rpc_call payload must be a dict, got {type(payload).__name__}")
        answer = self.call_message(instance_key, path, RpcMessage(meta={"payload": dict(payload)}), timeout_s)
        result = answer.meta.get("payload")
        return dict(result) if isinstance(result, Mapping) else {}

    def call_bytes(self, instance_key: str, path: str, payload: bytes, timeout_s: float) -> bytes:
        """Call a bytes handler."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidArgumentError(f"rpc_call_bytes payload must be bytes, got {type(payload).__name__}")
        answer = self.call_message(instance_key, path, RpcMessage(frames=(payload,)), timeout_s)
        return bytes(answer.frames[0]) if answer.frames else b""


def resolver_via(call_master: Callable[..., RpcMessage]) -> Resolver:
    """A resolver asking the master (directly or through the owner) for a member's record."""

    def resolve(instance_key: str) -> MemberInfo:
        return MemberInfo.from_meta(call_master(MasterPath.RESOLVE, {"instance_key": instance_key}).meta.get("member"))

    return resolve
