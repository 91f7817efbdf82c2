"""Hook implementations of the ``sqlite_access`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig


@hookimpl
def fluxon_register_access_stores(register: Any) -> None:
    """Provide access store ``kind: sqlite``."""
    register("sqlite", SqliteAccessStore, config_type=SqliteAccessStoreConfig)
