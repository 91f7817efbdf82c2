"""The `etcd_state` default plugin."""
