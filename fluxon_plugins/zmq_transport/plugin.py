"""Hook implementations of the `zmq_transport` plugin (backend registration lands with its issue)."""
