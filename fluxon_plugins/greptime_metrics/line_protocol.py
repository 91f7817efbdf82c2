"""Registry snapshots as InfluxDB line protocol, the way the ``greptime`` sink writes them.

One line per sample: ``<sample name>,<tags> greptime_value=<float> <timestamp ms>``.

* The measurement (GreptimeDB table) is the sample name, so a histogram becomes the tables
  ``<name>_bucket`` (tag ``le``), ``<name>_sum`` and ``<name>_count``.
* Tags are the constant labels (``role``, ``instance_key``) plus the sample's own labels (the
  sample's label wins on a name clash), sorted by key; a tag with an empty value is left out, as
  line protocol has no empty tag values (Prometheus treats an empty label as absent too).
* The single field is ``greptime_value``, always written as a float: GreptimeDB fixes a column's
  type at the first write, and its Prometheus-compatible tables use the same float column, so
  PromQL over GreptimeDB reads these tables like remote-written ones.
* Escaping: measurement — comma and space; tag keys and values — comma, equals sign, space and
  backslash (a doubled backslash is one backslash); a newline or carriage return in a tag value,
  which line protocol cannot carry, becomes a space. Samples whose value is NaN or infinite are
  left out (line protocol floats are finite).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from fluxon_core.metrics import Labels, MetricSnapshot

VALUE_FIELD = "greptime_value"


def escape_measurement(name: str) -> str:
    """A measurement name: backslash, comma and space escaped."""
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(text: str) -> str:
    """A tag key or value: backslash, comma, equals sign and space escaped; line breaks become spaces."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def format_field_float(value: float) -> str:
    """A finite number as a line-protocol float (always with a point or an exponent)."""
    return repr(float(value))


def encode_snapshots(snapshots: Iterable[MetricSnapshot], constant_labels: Labels, timestamp_ms: int) -> str:
    """Every finite sample of ``snapshots`` as one line each, newline-terminated (empty when there is none)."""
    lines: list[str] = []
    constant = dict(constant_labels)
    for snapshot in snapshots:
        for sample in snapshot.samples:
            value = float(sample.value)
            if not math.isfinite(value):
                continue
            tags = {**constant, **dict(sample.labels)}
            tag_text = "".join(f",{escape_tag(key)}={escape_tag(tags[key])}" for key in sorted(tags) if tags[key] != "")
            lines.append(
                f"{escape_measurement(sample.name)}{tag_text} {VALUE_FIELD}={format_field_float(value)} {timestamp_ms}"
            )
    return "".join(line + "\n" for line in lines)
