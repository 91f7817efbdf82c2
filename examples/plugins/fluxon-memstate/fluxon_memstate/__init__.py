"""An in-memory :class:`fluxon_core.protocols.StateStore` for Fluxon, packaged as a third-party plugin."""

from fluxon_memstate.store import MemoryStateStore, MemoryStateStoreConfig

__version__ = "0.1.0"

__all__ = ["MemoryStateStore", "MemoryStateStoreConfig"]
