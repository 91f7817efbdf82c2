"""The `prometheus_metrics` default plugin."""
