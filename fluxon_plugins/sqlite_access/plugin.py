"""Hook implementations of the ``sqlite_access`` plugin."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig


@hookimpl
def fluxon_register_access_stores(register: RegisterBackend) -> None:
    """Provide access store ``kind: sqlite``."""
    register("sqlite", SqliteAccessStore, config_type=SqliteAccessStoreConfig)
