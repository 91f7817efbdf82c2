"""``fluxon_py.config``: KV client configuration under the guide's import path."""

from fluxon_core.kv.config import FluxonKvClientConfig, KvMasterConfig

__all__ = ["FluxonKvClientConfig", "KvMasterConfig"]
