"""The reader side of the pool: attach by directory, read zero-copy, stage writes for the owner.

Reader protocol, per ``get``:

1. load the control block's change counter (an 8-byte read from a shared page);
2. a cached private copy (a small value) validated at that counter is returned at once — no syscall;
3. otherwise ``stat`` the value file: the same inode, size and seal as the cached view → still
   current (a cached *mapping* always takes this step: a mapping shows what happens to its file, and
   a value file truncated or rewritten in place must be a miss, never a ``SIGBUS`` or wrong bytes);
4. otherwise open it and copy (small) or map (large) it, verify the key, size, seal and (small
   values) CRC-32 stored in it, cache it. A damaged file is a miss.

Writes and deletes go through the owner. :meth:`ShmPoolReader.put` writes the value into an
anonymous file here, links it into ``staging/`` and asks the owner to rename it into place
through an :class:`OwnerLink` the KV layer wires to an RPC; the bytes never cross a socket.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from fluxon_core.errors import InvalidArgumentError, StoreClosedError, StoreInitFailedError
from fluxon_core.protocols import Buffer
from fluxon_plugins.shm_cache.config import ShmCacheConfig, checked_config
from fluxon_plugins.shm_cache.control import STATE_CLOSED, STATE_OPEN, ControlBlock
from fluxon_plugins.shm_cache.layout import PoolLayout, encode_key, key_digest, suffix_size
from fluxon_plugins.shm_cache.touch_log import TouchNotes
from fluxon_plugins.shm_cache.value_file import (
    ValueWriter,
    buffer_size,
    copy_range,
    load_value,
    read_value_into,
    still_intact,
    writable_bytes,
)
from fluxon_plugins.shm_cache.view_cache import CachedValue, ViewCache, cached_value

PRUNE_INTERVAL_S = 1.0


class OwnerLink(Protocol):
    """How a reader reaches its owner for writes (the KV layer implements it over RPC)."""

    def adopt(self, key: str, token: str) -> None:
        """Run ``ShmPoolOwner.adopt(key, token)`` in the owner; raise its typed error on failure."""
        ...

    def delete(self, key: str) -> bool:
        """Run ``ShmPoolOwner.delete(key)`` in the owner and return its result."""
        ...


class StagedValue:
    """A complete value under ``staging/<token>``, kept locked until :meth:`release`.

    While it is held the owner's sweep leaves it alone; after the owner adopted it (or failed
    to), call :meth:`release` — it removes the staged file if it is still there.
    """

    def __init__(self, token: str, value_size: int, writer: ValueWriter, staging_fd: int) -> None:
        self.token = token
        self.value_size = value_size
        self._writer = writer
        self._staging_fd = staging_fd

    def release(self) -> None:
        """Remove the staged file if not adopted and drop the lock; idempotent."""
        if self._staging_fd < 0:
            return
        try:
            os.unlink(self.token, dir_fd=self._staging_fd)
        except FileNotFoundError:
            pass
        finally:
            self._staging_fd = -1
            self._writer.close()

    def __enter__(self) -> StagedValue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class StagingWriter:
    """A value a reader streams into the pool; :meth:`stage` hands it over for adoption."""

    def __init__(self, writer: ValueWriter, staging_fd: int) -> None:
        self._writer = writer
        self._staging_fd = staging_fd

    def write(self, *parts: Buffer) -> None:
        """Append bytes; more than the declared size is InvalidArgumentError."""
        self._writer.write(parts)

    def stage(self) -> StagedValue:
        """Give the complete value its staging name; the result must be released after adoption."""
        try:
            token = self._writer.link_staged(self._staging_fd)
        except BaseException:
            self._writer.close()
            raise
        return StagedValue(token, self._writer.value_size, self._writer, self._staging_fd)

    def abort(self) -> None:
        """Drop the value; nothing was ever visible."""
        self._writer.close()


class ShmPoolReader:
    """A process's attachment to its host's pool: a :class:`~fluxon_core.protocols.CacheBackend`.

    Reads never talk to the owner. ``put``/``delete`` need an :class:`OwnerLink`
    (constructor argument or :meth:`set_owner_link`). Reads are reported to the owner's LRU in
    batches through the pool's touch log. Thread-safe.
    """

    def __init__(self, config: ShmCacheConfig, owner_link: OwnerLink | None = None) -> None:
        config = checked_config(config)
        self.config = config
        self.layout = PoolLayout(config.path)
        self._control = ControlBlock.attach(self.layout.control_path)
        try:
            snapshot = self._control.snapshot()
            if snapshot.state != STATE_OPEN:
                state = "closed by its owner" if snapshot.state == STATE_CLOSED else "not initialised"
                raise StoreInitFailedError(f"the pool at {self.layout.root} is {state}; start its owner first")
            self.generation = snapshot.generation
            self._touch = TouchNotes(self.layout.touch_path, config.touch_batch)
            self._staging_fd = os.open(self.layout.staging_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            self._control.close()
            raise StoreInitFailedError(f"the pool at {self.layout.root} is incomplete: {exc}") from None
        except BaseException:
            self._control.close()
            raise
        self._values_prefix = self.layout.values_dir + os.sep
        self._owner_link = owner_link
        self._lock = threading.Lock()
        self._cache = ViewCache(config.view_cache_entries, config.view_cache_bytes)
        self._seen_counter = self._control.counter()
        self._pruned_at = time.monotonic()
        self._hits = 0
        self._misses = 0
        self._closed = False

    @property
    def location(self) -> str:
        """The pool directory."""
        return self.layout.root

    def set_owner_link(self, owner_link: OwnerLink) -> None:
        """Wire ``put``/``delete`` to the owner."""
        self._owner_link = owner_link

    # -- reading -----------------------------------------------------------------------------

    def get(self, key: str) -> memoryview | None:
        """A read-only view of the value (zero-copy above ``copy_below``), or None."""
        if self._closed:
            raise StoreClosedError(f"the pool reader of {self.layout.root} was closed")
        counter = self._control.counter()
        with self._lock:
            cached = self._cache.lookup(key)
            if cached is not None and cached.checked_at == counter and not cached.mapped:
                self._hits += 1
                self._touch.note(cached.digest)
                return cached.view
        return self._get_checked(key, counter, cached)

    def _get_checked(self, key: str, counter: int, cached: CachedValue | None) -> memoryview | None:
        if counter != self._seen_counter:
            self._on_pool_change(counter)
        key_bytes = encode_key(key)
        digest = cached.digest if cached is not None else key_digest(key_bytes)
        path = self._value_path(digest)
        if cached is not None and still_intact(path, cached.ino, cached.file_size, cached.seal_ns):
            with self._lock:
                cached.checked_at = counter
                self._hits += 1
                self._touch.note(digest)
            return cached.view
        loaded = load_value(path, key_bytes, self.config.copy_below)
        with self._lock:
            if loaded is None:
                self._cache.drop(key)
                self._misses += 1
                return None
            self._cache.store(key, cached_value(digest, loaded, counter))
            self._hits += 1
            self._touch.note(digest)
        return loaded.view

    def _value_path(self, digest: bytes) -> str:
        return self._values_prefix + digest.hex()

    @staticmethod
    def _inode_of(path: str) -> int | None:
        try:
            return os.stat(path).st_ino
        except FileNotFoundError:
            return None

    def _on_pool_change(self, counter: int) -> None:
        generation = self._control.snapshot().generation
        with self._lock:
            self._seen_counter = counter
            if generation != self.generation:
                self.generation = generation
                self._cache.clear()
                return
            if time.monotonic() - self._pruned_at < PRUNE_INTERVAL_S:
                return
            self._pruned_at = time.monotonic()
            entries = list(self._cache.items())
        # cached views of removed values pin their memory: drop them now rather than when pushed out
        for key, item in entries:
            if self._inode_of(self._value_path(item.digest)) != item.ino:
                with self._lock:
                    if self._cache.lookup(key) is item:
                        self._cache.drop(key)

    def read_into(self, key: str, out: bytearray | memoryview, offset: int = 0) -> int | None:
        """Copy ``value[offset:]`` into ``out`` as far as it fits; bytes copied, or None when absent.

        A cached view is copied from; otherwise the file is read with ``preadv`` (no mapping),
        which is faster than ``get`` + copy for a value this process has not mapped yet.
        """
        target = writable_bytes(out)
        self._check_open()
        counter = self._control.counter()
        with self._lock:
            cached = self._cache.lookup(key)
        if cached is not None and (cached.checked_at != counter or not cached.usable(self._value_path(cached.digest))):
            cached = None
        if cached is not None:
            with self._lock:
                self._hits += 1
                self._touch.note(cached.digest)
            return copy_range(cached.view, target, offset)
        key_bytes = encode_key(key)
        digest = key_digest(key_bytes)
        count = read_value_into(self._value_path(digest), key_bytes, target, offset)
        with self._lock:
            if count is None:
                self._misses += 1
            else:
                self._hits += 1
                self._touch.note(digest)
        return count

    def contains(self, key: str) -> bool:
        """True when ``key`` is present."""
        if self._closed:
            raise StoreClosedError(f"the pool reader of {self.layout.root} was closed")
        counter = self._control.counter()
        with self._lock:
            cached = self._cache.lookup(key)
            if cached is not None and cached.checked_at == counter:
                return True
        return self._inode_of(self._value_path(key_digest(encode_key(key)))) is not None

    def size(self, key: str) -> int | None:
        """Length of the value in bytes, or None when absent (one stat, no open)."""
        key_bytes = encode_key(key)
        try:
            file_size = os.stat(self._value_path(key_digest(key_bytes))).st_size
        except FileNotFoundError:
            return None
        return file_size - suffix_size(len(key_bytes))

    # -- writing through the owner -------------------------------------------------------------

    def open_writer(self, key: str, value_size: int) -> StagingWriter:
        """Start streaming a ``value_size``-byte value for ``key`` (invisible until adopted)."""
        self._check_open()
        return StagingWriter(ValueWriter(self.layout.staging_dir, encode_key(key), value_size), self._staging_fd)

    def stage(self, key: str, parts: Sequence[Buffer]) -> StagedValue:
        """Write the concatenation of ``parts`` into a staged value for the owner to adopt."""
        writer = self.open_writer(key, sum(buffer_size(p) for p in parts))
        try:
            writer.write(*parts)
        except BaseException:
            writer.abort()
            raise
        return writer.stage()

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Stage the value here and have the owner adopt it (needs an owner link)."""
        link = self._require_link("put")
        with self.stage(key, parts) as staged:
            link.adopt(key, staged.token)
        with self._lock:
            self._cache.drop(key)

    def delete(self, key: str) -> bool:
        """Ask the owner to remove ``key`` (needs an owner link)."""
        removed = self._require_link("delete").delete(key)
        with self._lock:
            self._cache.drop(key)
        return removed

    def _require_link(self, operation: str) -> OwnerLink:
        self._check_open()
        if self._owner_link is None:
            raise InvalidArgumentError(
                f"{operation} on a pool reader needs an owner link (set_owner_link); writes go through the owner"
            )
        return self._owner_link

    # -- status and lifecycle ----------------------------------------------------------------

    def flush_touches(self) -> None:
        """Send pending recency notes to the owner's touch log now."""
        with self._lock:
            self._touch.flush()

    def owner_alive(self) -> bool:
        """Best effort: the control block names an open pool whose owner pid exists."""
        snapshot = self._control.snapshot()
        if snapshot.state != STATE_OPEN:
            return False
        try:
            os.kill(snapshot.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stats(self) -> dict[str, int]:
        """Pool-wide capacity_bytes, used_bytes, entries, evictions, generation; this reader's hits, misses."""
        snapshot = self._control.snapshot()
        with self._lock:
            return {
                "capacity_bytes": snapshot.capacity_bytes,
                "used_bytes": snapshot.used_bytes,
                "entries": snapshot.entries,
                "hits": self._hits,
                "misses": self._misses,
                "evictions": snapshot.evictions,
                "generation": snapshot.generation,
                "cached_views": len(self._cache),
            }

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the pool reader of {self.layout.root} was closed")

    def close(self) -> None:
        """Flush recency notes and drop cached views (handed-out views stay valid); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cache.clear()
            self._touch.close()
            os.close(self._staging_fd)
            self._control.close()

    def __enter__(self) -> ShmPoolReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
