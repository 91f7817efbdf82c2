"""Prometheus text exposition (format 0.0.4) of the registry, the standalone endpoint and the ``prometheus`` sink.

The text is checked by the strict parser below (no third-party parser): HELP/TYPE rules, label
syntax and escapes, number syntax, histogram invariants.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import urllib.error
import urllib.request
from typing import Any

import attrs
import pytest

from fluxon_core.metrics import CounterSpec, GaugeSpec, HistogramSpec, MetricsRegistry
from fluxon_core.metrics_exposition import CONTENT_TYPE, render_prometheus_text
from fluxon_core.monitoring import AttachableSink, MonitoringConfig, PrometheusConfig, start_monitoring
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import MetricsSink
from fluxon_plugins.prometheus_metrics.server import serve_metrics

# --- a strict parser of the 0.0.4 text format ---

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_NUMBER = re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@attrs.define
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = attrs.Factory(list)


class ExpositionError(AssertionError):
    pass


def _unescape(text: str, allowed: str, line: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt not in allowed or nxt == "":
                raise ExpositionError(f"bad escape \\{nxt} in {line!r}")
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_labels(text: str, line: str) -> tuple[dict[str, str], int]:
    """Parse ``{a="x",b="y"}`` starting at text[0] == '{'; returns labels and the index after '}'."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        if text[i] == "}":
            return labels, i + 1
        match = re.match(_LABEL, text[i:])
        if not match:
            raise ExpositionError(f"bad label name in {line!r}")
        name = match.group(0)
        i += len(name)
        if text[i : i + 2] != '="':
            raise ExpositionError(f'expected =" after label {name} in {line!r}')
        i += 2
        start = i
        while text[i] != '"':
            if text[i] == "\n":
                raise ExpositionError(f"raw newline in label value: {line!r}")
            i += 2 if text[i] == "\\" else 1
        if name in labels:
            raise ExpositionError(f"label {name} repeated in {line!r}")
        labels[name] = _unescape(text[start:i], '\\"n', line)
        i += 1
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ExpositionError(f"expected , or }} in {line!r}")


def _family_of(sample_name: str, families: dict[str, Family]) -> Family:
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in families and families[base].type == "histogram":
            return families[base]
    raise ExpositionError(f"sample {sample_name} has no # TYPE line before it")


def parse_exposition(text: str) -> dict[str, Family]:
    """Parse strictly; raises ExpositionError on anything the 0.0.4 format does not allow."""
    if text and not text.endswith("\n"):
        raise ExpositionError("text must end with a newline")
    families: dict[str, Family] = {}
    finished: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise ExpositionError(f"bad metric name in {line!r}")
                family = families.setdefault(name, Family(name))
                if name in finished:
                    raise ExpositionError(f"{name} appears again after other families: {line!r}")
                if parts[1] == "HELP":
                    if family.help is not None:
                        raise ExpositionError(f"second HELP for {name}")
                    family.help = _unescape(parts[3] if len(parts) > 3 else "", "\\n", line)
                else:
                    if family.samples or family.type != "untyped" or len(parts) != 4 or parts[3] not in _TYPES:
                        raise ExpositionError(f"bad or late TYPE line {line!r}")
                    family.type = parts[3]
                if current is not None and current != name:
                    finished.add(current)
                current = name
            continue
        match = re.match(_NAME, line)
        if not match:
            raise ExpositionError(f"bad sample line {line!r}")
        sample_name = match.group(0)
        rest = line[len(sample_name) :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, end = _parse_labels(rest, line)
            rest = rest[end:]
        fields = rest.split(" ")
        if fields[0] != "" or len(fields) not in (2, 3) or not _NUMBER.match(fields[1]):
            raise ExpositionError(f"bad value part in {line!r}")
        if len(fields) == 3 and not re.fullmatch(r"-?\d+", fields[2]):
            raise ExpositionError(f"bad timestamp in {line!r}")
        family = _family_of(sample_name, families)
        if family.name in finished:
            raise ExpositionError(f"samples of {family.name} are not contiguous")
        if current is not None and current != family.name:
            finished.add(current)
        current = family.name
        family.samples.append((sample_name, labels, float(fields[1])))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    groups: dict[tuple, dict[str, Any]] = {}
    for name, labels, value in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        group = groups.setdefault(key, {"buckets": []})
        if name == family.name + "_bucket":
            group["buckets"].append((float(labels["le"]), value))
        elif name in (family.name + "_sum", family.name + "_count"):
            group[name.rsplit("_", 1)[1]] = value
        else:
            raise ExpositionError(f"histogram {family.name} has a sample {name}")
    for key, group in groups.items():
        bounds = [le for le, _ in group["buckets"]]
        counts = [count for _, count in group["buckets"]]
        if not bounds or bounds[-1] != math.inf or bounds != sorted(bounds) or counts != sorted(counts):
            raise ExpositionError(f"histogram {family.name}{key}: buckets {group['buckets']} not cumulative to +Inf")
        if group.get("count") != counts[-1] or "sum" not in group:
            raise ExpositionError(f"histogram {family.name}{key}: _count must equal the +Inf bucket, _sum present")


# --- tests ---


def _sample_registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    ops = CounterSpec("fluxon_fs_ops_total", "FS ops\nby op \\ result", ("op", "result")).get(registry)
    ops.labels("read", "ok").inc(3)
    ops.labels('we"ird', "back\\slash\nnewline").inc()
    GaugeSpec("fluxon_pool_used_bytes", "used").get(registry).set(1 << 40)
    GaugeSpec("t_ratio", "ratio").get(registry).set(0.25)
    GaugeSpec("t_inf", "inf").get(registry).set(math.inf)
    latency = HistogramSpec("fluxon_rpc_latency_seconds", "lat", ("path", "side"), buckets=(0.001, 0.1)).get(registry)
    for value in (0.0001, 0.05, 7.0):
        latency.labels("/fluxon_fs/demo/read", "server").observe(value)
    latency.labels("/fluxon_fs/config", "client").observe(0.002)
    return registry


def test_rendered_text_parses_strictly_and_round_trips_values_and_escapes():
    families = parse_exposition(render_prometheus_text(_sample_registry()))
    ops = families["fluxon_fs_ops_total"]
    assert ops.type == "counter" and ops.help == "FS ops\nby op \\ result"
    assert ops.samples == [
        ("fluxon_fs_ops_total", {"op": "read", "result": "ok"}, 3.0),
        ("fluxon_fs_ops_total", {"op": 'we"ird', "result": "back\\slash\nnewline"}, 1.0),
    ]
    assert families["fluxon_pool_used_bytes"].samples == [("fluxon_pool_used_bytes", {}, float(1 << 40))]
    assert families["t_ratio"].samples[0][2] == 0.25
    assert families["t_inf"].samples[0][2] == math.inf
    latency = families["fluxon_rpc_latency_seconds"]
    assert latency.type == "histogram"
    read = [(s[1].get("le"), s[2]) for s in latency.samples if s[1]["path"] == "/fluxon_fs/demo/read"]
    assert read == [("0.001", 1), ("0.1", 2), ("+Inf", 3), (None, pytest.approx(7.0501)), (None, 3)]


def test_exact_text_of_a_small_registry():
    registry = MetricsRegistry()
    CounterSpec("t_hits_total", "Hits.", ("cache",)).get(registry).labels("kv").inc(2)
    HistogramSpec("t_lat_seconds", "Latency.", buckets=(0.5,)).get(registry).observe(0.25)
    assert render_prometheus_text(registry) == (
        "# HELP t_hits_total Hits.\n"
        "# TYPE t_hits_total counter\n"
        't_hits_total{cache="kv"} 2\n'
        "# HELP t_lat_seconds Latency.\n"
        "# TYPE t_lat_seconds histogram\n"
        't_lat_seconds_bucket{le="0.5"} 1\n'
        't_lat_seconds_bucket{le="+Inf"} 1\n'
        "t_lat_seconds_sum 0.25\n"
        "t_lat_seconds_count 1\n"
    )
    assert render_prometheus_text(MetricsRegistry()) == ""


def test_the_parser_rejects_what_the_format_forbids():
    """The checks above could not fail if the parser accepted anything."""
    bad = [
        'x_total{a="1"} 1\n',  # no TYPE before the sample
        "# TYPE x counter\nx{a=1} 1\n",  # unquoted label value
        '# TYPE x counter\nx{a="\\q"} 1\n',  # unknown escape
        "# TYPE x counter\nx one\n",  # not a number
        "# TYPE x counter\nx 1",  # no final newline
        "# TYPE x counter\n# TYPE y gauge\ny 1\nx 1\n",  # x continues after y
        '# TYPE h histogram\nh_bucket{le="1.0"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',  # not cumulative
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',  # count != +Inf bucket
    ]
    for text in bad:
        with pytest.raises(ExpositionError):
            parse_exposition(text)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_standalone_endpoint_serves_metrics_and_releases_its_port():
    registry = _sample_registry()
    server, url = serve_metrics("127.0.0.1", 0, lambda: render_prometheus_text(registry))
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url)
        status, content_type, body = _get(url)
        assert (status, content_type) == (200, CONTENT_TYPE)
        assert parse_exposition(body)["fluxon_fs_ops_total"].samples[0][2] == 3.0
        registry.counter(CounterSpec("fluxon_fs_ops_total", "FS ops\nby op \\ result", ("op", "result"))).labels(
            "read", "ok"
        ).inc()
        assert parse_exposition(_get(url + "?x=1")[2])["fluxon_fs_ops_total"].samples[0][2] == 4.0  # live per scrape
        assert _get(url.replace("/metrics", "/other"))[0] == 404
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head, timeout=5) as response:
            assert response.status == 200 and response.read() == b""
    finally:
        server.close()
    server.close()  # idempotent
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:  # nothing listens there any more (TIME_WAIT leftovers are fine)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_endpoint_answers_500_when_rendering_fails(caplog: pytest.LogCaptureFixture):
    def broken() -> str:
        raise RuntimeError("boom")

    server, url = serve_metrics("127.0.0.1", 0, broken)
    try:
        with caplog.at_level(logging.ERROR, logger="fluxon.metrics.prometheus"):
            assert _get(url)[0] == 500
        assert "rendering /metrics failed" in caplog.text
    finally:
        server.close()


def test_plugin_registers_the_prometheus_kind_and_the_sink_serves_registry_and_records():
    sink = get_backends().create("metrics_sink", "prometheus", {"listen_addr": "127.0.0.1:0"})
    assert isinstance(sink, MetricsSink) and isinstance(sink, AttachableSink)
    registry = _sample_registry()
    try:
        sink.attach(registry, (("role", "owner"), ("instance_key", "o1")))
        sink.record("ext_queue_depth", 4, {"queue": "a"})
        sink.record("fluxon_pool_used_bytes", 1)  # clashes with a registry family: the registry's wins
        families = parse_exposition(_get(sink.url)[2])
        assert families["ext_queue_depth"].type == "gauge"
        assert families["ext_queue_depth"].samples == [("ext_queue_depth", {"queue": "a"}, 4.0)]
        assert families["fluxon_pool_used_bytes"].samples == [("fluxon_pool_used_bytes", {}, float(1 << 40))]
        assert "role" not in families["fluxon_fs_ops_total"].samples[0][1]  # target labels come from the scraper
    finally:
        sink.close()
        sink.close()


def test_start_monitoring_serves_the_role_registry_by_default():
    registry = MetricsRegistry()
    CounterSpec("fluxon_cache_hits_total", "hits", ("cache",)).get(registry).labels("kv").inc(9)
    with start_monitoring(None, "kv_master", "m1", registry=registry) as handle:
        assert handle.prometheus_url is not None and list(handle.sinks) == ["prometheus"]
        families = parse_exposition(_get(handle.prometheus_url)[2])
        assert families["fluxon_cache_hits_total"].samples == [("fluxon_cache_hits_total", {"cache": "kv"}, 9.0)]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(handle.prometheus_url, timeout=2)


def test_a_taken_port_fails_start_monitoring_naming_the_config_location():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = MonitoringConfig(prometheus=PrometheusConfig(listen_addr=f"127.0.0.1:{port}"))
        with pytest.raises(RuntimeError, match=r"^monitoring\.prometheus \(prometheus\): OSError: .*in use"):
            start_monitoring(config, "owner", "o1", registry=MetricsRegistry())
