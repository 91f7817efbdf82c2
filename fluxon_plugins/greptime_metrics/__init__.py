"""The `greptime_metrics` default plugin."""
