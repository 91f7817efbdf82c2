"""The batch sealing rule, shared by pre-scans and job scans.

A batch seals when it reaches ``batch_ready_bytes`` or ``MAX_ENTRIES_PER_BATCH`` entries; a file of
at least ``batch_ready_bytes`` is a batch of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fluxon_fs.transfer.records import ENTRY_FILE, MAX_ENTRIES_PER_BATCH, ScanEntry

SealedBatch = tuple[list[ScanEntry], int]


class BatchSealer:
    """Accumulates entries and returns batches as they seal (not thread-safe; callers lock)."""

    def __init__(self, batch_ready_bytes: int) -> None:
        self._ready = batch_ready_bytes
        self._entries: list[ScanEntry] = []
        self._bytes = 0

    def add(self, entry: ScanEntry) -> SealedBatch | None:
        """Add one entry; returns a sealed batch when this entry completed one."""
        if entry.kind == ENTRY_FILE and entry.size >= self._ready:
            return [entry], entry.size
        self._entries.append(entry)
        self._bytes += entry.size
        if self._bytes >= self._ready or len(self._entries) >= MAX_ENTRIES_PER_BATCH:
            return self.flush()
        return None

    def flush(self) -> SealedBatch | None:
        """Seal whatever is open (None when empty)."""
        if not self._entries:
            return None
        sealed = (self._entries, self._bytes)
        self._entries, self._bytes = [], 0
        return sealed


def group_batches(entries: Iterable[ScanEntry], batch_ready_bytes: int) -> Iterator[SealedBatch]:
    """Batches of a stream of entries."""
    sealer = BatchSealer(batch_ready_bytes)
    for entry in entries:
        sealed = sealer.add(entry)
        if sealed is not None:
            yield sealed
    last = sealer.flush()
    if last is not None:
        yield last
