"""Per-process cache of ``stat`` and directory listings of one mount (FS.md §5).

Answers are reused for ``metadata_cache_ttl_ms``; this process's own changes forget the affected
entries at once. A fetch that raced with such a change is not stored (generation check), so a
write can never be hidden by an older answer arriving late.
"""

from __future__ import annotations

import os
import stat as stat_module
import threading
import time
from collections.abc import Callable

from fluxon_fs.export.ops import DirEntryInfo, FileStat

_MAX_MISSING = 4096
"""Cached "does not exist" answers are few and scanned on every change; beyond this many, start over."""


class StatEntry:
    """One cached ``stat`` answer; ``stat`` None means the path did not exist."""

    __slots__ = ("fetched_at", "result", "stat")

    def __init__(self, fetched_at: float, stat: FileStat | None) -> None:
        self.fetched_at = fetched_at
        self.stat = stat
        self.result: os.stat_result | None = None  # built on first os.stat, then reused


class _Listing:
    __slots__ = ("entries", "fetched_at")

    def __init__(self, fetched_at: float, entries: list[DirEntryInfo]) -> None:
        self.fetched_at = fetched_at
        self.entries = entries


def parent_of(relpath: str) -> str:
    """Export-relative parent (``""`` is the export root and its own parent)."""
    return relpath.rpartition("/")[0]


class MetadataCache:
    """Thread-safe stat and listing cache keyed by export-relative path."""

    def __init__(
        self, ttl_s: float, *, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._stats: dict[tuple[str, bool], StatEntry] = {}
        self._missing: set[tuple[str, bool]] = set()  # keys of "does not exist" answers
        self._listings: dict[str, _Listing] = {}
        self._lock = threading.Lock()
        self.generation = 0
        """Bumped by every forget; capture it before a fetch and pass it to the put."""

    # -- stat -----------------------------------------------------------------------------------

    def stat_entry(self, relpath: str, follow_symlinks: bool) -> StatEntry | None:
        """The last known answer whatever its age (callers judge freshness via ``fetched_at``)."""
        return self._stats.get((relpath, follow_symlinks))

    def fresh_stat(self, relpath: str, follow_symlinks: bool, max_age_s: float) -> StatEntry | None:
        """The cached answer if fetched at most ``max_age_s`` ago."""
        entry = self._stats.get((relpath, follow_symlinks))
        if entry is not None and self.clock() - entry.fetched_at <= max_age_s:
            return entry
        return None

    def put_stat(self, relpath: str, follow_symlinks: bool, stat: FileStat | None, generation: int) -> StatEntry:
        """Remember an answer fetched when the cache was at ``generation``; returns the entry."""
        entry = StatEntry(self.clock(), stat)
        with self._lock:
            if generation == self.generation:
                self._store_stat(relpath, follow_symlinks, stat, entry)
        return entry

    def _store_stat(self, relpath: str, follow_symlinks: bool, stat: FileStat | None, entry: StatEntry) -> None:
        key = (relpath, follow_symlinks)
        self._stats.pop(key, None)
        self._stats[key] = entry
        if stat is None:
            if len(self._missing) >= _MAX_MISSING:
                self._drop_missing(lambda path: True)
            self._missing.add(key)
        else:
            self._missing.discard(key)
        if not follow_symlinks and stat is not None and not _is_link(stat):
            # What is not a symlink has the same stat as lstat. (Not the other way round: a followed
            # stat says nothing about whether the path itself is a link.)
            self._stats.pop((relpath, True), None)
            self._stats[(relpath, True)] = entry
        if len(self._stats) > self.max_entries:
            self._evict()

    # -- listings -------------------------------------------------------------------------------

    def fresh_listing(self, relpath: str) -> list[DirEntryInfo] | None:
        """Cached entries of a directory if fetched within the TTL."""
        listing = self._listings.get(relpath)
        if listing is not None and self.clock() - listing.fetched_at <= self.ttl_s:
            return listing.entries
        return None

    def put_listing(self, relpath: str, entries: list[DirEntryInfo], generation: int) -> None:
        """Remember a listing and the lstat of every entry in it."""
        now = self.clock()
        with self._lock:
            if generation != self.generation:
                return
            self._listings.pop(relpath, None)
            self._listings[relpath] = _Listing(now, entries)
            prefix = f"{relpath}/" if relpath else ""
            for entry in entries:
                self._store_stat(prefix + entry.name, False, entry.stat, StatEntry(now, entry.stat))
            if len(self._listings) > self.max_entries:
                for key in list(self._listings)[: len(self._listings) // 4]:
                    del self._listings[key]

    # -- invalidation ---------------------------------------------------------------------------

    def forget(self, relpath: str) -> None:
        """Drop what a change of ``relpath`` makes stale: its entries, its parent's, and every
        "does not exist" answer below it (``relpath/x`` is ``ENOTDIR`` once ``relpath`` is a file)."""
        parent = parent_of(relpath)
        below = f"{relpath}/" if relpath else ""
        with self._lock:
            self.generation += 1
            for path in (relpath, parent):
                for key in ((path, True), (path, False)):
                    self._stats.pop(key, None)
                    self._missing.discard(key)
                self._listings.pop(path, None)
            if self._missing:
                self._drop_missing(lambda path: path.startswith(below))

    def _drop_missing(self, selected: Callable[[str], bool]) -> None:
        for key in [k for k in self._missing if selected(k[0])]:
            self._missing.discard(key)
            self._stats.pop(key, None)

    def forget_tree(self, relpath: str) -> None:
        """Like :meth:`forget`, plus everything below ``relpath`` (a directory was moved or removed)."""
        if not relpath:
            self.clear()
            return
        self.forget(relpath)
        prefix = f"{relpath}/"
        with self._lock:
            self.generation += 1
            for key in [k for k in self._stats if k[0].startswith(prefix)]:
                del self._stats[key]
                self._missing.discard(key)
            for path in [p for p in self._listings if p.startswith(prefix)]:
                del self._listings[path]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self.generation += 1
            self._stats.clear()
            self._missing.clear()
            self._listings.clear()

    def _evict(self) -> None:
        for key in list(self._stats)[: len(self._stats) // 4]:
            del self._stats[key]
            self._missing.discard(key)


def _is_link(stat: FileStat) -> bool:
    return stat_module.S_ISLNK(stat.mode)
