"""The in-process metrics registry every role records into, and the names of Fluxon's metrics.

Code on a hot path keeps a reference to a metric family (``FS_OPS.get()``) and records with
``family.labels(op, result).inc()``: a dict lookup on the label values and an add under the
series' own lock — no allocation after the first use of a label combination. Sinks (Prometheus
text, a GreptimeDB push, ...) read everything at once with :meth:`MetricsRegistry.collect`.

Three kinds of metric:

* :class:`Counter` — only goes up (``inc``); names end in ``_total``.
* :class:`Gauge` — ``set`` / ``inc`` / ``dec``, or ``set_function`` for a value read when the
  registry is collected (e.g. the bytes a pool holds right now).
* :class:`Histogram` — ``observe(seconds)`` into fixed buckets; collected as cumulative
  ``_bucket{le=...}`` counts plus ``_sum`` and ``_count``, like Prometheus.

A metric is declared by a spec (:class:`CounterSpec`, :class:`GaugeSpec`, :class:`HistogramSpec`)
holding its name, help text and label names; the specs of the metrics the product reports are the
module constants below, so every module uses the same names. Declaring a spec twice returns the
same family; declaring a different spec under a taken name is an error.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Generic, Literal, TypeVar

import attrs

from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.metrics")

Labels = tuple[tuple[str, str], ...]
"""Label pairs of one sample, in a fixed order: ``(("op", "read"), ("result", "ok"))``."""

MetricKind = Literal["counter", "gauge", "histogram"]
SampleKind = Literal["counter", "gauge"]
"""What a single sample is to a sink: a running total (``counter``) or a current value (``gauge``)."""

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Default histogram bucket bounds in seconds: 50 µs (an in-host RPC) up to 10 s (a slow remote read)."""


def format_float(value: float) -> str:
    """A number as Prometheus writes it: ``+Inf``, ``-Inf``, ``NaN``, ints without a point, floats by ``repr``."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _check_metric_name(name: str) -> None:
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise ValueError(f"metric name {name!r} must match [a-zA-Z_:][a-zA-Z0-9_:]*")


def check_label_names(names: Iterable[str], where: str) -> tuple[str, ...]:
    """Validate label names (``[a-zA-Z_][a-zA-Z0-9_]*``, not ``__``-prefixed, no repeats) and return them as a tuple."""
    out = tuple(names)
    for name in out:
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"{where}: label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]* and not start with '__'")
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: label names {out} repeat a name")
    return out


def _as_tuple(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@attrs.frozen
class _MetricSpec:
    name: str
    help: str
    labelnames: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)

    def __attrs_post_init__(self) -> None:
        _check_metric_name(self.name)
        if not isinstance(self.help, str) or not self.help.strip():
            raise ValueError(f"metric {self.name!r} needs a help text")
        check_label_names(self.labelnames, f"metric {self.name!r}")


@attrs.frozen
class CounterSpec(_MetricSpec):
    """A counter: name (ending in ``_total``), help text, label names."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.name.endswith("_total"):
            raise ValueError(f"counter name {self.name!r} must end in '_total'")

    def get(self, registry: MetricsRegistry | None = None) -> Counter:
        """The family in ``registry`` (default: the process-wide one), declared on first use."""
        return (registry or get_registry()).counter(self)


@attrs.frozen
class GaugeSpec(_MetricSpec):
    """A gauge: name, help text, label names."""

    def get(self, registry: MetricsRegistry | None = None) -> Gauge:
        """The family in ``registry`` (default: the process-wide one), declared on first use."""
        return (registry or get_registry()).gauge(self)


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets)
    if not bounds:
        raise ValueError("histogram buckets must not be empty")
    if any(not math.isfinite(b) for b in bounds):
        raise ValueError(f"histogram buckets {bounds} must be finite (+Inf is always added)")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"histogram buckets {bounds} must be strictly increasing")
    return bounds


@attrs.frozen
class HistogramSpec(_MetricSpec):
    """A histogram: name, help text, label names and finite upper bucket bounds (``+Inf`` is implied)."""

    buckets: tuple[float, ...] = attrs.field(default=LATENCY_BUCKETS, converter=_check_buckets)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if "le" in self.labelnames:
            raise ValueError(f"histogram {self.name!r} must not use the label name 'le' (it names the buckets)")

    def get(self, registry: MetricsRegistry | None = None) -> Histogram:
        """The family in ``registry`` (default: the process-wide one), declared on first use."""
        return (registry or get_registry()).histogram(self)


# --- The metrics Fluxon reports (KV.md §7). Label values are listed in each help text. ---

POOL_CAPACITY_BYTES = GaugeSpec(
    "fluxon_pool_capacity_bytes", "Byte budget of this host's shared-memory cache pool (reported by the owner)."
)
POOL_USED_BYTES = GaugeSpec(
    "fluxon_pool_used_bytes", "Bytes held right now in this host's shared-memory cache pool (reported by the owner)."
)
CACHE_HITS = CounterSpec(
    "fluxon_cache_hits_total",
    "Lookups answered from the local pool; cache is 'kv' (KV gets) or 'fs' (file content reads).",
    ("cache",),
)
CACHE_MISSES = CounterSpec(
    "fluxon_cache_misses_total",
    "Lookups the local pool could not answer (fetched from a peer or the agent); cache is 'kv' or 'fs'.",
    ("cache",),
)
CACHE_PUTS_DROPPED = CounterSpec(
    "fluxon_cache_puts_dropped_total",
    "Values not cached because the background put queue was full (readers never wait for it); cache is 'fs'.",
    ("cache",),
)
RPC_LATENCY = HistogramSpec(
    "fluxon_rpc_latency_seconds",
    "RPC latency in seconds by method path; side is 'client' (call to reply) or 'server' (handler time).",
    ("path", "side"),
)
BYTES_MOVED = CounterSpec(
    "fluxon_bytes_moved_total",
    "Payload bytes this process moved between processes or hosts; direction is 'in' (received) or 'out' (sent).",
    ("direction",),
)
FS_OPS = CounterSpec(
    "fluxon_fs_ops_total",
    "FS operations by op (open, read, write, stat, listdir, ...) and result ('ok' or the error name, e.g. ENOENT).",
    ("op", "result"),
)
TRANSFER_FILES_COPIED = CounterSpec("fluxon_transfer_files_copied_total", "Files copied by transfer workers.")
TRANSFER_BYTES_COPIED = CounterSpec("fluxon_transfer_bytes_copied_total", "Bytes copied by transfer workers.")
TRANSFER_JOBS = GaugeSpec(
    "fluxon_transfer_jobs",
    "Transfer jobs by state (scanning, ready, running, verifying, paused, succeeded, failed, cancelled).",
    ("state",),
)

STANDARD_METRICS: tuple[CounterSpec | GaugeSpec | HistogramSpec, ...] = (
    POOL_CAPACITY_BYTES,
    POOL_USED_BYTES,
    CACHE_HITS,
    CACHE_MISSES,
    CACHE_PUTS_DROPPED,
    RPC_LATENCY,
    BYTES_MOVED,
    FS_OPS,
    TRANSFER_FILES_COPIED,
    TRANSFER_BYTES_COPIED,
    TRANSFER_JOBS,
)
"""Every metric the product reports (documented in ``docs/metrics.md``)."""


# --- Collected values ---


@attrs.frozen
class Sample:
    """One value at collection time: ``name`` is the family name, or it plus ``_bucket``/``_sum``/``_count``."""

    name: str
    labels: Labels
    value: float


@attrs.frozen
class MetricSnapshot:
    """A family's samples at collection time, with its kind and help text."""

    name: str
    kind: MetricKind
    help: str
    samples: tuple[Sample, ...]

    def sample_kind(self) -> SampleKind:
        """``gauge`` for gauges; every counter and histogram sample is a running total."""
        return "gauge" if self.kind == "gauge" else "counter"


# --- Series: one label combination of a family ---


class CounterSeries:
    """One label combination of a counter."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: float = 0

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (>= 0; an int keeps the total an int)."""
        if amount < 0:
            raise ValueError(f"a counter only goes up; inc({amount!r})")
        # acquire/release instead of ``with``: half the cost on CPython 3.11, and this runs per operation
        lock = self._lock
        lock.acquire()
        try:
            self._value += amount
        finally:
            lock.release()

    @property
    def value(self) -> float:
        """The running total."""
        return self._value


class GaugeSeries:
    """One label combination of a gauge: a stored value, or a function read at collection time."""

    __slots__ = ("_function", "_lock", "_reported_failure", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: float = 0
        self._function: Callable[[], float | None] | None = None
        self._reported_failure = False

    def set(self, value: float) -> None:
        """Store ``value`` (and stop reading a function, if one was set)."""
        with self._lock:
            self._function = None
            self._value = value

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` to the stored value."""
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1) -> None:
        """Subtract ``amount`` from the stored value."""
        with self._lock:
            self._value -= amount

    def set_function(self, function: Callable[[], float | None]) -> None:
        """Read the value from ``function()`` at each collection; None (or an exception) omits the sample.

        The series keeps a strong reference: pass a function that does not keep a closed resource alive,
        or replace it with :meth:`set` when the resource goes away.
        """
        with self._lock:
            self._function = function
            self._reported_failure = False

    def current(self, name: str) -> float | None:
        """The value to report (None when a function gives none); ``name`` is used in the log when it fails."""
        function = self._function
        if function is None:
            return self._value
        try:
            value = function()
        except Exception:
            if not self._reported_failure:
                self._reported_failure = True
                log.warning("gauge %s: value function raised; the sample is left out", name, exc_info=True)
            return None
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            if not self._reported_failure:
                self._reported_failure = True
                log.warning("gauge %s: value function returned %r, not a number; the sample is left out", name, value)
            return None
        return value


class _Timer:
    """Context manager observing the elapsed seconds of its block into a histogram series."""

    __slots__ = ("_series", "_start")

    def __init__(self, series: HistogramSeries) -> None:
        self._series = series
        self._start = 0.0

    def __enter__(self) -> _Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._series.observe(time.perf_counter() - self._start)


class HistogramSeries:
    """One label combination of a histogram."""

    __slots__ = ("_bounds", "_counts", "_lock", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is the +Inf bucket
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (seconds, for latency) in the first bucket whose bound is >= it."""
        index = bisect.bisect_left(self._bounds, value)
        lock = self._lock  # acquire/release instead of ``with``, as in CounterSeries.inc
        lock.acquire()
        try:
            self._counts[index] += 1
            self._sum += value
        finally:
            lock.release()

    def time(self) -> _Timer:
        """``with series.time(): ...`` observes how long the block took."""
        return _Timer(self)

    def snapshot(self) -> tuple[list[int], float]:
        """Per-bucket (not cumulative) counts, +Inf last, and the sum, read together."""
        with self._lock:
            return list(self._counts), self._sum


# --- Families ---

SeriesT = TypeVar("SeriesT", CounterSeries, GaugeSeries, HistogramSeries)


class _Family(Generic[SeriesT]):
    kind: MetricKind

    def __init__(self, spec: _MetricSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], SeriesT] = {}
        self._unlabelled: SeriesT | None = None
        if not spec.labelnames:
            self._unlabelled = self._series[()] = self._new_series()

    @property
    def name(self) -> str:
        """The metric name."""
        return self.spec.name

    def _new_series(self) -> SeriesT:
        raise NotImplementedError

    def labels(self, *values: str, **by_name: str) -> SeriesT:
        """The series for these label values, given in declaration order or by name; created on first use."""
        if by_name:
            if values:
                raise TypeError(f"{self.name}: give label values by position or by name, not both")
            values = self._values_from_names(by_name)
        series = self._series.get(values)
        if series is not None:
            return series
        return self._add_series(values)

    def _values_from_names(self, by_name: Mapping[str, str]) -> tuple[str, ...]:
        if set(by_name) != set(self.spec.labelnames):
            raise ValueError(
                f"{self.name}: labels {sorted(by_name)} given, expected exactly {list(self.spec.labelnames)}"
            )
        return tuple(by_name[name] for name in self.spec.labelnames)

    def _add_series(self, values: tuple[str, ...]) -> SeriesT:
        if len(values) != len(self.spec.labelnames):
            raise ValueError(
                f"{self.name}: {len(values)} label values {values} given, expected {list(self.spec.labelnames)}"
            )
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"{self.name}: label value {value!r} must be a str")
        with self._lock:
            return self._series.setdefault(values, self._new_series())

    def _only_series(self) -> SeriesT:
        if self._unlabelled is None:
            raise ValueError(f"{self.name} has labels {list(self.spec.labelnames)}; use .labels(...) first")
        return self._unlabelled

    def remove(self, *values: str) -> None:
        """Forget the series for these label values (e.g. a path that no longer exists)."""
        if not self.spec.labelnames:
            raise ValueError(f"{self.name} has no labels; there is no series to remove")
        with self._lock:
            self._series.pop(tuple(values), None)

    def series(self) -> list[tuple[Labels, SeriesT]]:
        """Every series with its label pairs, sorted by label values."""
        with self._lock:
            items = sorted(self._series.items())
        names = self.spec.labelnames
        return [(tuple(zip(names, values, strict=True)), series) for values, series in items]

    def collect(self) -> MetricSnapshot:
        """The family's samples now."""
        return MetricSnapshot(self.name, self.kind, self.spec.help, tuple(self._samples()))

    def _samples(self) -> Iterable[Sample]:
        raise NotImplementedError


class Counter(_Family[CounterSeries]):
    """A counter family; without labels it records directly (``inc``)."""

    kind: MetricKind = "counter"

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1) -> None:
        """Add to the unlabelled series."""
        self._only_series().inc(amount)

    def _samples(self) -> Iterable[Sample]:
        for labels, series in self.series():
            yield Sample(self.name, labels, series.value)


class Gauge(_Family[GaugeSeries]):
    """A gauge family; without labels it records directly (``set``, ``inc``, ``dec``, ``set_function``)."""

    kind: MetricKind = "gauge"

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def set(self, value: float) -> None:
        """Set the unlabelled series."""
        self._only_series().set(value)

    def inc(self, amount: float = 1) -> None:
        """Add to the unlabelled series."""
        self._only_series().inc(amount)

    def dec(self, amount: float = 1) -> None:
        """Subtract from the unlabelled series."""
        self._only_series().dec(amount)

    def set_function(self, function: Callable[[], float | None]) -> None:
        """Read the unlabelled series from ``function()`` at collection time."""
        self._only_series().set_function(function)

    def _samples(self) -> Iterable[Sample]:
        for labels, series in self.series():
            value = series.current(self.name)
            if value is not None:
                yield Sample(self.name, labels, value)


class Histogram(_Family[HistogramSeries]):
    """A histogram family; without labels it records directly (``observe``, ``time``)."""

    kind: MetricKind = "histogram"
    spec: HistogramSpec

    def __init__(self, spec: HistogramSpec) -> None:
        self._bound_texts = (*(format_float(b) for b in spec.buckets), "+Inf")
        super().__init__(spec)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self.spec.buckets)

    def observe(self, value: float) -> None:
        """Observe into the unlabelled series."""
        self._only_series().observe(value)

    def time(self) -> _Timer:
        """Time a block into the unlabelled series."""
        return self._only_series().time()

    def _samples(self) -> Iterable[Sample]:
        bucket_name, sum_name, count_name = (self.name + suffix for suffix in _HISTOGRAM_SUFFIXES)
        for labels, series in self.series():
            counts, total = series.snapshot()
            cumulative = 0
            for bound_text, count in zip(self._bound_texts, counts, strict=True):
                cumulative += count
                yield Sample(bucket_name, (*labels, ("le", bound_text)), cumulative)
            yield Sample(sum_name, labels, total)
            yield Sample(count_name, labels, cumulative)


AnyFamily = Counter | Gauge | Histogram


class MetricsRegistry:
    """Metric families by name; thread-safe. Most code uses the process-wide :func:`get_registry`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, AnyFamily] = {}
        self._taken_names: dict[str, str] = {}  # every sample name -> the family producing it

    def counter(self, spec: CounterSpec) -> Counter:
        """Declare (or get) a counter."""
        family = self._declare(spec, Counter)
        assert isinstance(family, Counter)
        return family

    def gauge(self, spec: GaugeSpec) -> Gauge:
        """Declare (or get) a gauge."""
        family = self._declare(spec, Gauge)
        assert isinstance(family, Gauge)
        return family

    def histogram(self, spec: HistogramSpec) -> Histogram:
        """Declare (or get) a histogram."""
        family = self._declare(spec, Histogram)
        assert isinstance(family, Histogram)
        return family

    def _declare(self, spec: _MetricSpec, family_type: type[AnyFamily]) -> AnyFamily:
        existing = self._families.get(spec.name)
        if existing is not None and existing.spec == spec:
            return existing
        with self._lock:
            existing = self._families.get(spec.name)
            if existing is not None:
                if existing.spec == spec:
                    return existing
                raise ValueError(
                    f"metric {spec.name!r} is already declared differently: {existing.spec!r}, not {spec!r}"
                )
            produced = [spec.name]
            if family_type is Histogram:
                produced += [spec.name + suffix for suffix in _HISTOGRAM_SUFFIXES]
            for name in produced:
                owner = self._taken_names.get(name)
                if owner is not None:
                    raise ValueError(f"metric {spec.name!r} would produce samples named {name!r}, as {owner!r} does")
            family = family_type(spec)  # type: ignore[arg-type]
            for name in produced:
                self._taken_names[name] = spec.name
            self._families[spec.name] = family
            return family

    def family(self, name: str) -> AnyFamily | None:
        """The family declared under ``name``, if any."""
        return self._families.get(name)

    def collect(self) -> list[MetricSnapshot]:
        """Every family's samples now, sorted by name (gauge functions are called here)."""
        with self._lock:
            families = sorted(self._families.values(), key=lambda f: f.name)
        return [family.collect() for family in families]


class RecordedSamples:
    """Latest values handed to a sink's ``MetricsSink.record``, kept beside the registry.

    ``record(name, value, labels, kind)`` has no help text and no declared labels; the table keeps the
    last value per (name, labels) and reports it with every collection, as a counter or gauge family.
    """

    HELP = "Recorded through MetricsSink.record."

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, SampleKind] = {}
        self._values: dict[tuple[str, Labels], float] = {}

    def record(self, name: str, value: float, labels: Mapping[str, str] | None = None, kind: str = "gauge") -> None:
        """Keep ``value`` as the current value of ``name{labels}``; ``kind`` is ``counter`` or ``gauge``."""
        _check_metric_name(name)
        if kind not in ("counter", "gauge"):
            raise ValueError(f"record({name!r}): kind must be 'counter' or 'gauge', got {kind!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"record({name!r}): value must be a number, got {value!r}")
        pairs = tuple(sorted((labels or {}).items()))
        check_label_names((k for k, _ in pairs), f"record({name!r})")
        for _, label_value in pairs:
            if not isinstance(label_value, str):
                raise TypeError(f"record({name!r}): label value {label_value!r} must be a str")
        with self._lock:
            known = self._kinds.setdefault(name, kind)  # type: ignore[arg-type]
            if known != kind:
                raise ValueError(f"record({name!r}): recorded as a {known} before, now as a {kind}")
            self._values[(name, pairs)] = value

    def collect(self) -> list[MetricSnapshot]:
        """The recorded values as families, sorted by name."""
        with self._lock:
            kinds = dict(self._kinds)
            items = sorted(self._values.items())
        by_name: dict[str, list[Sample]] = {}
        for (name, labels), value in items:
            by_name.setdefault(name, []).append(Sample(name, labels, value))
        return [MetricSnapshot(name, kinds[name], self.HELP, tuple(samples)) for name, samples in by_name.items()]


def merge_snapshots(*sources: Iterable[MetricSnapshot]) -> list[MetricSnapshot]:
    """Concatenate snapshot lists; a family whose sample names clash with an earlier one is dropped with a warning."""
    out: list[MetricSnapshot] = []
    taken: set[str] = set()
    for source in sources:
        for snapshot in source:
            names = {snapshot.name} | {sample.name for sample in snapshot.samples}
            clash = names & taken
            if clash:
                log.warning(
                    "metric %s left out: its sample names %s are already reported", snapshot.name, sorted(clash)
                )
                continue
            taken |= names
            out.append(snapshot)
    return out


_registry = MetricsRegistry()


def get_registry() -> MetricsRegistry:
    """The process-wide registry every role and module records into."""
    return _registry
