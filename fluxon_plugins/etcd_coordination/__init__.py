"""The `etcd_coordination` default plugin."""
