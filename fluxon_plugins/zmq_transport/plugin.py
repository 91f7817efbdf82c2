"""Hook implementations of the ``zmq_transport`` plugin."""

from __future__ import annotations

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.transport import ZmqTransport


@hookimpl
def fluxon_register_transports(register: RegisterBackend) -> None:
    """Provide ``kind: zmq``."""
    register("zmq", ZmqTransport, config_type=ZmqTransportConfig)
