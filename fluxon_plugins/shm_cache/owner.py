"""The owner side of the pool: budget, LRU eviction, commits, adoption of staged values, sweeps."""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from types import TracebackType

import attrs

from fluxon_core.errors import InvalidArgumentError, StorageFullError, StoreClosedError, StoreInitFailedError
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Buffer, PrefixUsage
from fluxon_core.single_owner import hold_single_owner_lock
from fluxon_plugins.shm_cache.config import ShmCacheConfig, checked_config
from fluxon_plugins.shm_cache.control import STATE_CLOSED, STATE_OPEN, ControlBlock
from fluxon_plugins.shm_cache.layout import (
    CorruptValueError,
    PoolLayout,
    charged_bytes,
    check_token,
    encode_key,
    key_digest,
    make_owner_only,
    parse_suffix,
    suffix_size,
)
from fluxon_plugins.shm_cache.prefix_budgets import PrefixBudget, PrefixBudgets
from fluxon_plugins.shm_cache.touch_log import TouchDrain
from fluxon_plugins.shm_cache.value_file import (
    ValueWriter,
    buffer_size,
    check_tmpfile_support,
    copy_range,
    load_value,
    read_value_into,
    writable_bytes,
)
from fluxon_plugins.shm_cache.view_cache import ViewCache, cached_value

log = get_logger("fluxon.shm_cache")


@attrs.define(slots=True)
class _Entry:
    digest: bytes
    ino: int
    file_size: int
    value_size: int
    charged: int


def _remove_all(directory: str) -> int:
    removed = 0
    for name in os.listdir(directory):
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _disown_in_child(owner_ref: weakref.ref[ShmPoolOwner]) -> None:
    """In a forked child: drop the inherited ownership lock and make the copy inert.

    Otherwise a child outliving a crashed owner would keep the pool locked, and a child calling
    ``close`` would wipe the parent's pool.
    """
    owner = owner_ref()
    if owner is not None and not owner._closed:
        owner._closed = True
        os.close(owner._lock_fd)


class PoolValueWriter:
    """A value the owner is writing; its budget is reserved, and it becomes visible at :meth:`commit`.

    As a context manager it commits on a clean exit and aborts (leaving nothing) on an exception.
    """

    def __init__(
        self, owner: ShmPoolOwner, key: str, writer: ValueWriter, reserved: int, budget: PrefixBudget | None
    ) -> None:
        self._owner = owner
        self._key = key
        self._writer = writer
        self._reserved = reserved
        self._budget = budget
        self._done = False

    def write(self, *parts: Buffer) -> None:
        """Append bytes; more than the declared size is InvalidArgumentError."""
        self._writer.write(parts)

    def commit(self) -> None:
        """Make the value visible, replacing any previous one atomically."""
        if self._done:
            raise InvalidArgumentError("value writer already committed or aborted")
        self._done = True
        try:
            self._owner._commit(self._key, self._writer, self._reserved, self._budget)
        finally:
            self._writer.close()

    def abort(self) -> None:
        """Drop the value and its reservation; idempotent."""
        if not self._done:
            self._done = True
            self._writer.close()
            self._owner._release_reservation(self._reserved, self._budget)

    def __enter__(self) -> PoolValueWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class ShmPoolOwner:
    """The host's pool: a :class:`~fluxon_core.protocols.CacheBackend` with a byte budget and LRU.

    Creating it claims the pool directory (one live owner at a time, enforced by an flock),
    removes everything an earlier generation left there, and starts a new generation in the
    control block. Values are written by this process (:meth:`put`, :meth:`open_writer`) or
    staged by readers and handed over with :meth:`adopt`. Thread-safe.
    """

    def __init__(self, config: ShmCacheConfig) -> None:
        config = checked_config(config)
        if config.capacity <= 0:
            raise InvalidArgumentError("shm cache: capacity must be > 0 for role owner (the pool's byte budget)")
        self.config = config
        self.layout = PoolLayout(config.path)
        self.capacity_bytes = int(config.capacity)
        for directory in (self.layout.root, self.layout.values_dir, self.layout.staging_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            make_owner_only(directory, directory)
        self._lock_fd = self._claim_ownership()
        make_owner_only(self._lock_fd, self.layout.lock_path)
        try:
            check_tmpfile_support(self.layout.staging_dir)
            self._check_filesystem_size()
            swept = _remove_all(self.layout.values_dir) + _remove_all(self.layout.staging_dir)
            self._control = ControlBlock.open_for_owner(self.layout.control_path)
            self.generation = self._control.snapshot().generation + 1
            self._touch = TouchDrain(self.layout.touch_path)
            self._values_fd = os.open(self.layout.values_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._staging_fd = os.open(self.layout.staging_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._lock = threading.Lock()
        self._index: OrderedDict[str, _Entry] = OrderedDict()
        self._key_by_digest: dict[bytes, str] = {}
        self._views = ViewCache(config.view_cache_entries, config.view_cache_bytes)
        self._used = 0
        self._reserved = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._budgets = PrefixBudgets()
        self._swept_at = time.monotonic()
        self._closed = False
        os.register_at_fork(after_in_child=partial(_disown_in_child, weakref.ref(self)))
        self._control.publish(
            used_bytes=0,
            entries=0,
            evictions=0,
            generation=self.generation,
            capacity_bytes=self.capacity_bytes,
            owner_pid=os.getpid(),
            state=STATE_OPEN,
        )
        log.info(
            "pool %s: generation %d, capacity %d bytes, removed %d leftover files",
            self.layout.root,
            self.generation,
            self.capacity_bytes,
            swept,
        )

    @property
    def location(self) -> str:
        """The pool directory readers attach to (publish it in ``shared.json``)."""
        return self.layout.root

    def _check_filesystem_size(self) -> None:
        fs = os.statvfs(self.layout.root)
        fs_bytes = fs.f_blocks * fs.f_frsize
        if self.capacity_bytes > fs_bytes:
            raise StoreInitFailedError(
                f"pool capacity {self.capacity_bytes} bytes exceeds the {fs_bytes}-byte filesystem holding "
                f"{self.layout.root}; lower the pool size (dram) or enlarge that tmpfs"
            )

    def _claim_ownership(self) -> int:
        return hold_single_owner_lock(
            self.layout.lock_path,
            f"the pool at {self.layout.root} already has a live owner; one owner per pool directory "
            "(check shared_memory_path and cluster_name of the other owner)",
        )

    # -- writing -----------------------------------------------------------------------------

    def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Store the concatenation of ``parts`` under ``key``, replacing any previous value atomically.

        Evicts least recently used values to make room; StorageFullError when the value alone
        exceeds the capacity (or writes in progress hold the rest).
        """
        with self.open_writer(key, sum(buffer_size(p) for p in parts)) as writer:
            writer.write(*parts)

    def open_writer(self, key: str, value_size: int) -> PoolValueWriter:
        """Reserve room for a ``value_size``-byte value and return a writer to stream it in."""
        key_bytes = encode_key(key)
        charged = charged_bytes(value_size + suffix_size(len(key_bytes)))
        with self._lock:
            self._check_open()
            budget = self._make_room(key, charged)
            self._reserved += charged
            if budget is not None:
                budget.reserved += charged
        try:
            # no flock: this inode gets a name only inside _commit, under the lock the sweep also takes
            writer = ValueWriter(self.layout.staging_dir, key_bytes, value_size, lock=False)
        except BaseException:
            self._release_reservation(charged, budget)
            raise
        return PoolValueWriter(self, key, writer, charged, budget)

    def _release_reservation(self, charged: int, budget: PrefixBudget | None) -> None:
        with self._lock:
            self._reserved -= charged
            if budget is not None:
                budget.reserved -= charged

    def _commit(self, key: str, writer: ValueWriter, reserved: int, budget: PrefixBudget | None) -> None:
        try:
            writer.check_complete()
            entry = _Entry(
                digest=key_digest(writer.key_bytes),
                ino=os.fstat(writer.fd).st_ino,
                file_size=writer.file_size,
                value_size=writer.value_size,
                charged=reserved,
            )
        except BaseException:
            self._release_reservation(reserved, budget)
            raise
        with self._lock:
            self._reserved -= reserved
            if budget is not None:
                budget.reserved -= reserved
            self._check_open()
            token = writer.link_staged(self._staging_fd)
            os.rename(token, entry.digest.hex(), src_dir_fd=self._staging_fd, dst_dir_fd=self._values_fd)
            self._install(key, entry)
            self._housekeeping()
            self._publish()

    def adopt(self, key: str, token: str) -> None:
        """Make a value a reader staged (see ``ShmPoolReader.stage``) visible under ``key``.

        The staged file must hold ``key``; it is renamed into place (no copy). On StorageFullError
        or a malformed file the staged value is removed.
        """
        key_bytes = encode_key(key)
        check_token(token)
        where = os.path.join(self.layout.staging_dir, token)
        with self._lock:
            self._check_open()
            try:
                fd = os.open(token, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._staging_fd)
            except FileNotFoundError:
                raise InvalidArgumentError(
                    f"staged value {where} does not exist (released by its writer, or the pool restarted)"
                ) from None
            try:
                stat = os.fstat(fd)
                tail = min(stat.st_size, suffix_size(len(key_bytes)))
                suffix = os.pread(fd, tail, stat.st_size - tail)
            finally:
                os.close(fd)
            try:
                trailer = parse_suffix(suffix, stat.st_size, key_bytes, where)
                if trailer is None:
                    raise InvalidArgumentError(f"staged value {where} was written for another key, not {key!r}")
                if stat.st_mtime_ns != trailer.seal_ns:
                    raise CorruptValueError(f"staged value {where} changed after it was written")
                charged = charged_bytes(stat.st_size)
                self._make_room(key, charged)
            except BaseException:
                self._unlink_staged(token)
                raise
            digest = key_digest(key_bytes)
            os.rename(token, digest.hex(), src_dir_fd=self._staging_fd, dst_dir_fd=self._values_fd)
            entry = _Entry(digest, stat.st_ino, stat.st_size, trailer.value_len, charged)
            self._install(key, entry)
            self._housekeeping()
            self._publish()

    def _unlink_staged(self, token: str) -> None:
        try:
            os.unlink(token, dir_fd=self._staging_fd)
        except FileNotFoundError:
            pass

    # -- reading -----------------------------------------------------------------------------

    def get(self, key: str) -> memoryview | None:
        """A read-only view of the value (zero-copy above ``copy_below``), or None; counts as a use."""
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._touch_key(key)
            cached = self._views.lookup(key)
        path = self.layout.value_path(entry.digest)
        # a cached mapping shows what happened to its file since it was loaded: usable() re-checks it
        if cached is not None and cached.ino == entry.ino and cached.usable(path):
            with self._lock:
                self._hits += 1
            return cached.view
        loaded = load_value(path, encode_key(key), self.config.copy_below)
        with self._lock:
            current = self._index.get(key)
            if loaded is None:
                # removed or replaced meanwhile, or damaged: a damaged file is dropped from the pool
                if current is entry:
                    self._remove_damaged(key, entry)
                self._misses += 1
                return None
            self._hits += 1
            if current is not None and current.ino == loaded.ino:
                self._views.store(key, cached_value(entry.digest, loaded, 0))
        return loaded.view

    def read_into(self, key: str, out: bytearray | memoryview, offset: int = 0) -> int | None:
        """Copy ``value[offset:]`` into ``out`` as far as it fits; bytes copied, or None. Counts as a use."""
        target = writable_bytes(out)
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._touch_key(key)
            cached = self._views.lookup(key)
        path = self.layout.value_path(entry.digest)
        if cached is not None and cached.ino == entry.ino and cached.usable(path):
            with self._lock:
                self._hits += 1
            return copy_range(cached.view, target, offset)
        count = read_value_into(path, encode_key(key), target, offset)
        with self._lock:
            if count is None:
                if self._index.get(key) is entry:
                    self._remove_damaged(key, entry)
                self._misses += 1
            else:
                self._hits += 1
        return count

    def contains(self, key: str) -> bool:
        """True when ``key`` is present (not a use for the LRU)."""
        with self._lock:
            self._check_open()
            return key in self._index

    def size(self, key: str) -> int | None:
        """Length of the value in bytes, or None when absent."""
        with self._lock:
            self._check_open()
            entry = self._index.get(key)
            return None if entry is None else entry.value_size

    def keys(self) -> list[str]:
        """Every key present, least recently used first."""
        with self._lock:
            self._check_open()
            return list(self._index)

    # -- removal and housekeeping ------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it was present. Views already handed out stay valid."""
        with self._lock:
            self._check_open()
            if key not in self._index:
                return False
            self._remove(key)
            self._housekeeping()
            self._publish()
            return True

    def sweep(self) -> int:
        """Apply readers' recency notes and remove staged values whose writer died; returns files removed."""
        with self._lock:
            self._check_open()
            return self._sweep_locked()

    def _sweep_locked(self) -> int:
        self._swept_at = time.monotonic()
        self._apply_touches()
        removed = 0
        for token in os.listdir(self._staging_fd):
            if self._is_orphan(token):
                self._unlink_staged(token)
                removed += 1
        if removed:
            log.info("pool %s: removed %d staged values of dead writers", self.layout.root, removed)
        return removed

    def _is_orphan(self, token: str) -> bool:
        try:
            fd = os.open(token, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._staging_fd)
        except FileNotFoundError:
            return False
        try:
            # a live writer holds an exclusive flock from before the file had a name
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def _housekeeping(self) -> None:
        if time.monotonic() - self._swept_at >= self.config.sweep_interval_s:
            self._sweep_locked()

    def _apply_touches(self) -> None:
        for digest in self._touch.drain():
            key = self._key_by_digest.get(digest)
            if key is not None:
                self._touch_key(key)

    def _touch_key(self, key: str) -> None:
        self._index.move_to_end(key)
        self._budgets.touched(key)

    def _make_room(self, key: str, needed: int) -> PrefixBudget | None:
        """Evict until a ``needed``-byte value of ``key`` fits its prefix's budget, then the pool; its budget.

        The prefix pays first: only its own least recently used values go while it is over budget.
        The value ``key`` replaces (if any) is credited and never evicted.
        """
        old = self._index.get(key)
        credit = old.charged if old is not None else 0
        budget = self._budgets.of(key)
        if needed > self.capacity_bytes:
            raise StorageFullError(
                f"value needs {needed} bytes of pool (value + key + trailer in 4 KiB pages) "
                f"but the pool capacity is {self.capacity_bytes} bytes"
            )
        if budget is not None and budget.over_by(needed, credit) > 0:
            if needed > budget.max_bytes:
                raise StorageFullError(
                    f"value needs {needed} bytes of pool but its prefix {budget.prefix!r} has a budget of "
                    f"{budget.max_bytes} bytes"
                )
            self._apply_touches()
            while budget.over_by(needed, credit) > 0:
                victim = budget.least_recent(exclude=key)
                if victim is None:
                    raise StorageFullError(
                        f"value needs {needed} bytes but {budget.reserved} of the {budget.max_bytes}-byte budget "
                        f"of prefix {budget.prefix!r} are held by writes in progress"
                    )
                self._evict(victim)
        if self._used + self._reserved + needed - credit <= self.capacity_bytes:
            return budget
        self._apply_touches()
        while self._used + self._reserved + needed - credit > self.capacity_bytes:
            victim = next((k for k in self._index if k != key), None)
            if victim is None:
                raise StorageFullError(
                    f"value needs {needed} bytes but {self._reserved} of the pool's {self.capacity_bytes} "
                    "bytes are held by writes in progress"
                )
            self._evict(victim)
        return budget

    def _evict(self, key: str) -> None:
        budget = self._budgets.of(key)
        if budget is not None:
            budget.evictions += 1
        self._remove(key)
        self._evictions += 1

    def _install(self, key: str, entry: _Entry) -> None:
        old = self._index.pop(key, None)
        if old is not None:
            self._used -= old.charged
            self._budgets.removed(key)
        self._index[key] = entry
        self._key_by_digest[entry.digest] = key
        self._used += entry.charged
        self._budgets.added(key, entry.charged)
        self._views.drop(key)

    def _forget(self, key: str) -> _Entry:
        entry = self._index.pop(key)
        del self._key_by_digest[entry.digest]
        self._used -= entry.charged
        self._budgets.removed(key)
        self._views.drop(key)
        return entry

    def _remove(self, key: str) -> None:
        entry = self._forget(key)
        try:
            os.unlink(entry.digest.hex(), dir_fd=self._values_fd)
        except FileNotFoundError:
            log.warning("pool %s: value file of %r vanished before removal", self.layout.root, key)

    def _remove_damaged(self, key: str, entry: _Entry) -> None:
        """Drop ``key``, whose file was found damaged (the loader logged how), so readers miss it too."""
        if os.path.exists(self.layout.value_path(entry.digest)):
            self._remove(key)
        else:  # someone removed the file: forget it without unlinking whatever may come next
            self._forget(key)
        self._publish()

    def _publish(self, state: int | None = None) -> None:
        self._control.publish(used_bytes=self._used, entries=len(self._index), evictions=self._evictions, state=state)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the pool owner of {self.layout.root} was closed")

    # -- prefix budgets ----------------------------------------------------------------------

    def set_prefix_budget(self, prefix: str, max_bytes: int) -> None:
        """Cap the values under ``prefix`` at ``max_bytes`` charged bytes, LRU within the prefix.

        See :class:`~fluxon_core.protocols.PrefixBudgetedCache`. Setting the budget a prefix already
        has changes nothing; a lower one evicts the prefix's least recently used values at once.
        """
        with self._lock:
            self._check_open()
            budget = self._budgets.set(prefix, max_bytes, ((k, e.charged) for k, e in self._index.items()))
            if budget.over_by(0, 0) <= 0:
                return
            self._apply_touches()
            while budget.over_by(0, 0) > 0:
                victim = budget.least_recent(exclude="")
                if victim is None:
                    break  # only writes in progress: they were admitted under the old budget
                self._evict(victim)
            self._publish()

    def prefix_usage(self) -> dict[str, PrefixUsage]:
        """Every budgeted prefix with its budget, charged bytes, values and evictions."""
        with self._lock:
            self._check_open()
            return self._budgets.usage()

    # -- status and lifecycle ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """capacity_bytes, used_bytes, reserved_bytes, entries, hits, misses, evictions, generation."""
        with self._lock:
            return {
                "capacity_bytes": self.capacity_bytes,
                "used_bytes": self._used,
                "reserved_bytes": self._reserved,
                "entries": len(self._index),
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "generation": self.generation,
            }

    def close(self) -> None:
        """Remove every value and staged file, mark the pool closed, release ownership; idempotent.

        Readers holding views keep them; the memory is freed when the last view is released.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for key in list(self._index):
                self._remove(key)
            _remove_all(self.layout.staging_dir)
            self._publish(state=STATE_CLOSED)
            self._views.clear()
            self._touch.close()
            self._control.close()
            os.close(self._values_fd)
            os.close(self._staging_fd)
            os.close(self._lock_fd)

    def __enter__(self) -> ShmPoolOwner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
