"""Hook implementations of the ``prometheus_metrics`` plugin."""

from __future__ import annotations

from typing import Any

from fluxon_core.hookspecs import RegisterBackend, hookimpl
from fluxon_core.monitoring import PrometheusConfig


def create_prometheus_sink(config: PrometheusConfig | None) -> Any:
    """Factory of ``kind: prometheus``; imports the HTTP server only when a sink is wanted."""
    from fluxon_plugins.prometheus_metrics.sink import PrometheusSink

    return PrometheusSink(config)


@hookimpl
def fluxon_register_metrics_sinks(register: RegisterBackend) -> None:
    """Provide ``kind: prometheus``."""
    register("prometheus", create_prometheus_sink, config_type=PrometheusConfig)
