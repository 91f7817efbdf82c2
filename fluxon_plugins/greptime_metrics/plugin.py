"""Hook implementations of the `greptime_metrics` plugin (backend registration lands with its issue)."""
