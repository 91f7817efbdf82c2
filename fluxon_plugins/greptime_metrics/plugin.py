"""Hook implementations of the ``greptime_metrics`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_core.monitoring import GreptimeConfig


def create_greptime_sink(config: GreptimeConfig | None) -> Any:
    """Factory of ``kind: greptime``; imports the HTTP client only when a sink is wanted."""
    from fluxon_plugins.greptime_metrics.sink import GreptimeSink

    return GreptimeSink(config)


@hookimpl
def fluxon_register_metrics_sinks(register: RegisterBackend) -> None:
    """Provide ``kind: greptime``."""
    register("greptime", create_greptime_sink, config_type=GreptimeConfig)
