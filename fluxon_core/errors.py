"""The one error hierarchy of Fluxon.

Every failure that crosses an API boundary is an :class:`ApiError` subclass with a stable
``code``; the RPC layer ships the code over the wire so the caller gets the same class back.
"""

from __future__ import annotations

import errno as errno_module


class ApiError(Exception):
    """Base class of every typed Fluxon error."""

    code: str = "api_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.message}" if self.message else type(self).__name__


class InvalidArgumentError(ApiError):
    """A caller passed a value that can never be valid (bad key, bad config, bad type)."""

    code = "invalid_argument"


class StoreInitFailedError(ApiError):
    """``new_store`` could not create or attach to a store."""

    code = "store_init_failed"


class KeyNotFoundError(ApiError):
    """The key does not exist (or its only replica left the cluster)."""

    code = "key_not_found"


class KeyAlreadyExistsError(ApiError):
    """``put`` with ``reject_if_exists`` found the key present."""

    code = "key_already_exists"


class StorageFullError(ApiError):
    """The value does not fit in the pool budget even after eviction."""

    code = "storage_full"


class NetworkError(ApiError):
    """A peer is unknown, unreachable, or answered with a malformed message."""

    code = "network_error"


class ApiTimeoutError(ApiError):
    """The operation did not finish before its deadline."""

    code = "timeout"


class StoreClosedError(ApiError):
    """The store (or client) was closed; no further calls are possible."""

    code = "store_closed"


class ServerBusyError(ApiError):
    """The server already holds as many waiting calls as it may and refused this one; retry after a pause."""

    code = "server_busy"


class UnknownPathError(ApiError):
    """An RPC addressed a path that no handler serves on the target node."""

    code = "unknown_path"


class RemoteHandlerError(ApiError):
    """An RPC handler raised; carries the remote exception type name and errno if any."""

    code = "remote_handler_error"

    def __init__(self, message: str = "", remote_type: str = "", errno: int | None = None) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.errno = errno


class PermissionDeniedError(ApiError, PermissionError):
    """The caller's identity may not perform the operation (``errno`` is EACCES, like a local refusal)."""

    code = "permission_denied"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.errno = errno_module.EACCES


ERROR_CLASSES_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        ApiError,
        InvalidArgumentError,
        StoreInitFailedError,
        KeyNotFoundError,
        KeyAlreadyExistsError,
        StorageFullError,
        NetworkError,
        ApiTimeoutError,
        StoreClosedError,
        ServerBusyError,
        UnknownPathError,
        RemoteHandlerError,
        PermissionDeniedError,
    )
}
