"""``fluxon_py.kvclient``: the KV client API under the guide's import path."""

from fluxon_core import *  # noqa: F403  (Result and the ApiError hierarchy)
from fluxon_core import __all__ as _core_names
from fluxon_core.kv import FluxonKvClientConfig, KvClient, MemHolder, new_store

__all__ = [*_core_names, "FluxonKvClientConfig", "KvClient", "MemHolder", "new_store"]
