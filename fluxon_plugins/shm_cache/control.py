"""The control block: one shared page through which the owner tells readers that the pool changed.

Layout (little-endian u64 words after an 8-byte magic): change counter, generation, capacity,
used bytes, entries, evictions, owner pid, state. The owner bumps the change counter *after*
every visible change (commit, delete, eviction, restart), so a reader whose cached view was
validated at the current counter may return it without a syscall. The file is reused in place
across owner restarts so readers that stay attached see the restart as one more change.
"""

from __future__ import annotations

import mmap
import os

import attrs

from fluxon_core.errors import StoreInitFailedError
from fluxon_plugins.shm_cache.layout import make_owner_only

CONTROL_MAGIC = b"FXPOOL01"
CONTROL_BYTES = 4096
_COUNTER_WORD = 1  # word 0 is the magic
_FIELD_COUNT = 8

STATE_OPEN = 1
STATE_CLOSED = 2


@attrs.frozen
class ControlSnapshot:
    """The control block's fields at one moment."""

    counter: int
    generation: int
    capacity_bytes: int
    used_bytes: int
    entries: int
    evictions: int
    owner_pid: int
    state: int


class ControlBlock:
    """A mapping of ``pool.ctl``; writable for the owner, read-only for readers."""

    def __init__(self, path: str, mapping: mmap.mmap) -> None:
        self.path = path
        self._map = mapping
        # One aligned 8-byte load or store per field: a reader never sees a half-written or
        # momentarily zeroed word (``struct.pack_into`` over the whole block could expose one).
        self._words = memoryview(mapping).cast("Q")

    @classmethod
    def open_for_owner(cls, path: str) -> ControlBlock:
        """Map the control file for writing, creating it atomically when missing or malformed."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        if fd >= 0 and (os.fstat(fd).st_size != CONTROL_BYTES or os.pread(fd, 8, 0) != CONTROL_MAGIC):
            os.close(fd)
            fd = -1
        if fd < 0:
            tmp_path = f"{path}.{os.getpid()}.tmp"
            tmp_fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(tmp_fd, "wb") as handle:
                handle.write(CONTROL_MAGIC + bytes(CONTROL_BYTES - len(CONTROL_MAGIC)))
            os.rename(tmp_path, path)
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            make_owner_only(fd, path)  # a block an older version left 0644
            mapping = mmap.mmap(fd, CONTROL_BYTES, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        return cls(path, mapping)

    @classmethod
    def attach(cls, path: str) -> ControlBlock:
        """Map an existing control file read-only; StoreInitFailedError when there is no pool."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreInitFailedError(
                f"no shared-memory pool at {os.path.dirname(path)}: {path} does not exist "
                "(is the owner running, and is shared_memory_path the same on both sides?)"
            ) from None
        try:
            if os.fstat(fd).st_size != CONTROL_BYTES or os.pread(fd, 8, 0) != CONTROL_MAGIC:
                raise StoreInitFailedError(f"{path} is not a Fluxon pool control block")
            mapping = mmap.mmap(fd, CONTROL_BYTES, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return cls(path, mapping)

    def counter(self) -> int:
        """The change counter (the reader's hot path: one 8-byte load)."""
        return int(self._words[_COUNTER_WORD])

    def snapshot(self) -> ControlSnapshot:
        """All fields, each read as one word."""
        words = self._words
        return ControlSnapshot(*(int(words[_COUNTER_WORD + i]) for i in range(_FIELD_COUNT)))

    def publish(
        self,
        *,
        used_bytes: int,
        entries: int,
        evictions: int,
        generation: int | None = None,
        capacity_bytes: int | None = None,
        owner_pid: int | None = None,
        state: int | None = None,
    ) -> None:
        """Owner: write usage (and optionally identity fields), then bump the change counter."""
        words = self._words
        fields = (generation, capacity_bytes, used_bytes, entries, evictions, owner_pid, state)
        for offset, value in enumerate(fields, start=_COUNTER_WORD + 1):
            if value is not None and words[offset] != value:
                words[offset] = value
        # the counter goes last: a reader that sees it has moved sees everything before it
        words[_COUNTER_WORD] = words[_COUNTER_WORD] + 1

    def close(self) -> None:
        """Unmap; idempotent."""
        if not self._map.closed:
            self._words.release()
            self._map.close()
