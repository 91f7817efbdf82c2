"""File content pieces in the host's shared-memory pool, through the process's KV client.

Keys come from :func:`fluxon_fs.patcher.content_cache.piece_key` and include the file version,
so a changed file can never be served from an old piece. Reads of a local replica are zero-copy
views into the pool; a miss on this host may still be served by a peer owner through the kv
master's routes before the mount falls back to the agent.
"""

from __future__ import annotations

from fluxon_core.errors import ApiError, KeyNotFoundError
from fluxon_core.kv import KvClient
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import CACHE_HITS, CACHE_MISSES
from fluxon_fs.patcher.content_cache import Piece

log = get_logger("fluxon.fs.cache")

PIECE_FIELD = "data"


class KvPieceCache:
    """:class:`~fluxon_fs.patcher.content_cache.PieceCache` on a :class:`KvClient`."""

    def __init__(self, store: KvClient) -> None:
        self._store = store
        self._hits = CACHE_HITS.get().labels("fs")
        self._misses = CACHE_MISSES.get().labels("fs")

    def get(self, key: str) -> Piece | None:
        """A zero-copy view of the piece, or None (also when the pool cannot answer)."""
        result = self._store.get_blocking(key)
        if result.is_err():
            error = result.unwrap_error()
            if not isinstance(error, KeyNotFoundError):
                log.warning("content cache read of %s failed: %s", key, error)
            self._misses.inc()
            return None
        self._hits.inc()
        data = result.unwrap().access()[PIECE_FIELD]
        return data if isinstance(data, bytes | memoryview) else None

    def put(self, key: str, data: Piece) -> None:
        """Store a piece; a full pool or an unreachable owner only costs the caching."""
        result = self._store.put_blocking(key, {PIECE_FIELD: bytes(data) if isinstance(data, bytearray) else data})
        if result.is_err():
            log.info("content cache write of %s skipped: %s", key, result.unwrap_error())

    def delete(self, key: str) -> None:
        """Drop a piece if present."""
        try:
            self._store.remove(key)
        except ApiError:
            pass
