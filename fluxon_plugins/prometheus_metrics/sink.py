"""The ``prometheus`` metrics sink: the registry as Prometheus text on a role's own ``/metrics`` endpoint."""

from __future__ import annotations

import threading

from fluxon_core.metrics import Labels, MetricsRegistry, RecordedSamples, merge_snapshots
from fluxon_core.metrics_exposition import render_snapshots
from fluxon_core.monitoring import PrometheusConfig
from fluxon_plugins.prometheus_metrics.server import MetricsHttpServer, serve_metrics, split_listen_addr


class PrometheusSink:
    """Serves the attached registry, plus values handed to :meth:`record`, at ``listen_addr``/metrics.

    Nothing is pushed: each scrape renders the registry at that moment. Constant labels are not
    added — the scraper's target labels identify the role.
    """

    def __init__(self, config: PrometheusConfig | None = None) -> None:
        self.config = config or PrometheusConfig()
        self._recorded = RecordedSamples()
        self._registry: MetricsRegistry | None = None
        self._server: MetricsHttpServer | None = None
        self._lock = threading.Lock()
        self.url: str | None = None
        """URL of the endpoint once attached."""

    def attach(self, registry: MetricsRegistry, constant_labels: Labels) -> None:
        """Start the endpoint serving ``registry``; raises OSError when the address cannot be bound."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the prometheus sink is already attached")
            self._registry = registry
            host, port = split_listen_addr(self.config.listen_addr)
            self._server, self.url = serve_metrics(host, port, self.render)

    def render(self) -> str:
        """The exposition text: the attached registry, then the recorded values."""
        registry_part = self._registry.collect() if self._registry is not None else []
        return render_snapshots(merge_snapshots(registry_part, self._recorded.collect()))

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        """Serve ``name{labels} value`` from now on, as a counter or gauge (the last value recorded wins)."""
        self._recorded.record(name, value, labels, kind)

    def close(self) -> None:
        """Stop the endpoint; idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()
