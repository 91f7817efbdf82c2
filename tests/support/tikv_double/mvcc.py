"""An in-memory Percolator store: the transactional semantics behind the TiKV test double.

TEST DOUBLE SUPPORT: a model of the parts of TiKV's MVCC layer that ``tikv_client``'s optimistic
transactions rely on, not an implementation of TiKV.

* Every key has a lock slot (at most one lock) and a list of writes ``(start_ts, commit_ts, kind,
  value)``. A read at ``ts`` sees the newest ``put``/``delete`` write with ``commit_ts <= ts``;
  ``lock`` and ``rollback`` writes are skipped.
* A read that meets a lock of a transaction that started at or before ``ts`` fails with
  :class:`KeyLocked` (the client then resolves the lock), unless the request says the lock's
  transaction was resolved (``resolved_locks``: ignore it; ``committed_locks``: read through it).
* Prewrite fails with :class:`WriteConflict` when a write committed at or after the transaction's
  start (write-write overlap) and with :class:`KeyLocked` when another transaction holds a lock; a
  request's mutations are all locked or none is. Commit turns locks into writes; rollback removes
  them and leaves a rollback write so that a late prewrite of that transaction cannot succeed.
* A lock expires when the physical part (ms) of the checker's ``current_ts`` passes the lock's
  start physical time plus its TTL; ``check_txn_status`` then rolls the transaction back.

One mutex serialises every operation, standing in for TiKV's latches. Time stamps come from the
caller (PD's TSO in the double), with TiKV's layout: ``physical_ms << 18 | logical``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence

import attrs

PHYSICAL_SHIFT_BITS = 18

PUT, DELETE, LOCK, ROLLBACK = "put", "delete", "lock", "rollback"


def physical_ms(ts: int) -> int:
    """The wall-clock milliseconds inside a TSO timestamp."""
    return ts >> PHYSICAL_SHIFT_BITS


@attrs.define
class Lock:
    """A prewrite lock: the transaction ``start_ts`` intends to write ``kind`` (``value`` for puts)."""

    key: bytes
    primary: bytes
    start_ts: int
    ttl_ms: int
    kind: str
    value: bytes = b""
    txn_size: int = 0
    min_commit_ts: int = 0
    for_update_ts: int = 0
    use_async_commit: bool = False
    secondaries: tuple[bytes, ...] = ()


@attrs.frozen
class Write:
    """A committed (or rolled back) version of a key."""

    start_ts: int
    commit_ts: int
    kind: str
    value: bytes = b""


# -- errors, reported per key (kvrpcpb.KeyError on the wire) ----------------------------------------


@attrs.frozen
class KeyLocked:
    """The key holds a lock of another transaction."""

    lock: Lock


@attrs.frozen
class WriteConflict:
    """A write committed after ``start_ts`` (or this transaction was rolled back: ``self_rolled_back``)."""

    start_ts: int
    conflict_start_ts: int
    conflict_commit_ts: int
    key: bytes
    primary: bytes
    self_rolled_back: bool = False


@attrs.frozen
class AlreadyExists:
    """An insert found the key present."""

    key: bytes


@attrs.frozen
class TxnNotFound:
    """``check_txn_status``/heartbeat found neither a lock nor a write of the transaction."""

    start_ts: int
    key: bytes


@attrs.frozen
class TxnLockNotFound:
    """Commit found no lock of the transaction (rolled back, or never prewritten)."""

    start_ts: int
    commit_ts: int
    key: bytes


@attrs.frozen
class AlreadyCommitted:
    """Rollback of a transaction that is already committed."""

    start_ts: int
    commit_ts: int
    key: bytes


@attrs.frozen
class CommitTsExpired:
    """The commit ts is below the lock's ``min_commit_ts`` (a reader pushed it)."""

    start_ts: int
    attempted_commit_ts: int
    key: bytes
    min_commit_ts: int


KeyError_ = (
    KeyLocked | WriteConflict | AlreadyExists | TxnNotFound | TxnLockNotFound | AlreadyCommitted | CommitTsExpired
)


class MvccError(Exception):
    """Raised by an operation that fails as a whole; carries the per-key errors."""

    def __init__(self, errors: Sequence[KeyError_]) -> None:
        super().__init__(", ".join(repr(error) for error in errors))
        self.errors = tuple(errors)


@attrs.frozen
class Mutation:
    """One prewrite mutation; ``kind`` is ``put``/``delete``/``lock``/``insert``/``check_not_exists``."""

    kind: str
    key: bytes
    value: bytes = b""


@attrs.frozen
class TxnStatus:
    """``check_txn_status``'s finding: locked (``lock_ttl > 0``), committed, or rolled back."""

    lock_ttl: int = 0
    commit_ts: int = 0
    action: str = "none"
    lock: Lock | None = None


@attrs.frozen
class ReadOptions:
    """Locks a read may ignore (``resolved``) or read through as committed (``committed``)."""

    resolved: frozenset[int] = frozenset()
    committed: frozenset[int] = frozenset()


class MvccStore:
    """Locks and versions of every key; all methods are atomic and thread-safe."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[bytes, Lock] = {}
        self._writes: dict[bytes, list[Write]] = {}  # newest commit_ts first
        self._keys: list[bytes] = []  # every key that ever had a lock or a write, sorted

    # -- reads --------------------------------------------------------------------------------

    def get(self, key: bytes, ts: int, options: ReadOptions = ReadOptions()) -> bytes | None:
        """The value visible at ``ts``; raises :class:`MvccError` (:class:`KeyLocked`)."""
        with self._mutex:
            return self._read(key, ts, options)

    def batch_get(
        self, keys: Iterable[bytes], ts: int, options: ReadOptions = ReadOptions()
    ) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` for the keys that exist at ``ts``, in request order."""
        with self._mutex:
            found = [(key, self._read(key, ts, options)) for key in keys]
        return [(key, value) for key, value in found if value is not None]

    def scan(
        self, start: bytes, end: bytes, limit: int, ts: int, options: ReadOptions = ReadOptions()
    ) -> list[tuple[bytes, bytes | KeyLocked]]:
        """Up to ``limit`` visible keys in ``[start, end)`` (``end == b""``: unbounded), in key order.

        A locked key is returned with its :class:`KeyLocked` error in place of the value, as TiKV
        returns a ``KvPair`` carrying the error.
        """
        results: list[tuple[bytes, bytes | KeyLocked]] = []
        with self._mutex:
            index = bisect.bisect_left(self._keys, start)
            while index < len(self._keys) and len(results) < limit:
                key = self._keys[index]
                index += 1
                if end and key >= end:
                    break
                try:
                    value = self._read(key, ts, options)
                except MvccError as error:
                    blocked = error.errors[0]
                    assert isinstance(blocked, KeyLocked)
                    results.append((key, blocked))
                    continue
                if value is not None:
                    results.append((key, value))
        return results

    def scan_locks(self, start: bytes, end: bytes, max_ts: int, limit: int) -> list[Lock]:
        """Locks of transactions started at or before ``max_ts`` in ``[start, end)``."""
        with self._mutex:
            locks = [
                lock
                for key, lock in sorted(self._locks.items())
                if key >= start and (not end or key < end) and lock.start_ts <= max_ts
            ]
        return locks[:limit] if limit else locks

    # -- two-phase commit ---------------------------------------------------------------------

    def prewrite(
        self,
        mutations: Sequence[Mutation],
        primary: bytes,
        start_ts: int,
        ttl_ms: int,
        *,
        txn_size: int = 0,
        min_commit_ts: int = 0,
        skip_constraint_check: bool = False,
    ) -> None:
        """Lock every mutated key for ``start_ts``, or none of them (raises :class:`MvccError`)."""
        with self._mutex:
            errors: list[KeyError_] = []
            new_locks: list[Lock] = []
            for mutation in mutations:
                error = self._prewrite_check(mutation, primary, start_ts, skip_constraint_check)
                if error is not None:
                    errors.append(error)
                    continue
                if mutation.kind == "check_not_exists":
                    continue
                existing = self._locks.get(mutation.key)
                if existing is not None and existing.start_ts == start_ts:
                    continue  # a retried prewrite of this transaction: keep the lock
                kind = PUT if mutation.kind == "insert" else mutation.kind
                new_locks.append(
                    Lock(
                        key=mutation.key,
                        primary=primary,
                        start_ts=start_ts,
                        ttl_ms=ttl_ms,
                        kind=kind,
                        value=mutation.value if kind == PUT else b"",
                        txn_size=txn_size,
                        min_commit_ts=min_commit_ts,
                    )
                )
            if errors:
                raise MvccError(errors)
            for lock in new_locks:
                self._locks[lock.key] = lock
                self._remember(lock.key)

    def commit(self, keys: Sequence[bytes], start_ts: int, commit_ts: int) -> None:
        """Turn the transaction's locks on ``keys`` into writes at ``commit_ts``; all or nothing."""
        with self._mutex:
            to_commit: list[Lock] = []
            for key in keys:
                lock = self._locks.get(key)
                if lock is not None and lock.start_ts == start_ts:
                    if lock.min_commit_ts > commit_ts:
                        raise MvccError([CommitTsExpired(start_ts, commit_ts, key, lock.min_commit_ts)])
                    to_commit.append(lock)
                    continue
                write = self._write_of(key, start_ts)
                if write is not None and write.kind != ROLLBACK:
                    continue  # committed already: commit is idempotent
                raise MvccError([TxnLockNotFound(start_ts, commit_ts, key)])
            for lock in to_commit:
                self._commit_lock(lock, commit_ts)

    def rollback(self, keys: Sequence[bytes], start_ts: int) -> None:
        """Remove the transaction's locks on ``keys`` and leave rollback records; all or nothing."""
        with self._mutex:
            for key in keys:
                write = self._write_of(key, start_ts)
                if write is not None and write.kind != ROLLBACK:
                    raise MvccError([AlreadyCommitted(start_ts, write.commit_ts, key)])
            for key in keys:
                self._rollback_key(key, start_ts)

    def cleanup(self, key: bytes, start_ts: int, current_ts: int) -> int:
        """Roll back one key of ``start_ts`` unless its lock is alive; returns the commit ts if committed."""
        with self._mutex:
            lock = self._locks.get(key)
            if lock is not None and lock.start_ts == start_ts:
                if current_ts and not self._expired(lock, current_ts):
                    raise MvccError([KeyLocked(lock)])
                self._rollback_key(key, start_ts)
                return 0
            write = self._write_of(key, start_ts)
            if write is not None and write.kind != ROLLBACK:
                return write.commit_ts
            self._rollback_key(key, start_ts)
            return 0

    def check_txn_status(
        self, primary: bytes, lock_ts: int, caller_start_ts: int, current_ts: int, *, rollback_if_not_exist: bool
    ) -> TxnStatus:
        """Decide the fate of transaction ``lock_ts`` from its primary key (TiKV's CheckTxnStatus)."""
        with self._mutex:
            lock = self._locks.get(primary)
            if lock is not None and lock.start_ts == lock_ts:
                if self._expired(lock, current_ts):
                    self._rollback_key(primary, lock_ts)
                    return TxnStatus(action="ttl_expire_rollback")
                action = "none"
                if lock.min_commit_ts and caller_start_ts >= lock.min_commit_ts:
                    # A reader with a later snapshot pushes the commit ts past its own start.
                    lock.min_commit_ts = caller_start_ts + 1
                    action = "min_commit_ts_pushed"
                return TxnStatus(lock_ttl=lock.ttl_ms, action=action, lock=attrs.evolve(lock))
            write = self._write_of(primary, lock_ts)
            if write is not None:
                return TxnStatus(commit_ts=0 if write.kind == ROLLBACK else write.commit_ts)
            if rollback_if_not_exist:
                self._rollback_key(primary, lock_ts)
                return TxnStatus(action="lock_not_exist_rollback")
            raise MvccError([TxnNotFound(lock_ts, primary)])

    def resolve(self, start_ts: int, commit_ts: int, keys: Sequence[bytes] = ()) -> None:
        """Commit (``commit_ts > 0``) or roll back every lock of ``start_ts`` (only ``keys`` if given)."""
        with self._mutex:
            candidates = keys or [key for key, lock in self._locks.items() if lock.start_ts == start_ts]
            for key in candidates:
                lock = self._locks.get(key)
                if lock is None or lock.start_ts != start_ts:
                    continue
                if commit_ts:
                    self._commit_lock(lock, commit_ts)
                else:
                    self._rollback_key(key, start_ts)

    def heartbeat(self, primary: bytes, start_ts: int, advise_ttl_ms: int) -> int:
        """Extend the primary lock's TTL to at least ``advise_ttl_ms``; returns the TTL now in force."""
        with self._mutex:
            lock = self._locks.get(primary)
            if lock is None or lock.start_ts != start_ts:
                raise MvccError([TxnNotFound(start_ts, primary)])
            lock.ttl_ms = max(lock.ttl_ms, advise_ttl_ms)
            return lock.ttl_ms

    # -- introspection for tests ----------------------------------------------------------------

    def lock_count_for(self, start_ts: int) -> int:
        """How many keys the transaction ``start_ts`` still holds locked."""
        with self._mutex:
            return sum(1 for lock in self._locks.values() if lock.start_ts == start_ts)

    # -- internals (called with the mutex held) -------------------------------------------------

    def _read(self, key: bytes, ts: int, options: ReadOptions) -> bytes | None:
        lock = self._locks.get(key)
        if (
            lock is not None
            and lock.start_ts <= ts
            and lock.kind in (PUT, DELETE)
            and lock.start_ts not in options.resolved
        ):
            if lock.start_ts in options.committed:
                return lock.value if lock.kind == PUT else None
            raise MvccError([KeyLocked(attrs.evolve(lock))])
        for write in self._writes.get(key, ()):
            if write.commit_ts > ts or write.kind in (LOCK, ROLLBACK):
                continue
            return write.value if write.kind == PUT else None
        return None

    def _prewrite_check(
        self, mutation: Mutation, primary: bytes, start_ts: int, skip_constraint_check: bool
    ) -> KeyError_ | None:
        key = mutation.key
        lock = self._locks.get(key)
        if lock is not None and lock.start_ts != start_ts:
            return KeyLocked(attrs.evolve(lock))
        writes = self._writes.get(key, [])
        for write in writes:
            if write.start_ts == start_ts:
                if write.kind == ROLLBACK:
                    return WriteConflict(start_ts, write.start_ts, write.commit_ts, key, primary, self_rolled_back=True)
                break  # committed already; the retried prewrite is a no-op
            if write.commit_ts < start_ts:
                break
            if write.kind != ROLLBACK:
                return WriteConflict(start_ts, write.start_ts, write.commit_ts, key, primary)
        if mutation.kind in ("insert", "check_not_exists") and not skip_constraint_check:
            current = next((w for w in writes if w.kind in (PUT, DELETE)), None)
            if current is not None and current.kind == PUT:
                return AlreadyExists(key)
        return None

    def _write_of(self, key: bytes, start_ts: int) -> Write | None:
        return next((write for write in self._writes.get(key, ()) if write.start_ts == start_ts), None)

    def _commit_lock(self, lock: Lock, commit_ts: int) -> None:
        del self._locks[lock.key]
        self._add_write(lock.key, Write(lock.start_ts, commit_ts, lock.kind, lock.value))

    def _rollback_key(self, key: bytes, start_ts: int) -> None:
        lock = self._locks.get(key)
        if lock is not None and lock.start_ts == start_ts:
            del self._locks[key]
        if self._write_of(key, start_ts) is None:
            self._add_write(key, Write(start_ts, start_ts, ROLLBACK))

    def _add_write(self, key: bytes, write: Write) -> None:
        writes = self._writes.setdefault(key, [])
        position = 0
        while position < len(writes) and writes[position].commit_ts > write.commit_ts:
            position += 1
        writes.insert(position, write)
        self._remember(key)

    def _remember(self, key: bytes) -> None:
        index = bisect.bisect_left(self._keys, key)
        if index == len(self._keys) or self._keys[index] != key:
            self._keys.insert(index, key)

    @staticmethod
    def _expired(lock: Lock, current_ts: int) -> bool:
        return physical_ms(current_ts) >= physical_ms(lock.start_ts) + lock.ttl_ms
