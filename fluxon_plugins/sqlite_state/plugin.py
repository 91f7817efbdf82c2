"""Hook implementations of the ``sqlite_state`` plugin."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.sqlite_state.store import SqliteStateStore, SqliteStateStoreConfig


@hookimpl
def fluxon_register_state_stores(register: RegisterBackend) -> None:
    """Provide ``kind: sqlite``."""
    register("sqlite", SqliteStateStore, config_type=SqliteStateStoreConfig)
