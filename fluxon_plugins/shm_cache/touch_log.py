"""Readers' recency notes for the owner's LRU, batched through one append-only file.

A reader remembers the digests of the values it returned and appends them, 32 bytes each, in
one ``O_APPEND`` write per batch (Linux serialises appends to a regular file, so batches never
interleave). The owner reads what was appended since its last look before it evicts, and
truncates the file when it grows. Notes are best effort: a batch appended while the owner
truncates, or still pending in a reader, is simply not counted.
"""

from __future__ import annotations

import os
import time

from fluxon_plugins.shm_cache.layout import DIGEST_BYTES, make_owner_only

TRUNCATE_AT = 1 << 20
FLUSH_AFTER_S = 1.0


class TouchNotes:
    """Reader side: collect digests and append them in batches."""

    def __init__(self, path: str, batch: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._batch = batch
        self._pending: dict[bytes, None] = {}
        self._flushed_at = time.monotonic()

    def note(self, digest: bytes) -> None:
        """Record one read; appends the batch when it is full or old."""
        self._pending[digest] = None
        if len(self._pending) >= self._batch or time.monotonic() - self._flushed_at >= FLUSH_AFTER_S:
            self.flush()

    def flush(self) -> None:
        """Append pending notes now."""
        self._flushed_at = time.monotonic()
        if not self._pending or self._fd < 0:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        os.write(self._fd, data)

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._fd)
                self._fd = -1


class TouchDrain:
    """Owner side: read the digests appended since the last drain."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        make_owner_only(self._fd, path)
        os.ftruncate(self._fd, 0)
        self._offset = 0

    def drain(self) -> list[bytes]:
        """Digests appended since the previous call, oldest first."""
        size = os.fstat(self._fd).st_size
        size -= size % DIGEST_BYTES
        if size <= self._offset:
            if size < self._offset:  # someone else truncated; start over
                self._offset = 0
            return []
        data = os.pread(self._fd, size - self._offset, self._offset)
        usable = len(data) - len(data) % DIGEST_BYTES
        self._offset += usable
        if self._offset >= TRUNCATE_AT:
            os.ftruncate(self._fd, 0)
            self._offset = 0
        return [data[i : i + DIGEST_BYTES] for i in range(0, usable, DIGEST_BYTES)]

    def close(self) -> None:
        """Close; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
