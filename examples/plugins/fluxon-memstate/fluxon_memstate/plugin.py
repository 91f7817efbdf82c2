"""Hook implementations of the ``memstate`` plugin: the module named by its entry point."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_memstate.access_store import MemoryAccessStore, MemoryAccessStoreConfig
from fluxon_memstate.state_store import MemoryStateStore, MemoryStateStoreConfig


@hookimpl
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Offer ``kind: memory`` wherever a state store is selected (e.g. ``transfer_state_store``)."""
    register("memory", MemoryStateStore, config_type=MemoryStateStoreConfig)


@hookimpl
def fluxon_register_access_stores(register: RegisterBackend) -> None:
    """Offer ``kind: memory`` as the fs master's access store (``fluxon_fs.master_panel.access_store``)."""
    register("memory", MemoryAccessStore, config_type=MemoryAccessStoreConfig)
