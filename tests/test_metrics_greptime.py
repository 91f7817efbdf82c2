"""The ``greptime`` metrics sink: line-protocol encoding and pushes over HTTP.

Pushes go to ``tests/support/greptime_receiver.py``, a LOCAL HTTP receiver that checks the payload
format (request path, query parameters, Basic auth header, strictly parsed line protocol) — it is
not a real GreptimeDB, so these tests prove what is sent, not how GreptimeDB stores it.
"""

from __future__ import annotations

import base64
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fluxon_core.config import ConfigError, load_config
from fluxon_core.metrics import CounterSpec, GaugeSpec, HistogramSpec, MetricSnapshot, MetricsRegistry, Sample
from fluxon_core.monitoring import AttachableSink, GreptimeConfig, MonitoringConfig, start_monitoring
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import MetricsSink
from fluxon_plugins.greptime_metrics.line_protocol import encode_snapshots
from fluxon_plugins.greptime_metrics.sink import GreptimeSink
from tests.support.greptime_receiver import GreptimeReceiver, LineProtocolError, parse_line, parse_line_protocol
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]
ROLE_LABELS = (("role", "fs_agent"), ("instance_key", "agent-1"))


def _registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    CounterSpec("fluxon_fs_ops_total", "ops", ("op", "result")).get(registry).labels("read", "ok").inc(3)
    GaugeSpec("fluxon_pool_used_bytes", "used").get(registry).set(4096)
    HistogramSpec("fluxon_rpc_latency_seconds", "lat", ("path", "side"), buckets=(0.01,)).get(registry).labels(
        "/fluxon_fs/demo/read", "server"
    ).observe(0.002)
    return registry


def _values(points) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(measurement, tag set) -> value of every point."""
    return {(p.measurement, frozenset(p.tags.items())): p.fields["greptime_value"] for p in points}


def _key(measurement: str, **tags: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """A series key with the role's constant tags added."""
    return measurement, frozenset({"role": "fs_agent", "instance_key": "agent-1", **tags}.items())


def test_encoding_escapes_tags_and_writes_float_values_with_a_millisecond_timestamp():
    snapshots = [
        MetricSnapshot(
            "t_x_total",
            "counter",
            "help",
            (
                Sample("t_x_total", (("path", "/a b,c=d\\e"), ("empty", "")), 3),
                Sample("t_x_total", (("path", "line\nbreak"),), 0.5),
                Sample("t_x_total", (("path", "nan"),), math.nan),
                Sample("t_x_total", (("path", "inf"),), math.inf),
            ),
        )
    ]
    text = encode_snapshots(snapshots, ROLE_LABELS, 1_700_000_000_123)
    assert text == (
        "t_x_total,instance_key=agent-1,path=/a\\ b\\,c\\=d\\\\e,role=fs_agent greptime_value=3.0 1700000000123\n"
        "t_x_total,instance_key=agent-1,path=line\\ break,role=fs_agent greptime_value=0.5 1700000000123\n"
    )
    first, second = parse_line_protocol(text)
    assert first.tags == {"instance_key": "agent-1", "path": "/a b,c=d\\e", "role": "fs_agent"}
    assert first.fields == {"greptime_value": 3.0} and first.timestamp == 1_700_000_000_123
    assert second.tags["path"] == "line break"
    assert encode_snapshots([], ROLE_LABELS, 1) == ""


def test_a_sample_label_wins_over_a_constant_label_of_the_same_name():
    snapshot = MetricSnapshot("t_g", "gauge", "h", (Sample("t_g", (("role", "mine"),), 1),))
    (point,) = parse_line_protocol(encode_snapshots([snapshot], ROLE_LABELS, 5))
    assert point.tags == {"role": "mine", "instance_key": "agent-1"}


def test_the_receiver_parser_refuses_malformed_lines():
    """The payload checks below could not fail if this parser accepted anything."""
    for line in [
        "m,tag=a b greptime_value=1.0 1",  # unescaped space in a tag value
        "m,tag= greptime_value=1.0 1",  # empty tag value
        "m,tag=a=b greptime_value=1.0 1",  # unescaped '=' in a tag value
        "m greptime_value=1.0.0 1",  # not a number
        "m greptime_value=1.0 1 extra",  # trailing text
        "m greptime_value=1.0 1.5",  # non-integer timestamp
        "m,tag=a\\x greptime_value=1 1",  # backslash escaping nothing
        "m",  # no fields
    ]:
        with pytest.raises(LineProtocolError):
            parse_line(line)
    assert parse_line("m greptime_value=3i 1").fields == {"greptime_value": 3}
    assert parse_line("m greptime_value=3i 1").raw_fields == {"greptime_value": "3i"}


def test_plugin_registers_the_greptime_kind():
    sink = get_backends().create("metrics_sink", "greptime", {"endpoint": "http://127.0.0.1:1", "push_interval_s": 60})
    assert isinstance(sink, MetricsSink) and isinstance(sink, AttachableSink)
    assert sink.url == "http://127.0.0.1:1/v1/influxdb/write?db=public&precision=ms"
    sink.close()


def test_role_pushes_registry_snapshots_with_path_query_auth_and_strict_payload():
    registry = _registry()
    with GreptimeReceiver(database="fluxon", username="metrics", password="s3cret: pass") as receiver:
        config = load_config(
            MonitoringConfig,
            {
                "prometheus": None,
                "greptime": {
                    "endpoint": receiver.endpoint + "/",
                    "database": "fluxon",
                    "push_interval_s": 0.05,
                    "username": "metrics",
                    "password": "s3cret: pass",
                },
            },
            "monitoring",
        )
        before_ms = int(time.time() * 1000)
        with start_monitoring(config, "fs_agent", "agent-1", registry=registry) as handle:
            assert list(handle.sinks) == ["greptime"] and handle.prometheus_url is None
            wait_until(lambda: receiver.accepted(), 10, "a first accepted push")
            registry.counter(CounterSpec("fluxon_fs_ops_total", "ops", ("op", "result"))).labels("read", "ok").inc(2)
            wait_until(
                lambda: any(
                    p.measurement == "fluxon_fs_ops_total" and p.fields["greptime_value"] == 5.0
                    for w in receiver.accepted()
                    for p in w.points
                ),
                10,
                "a push carrying the new counter value",
            )
        after_ms = int(time.time() * 1000)
    assert all(w.status == 204 for w in receiver.writes), [w.problem for w in receiver.writes]
    write = receiver.writes[-1]
    assert write.method == "POST" and write.path == "/v1/influxdb/write"
    assert write.query == {"db": ["fluxon"], "precision": ["ms"]}
    assert write.headers["Authorization"] == "Basic " + base64.b64encode(b"metrics:s3cret: pass").decode()
    assert "s3cret" not in write.path and not any("s3cret" in v for vs in write.query.values() for v in vs)
    read = {"path": "/fluxon_fs/demo/read", "side": "server"}
    assert _values(write.points) == {
        _key("fluxon_fs_ops_total", op="read", result="ok"): 5.0,
        _key("fluxon_pool_used_bytes"): 4096.0,
        _key("fluxon_rpc_latency_seconds_bucket", le="0.01", **read): 1.0,
        _key("fluxon_rpc_latency_seconds_bucket", le="+Inf", **read): 1.0,
        _key("fluxon_rpc_latency_seconds_sum", **read): 0.002,
        _key("fluxon_rpc_latency_seconds_count", **read): 1.0,
    }
    for point in write.points:
        assert set(point.fields) == {"greptime_value"}
        assert isinstance(point.fields["greptime_value"], float)
        assert not point.raw_fields["greptime_value"].endswith(("i", "u"))
        assert before_ms - 1000 <= point.timestamp <= after_ms + 1000  # milliseconds, not seconds or nanoseconds
    assert len({p.timestamp for p in write.points}) == 1  # one snapshot, one timestamp


def test_wrong_credentials_are_reported_and_never_raise_into_the_role():
    with GreptimeReceiver(username="metrics", password="right") as receiver:
        sink = GreptimeSink(
            GreptimeConfig(endpoint=receiver.endpoint, username="metrics", password="wrong", push_interval_s=0.05)
        )
        sink.attach(_registry(), ROLE_LABELS)
        wait_until(lambda: sink.stats.pushes_failed >= 1, 10, "a failed push")
        sink.close()
    assert receiver.writes and all(w.status == 401 for w in receiver.writes)
    assert "HTTP 401" in (sink.stats.last_error or "")
    assert sink.stats.pushes_ok == 0


def test_failed_pushes_back_off_and_recover():
    with GreptimeReceiver() as receiver:
        receiver.fail_next(2)
        sink = GreptimeSink(GreptimeConfig(endpoint=receiver.endpoint, push_interval_s=0.05, max_backoff_s=1.0))
        sink.attach(_registry(), ROLE_LABELS)
        wait_until(lambda: sink.stats.pushes_ok >= 2, 10, "pushes working again after two failures")
        sink.close()
    statuses = [w.status for w in receiver.writes]
    assert statuses[:3] == [500, 500, 204], statuses
    stamps = [w.received_at for w in receiver.writes]
    # after the 1st failure the wait doubles (0.1 s), after the 2nd it doubles again (0.2 s)
    assert stamps[1] - stamps[0] >= 0.09, stamps
    assert stamps[2] - stamps[1] >= 0.19, stamps
    assert sink.stats.consecutive_failures == 0 and sink.stats.pushes_failed == 2
    assert "HTTP 500" in (sink.stats.last_error or "")


def test_unreachable_endpoint_close_returns_promptly_without_raising():
    with socket.socket() as holder:  # a port nobody listens on
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    sink = GreptimeSink(GreptimeConfig(endpoint=f"http://127.0.0.1:{port}", push_interval_s=0.05, timeout_s=2.0))
    sink.attach(_registry(), ROLE_LABELS)
    wait_until(lambda: sink.stats.pushes_failed >= 1, 10, "a failed push")
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 5
    assert "URLError" in (sink.stats.last_error or "") or "ConnectionRefused" in (sink.stats.last_error or "")


def test_close_flushes_exactly_once_with_the_latest_values():
    registry = _registry()
    with GreptimeReceiver() as receiver:
        sink = GreptimeSink(GreptimeConfig(endpoint=receiver.endpoint, push_interval_s=3600, max_backoff_s=3600))
        sink.attach(registry, ROLE_LABELS)
        sink.record("ext_jobs_done_total", 11, {"queue": "a"}, "counter")
        registry.gauge(GaugeSpec("fluxon_pool_used_bytes", "used")).set(8192)
        assert receiver.writes == []  # nothing before the first interval ends
        sink.close()
        sink.close()
        writes = receiver.writes
    assert len(writes) == 1 and writes[0].status == 204
    values = _values(writes[0].points)
    assert values[_key("fluxon_pool_used_bytes")] == 8192.0
    assert values[_key("ext_jobs_done_total", queue="a")] == 11.0


def test_greptime_config_is_checked_with_full_paths():
    def load(options: dict) -> GreptimeConfig:
        return load_config(MonitoringConfig, {"greptime": options}, "monitoring").greptime

    assert load({}) == GreptimeConfig()
    assert GreptimeConfig().endpoint == "http://127.0.0.1:4000" and GreptimeConfig().database == "public"
    with pytest.raises(ConfigError, match=r"^monitoring\.greptime\.password is required when the other credential"):
        load({"username": "u"})
    with pytest.raises(ConfigError, match=r"^monitoring\.greptime\.username is required when the other credential"):
        load({"password": "p"})
    with pytest.raises(ConfigError, match=r"^monitoring\.greptime\.endpoint must be an http\(s\):// URL"):
        load({"endpoint": "greptime:4000"})
    with pytest.raises(ConfigError, match=r"^monitoring\.greptime\.push_interval_s must be > 0"):
        load({"push_interval_s": 0})
    with pytest.raises(ConfigError, match=r"^monitoring\.greptime\.max_backoff_s must be >= push_interval_s"):
        load({"push_interval_s": 30, "max_backoff_s": 10})
    with pytest.raises(
        ConfigError, match=r"^monitoring\.greptime\.databse is not a known field; did you mean 'database'"
    ):
        load({"databse": "x"})


def test_a_role_process_pushes_and_flushes_on_exit(tmp_path: Path):
    """A real child process: starts monitoring, counts, closes — the receiver sees its role and values."""
    script = textwrap.dedent(
        """
        import sys
        from fluxon_core.config import load_config
        from fluxon_core.metrics import FS_OPS
        from fluxon_core.monitoring import MonitoringConfig, start_monitoring

        config = load_config(MonitoringConfig, {"prometheus": None, "greptime": {"endpoint": sys.argv[1]}})
        handle = start_monitoring(config, "fs_agent", "child-agent")
        FS_OPS.get().labels("write", "ok").inc(42)
        handle.close()
        """
    )
    with GreptimeReceiver() as receiver:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FLUXON_LOG": "WARNING"}
        result = subprocess.run(
            [sys.executable, "-c", script, receiver.endpoint], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        writes = receiver.writes
    assert len(writes) == 1 and writes[0].status == 204, [w.problem for w in writes]
    (ops,) = [p for p in writes[0].points if p.measurement == "fluxon_fs_ops_total"]
    assert ops.tags == {"role": "fs_agent", "instance_key": "child-agent", "op": "write", "result": "ok"}
    assert ops.fields == {"greptime_value": 42.0}
