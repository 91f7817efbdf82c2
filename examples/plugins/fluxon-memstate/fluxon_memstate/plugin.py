"""Hook implementations of the ``memstate`` plugin: the module named by its entry point."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_memstate.store import MemoryStateStore, MemoryStateStoreConfig


@hookimpl
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Offer ``kind: memory`` wherever a state store is selected (e.g. ``transfer_state_store``)."""
    register("memory", MemoryStateStore, config_type=MemoryStateStoreConfig)
