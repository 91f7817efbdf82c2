"""The `local_coordination` default plugin."""
