"""Cache puts taken off the reader's path: one worker thread per cache, a bounded queue, batches.

A reader that fetched a piece from an agent hands it here and goes on; the worker stores queued
pieces in batches. Nothing here is ever visible to another process before the store committed
it (the store's put is staged-then-committed), so a queued piece is simply not found elsewhere
yet. In this process a queued piece is found (:meth:`BackgroundPuts.pending`), so a re-read does
not go back to the agent while the put is under way.

The queue is bounded in pieces and bytes, counting the pieces being stored as well as those waiting
(both are held in memory): when full, a new piece is dropped (counted in
:attr:`BackgroundPuts.dropped`) and the reader never waits. :meth:`BackgroundPuts.cancel` takes
a queued piece back and waits for an in-flight put of that key, so a delete issued after it
cannot be overtaken by the put.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

from fluxon_core.log_setup import get_logger
from fluxon_fs.patcher.content_cache import Piece

log = get_logger("fluxon.fs.cache")

DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_QUEUED_PIECES = 4096
BATCH_PIECES = 64
"""At most this many queued pieces go to the store in one batch."""
LINGER_S = 0.005
"""A short batch waits until no piece was queued for this long (at most :data:`MAX_LINGER_S`): a
reader of many small files queues a put per file, and a call per file would cost the owner and
kv master more CPU than the reads; a large read queues a piece every few milliseconds, and storing
them while it runs takes CPU from it (staging copies every byte once more)."""
MAX_LINGER_S = 0.25
IDLE_EXIT_S = 30.0
"""An idle worker thread ends after this long (a process with many patchers keeps no idle threads)."""

PutBatch = Callable[[Sequence[tuple[str, Piece]]], None]


def _size(data: Piece) -> int:
    return memoryview(data).nbytes


def _forget_in_child(ref: weakref.ref[BackgroundPuts]) -> None:
    puts = ref()
    if puts is not None:
        puts._forget_in_child()


class BackgroundPuts:
    """Queue of ``(key, piece)`` puts run by one worker thread, oldest first. Thread-safe."""

    def __init__(
        self,
        put_batch: PutBatch,
        *,
        max_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        max_pieces: int = DEFAULT_MAX_QUEUED_PIECES,
        name: str = "fluxon-fs-cache-fill",
        on_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self._put_batch = put_batch
        self._on_drop = on_drop
        self._max_bytes = max_bytes
        self._max_pieces = max_pieces
        self._name = name
        self._cond = threading.Condition()
        self._queued: OrderedDict[str, Piece] = OrderedDict()
        self._held_bytes = 0  # queued and in flight
        self._in_flight: dict[str, Piece] = {}
        self._worker: threading.Thread | None = None
        self._last_submit = 0.0
        self._flushing = 0
        self._closed = False
        self.dropped = 0
        """Pieces not cached because the queue was full."""
        self.stored = 0
        """Pieces handed to the store."""
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(this))

    def _forget_in_child(self) -> None:
        # A forked child has no worker thread; what the parent queued is the parent's to store.
        self._cond = threading.Condition()
        self._queued.clear()
        self._held_bytes = 0
        self._in_flight.clear()
        self._worker = None

    def submit(self, key: str, data: Piece) -> bool:
        """Queue a put of ``data`` under ``key``; False (and counted) when the queue is full."""
        size = _size(data)
        with self._cond:
            if self._closed:
                return False
            old = self._queued.pop(key, None)
            if old is not None:
                self._held_bytes -= _size(old)
            held_pieces = len(self._queued) + len(self._in_flight)
            if held_pieces >= self._max_pieces or self._held_bytes + size > self._max_bytes:
                self.dropped += 1
                self._on_drop()
                return False
            self._queued[key] = data
            self._held_bytes += size
            self._last_submit = time.monotonic()
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._worker.start()
            if len(self._queued) == 1 or len(self._queued) >= BATCH_PIECES:
                # Wake the worker only to start lingering or to store a full batch: waking it on every
                # submit would take the interpreter lock from the reader once per piece.
                self._cond.notify_all()
            return True

    def pending(self, key: str) -> Piece | None:
        """The piece queued or being stored under ``key`` by this process, or None."""
        with self._cond:
            data = self._queued.get(key)
            return data if data is not None else self._in_flight.get(key)

    def cancel(self, key: str) -> None:
        """Drop a queued put of ``key`` and wait until an in-flight one finished."""
        with self._cond:
            old = self._queued.pop(key, None)
            if old is not None:
                self._held_bytes -= _size(old)
            while key in self._in_flight:
                self._cond.wait()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued put was run; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flushing += 1  # no lingering while someone waits
            self._cond.notify_all()
            try:
                while self._queued or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout_s: float) -> None:
        """Run what is queued (within ``timeout_s``), then stop the worker; later submits are dropped."""
        self.flush(timeout_s)
        with self._cond:
            self._closed = True
            for data in self._queued.values():
                self._held_bytes -= _size(data)
            self._queued.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queued and not self._closed:
                    if not self._cond.wait(IDLE_EXIT_S) and not self._queued:
                        self._worker = None  # idle: the next submit starts a new worker
                        return
                if self._closed:
                    self._worker = None
                    self._cond.notify_all()
                    return
                give_up = time.monotonic() + MAX_LINGER_S
                while len(self._queued) < BATCH_PIECES and not self._closed and not self._flushing:
                    remaining = min(self._last_submit + LINGER_S, give_up) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch: list[tuple[str, Piece]] = []
                while self._queued and len(batch) < BATCH_PIECES:
                    key, data = self._queued.popitem(last=False)
                    self._in_flight[key] = data
                    batch.append((key, data))
            try:
                self._put_batch(batch)
            except Exception:
                log.exception("background cache put of %d pieces failed", len(batch))
            with self._cond:
                for key, data in batch:
                    self._in_flight.pop(key, None)
                    self._held_bytes -= _size(data)
                self.stored += len(batch)
                self._cond.notify_all()
