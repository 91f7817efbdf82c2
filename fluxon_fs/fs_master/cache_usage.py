"""The content cache as mount clients report it: each export's usage in each host pool, and its hits and misses.

A client reports, with its mount reports, what each export it mounts holds in its host's pool
(read from the pool owner's per-export budget accounting) and how many pieces its readers got
from the cache or from an agent since its previous report. Usage is per host pool — the last
report from any client of that host stands until it expires; hits and misses are added up since
the fs master started, so they only grow, whatever clients come and go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from fluxon_fs.master_api.records import CacheUsageReport


@attrs.frozen
class PoolExportUsage:
    """One export's pieces in one host pool, as last reported."""

    pool_owner: str
    host: str
    budget_bytes: int
    used_bytes: int
    entries: int
    evictions: int
    reported_at_wall: float
    expires_at: float


@attrs.frozen
class ExportCacheUsage:
    """One export's content cache across the cluster."""

    hits: int = 0
    misses: int = 0
    pools: tuple[PoolExportUsage, ...] = ()
    """Its usage in each host pool with a live report, by pool owner."""

    @property
    def used_bytes(self) -> int:
        """Bytes its pieces take in all those pools together."""
        return sum(pool.used_bytes for pool in self.pools)

    @property
    def hit_rate(self) -> float | None:
        """hits / (hits + misses), None before any piece was read."""
        reads = self.hits + self.misses
        return self.hits / reads if reads else None


class CacheUsageRegistry:
    """Adds up clients' :class:`CacheUsageReport` s; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reads: dict[str, tuple[int, int]] = {}
        self._pools: dict[tuple[str, str], PoolExportUsage] = {}
        self._lock = threading.Lock()

    def report(self, report: CacheUsageReport) -> None:
        """Add a client's hits and misses and take its pool usage as the latest for its host pool."""
        now, wall = self._clock(), time.time()
        with self._lock:
            for name, figures in report.exports.items():
                hits, misses = self._reads.get(name, (0, 0))
                self._reads[name] = (hits + max(0, figures.hits), misses + max(0, figures.misses))
                pool = figures.pool
                if pool is None:
                    continue
                self._pools[(name, report.pool_owner)] = PoolExportUsage(
                    pool_owner=report.pool_owner,
                    host=report.host,
                    budget_bytes=pool.budget_bytes,
                    used_bytes=pool.used_bytes,
                    entries=pool.entries,
                    evictions=pool.evictions,
                    reported_at_wall=wall,
                    expires_at=now + report.valid_for_s,
                )

    def exports(self) -> dict[str, ExportCacheUsage]:
        """Every export reported so far (pools without a live report left out)."""
        now = self._clock()
        with self._lock:
            for key in [key for key, pool in self._pools.items() if pool.expires_at <= now]:
                del self._pools[key]
            pools: dict[str, list[PoolExportUsage]] = {}
            for (name, _owner), pool in sorted(self._pools.items()):
                pools.setdefault(name, []).append(pool)
            return {
                name: ExportCacheUsage(*self._reads.get(name, (0, 0)), tuple(pools.get(name, ())))
                for name in sorted(set(self._reads) | set(pools))
            }

    def totals(self) -> tuple[int, int]:
        """Hits and misses of every export together."""
        with self._lock:
            return sum(h for h, _ in self._reads.values()), sum(m for _, m in self._reads.values())
