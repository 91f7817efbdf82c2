"""A pyetcd client over the configured endpoints, with etcd failures translated to Fluxon errors.

Shared by the ``etcd`` coordinator and the ``etcd`` state store, two plugins that may import only
:mod:`fluxon_core`, so the one etcd connection lives here. pyetcd and grpc are optional
(``pip install fluxon[etcd]``): they are imported when a connection is opened, never when this
module is, so the core imports without them.

Every call goes through :meth:`EtcdConnection.errors`, so callers only ever see
:class:`~fluxon_core.errors.ApiError` subclasses: :class:`NetworkError` when etcd is unreachable,
:class:`ApiTimeoutError` when a call exceeds ``timeout_s``, :class:`InvalidArgumentError` for
requests etcd rejects as malformed (for example a transaction with more operations than the
server's ``--max-txn-ops``), :class:`StorageFullError` when etcd's space quota is exhausted and
:class:`StoreClosedError` after :meth:`EtcdConnection.close`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from fluxon_core.config.fields import host_port
from fluxon_core.errors import (
    ApiError,
    ApiTimeoutError,
    InvalidArgumentError,
    KeyNotFoundError,
    NetworkError,
    StorageFullError,
    StoreClosedError,
)

if TYPE_CHECKING:
    import grpc
    import pyetcd

# A failed endpoint is skipped for this long before it is tried again; short, so that a restarted
# etcd is used again quickly (pyetcd's own default is five minutes).
ENDPOINT_RETRY_AFTER_S = 0.5

_GRPC_OPTIONS = [
    # An HTTP proxy from the environment must never sit between us and etcd.
    ("grpc.enable_http_proxy", 0),
    # Reconnect to a restarted etcd within about a second instead of gRPC's default (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

# By gRPC status code name, so that nothing here needs grpc before a connection exists.
_ERRORS_BY_STATUS: dict[str, type[ApiError]] = {
    "UNAVAILABLE": NetworkError,
    "DEADLINE_EXCEEDED": ApiTimeoutError,
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": KeyNotFoundError,
    "RESOURCE_EXHAUSTED": StorageFullError,
}


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:2379"`` for IPv6) -> ``(host, port)``; InvalidArgumentError otherwise."""
    problem = host_port(text) if isinstance(text, str) else "must be a 'host:port' string"
    if problem is None:
        host, _, port_text = text.rpartition(":")
        port = int(port_text)
        if 1 <= port <= 65535:
            return host.strip("[]"), port
        problem = f"has port {port}, expected 1..65535"
    raise InvalidArgumentError(f"etcd endpoint {text!r} {problem}")


class EtcdConnection:
    """One pyetcd client (one gRPC channel per endpoint, failover between them)."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float) -> None:
        import grpc
        import pyetcd
        from pyetcd import exceptions as etcd_exceptions

        if isinstance(endpoints, str) or not endpoints:
            raise InvalidArgumentError(f"etcd endpoints must be a non-empty list of 'host:port', got {endpoints!r}")
        if not timeout_s > 0:
            raise InvalidArgumentError(f"etcd timeout_s must be > 0, got {timeout_s!r}")
        parsed = [parse_endpoint(text) for text in endpoints]
        self.endpoints = tuple(endpoints)
        self.timeout_s = float(timeout_s)
        self._client = pyetcd.MultiEndpointEtcd3Client(
            endpoints=[
                pyetcd.Endpoint(host, port, secure=False, time_retry=ENDPOINT_RETRY_AFTER_S, opts=_GRPC_OPTIONS)
                for host, port in parsed
            ],
            timeout=self.timeout_s,
            failover=True,
        )
        # Kept from the lazy imports above, for the error translation of every call.
        self._rpc_error: type[BaseException] = grpc.RpcError
        self._etcd_error: type[BaseException] = etcd_exceptions.Etcd3Exception
        self._timeout_error: type[BaseException] = etcd_exceptions.ConnectionTimeoutError
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def check_open(self) -> None:
        """Raise :class:`StoreClosedError` after :meth:`close`."""
        if self._closed:
            raise StoreClosedError(f"etcd connection to {', '.join(self.endpoints)} is closed")

    @property
    def client(self) -> pyetcd.MultiEndpointEtcd3Client:
        """The pyetcd client; raises :class:`StoreClosedError` after :meth:`close`."""
        self.check_open()
        return self._client

    def channel(self) -> grpc.Channel:
        """The gRPC channel of the endpoint currently in use (for streams pyetcd does not wrap)."""
        with self.errors("select an endpoint"):
            return self.client.channel

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate pyetcd and gRPC failures raised inside the block into Fluxon errors."""
        self.check_open()
        try:
            yield
        except ApiError:
            raise
        except (self._rpc_error, self._etcd_error) as exc:
            raise self.translate(exc, action) from exc

    def translate(self, exc: BaseException, action: str) -> ApiError:
        """The Fluxon error for a pyetcd or gRPC failure while doing ``action``."""
        where = ", ".join(self.endpoints)
        # pyetcd replaces some gRPC errors by detail-less exceptions; the original is the context.
        rpc_error = exc if isinstance(exc, self._rpc_error) else exc.__context__
        if isinstance(rpc_error, self._rpc_error) and hasattr(rpc_error, "code"):
            code = rpc_error.code()
            details = rpc_error.details() if hasattr(rpc_error, "details") else ""
            error_class = _ERRORS_BY_STATUS.get(code.name, NetworkError)
            return error_class(f"etcd {action} failed at {where}: {code.name}: {details}")
        if isinstance(exc, self._timeout_error):
            return ApiTimeoutError(f"etcd {action} timed out after {self.timeout_s}s at {where}")
        return NetworkError(f"etcd {action} failed at {where}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Close the gRPC channels; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()
