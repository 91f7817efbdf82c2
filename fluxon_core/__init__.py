"""Fluxon core: hookspecs, plugin manager, strict config, errors, RPC API, KV plane and role runtime."""

from fluxon_core.errors import (
    ApiError,
    ApiTimeoutError,
    InvalidArgumentError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    NetworkError,
    StorageFullError,
    StoreClosedError,
    StoreInitFailedError,
)
from fluxon_core.result import Result

__all__ = [
    "ApiError",
    "ApiTimeoutError",
    "InvalidArgumentError",
    "KeyAlreadyExistsError",
    "KeyNotFoundError",
    "NetworkError",
    "Result",
    "StorageFullError",
    "StoreClosedError",
    "StoreInitFailedError",
]
