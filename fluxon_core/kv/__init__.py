"""The KV service plane: kv master, owners and external clients (see docs/kv.md).

Users build a :class:`FluxonKvClientConfig`, call :func:`new_store` and get a :class:`KvClient`.
"""

from fluxon_core.kv.client import KvClient, KvFuture, MemHolder, as_kv_client, new_store
from fluxon_core.kv.config import FluxonKvClientConfig, KvClientSettings, KvMasterConfig

__all__ = [
    "FluxonKvClientConfig",
    "KvClient",
    "KvClientSettings",
    "KvFuture",
    "KvMasterConfig",
    "MemHolder",
    "as_kv_client",
    "new_store",
]
