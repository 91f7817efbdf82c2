"""Hook implementations of the `etcd_coordination` plugin (backend registration lands with its issue)."""
