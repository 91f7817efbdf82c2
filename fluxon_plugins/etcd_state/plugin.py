"""Hook implementations of the ``etcd_state`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.etcd_state.config import EtcdStateStoreConfig


def create_etcd_state_store(options: EtcdStateStoreConfig) -> Any:
    """Build the store; pyetcd is imported only when ``kind: etcd`` is selected."""
    from fluxon_plugins.etcd_state.store import EtcdStateStore

    return EtcdStateStore(options)


@hookimpl
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Provide ``kind: etcd`` (transfer job state in an etcd v3 cluster)."""
    register("etcd", create_etcd_state_store, config_type=EtcdStateStoreConfig)
