"""Metrics hot-path cost: what one ``inc`` / ``observe`` costs a role, against the floor of a thread-safe add.

The baseline of each scenario does the same bookkeeping by hand with nothing around it (explicit
``acquire``/``release``, the cheapest lock use): a locked
add on an attribute (counter), a dict lookup on the label tuple plus a locked add (labelled
counter), a dict lookup plus ``bisect`` plus a locked bucket add (histogram). The two run in
alternating blocks so load on the shared machine hits both; each figure is the best block, per
call, in nanoseconds. Target: under 1 µs per call.

Run ``python -m benchmarks.bench_metrics`` to print the rows.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from typing import Any

from fluxon_core.metrics import LATENCY_BUCKETS, CounterSpec, HistogramSpec, MetricsRegistry

TARGET_NS = 1000.0


class _Bare:
    """Hand-written bookkeeping: the least any thread-safe metric can do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0
        self.series: dict[tuple[str, ...], _Bare] = {}
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def add(self) -> None:
        self.lock.acquire()
        self.value += 1
        self.lock.release()

    def labelled_add(self, *values: str) -> None:
        series = self.series.get(values)
        if series is None:
            series = self.series.setdefault(values, _Bare())
        series.lock.acquire()
        series.value += 1
        series.lock.release()

    def labelled_observe(self, value: float, *values: str) -> None:
        series = self.series.get(values)
        if series is None:
            series = self.series.setdefault(values, _Bare())
        index = bisect.bisect_left(LATENCY_BUCKETS, value)
        series.lock.acquire()
        series.counts[index] += 1
        series.sum += value
        series.lock.release()


def _best_ns(fluxon: Callable[[], None], baseline: Callable[[], None], rounds: int, calls: int) -> tuple[float, float]:
    best_fluxon = best_baseline = float("inf")
    for _ in range(rounds):
        for operation, is_fluxon in ((fluxon, True), (baseline, False)):
            start = time.perf_counter_ns()
            for _ in range(calls):
                operation()
            per_call = (time.perf_counter_ns() - start) / calls
            if is_fluxon:
                best_fluxon = min(best_fluxon, per_call)
            else:
                best_baseline = min(best_baseline, per_call)
    return best_fluxon, best_baseline


def run(quick: bool) -> list[dict[str, Any]]:
    """Per-call cost of a cached-series counter inc, a labelled counter inc and a labelled histogram observe."""
    rounds, calls = (3, 20_000) if quick else (7, 100_000)
    registry = MetricsRegistry()
    ops = CounterSpec("bench_ops_total", "ops", ("op", "result")).get(registry)
    latency = HistogramSpec("bench_latency_seconds", "latency", ("path", "side")).get(registry)
    series = ops.labels("read", "ok")
    bare = _Bare()
    path = "/fluxon_fs/demo/read"
    scenarios: list[tuple[str, Callable[[], None], Callable[[], None], str]] = [
        ("counter inc, series kept by the caller", series.inc, bare.add, "locked add on an attribute"),
        (
            "counter labels(op, result).inc()",
            lambda: ops.labels("read", "ok").inc(),
            lambda: bare.labelled_add("read", "ok"),
            "dict lookup on the label tuple + locked add",
        ),
        (
            "histogram labels(path, side).observe()",
            lambda: latency.labels(path, "server").observe(0.0003),
            lambda: bare.labelled_observe(0.0003, path, "server"),
            "dict lookup + bisect + locked bucket add",
        ),
    ]
    rows = []
    for scenario, fluxon_op, baseline_op, note in scenarios:
        fluxon_ns, baseline_ns = _best_ns(fluxon_op, baseline_op, rounds, calls)
        rows.append(
            {
                "scenario": scenario,
                "fluxon": round(fluxon_ns, 1),
                "baseline": round(baseline_ns, 1),
                "unit": "ns/call",
                "ratio": round(fluxon_ns / baseline_ns, 2),
                "target": f"< {TARGET_NS:.0f} ns per call",
                "met": fluxon_ns < TARGET_NS,
                "note": f"baseline: {note}",
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(quick=False):
        print(row)
