"""Remote file content cached in fixed-size pieces, keyed by path **and version** (FS.md §5).

A changed file has a new version (``FileStat.version``), hence new keys: a stale piece can never be
served as current. The mount client only needs :class:`PieceCache`; the KV-backed implementation
(the host's shared-memory pool) lives with the store, :class:`InMemoryPieceCache` serves tests and
processes without a store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

Piece = bytes | bytearray | memoryview
"""Content of one piece; must stay valid while the caller holds it."""

CACHE_KEY_ROOT = "/fluxon_fs_cache/"


def export_cache_prefix(export_name: str) -> str:
    """The key prefix of everything cached for ``export_name``: ``/fluxon_fs_cache/<export>/``.

    The mount client gives it the export's ``cache_max_bytes`` as a budget in the host pool.
    """
    return f"{CACHE_KEY_ROOT}{export_name}/"


def piece_key(export_name: str, relpath: str, version: str, piece_index: int) -> str:
    """The cache key of one piece: ``/fluxon_fs_cache/<export>/<relpath>@<version>/<piece_index>``."""
    return f"{CACHE_KEY_ROOT}{export_name}/{relpath}@{version}/{piece_index}"


def version_hint_key(export_name: str, relpath: str) -> str:
    """Key of a hint that some process cached pieces of this file (its value: that version).

    A process that knows nothing of the file then learns the version with ``stat`` and finds the
    pieces in the pool, instead of reading the first piece from the agent. Never a piece key: those
    end in ``/<piece_index>``.
    """
    return f"{CACHE_KEY_ROOT}{export_name}/{relpath}@latest"


_HINT_CONTENT_SEPARATOR = b"\n"  # never part of a version ("<size>-<mtime_ns>")
_MAX_VERSION_BYTES = 64


def version_hint(version: str, whole_content: Piece | None = None) -> bytes:
    """The value of a version hint: the version, followed by the file's whole content when given.

    A file of one short piece travels in its hint (:func:`read_version_hint`), so caching it
    stages one value in the pool, not a piece and a hint; larger files keep their pieces apart.
    """
    if whole_content is None:
        return version.encode()
    return b"".join((version.encode(), _HINT_CONTENT_SEPARATOR, whole_content))


def read_version_hint(value: Piece) -> tuple[str, memoryview | None]:
    """The version a hint names and the whole content it carries (None: only the version)."""
    view = memoryview(value).cast("B")
    head = bytes(view[: _MAX_VERSION_BYTES + 1])
    end = head.find(_HINT_CONTENT_SEPARATOR)
    if end < 0:
        return bytes(view).decode("ascii", "replace"), None
    return head[:end].decode("ascii", "replace"), view[end + 1 :]


class PieceReads:
    """How one mount's reads got their pieces: from the cache (hits) or from an agent (misses).

    Counted per piece a reader needed, once: a piece fetched from an agent and then cached is one
    miss; a later read of it from the pool, by any reader of this mount, is a hit. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._reported = (0, 0)

    def hit(self) -> None:
        """A piece came from the cache."""
        with self._lock:
            self.hits += 1

    def miss(self) -> None:
        """A piece came from an agent."""
        with self._lock:
            self.misses += 1

    def take_unreported(self) -> tuple[int, int]:
        """Hits and misses since the previous call (what a report to the fs master adds)."""
        with self._lock:
            now = (self.hits, self.misses)
            reported, self._reported = self._reported, now
        return now[0] - reported[0], now[1] - reported[1]

    def give_back(self, hits: int, misses: int) -> None:
        """A report of ``hits`` and ``misses`` was not delivered: include them in the next one."""
        with self._lock:
            self._reported = (self._reported[0] - hits, self._reported[1] - misses)


class PieceCache(Protocol):
    """Where the mount client keeps file pieces. Every method is best-effort and thread-safe."""

    def get(self, key: str) -> Piece | None:
        """The piece stored under ``key``, or None. The returned object stays valid while referenced."""
        ...

    def get_local(self, key: str) -> Piece | None:
        """Like :meth:`get` without asking any other process (another host's cache, say): a miss is cheap."""
        ...

    def put(self, key: str, data: Piece) -> None:
        """Store a piece; may silently drop it (budget full, piece too large)."""
        ...

    def delete(self, key: str) -> None:
        """Forget a piece if present."""
        ...

    def flush(self, timeout_s: float) -> bool:
        """Wait until every put made so far is stored (puts may run in the background); False on timeout."""
        ...


class InMemoryPieceCache:
    """A process-local LRU :class:`PieceCache` bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._pieces: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._pieces)

    def get(self, key: str) -> bytes | None:
        """See :meth:`PieceCache.get`; a hit becomes most recently used."""
        with self._lock:
            data = self._pieces.get(key)
            if data is not None:
                self._pieces.move_to_end(key)
            return data

    def get_local(self, key: str) -> bytes | None:
        """See :meth:`PieceCache.get_local`: everything here is local."""
        return self.get(key)

    def put(self, key: str, data: Piece) -> None:
        """See :meth:`PieceCache.put`; evicts least recently used pieces to make room."""
        stored = bytes(data)
        if len(stored) > self.max_bytes:
            return
        with self._lock:
            old = self._pieces.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._pieces[key] = stored
            self._bytes += len(stored)
            while self._bytes > self.max_bytes:
                _, evicted = self._pieces.popitem(last=False)
                self._bytes -= len(evicted)

    def flush(self, timeout_s: float) -> bool:
        """See :meth:`PieceCache.flush`: puts are stored at once here."""
        return True

    def delete(self, key: str) -> None:
        """See :meth:`PieceCache.delete`."""
        with self._lock:
            old = self._pieces.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
