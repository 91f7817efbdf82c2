"""A transactional state store on one sqlite file (WAL), namespaced by ``key_prefix``.

Each thread (and each process after a fork) uses its own connection; writers serialise on sqlite's
write lock (``BEGIN IMMEDIATE``), waiting up to ``busy_timeout_ms``. Keys compare as UTF-8 bytes,
which is the order ``scan_prefix`` returns and the order the etcd and TiKV stores use too.

The database is private to its owner: created with mode ``0600`` before sqlite opens it (sqlite
gives the ``-wal`` and ``-shm`` files the database's mode), and an existing database, WAL or
shared-memory file that group or others may access is tightened to owner-only when the store opens.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from fluxon_core.config.fields import all_of, config_field, non_empty, positive, slash_wrapped
from fluxon_core.errors import InvalidArgumentError, StoreClosedError
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.state")

_UPSERT = "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


@attrs.frozen
class SqliteStateStoreConfig:
    """Options of ``kind: sqlite``."""

    path: str = config_field(
        doc="sqlite database file; created (mode 0600) with its directory if missing; an existing one "
        "that group or others may read is made owner-only when the store opens.",
        check=non_empty,
    )
    key_prefix: str = config_field(
        doc="namespace prepended to every key; processes sharing jobs must use the same value.",
        default="/fluxon_fs_transfer/default/",
        check=all_of(non_empty, slash_wrapped),
    )
    busy_timeout_ms: int = config_field(
        doc="how long a writer waits for the database lock.", default=10000, check=positive
    )
    scan_page_size: int = config_field(
        doc="rows fetched per query while scan_prefix streams a prefix (bounds memory).", default=1000, check=positive
    )


class SqliteStateStore:
    """:class:`fluxon_core.protocols.StateStore` on sqlite; safe across threads and processes."""

    def __init__(self, config: SqliteStateStoreConfig) -> None:
        if not isinstance(config, SqliteStateStoreConfig):
            raise InvalidArgumentError(
                f"state store kind 'sqlite' needs SqliteStateStoreConfig options, got {config!r}"
            )
        self.config = config
        self._prefix = config.key_prefix
        Path(config.path).parent.mkdir(parents=True, exist_ok=True)
        _make_private(config.path)
        self._local = threading.local()
        # Every connection opened by this store, so close() can release them all; entries of threads
        # that have exited are closed when the next connection opens.
        self._connections: list[tuple[threading.Thread, int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._connect().execute(
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
        )

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError(f"sqlite state store {self.config.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.config.path,
            timeout=self.config.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,  # used by one thread only, but close() may run on another
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._connections_lock:
            if self._closed:
                conn.close()
                raise StoreClosedError(f"sqlite state store {self.config.path} is closed")
            live = []
            for thread, pid, other in self._connections:
                if pid != os.getpid():
                    continue  # inherited across fork: the parent owns it
                if thread.is_alive():
                    live.append((thread, pid, other))
                else:
                    other.close()
            live.append((threading.current_thread(), os.getpid(), conn))
            self._connections = live
        return conn

    def _key(self, key: str) -> str:
        if not isinstance(key, str):
            raise InvalidArgumentError(f"state store key must be a string, got {key!r}")
        return self._prefix + key

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        row = self._connect().execute("SELECT value FROM kv WHERE key=?", (self._key(key),)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        self._connect().execute(_UPSERT, (self._key(key), bytes(value)))

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        full_key = self._key(key)
        expected_bytes = None if expected is None else bytes(expected)
        new_value = None if value is None else bytes(value)
        conn = self._connect()
        with _immediate_transaction(conn):
            row = conn.execute("SELECT value FROM kv WHERE key=?", (full_key,)).fetchone()
            current = None if row is None else bytes(row[0])
            if current != expected_bytes:
                return False
            if new_value is None:
                conn.execute("DELETE FROM kv WHERE key=?", (full_key,))
            else:
                conn.execute(_UPSERT, (full_key, new_value))
            return True

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        cursor = self._connect().execute("DELETE FROM kv WHERE key=?", (self._key(key),))
        return cursor.rowcount > 0

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order, streamed ``scan_page_size`` rows at a time."""
        full = self._key(prefix)
        # An upper bound lets sqlite stop at the end of the prefix instead of reading to the table's end.
        upper = _prefix_upper_bound(full)
        bound_sql, bound_args = ("AND key < ?", (upper,)) if upper is not None else ("", ())
        returned = 0
        lower_sql, lower_arg = ">=", full
        while limit is None or returned < limit:
            page = self.config.scan_page_size if limit is None else min(limit - returned, self.config.scan_page_size)
            rows = (
                self._connect()
                .execute(
                    f"SELECT key, value FROM kv WHERE key {lower_sql} ? {bound_sql} ORDER BY key LIMIT ?",
                    (lower_arg, *bound_args, page),
                )
                .fetchall()
            )
            for key, value in rows:
                if not key.startswith(full):  # only possible without an upper bound
                    return
                yield key[len(self._prefix) :], bytes(value)
            returned += len(rows)
            if len(rows) < page:
                return
            lower_sql, lower_arg = ">", rows[-1][0]

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts, then all deletes, in one transaction."""
        put_rows = [(self._key(k), bytes(v)) for k, v in puts]
        delete_rows = [(self._key(k),) for k in deletes]
        conn = self._connect()
        with _immediate_transaction(conn):
            conn.executemany(_UPSERT, put_rows)
            conn.executemany("DELETE FROM kv WHERE key=?", delete_rows)

    def close(self) -> None:
        """Close every connection this store opened in this process; idempotent. Later calls raise."""
        with self._connections_lock:
            if self._closed:
                return
            self._closed = True
            connections, self._connections = self._connections, []
        for _, pid, conn in connections:
            if pid == os.getpid():
                conn.close()


def _make_private(path: str) -> None:
    """Create the database owner-only before sqlite does; make existing files of it owner-only."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
    for file_path in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(file_path).st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            os.chmod(file_path, mode & 0o700)
        except PermissionError as exc:  # another user's file: say so; the store still works
            log.warning("state store: %s is mode %04o and cannot be made owner-only: %s", file_path, mode, exc)
        else:
            log.warning("state store: %s was mode %04o; made it owner-only (%04o)", file_path, mode, mode & 0o700)


@contextmanager
def _immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back when the block (or the commit) raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None if there is none)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _MAX_CODE_POINT:
            return "".join(chars) + chr(code)
    return None
