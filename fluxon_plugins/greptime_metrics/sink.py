"""The ``greptime`` metrics sink: pushes registry snapshots to GreptimeDB over HTTP.

Every ``push_interval_s`` the sink collects the attached registry (plus values handed to
``record``) and POSTs it as InfluxDB line protocol to GreptimeDB's
``<endpoint>/v1/influxdb/write?db=<database>&precision=ms`` with HTTP Basic authentication when a
username is configured (GreptimeDB accepts Basic credentials on its InfluxDB write API, besides
the ``u``/``p`` query parameters; the header keeps the password out of URLs and access logs).

Each push carries the running totals, so a failed push loses resolution, never counts. A failure
is logged and the interval doubles up to ``max_backoff_s`` until a push succeeds; nothing the
endpoint does can raise into the role. ``close()`` stops the thread and pushes once more.
"""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import attrs

from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import Labels, MetricsRegistry, RecordedSamples, merge_snapshots
from fluxon_core.monitoring import GreptimeConfig
from fluxon_plugins.greptime_metrics.line_protocol import encode_snapshots

log = get_logger("fluxon.metrics.greptime")

WRITE_PATH = "/v1/influxdb/write"


@attrs.frozen
class PushStats:
    """What the sink's pushes did so far."""

    pushes_ok: int = 0
    pushes_failed: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None


def write_url(config: GreptimeConfig) -> str:
    """The InfluxDB-line-protocol write URL for ``config``."""
    query = urllib.parse.urlencode({"db": config.database, "precision": "ms"})
    return f"{config.endpoint.rstrip('/')}{WRITE_PATH}?{query}"


class GreptimeSink:
    """Pushes the attached registry to GreptimeDB from a daemon thread (see the module docs)."""

    def __init__(self, config: GreptimeConfig | None = None) -> None:
        self.config = config or GreptimeConfig()
        self.url = write_url(self.config)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.username is not None:
            token = base64.b64encode(f"{self.config.username}:{self.config.password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._opener = urllib.request.build_opener()
        self._recorded = RecordedSamples()
        self._registry: MetricsRegistry | None = None
        self._constant_labels: Labels = ()
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stats = PushStats()

    @property
    def stats(self) -> PushStats:
        """Counts of successful and failed pushes and the last error."""
        return self._stats

    def attach(self, registry: MetricsRegistry, constant_labels: Labels) -> None:
        """Push ``registry`` from now on, tagging every sample with ``constant_labels``."""
        with self._lock:
            if self._registry is not None:
                raise RuntimeError("the greptime sink is already attached")
            self._registry = registry
            self._constant_labels = tuple(constant_labels)
        self._ensure_started()

    def record(self, name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge") -> None:
        """Push ``name{labels} value`` with every following snapshot (the last value recorded wins)."""
        self._recorded.record(name, value, labels, kind)
        self._ensure_started()

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="fluxon-metrics-greptime", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        interval = self.config.push_interval_s
        delay = interval
        while not self._stop.wait(delay):
            if self.push_now():
                delay = interval
            else:
                delay = min(interval * 2**self._stats.consecutive_failures, self.config.max_backoff_s)

    def payload(self) -> bytes:
        """The line-protocol body of a push made now."""
        registry_part = self._registry.collect() if self._registry is not None else []
        snapshots = merge_snapshots(registry_part, self._recorded.collect())
        return encode_snapshots(snapshots, self._constant_labels, int(time.time() * 1000)).encode("utf-8")

    def push_now(self) -> bool:
        """Push one snapshot; True on success. Failures are logged and counted, never raised."""
        with self._push_lock:
            try:
                body = self.payload()
                if body:
                    self._post(body)
            except Exception as exc:
                self._failed(exc)
                return False
            if self._stats.consecutive_failures:
                log.info("metrics push to %s works again after %d failures", self.url, self._stats.consecutive_failures)
            self._stats = attrs.evolve(self._stats, pushes_ok=self._stats.pushes_ok + 1, consecutive_failures=0)
            return True

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            raise RuntimeError(f"HTTP {exc.code} {exc.reason}: {detail}") from None

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        failures = self._stats.consecutive_failures + 1
        self._stats = attrs.evolve(
            self._stats, pushes_failed=self._stats.pushes_failed + 1, consecutive_failures=failures, last_error=error
        )
        retry = min(self.config.push_interval_s * 2**failures, self.config.max_backoff_s)
        log.warning("metrics push to %s failed (%d in a row): %s; next try in %.0fs", self.url, failures, error, retry)

    def close(self) -> None:
        """Stop pushing after one last push of the current values; idempotent, never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join()
            self.push_now()
