"""``fluxon_py.kvclient``: the KV client API under the guide's import path."""

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
from fluxon_core.kv import FluxonKvClientConfig, KvClient, MemHolder, new_store
from fluxon_core.result import Result

__all__ = [
    "ApiError",
    "ApiTimeoutError",
    "FluxonKvClientConfig",
    "InvalidArgumentError",
    "KeyAlreadyExistsError",
    "KeyNotFoundError",
    "KvClient",
    "MemHolder",
    "NetworkError",
    "Result",
    "StorageFullError",
    "StoreClosedError",
    "StoreInitFailedError",
    "new_store",
]
