"""The ``greptime_metrics`` default plugin: pushes the metrics registry to GreptimeDB (InfluxDB line protocol over HTTP)."""
