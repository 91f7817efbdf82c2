"""Hook implementations of the `prometheus_metrics` plugin (backend registration lands with its issue)."""
