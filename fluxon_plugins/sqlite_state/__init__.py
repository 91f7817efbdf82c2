"""The `sqlite_state` default plugin."""
