"""Hook implementations of the ``sqlite_state`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl
from fluxon_plugins.sqlite_state.store import SqliteStateStore, SqliteStateStoreConfig


@hookimpl
def fluxon_register_state_stores(register: Any) -> None:
    """Provide ``kind: sqlite``."""
    register("sqlite", SqliteStateStore, config_type=SqliteStateStoreConfig)
