"""The content of one file version as of open, read in pieces through the cache with readahead.

A file of at most one piece is read whole at open (one call, or none when cached). A larger file
is read piece by piece: from this reader's small window, else the :class:`PieceCache` (key has the
version, so only the opened version can be found), else ``read_chunk`` — whose answer is cached
when it still belongs to that version. A sequential reader gets the next ``readahead_pieces``
fetched in the background; one large read fetches all its pieces concurrently.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from fluxon_fs.export.ops import FileStat
from fluxon_fs.patcher.content_cache import Piece, piece_key
from fluxon_fs.patcher.errors import raise_with_user_path
from fluxon_fs.patcher.fresh_bytes import MIN_FRESH_BYTES, filled_bytes
from fluxon_fs.patcher.io_pool import io_pool

if TYPE_CHECKING:
    from fluxon_fs.patcher.mount_table import MountedPath


class PinnedContent:
    """Read access to one version of a remote file; used by one reader at a time (the file's lock)."""

    def __init__(self, target: MountedPath, stat: FileStat, first_piece: Piece | None) -> None:
        export = target.export
        self._ops = export.ops
        # Pieces are kept as received when the ops can hand out the received frame (no copy).
        self._read_chunk: Callable[[str, int, int], tuple[FileStat, Piece]] = getattr(
            export.ops, "read_chunk_view", export.ops.read_chunk
        )
        self._cache = export.piece_cache
        self._cache_piece = export.cache_piece
        self._reads = export.piece_reads
        self._export_name = export.export_name
        self._relpath = target.relpath
        self._user_path = target.user_path
        self._piece_bytes = export.options.piece_bytes
        self._readahead = export.options.readahead_pieces
        self._window: OrderedDict[int, memoryview] = OrderedDict()
        self._window_limit = max(2 * self._readahead, 8)
        self._inflight: dict[int, Future[Piece]] = {}
        self._next_sequential = 0
        self.stat = stat
        self.cached_pieces = 0
        self.remote_pieces = 0
        self._peers_may_have: bool | None = None
        """Whether peer owners hold pieces of this version (None: not asked yet)."""
        self._peers_lock = threading.Lock()
        if stat.size <= self._piece_bytes:
            self._load_whole(first_piece)
        elif first_piece is not None and len(first_piece) == self._piece_bytes:
            self._window[0] = memoryview(first_piece).cast("B")

    @property
    def size(self) -> int:
        """File size as of open."""
        return self.stat.size

    def _key(self, index: int, version: str | None = None) -> str:
        return piece_key(self._export_name, self._relpath, version or self.stat.version, index)

    def _load_whole(self, first_piece: Piece | None) -> None:
        size = self.stat.size
        data = first_piece if first_piece is not None and len(first_piece) == size else None
        if data is None and size:
            # This host's pool only: for one piece the agent's answer is one call, a peer's takes three.
            data = self._cache.get_local(self._key(0))
            if data is not None and len(data) != size:
                data = None
            if data is not None:
                self.cached_pieces += 1
                self._reads.hit()
        if data is None and size:
            # Ask for a whole piece: if the file changed since the cached stat, we adopt what is there now.
            stat, data = self._read_remote(0, self._piece_bytes)
            self.remote_pieces += 1
            self._reads.miss()
            if stat.version != self.stat.version:
                self.stat = stat
            if len(data) == min(stat.size, self._piece_bytes) and stat.version == self.stat.version:
                self._cache_piece(self._relpath, stat.version, 0, data)
        if data:
            self._window[0] = memoryview(data).cast("B")

    # -- reading --------------------------------------------------------------------------------

    def slices(self, offset: int, length: int) -> list[memoryview]:
        """Views covering ``[offset, offset+length)`` clipped to the size as of open."""
        return list(self._arriving_slices(offset, length))

    def _arriving_slices(self, offset: int, length: int) -> Iterator[memoryview]:
        """:meth:`slices` one piece at a time, each as soon as it is there (the rest keep arriving)."""
        end = min(offset + length, self.stat.size)
        if offset >= end:
            return
        size_of_piece = self._piece_bytes
        first, last = offset // size_of_piece, (end - 1) // size_of_piece
        self._schedule(first, last)
        self._next_sequential = last + 1
        for index in range(first, last + 1):
            piece = self._piece(index)
            base = index * size_of_piece
            start, stop = max(offset, base) - base, min(end, base + size_of_piece) - base
            yield piece[start:stop]
            if len(piece) < stop:  # the file shrank after open: what is there is all there is
                return

    def read(self, offset: int, length: int) -> bytes:
        """Bytes at ``[offset, offset+length)`` (short at EOF).

        A large result is filled piece by piece as the pieces arrive, in memory backed by huge
        pages (:mod:`~fluxon_fs.patcher.fresh_bytes`: a fresh object's page faults cost more than
        the copy); a small one joins the pieces.
        """
        available = min(offset + length, self.stat.size) - offset
        if available >= MIN_FRESH_BYTES:
            return filled_bytes(available, partial(self.readinto, offset))
        views = self.slices(offset, length)
        if len(views) == 1:
            return views[0].tobytes()
        return b"".join(views)

    def readinto(self, offset: int, buffer: memoryview) -> int:
        """Copy bytes at ``offset`` into ``buffer``; returns how many (0 at EOF). Each piece is
        copied as it arrives, while the later ones are still on their way."""
        done = 0
        for view in self._arriving_slices(offset, len(buffer)):
            buffer[done : done + len(view)] = view
            done += len(view)
        return done

    def close(self) -> None:
        """Drop buffered pieces and cancel readahead that has not started."""
        for future in self._inflight.values():
            future.cancel()
        self._inflight.clear()
        self._window.clear()

    # -- pieces ---------------------------------------------------------------------------------

    def _piece_count(self) -> int:
        return -(-self.stat.size // self._piece_bytes)

    def _schedule(self, first: int, last: int) -> None:
        """Start background fetches: the rest of a multi-piece read, then readahead when sequential."""
        wanted = list(range(first + 1, last + 1))
        if first in (self._next_sequential, self._next_sequential - 1):
            wanted += range(last + 1, min(last + 1 + self._readahead, self._piece_count()))
        for index in wanted:
            if index not in self._window and index not in self._inflight:
                self._inflight[index] = io_pool().submit(self._load_piece, index)

    def _piece(self, index: int) -> memoryview:
        piece = self._window.get(index)
        if piece is not None:
            self._window.move_to_end(index)
            return piece
        future = self._inflight.pop(index, None)
        data = future.result() if future is not None else self._load_piece(index)
        piece = memoryview(data).cast("B")
        self._window[index] = piece
        while len(self._window) > self._window_limit:
            self._window.popitem(last=False)
        return piece

    def _load_piece(self, index: int) -> Piece:
        """One piece of the opened version (cache, else the agent). Runs on the pool too."""
        key = self._key(index)
        cached = self._cache.get_local(key)
        if cached is None and self._peers_may_have is not False:
            cached = self._cache_lookup_in_cluster(key)
        if cached is not None:
            self.cached_pieces += 1
            self._reads.hit()
            return cached
        offset = index * self._piece_bytes
        want = min(self._piece_bytes, self.stat.size - offset)
        stat, data = self._read_remote(offset, want)
        self.remote_pieces += 1
        self._reads.miss()
        if stat.version == self.stat.version and len(data) == want:
            self._cache_piece(self._relpath, stat.version, index, data)
        return data

    def _cache_lookup_in_cluster(self, key: str) -> Piece | None:
        """A piece this host lacks, from a peer owner if one holds it (via the host's owner and the kv master).

        Worth its calls only while peers have this version: the first lookup decides (concurrent
        readahead waits for it), and after a miss the rest of the version goes straight to the agent.
        """
        if self._peers_may_have is None:
            with self._peers_lock:
                if self._peers_may_have is None:
                    cached = self._cache.get(key)
                    self._peers_may_have = cached is not None
                    return cached
        return self._cache.get(key) if self._peers_may_have else None

    def _read_remote(self, offset: int, length: int) -> tuple[FileStat, Piece]:
        """``read_chunk`` until ``length`` bytes or EOF (an agent may answer short for large requests)."""
        try:
            stat, data = self._read_chunk(self._relpath, offset, length)
            if len(data) >= length or len(data) == 0 or offset + len(data) >= stat.size:
                return stat, data
            parts = [data]
            got = len(data)
            while got < length:
                stat, more = self._read_chunk(self._relpath, offset + got, length - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return stat, b"".join(parts)
        except Exception as exc:
            raise_with_user_path(exc, self._user_path)
