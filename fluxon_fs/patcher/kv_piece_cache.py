"""File content pieces in the host's shared-memory pool, through the process's KV client.

Keys come from :func:`fluxon_fs.patcher.content_cache.piece_key` and include the file version,
so a changed file can never be served from an old piece. Reads of a local replica are zero-copy
views into the pool. :meth:`KvPieceCache.get` may also be served by a peer owner (the host's
owner asks the kv master's routes); :meth:`KvPieceCache.get_local` never leaves this host and
makes no call at all. Puts run in the background (:mod:`~fluxon_fs.patcher.background_puts`):
the reader that fetched a piece never waits for the pool or the kv master.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Sequence

from fluxon_core.errors import ApiError, KeyNotFoundError
from fluxon_core.kv import KvClient
from fluxon_core.kv.client import MemHolder
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import CACHE_HITS, CACHE_MISSES, CACHE_PUTS_DROPPED
from fluxon_core.result import Result
from fluxon_fs.patcher.background_puts import BackgroundPuts
from fluxon_fs.patcher.content_cache import Piece

log = get_logger("fluxon.fs.cache")

PIECE_FIELD = "data"
FLUSH_AT_CLOSE_S = 5.0
"""How long :meth:`KvPieceCache.close` lets queued puts finish."""


FLUSH_AT_EXIT_S = 2.0
"""How long an exiting process waits for its queued puts (a script that read files and ended
leaves them warm for the next process on the host)."""

_live_caches: weakref.WeakSet[KvPieceCache] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # Registered after the KV client's own exit hook (this module imports it first), so it runs
    # before that hook closes the stores.
    for cache in list(_live_caches):
        cache.flush(FLUSH_AT_EXIT_S)


class KvPieceCache:
    """:class:`~fluxon_fs.patcher.content_cache.PieceCache` on a :class:`KvClient`."""

    def __init__(self, store: KvClient) -> None:
        self._store = store
        self._hits = CACHE_HITS.get().labels("fs")
        self._misses = CACHE_MISSES.get().labels("fs")
        self.background = BackgroundPuts(self._put_batch, on_drop=CACHE_PUTS_DROPPED.get().labels("fs").inc)
        """The queue of puts not yet in the pool (its ``dropped`` counts pieces a full queue skipped)."""
        _live_caches.add(self)

    def get(self, key: str) -> Piece | None:
        """A zero-copy view of the piece from this host's pool or a peer's, or None."""
        queued = self.background.pending(key)
        if queued is not None:
            return queued
        return self._found(key, self._store.get_blocking(key))

    def get_local(self, key: str) -> Piece | None:
        """Like :meth:`get`, from this host's pool only: no call to any process."""
        queued = self.background.pending(key)
        if queued is not None:
            return queued
        return self._found(key, self._store.get_local_blocking(key))

    def _found(self, key: str, result: Result[MemHolder]) -> Piece | None:
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
        """Queue a piece for the pool; a full queue, a full pool or an unreachable owner only costs the caching."""
        self.background.submit(key, bytes(data) if isinstance(data, bytearray) else data)

    def _put_batch(self, batch: Sequence[tuple[str, Piece]]) -> None:
        """One call to the owner and one commit at the kv master for the whole batch."""
        result = self._store.put_many_blocking([(key, {PIECE_FIELD: data}) for key, data in batch])
        if result.is_err():
            log.info("content cache write of %d pieces skipped: %s", len(batch), result.unwrap_error())
            return
        for (key, _), error in zip(batch, result.unwrap(), strict=True):
            if error is not None:
                log.info("content cache write of %s skipped: %s", key, error)

    def delete(self, key: str) -> None:
        """Drop a piece if present (also a put of it still queued in this process)."""
        self.background.cancel(key)
        try:
            self._store.remove(key)
        except ApiError:
            pass

    def flush(self, timeout_s: float = FLUSH_AT_CLOSE_S) -> bool:
        """Wait until queued puts reached the pool; False when ``timeout_s`` passed first."""
        return self.background.flush(timeout_s)
