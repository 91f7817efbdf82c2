"""The ``prometheus_metrics`` default plugin: Prometheus text exposition of the metrics registry.

``render_prometheus_text(registry)`` is what any ``/metrics`` route returns (the panel mounts it
with ``CONTENT_TYPE``); ``fluxon_plugins.prometheus_metrics.server.serve_metrics(host, port)`` runs
a standalone endpoint for roles without the panel.
"""

from fluxon_plugins.prometheus_metrics.exposition import CONTENT_TYPE, render_prometheus_text, render_snapshots

__all__ = ["CONTENT_TYPE", "render_prometheus_text", "render_snapshots"]
