"""Hook implementations of the `shm_cache` plugin (backend registration lands with its issue)."""
