"""Hook implementations of the ``tikv_state`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.tikv_state.config import TikvStateStoreConfig


def create_tikv_state_store(options: TikvStateStoreConfig) -> Any:
    """Build the store; tikv_client is imported only when ``kind: tikv`` is selected."""
    from fluxon_plugins.tikv_state.store import TikvStateStore

    return TikvStateStore(options)


@hookimpl
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Provide ``kind: tikv`` (transfer job state in a TiKV cluster, through its transactional API)."""
    register("tikv", create_tikv_state_store, config_type=TikvStateStoreConfig)
