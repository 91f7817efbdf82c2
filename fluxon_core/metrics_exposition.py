"""Prometheus text exposition format 0.0.4 for registry snapshots (the prometheus sink and the panel use it).

Per family: ``# HELP name text`` (backslash and newline escaped), ``# TYPE name kind``, then one
line per sample ``name{label="value",...} number``; label values escape backslash, double quote
and newline. Histograms are written as their ``_bucket`` (with ``le``, ending in ``+Inf``), ``_sum``
and ``_count`` samples. Numbers use :func:`fluxon_core.metrics.format_float`.
"""

from __future__ import annotations

from collections.abc import Iterable

from fluxon_core.metrics import Labels, MetricSnapshot, MetricsRegistry, format_float, get_registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type a ``/metrics`` response carries."""


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    """A label value inside double quotes: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels) + "}"


def render_snapshots(snapshots: Iterable[MetricSnapshot]) -> str:
    """The exposition text of ``snapshots`` (family names must be unique, see ``merge_snapshots``)."""
    lines: list[str] = []
    for snapshot in snapshots:
        lines.append(f"# HELP {snapshot.name} {escape_help(snapshot.help)}")
        lines.append(f"# TYPE {snapshot.name} {snapshot.kind}")
        lines.extend(
            f"{sample.name}{_label_text(sample.labels)} {format_float(sample.value)}" for sample in snapshot.samples
        )
    return "\n".join(lines) + "\n" if lines else ""


def render_prometheus_text(registry: MetricsRegistry | None = None) -> str:
    """The exposition text of ``registry`` (default: the process-wide one) — what ``GET /metrics`` returns."""
    return render_snapshots((registry or get_registry()).collect())
