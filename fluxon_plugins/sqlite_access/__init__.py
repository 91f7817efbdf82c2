"""The `sqlite_access` default plugin."""
