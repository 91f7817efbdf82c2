"""The `zmq_transport` default plugin."""
