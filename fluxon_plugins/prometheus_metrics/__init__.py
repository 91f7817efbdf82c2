"""The ``prometheus_metrics`` default plugin: a role's own ``/metrics`` endpoint in Prometheus text.

The text format itself lives in :mod:`fluxon_core.metrics_exposition`, shared with the panel's
``/metrics`` route; ``fluxon_plugins.prometheus_metrics.server.serve_metrics(host, port)`` runs a
standalone endpoint for roles without the panel.
"""
