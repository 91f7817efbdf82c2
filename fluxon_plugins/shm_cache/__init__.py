"""The `shm_cache` default plugin."""
