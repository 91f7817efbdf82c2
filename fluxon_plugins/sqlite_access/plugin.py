"""Hook implementations of the `sqlite_access` plugin (backend registration lands with its issue)."""
