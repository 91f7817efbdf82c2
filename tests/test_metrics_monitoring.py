"""The ``monitoring:`` config block and ``start_monitoring``: which sinks start, how record-only sinks are fed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from fluxon_core.config import BackendConfig, ConfigError, load_yaml_text
from fluxon_core.config.fields import config_field, positive
from fluxon_core.hookspecs import hookimpl
from fluxon_core.metrics import CounterSpec, HistogramSpec, MetricsRegistry
from fluxon_core.monitoring import GreptimeConfig, MonitoringConfig, PrometheusConfig, start_monitoring
from fluxon_core.plugins import get_plugin_manager
from tests.support.poll import wait_until


@attrs.frozen
class _ListSinkOptions:
    label: str = config_field(doc="a name for the test", default="list")
    fail_on_create: bool = config_field(doc="raise in the factory", default=False)
    interval_hint: int = config_field(doc="unused", default=1, check=positive)


class ListSink:
    """A third-party style sink: only the MetricsSink protocol (record/close), no attach()."""

    instances: list[ListSink] = []

    def __init__(self, options: _ListSinkOptions) -> None:
        if options.fail_on_create:
            raise RuntimeError("cannot reach the backend")
        self.options = options
        self.records: list[tuple[str, float, dict[str, str], str]] = []
        self.closed = False
        self._lock = threading.Lock()
        ListSink.instances.append(self)

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        with self._lock:
            self.records.append((name, value, dict(labels or {}), kind))

    def close(self) -> None:
        self.closed = True

    def latest(self) -> dict[tuple[str, tuple], tuple[float, str]]:
        with self._lock:
            return {(n, tuple(sorted(labels.items()))): (v, k) for n, v, labels, k in self.records}


class _ListSinkPlugin:
    @hookimpl
    def fluxon_register_metrics_sinks(self, register: Any) -> None:
        register("test_list_sink", ListSink, config_type=_ListSinkOptions)


@pytest.fixture
def list_sink_plugin() -> Iterator[None]:
    manager = get_plugin_manager()
    manager.register(_ListSinkPlugin(), name="test_list_sink_plugin")
    ListSink.instances.clear()
    try:
        yield
    finally:
        manager.unregister("test_list_sink_plugin")


def test_monitoring_block_defaults_and_yaml_spelling():
    assert load_yaml_text(MonitoringConfig, "{}", "monitoring") == MonitoringConfig(
        prometheus=PrometheusConfig(listen_addr="127.0.0.1:0"), greptime=None, sinks=[], record_interval_s=10.0
    )
    config = load_yaml_text(
        MonitoringConfig,
        """
        prometheus: null
        greptime:
          endpoint: https://greptime.example:4000
          database: fluxon
          push_interval_s: 15
        """,
        "monitoring",
    )
    assert config.prometheus is None
    assert config.greptime == GreptimeConfig(
        endpoint="https://greptime.example:4000", database="fluxon", push_interval_s=15
    )
    with pytest.raises(ConfigError, match=r"^monitoring\.prometheus\.listen_addr must be host:port"):
        load_yaml_text(MonitoringConfig, "prometheus: {listen_addr: nowhere}", "monitoring")
    with pytest.raises(ConfigError, match=r"^monitoring\.grepttime is not a known field; did you mean 'greptime'"):
        load_yaml_text(MonitoringConfig, "grepttime: {}", "monitoring")
    with pytest.raises(
        ConfigError, match=r"^monitoring\.sinks\[0\]\.kind is not usable: unknown metrics_sink kind 'nope'"
    ):
        load_yaml_text(MonitoringConfig, "sinks: [{kind: nope}]", "monitoring")


def test_record_only_sinks_get_every_sample_with_role_labels_and_a_last_round_at_close(list_sink_plugin: None):
    config = load_yaml_text(
        MonitoringConfig,
        "prometheus: null\nrecord_interval_s: 0.05\nsinks: [{kind: test_list_sink, test_list_sink: {label: a}}]",
        "monitoring",
    )
    assert config.sinks == [BackendConfig("test_list_sink", _ListSinkOptions(label="a"))]
    registry = MetricsRegistry()
    ops = CounterSpec("fluxon_fs_ops_total", "ops", ("op", "result")).get(registry)
    HistogramSpec("t_lat_seconds", "lat", buckets=(1.0,)).get(registry).observe(0.5)
    ops.labels("stat", "ok").inc()
    handle = start_monitoring(config, "fs_master", "master-1", registry=registry)
    (sink,) = ListSink.instances
    assert handle.sinks == {"sinks[0]": sink}
    role = (("instance_key", "master-1"), ("role", "fs_master"))
    key = ("fluxon_fs_ops_total", (*role[:1], ("op", "stat"), ("result", "ok"), role[1]))
    wait_until(lambda: key in sink.latest(), 10, "a record round")
    ops.labels("stat", "ok").inc(4)
    handle.close()
    handle.close()
    latest = sink.latest()
    assert latest[key] == (5, "counter")  # the last round ran at close
    assert latest[("t_lat_seconds_bucket", (role[0], ("le", "1.0"), role[1]))] == (1, "counter")
    assert latest[("t_lat_seconds_sum", role)] == (0.5, "counter")
    assert sink.closed


def test_a_sink_that_fails_to_start_closes_the_ones_already_started(list_sink_plugin: None):
    config = load_yaml_text(
        MonitoringConfig,
        """
        prometheus: {listen_addr: "127.0.0.1:0"}
        sinks:
          - {kind: test_list_sink}
          - {kind: test_list_sink, test_list_sink: {fail_on_create: true}}
        """,
        "monitoring",
    )
    with pytest.raises(RuntimeError, match=r"^monitoring\.sinks\[1\] \(test_list_sink\): RuntimeError: cannot reach"):
        start_monitoring(config, "owner", "o1", registry=MetricsRegistry())
    (first,) = ListSink.instances
    assert first.closed


def test_role_and_instance_key_are_required():
    with pytest.raises(ValueError, match="role must be a non-empty string"):
        start_monitoring(MonitoringConfig(prometheus=None), "", "x")
    with pytest.raises(ValueError, match="instance_key must be a non-empty string"):
        start_monitoring(MonitoringConfig(prometheus=None), "owner", None)  # type: ignore[arg-type]


def test_no_sinks_is_a_valid_handle():
    with start_monitoring(MonitoringConfig(prometheus=None), "owner", "o1", registry=MetricsRegistry()) as handle:
        assert handle.sinks == {} and handle.prometheus_url is None
