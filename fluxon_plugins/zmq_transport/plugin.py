"""Hook implementations of the ``zmq_transport`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import hookimpl
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.transport import ZmqTransport


@hookimpl
def fluxon_register_transports(register: Any) -> None:
    """Provide ``kind: zmq``."""
    register("zmq", ZmqTransport, config_type=ZmqTransportConfig)
