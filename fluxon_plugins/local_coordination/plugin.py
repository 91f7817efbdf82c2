"""Hook implementations of the `local_coordination` plugin (backend registration lands with its issue)."""
