"""The `tikv_state` default plugin."""
