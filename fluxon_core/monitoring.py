"""The ``monitoring:`` block of a role's config, and starting its metrics sinks.

A role calls ``handle = start_monitoring(config.monitoring, role="fs_agent", instance_key=key)``
once it is ready and ``handle.close()`` when it stops. Sinks are built through the
``fluxon_register_metrics_sinks`` hook (``get_backends().create("metrics_sink", kind, options)``),
so the defaults and third-party sinks are set up the same way.

How a sink gets the metrics:

* a sink with an ``attach(registry, constant_labels)`` method (:class:`AttachableSink`; both
  default sinks) is handed the registry and reads it itself — the ``prometheus`` sink renders it
  per scrape, the ``greptime`` sink pushes a snapshot every ``push_interval_s``;
* a sink offering only the :class:`~fluxon_core.protocols.MetricsSink` protocol gets every sample
  through ``record(name, value, labels, kind)`` every ``record_interval_s`` (and once more at
  close), with the constant labels ``role`` and ``instance_key`` added.

Example::

    monitoring:
      prometheus: {listen_addr: "0.0.0.0:9464"}   # the default is 127.0.0.1:0 (a free port); null turns it off
      greptime: {endpoint: "http://greptime:4000", database: fluxon, push_interval_s: 15}
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import attrs

from fluxon_core.config.backend import BackendConfig
from fluxon_core.config.fields import config_field, host_port, http_url, identifier, non_empty, positive
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import Labels, MetricsRegistry, get_registry
from fluxon_core.protocols import MetricsSink

log = get_logger("fluxon.monitoring")


@attrs.frozen
class PrometheusConfig:
    """Options of the ``prometheus`` metrics sink: where its own ``/metrics`` endpoint listens."""

    listen_addr: str = config_field(
        doc="host:port of this role's Prometheus text endpoint (GET /metrics); port 0 picks a free port, "
        "logged at start and reported by the monitoring handle.",
        default="127.0.0.1:0",
        check=host_port,
    )


@attrs.frozen
class GreptimeConfig:
    """Options of the ``greptime`` metrics sink: a GreptimeDB HTTP endpoint to push snapshots to."""

    endpoint: str = config_field(
        doc="base URL of GreptimeDB's HTTP API; samples go to <endpoint>/v1/influxdb/write.",
        default="http://127.0.0.1:4000",
        check=http_url,
    )
    database: str = config_field(doc="GreptimeDB database (schema) to write into.", default="public", check=identifier)
    push_interval_s: float = config_field(
        doc="seconds between two pushes of the whole registry.", default=10.0, check=positive
    )
    timeout_s: float = config_field(doc="HTTP timeout of one push, in seconds.", default=5.0, check=positive)
    max_backoff_s: float = config_field(
        doc="after failed pushes the interval doubles up to this many seconds; it resets on success.",
        default=120.0,
        check=positive,
    )
    username: str | None = config_field(
        doc="user for HTTP Basic authentication (GreptimeDB with auth enabled); needs password.",
        default=None,
        check=non_empty,
    )
    password: str | None = config_field(doc="password for HTTP Basic authentication; needs username.", default=None)

    def __config_validate__(self) -> list[tuple[str, str]]:
        """Username and password come together."""
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            return [(missing, "is required when the other credential is given (username and password go together)")]
        if self.max_backoff_s < self.push_interval_s:
            return [("max_backoff_s", f"must be >= push_interval_s ({self.push_interval_s})")]
        return []


@attrs.frozen
class MonitoringConfig:
    """The ``monitoring:`` block of every role: which metrics sinks the role starts."""

    prometheus: PrometheusConfig | None = config_field(
        doc="serve this role's metrics as Prometheus text on /metrics; null turns the endpoint off "
        "(the fs master panel serves /metrics as well).",
        default=PrometheusConfig(),
    )
    greptime: GreptimeConfig | None = config_field(
        doc="push this role's metrics to GreptimeDB (InfluxDB line protocol over HTTP); off when absent.",
        default=None,
    )
    sinks: list[BackendConfig] = config_field(
        doc="further metrics sinks by kind (third-party plugins), each `{kind: NAME, NAME: {options}}`.",
        factory=list,
        backend="metrics_sink",
    )
    record_interval_s: float = config_field(
        doc="seconds between two rounds of record() calls to sinks that do not read the registry themselves.",
        default=10.0,
        check=positive,
    )


@runtime_checkable
class AttachableSink(Protocol):
    """A metrics sink that reads the registry itself (both default sinks)."""

    def attach(self, registry: MetricsRegistry, constant_labels: Labels) -> None:
        """Start serving or pushing ``registry``; ``constant_labels`` (role, instance_key) may be added to samples."""
        ...

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        """Report a value kept outside the registry along with it."""
        ...

    def close(self) -> None:
        """Flush and stop; idempotent."""
        ...


class _RecordPump:
    """Feeds registry snapshots to record-only sinks from one daemon thread."""

    def __init__(
        self,
        registry: MetricsRegistry,
        constant_labels: Labels,
        sinks: Sequence[tuple[str, MetricsSink]],
        interval_s: float,
    ) -> None:
        self._registry = registry
        self._constant = dict(constant_labels)
        self._sinks = list(sinks)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fluxon-metrics-record", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.pump()

    def pump(self) -> None:
        """One round: every sample to every sink; a sink that raises is logged and skipped for this round."""
        try:
            snapshots = self._registry.collect()
        except Exception:
            log.exception("metrics: collecting the registry failed")
            return
        for where, sink in self._sinks:
            try:
                for snapshot in snapshots:
                    kind = snapshot.sample_kind()
                    for sample in snapshot.samples:
                        sink.record(sample.name, sample.value, {**self._constant, **dict(sample.labels)}, kind)
            except Exception:
                log.exception("metrics sink %s: record() raised", where)

    def stop(self) -> None:
        """Stop the thread and pump a last round."""
        self._stop.set()
        self._thread.join()
        self.pump()


class MonitoringHandle:
    """The sinks a role started; ``close()`` flushes and stops them (idempotent; also a context manager)."""

    def __init__(self, sinks: dict[str, MetricsSink], pump: _RecordPump | None) -> None:
        self.sinks = sinks
        """Sinks by where they were configured: ``prometheus``, ``greptime``, ``sinks[0]``, ..."""
        self._pump = pump
        self._closed = False
        self._lock = threading.Lock()

    @property
    def prometheus_url(self) -> str | None:
        """URL of this role's ``/metrics`` endpoint, when the prometheus sink is on."""
        url = getattr(self.sinks.get("prometheus"), "url", None)
        return url if isinstance(url, str) else None

    def close(self) -> None:
        """Pump a last round to record-only sinks, then close every sink; problems are logged, never raised."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pump is not None:
            self._pump.stop()
        _close_all(self.sinks)

    def __enter__(self) -> MonitoringHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _close_all(sinks: dict[str, MetricsSink]) -> None:
    for where, sink in reversed(sinks.items()):
        try:
            sink.close()
        except Exception:
            log.exception("metrics sink %s: close() raised", where)


def _configured_sinks(config: MonitoringConfig) -> list[tuple[str, str, Any]]:
    """(where, kind, options) of every sink the config asks for."""
    wanted: list[tuple[str, str, Any]] = []
    if config.prometheus is not None:
        wanted.append(("prometheus", "prometheus", config.prometheus))
    if config.greptime is not None:
        wanted.append(("greptime", "greptime", config.greptime))
    for index, block in enumerate(config.sinks):
        wanted.append((f"sinks[{index}]", block.kind, block.options))
    return wanted


_sinks_disabled = threading.Event()


def disable_sinks_in_process() -> None:
    """From now on :func:`start_monitoring` starts no sink in this process (``test_spec_config.disable_observability``)."""
    _sinks_disabled.set()


def start_monitoring(
    config: MonitoringConfig | None, role: str, instance_key: str, registry: MetricsRegistry | None = None
) -> MonitoringHandle:
    """Create and start the sinks ``config`` selects for this role (None means the defaults).

    ``role`` and ``instance_key`` become the constant labels pushed with every sample. Raises
    (after closing what was already started) when a sink cannot be built or started, e.g. the
    Prometheus port is taken: the error names the config location (``monitoring.prometheus``).
    """
    from fluxon_core.plugins import get_backends

    config = MonitoringConfig() if config is None else config
    for name, value in (("role", role), ("instance_key", instance_key)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"start_monitoring: {name} must be a non-empty string, got {value!r}")
    if _sinks_disabled.is_set():
        log.info("metrics for %s %s: no sinks (test_spec_config.disable_observability)", role, instance_key)
        return MonitoringHandle({}, None)
    registry = get_registry() if registry is None else registry
    constant_labels: Labels = (("role", role), ("instance_key", instance_key))
    started: dict[str, MetricsSink] = {}
    record_only: list[tuple[str, MetricsSink]] = []
    try:
        for where, kind, options in _configured_sinks(config):
            try:
                sink = get_backends().create("metrics_sink", kind, options)
                started[where] = sink
                if isinstance(sink, AttachableSink):
                    sink.attach(registry, constant_labels)
                else:
                    record_only.append((where, sink))
            except Exception as exc:
                raise RuntimeError(f"monitoring.{where} ({kind}): {type(exc).__name__}: {exc}") from exc
    except BaseException:
        _close_all(started)
        raise
    pump = _RecordPump(registry, constant_labels, record_only, config.record_interval_s) if record_only else None
    handle = MonitoringHandle(started, pump)
    log.info(
        "metrics for %s %s: %s%s",
        role,
        instance_key,
        ", ".join(started) or "no sinks",
        f"; Prometheus text at {handle.prometheus_url}" if handle.prometheus_url else "",
    )
    return handle
