"""Hook implementations of the `etcd_state` plugin (backend registration lands with its issue)."""
