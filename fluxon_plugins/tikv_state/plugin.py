"""Hook implementations of the `tikv_state` plugin (backend registration lands with its issue)."""
