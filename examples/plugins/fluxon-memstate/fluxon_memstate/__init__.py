"""In-memory backends for Fluxon, packaged as a third-party plugin: a state store and an access store."""

from fluxon_memstate.access_store import MemoryAccessStore, MemoryAccessStoreConfig
from fluxon_memstate.state_store import MemoryStateStore, MemoryStateStoreConfig

__version__ = "0.1.0"

__all__ = ["MemoryAccessStore", "MemoryAccessStoreConfig", "MemoryStateStore", "MemoryStateStoreConfig"]
