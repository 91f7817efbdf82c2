"""``fluxon_py.kvclient``: the KV client API the way the published Fluxon guides write it.

Thin adapters over :mod:`fluxon_core.kv`, only where the guides' shapes differ from the native API:

* :meth:`MemHolder.access` returns a :class:`~fluxon_core.result.Result` of the flat dict;
* :meth:`KvClient.close` returns a Result (the client is still a context manager);
* :meth:`KvClient.put_blocking` / :meth:`KvClient.put` take a :class:`PutOptionalArgs`;
* :meth:`KvClient.rpc_call` returns a handle whose ``wait()`` gives the Result.

Everything else passes through to the native :class:`fluxon_core.kv.KvClient` unchanged, and
``FluxonFsPatcher`` / ``install_patcher_from_master`` / ``publish_export`` accept this client as they
accept a native one (through :attr:`KvClient.native_store`).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from fluxon_core import *  # noqa: F403  (Result and the ApiError hierarchy)
from fluxon_core import __all__ as _core_names
from fluxon_core.errors import ApiTimeoutError
from fluxon_core.kv import FluxonKvClientConfig
from fluxon_core.kv import KvClient as NativeKvClient
from fluxon_core.kv import KvFuture as NativeKvFuture
from fluxon_core.kv import MemHolder as NativeMemHolder
from fluxon_core.kv import new_store as native_new_store
from fluxon_core.kv.client import DEFAULT_RPC_TIMEOUT_MS
from fluxon_core.result import Result

THIRD_PARTY_LOGS_ENV = "FLUXON_THIRD_PARTY_LOGS_DIR"


@attrs.frozen
class PutOptionalArgs:
    """Options of a put: fail when the key exists, or tie the key to a lease from ``grant_lease``."""

    reject_if_exists: bool = False
    lease_id: int | None = None


class MemHolder:
    """A value read from the store; :meth:`access` gives a Result of its flat dict."""

    __slots__ = ("native",)

    def __init__(self, native: NativeMemHolder) -> None:
        self.native = native
        """The native holder (``access()`` there returns the dict itself)."""

    def access(self) -> Result[dict[str, Any]]:
        """The stored dict (bytes fields as read-only ``memoryview`` slices), as a Result."""
        return Result.capture(self.native.access)

    def raw(self) -> memoryview:
        """The encoded blob."""
        return self.native.raw()

    @property
    def nbytes(self) -> int:
        """Size of the encoded blob."""
        return self.native.nbytes

    def release(self) -> None:
        """Drop the references this holder keeps."""
        self.native.release()


class GetFuture:
    """The pending result of :meth:`KvClient.get`."""

    def __init__(self, native: NativeKvFuture[NativeMemHolder]) -> None:
        self._native = native

    def wait(self, timeout_ms: float | None = None) -> Result[MemHolder]:
        """The Result once done (an ApiTimeoutError Result when ``timeout_ms`` passes first)."""
        return self._native.wait(None if timeout_ms is None else timeout_ms / 1000).map(MemHolder)

    def done(self) -> bool:
        """True when the result is available."""
        return self._native.done()


class RpcCallHandle:
    """A node-to-node call in flight; :meth:`wait` gives its Result."""

    def __init__(self, future: concurrent.futures.Future[Result[dict[str, Any]]]) -> None:
        self._future = future

    def wait(self, timeout_ms: float | None = None) -> Result[dict[str, Any]]:
        """The reply dict, or the error (handler exception, unknown node or path, timeout), as a Result."""
        try:
            return self._future.result(None if timeout_ms is None else timeout_ms / 1000)
        except concurrent.futures.TimeoutError:
            return Result.err(ApiTimeoutError(f"rpc_call not answered within {timeout_ms} ms"))

    def done(self) -> bool:
        """True when the reply (or the error) arrived."""
        return self._future.done()


class KvClient:
    """A store from :func:`new_store`, with the guides' method shapes (see the module docstring)."""

    def __init__(self, native: NativeKvClient) -> None:
        self._native = native
        self._calls = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fluxon-py-rpc")

    @property
    def native_store(self) -> NativeKvClient:
        """The native client this one adapts."""
        return self._native

    def put_blocking(self, key: str, value: Mapping[str, Any], args: PutOptionalArgs | None = None) -> Result[None]:
        """Store the flat dict ``value`` under ``key``."""
        args = args or PutOptionalArgs()
        return self._native.put_blocking(key, value, reject_if_exists=args.reject_if_exists, lease_id=args.lease_id)

    def put(self, key: str, value: Mapping[str, Any], args: PutOptionalArgs | None = None) -> NativeKvFuture[None]:
        """Store ``value`` in the background; ``.wait()`` gives the Result."""
        args = args or PutOptionalArgs()
        return self._native.put(key, value, reject_if_exists=args.reject_if_exists, lease_id=args.lease_id)

    def get_blocking(self, key: str) -> Result[MemHolder]:
        """The value of ``key`` (KeyNotFoundError when absent)."""
        return self._native.get_blocking(key).map(MemHolder)

    def get(self, key: str) -> GetFuture:
        """Read ``key`` in the background; ``.wait()`` gives the Result."""
        return GetFuture(self._native.get(key))

    def rpc_register(self, path: str, handler: Callable[[str, dict[str, Any]], dict[str, Any]]) -> Result[None]:
        """Serve ``path``: ``handler(from_node_id, payload) -> dict``."""
        return self._native.rpc_register(path, handler)

    def rpc_call(
        self, node_id: str, path: str, payload: Mapping[str, Any], timeout_ms: float = DEFAULT_RPC_TIMEOUT_MS
    ) -> RpcCallHandle:
        """Call ``path`` on member ``node_id`` without blocking; ``.wait()`` gives the Result."""
        return RpcCallHandle(self._calls.submit(self._native.rpc_call, node_id, path, dict(payload), timeout_ms))

    def close(self) -> Result[None]:
        """Leave the cluster and release everything; idempotent."""
        self._calls.shutdown(wait=True)
        return Result.capture(self._native.close)

    def __enter__(self) -> KvClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Every other operation has the same shape in the guides and natively.
        return getattr(self._native, name)

    def __repr__(self) -> str:
        return f"fluxon_py.{self._native!r}"


def new_store(cfg: Any, *, role: str | None = None) -> Result[KvClient]:
    """Create an owner store or attach an external client (see :func:`fluxon_core.kv.new_store`)."""
    return native_new_store(cfg, role=role).map(KvClient)


def third_party_logs_dir() -> str:
    """The directory for logs of third-party services started beside Fluxon (etcd, greptime, TiKV).

    ``$FLUXON_THIRD_PARTY_LOGS_DIR`` when set, else ``~/.fluxon/logs/third_party``; created if missing.
    """
    path = Path(os.environ.get(THIRD_PARTY_LOGS_ENV) or Path.home() / ".fluxon" / "logs" / "third_party")
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


__all__ = [
    *_core_names,
    "FluxonKvClientConfig",
    "GetFuture",
    "KvClient",
    "MemHolder",
    "PutOptionalArgs",
    "RpcCallHandle",
    "new_store",
    "third_party_logs_dir",
]
