"""A transactional state store on one sqlite file (WAL), namespaced by ``key_prefix``."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from fluxon_core.config.fields import all_of, config_field, non_empty, slash_wrapped


@attrs.frozen
class SqliteStateStoreConfig:
    """Options of ``kind: sqlite``."""

    path: str = config_field(doc="sqlite database file; created with its directory if missing.", check=non_empty)
    key_prefix: str = config_field(
        doc="namespace prepended to every key; processes sharing jobs must use the same value.",
        default="/fluxon_fs_transfer/default/",
        check=all_of(non_empty, slash_wrapped),
    )
    busy_timeout_ms: int = config_field(doc="how long a writer waits for the database lock.", default=10000)


class SqliteStateStore:
    """:class:`fluxon_core.protocols.StateStore` on sqlite; safe across threads and processes."""

    def __init__(self, config: SqliteStateStoreConfig) -> None:
        self.config = config
        self._prefix = config.key_prefix
        Path(config.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._closed = False
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.config.path, timeout=self.config.busy_timeout_ms / 1000, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _key(self, key: str) -> str:
        return self._prefix + key

    def get(self, key: str) -> bytes | None:
        """The value or None."""
        row = self._connect().execute("SELECT value FROM kv WHERE key=?", (self._key(key),)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        """Write unconditionally."""
        self._connect().execute(
            "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (self._key(key), bytes(value)),
        )

    def compare_and_set(self, key: str, expected: bytes | None, value: bytes | None) -> bool:
        """Atomically replace when the current value equals ``expected`` (None = absent); None deletes."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM kv WHERE key=?", (self._key(key),)).fetchone()
            current = None if row is None else bytes(row[0])
            if current != expected:
                conn.execute("ROLLBACK")
                return False
            if value is None:
                conn.execute("DELETE FROM kv WHERE key=?", (self._key(key),))
            else:
                conn.execute(
                    "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (self._key(key), bytes(value)),
                )
            conn.execute("COMMIT")
            return True
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def delete(self, key: str) -> bool:
        """Delete; True when it existed."""
        cursor = self._connect().execute("DELETE FROM kv WHERE key=?", (self._key(key),))
        return cursor.rowcount > 0

    def scan_prefix(self, prefix: str, *, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """Keys starting with ``prefix`` in key order, streamed in pages."""
        full = self._key(prefix)
        after = ""
        returned = 0
        page = 1000
        while limit is None or returned < limit:
            rows = (
                self._connect()
                .execute(
                    "SELECT key, value FROM kv WHERE key >= ? AND key > ? AND substr(key, 1, ?) = ? "
                    "ORDER BY key LIMIT ?",
                    (full, after, len(full), full, page),
                )
                .fetchall()
            )
            if not rows:
                return
            for key, value in rows:
                yield key[len(self._prefix) :], bytes(value)
                returned += 1
                if limit is not None and returned >= limit:
                    return
            after = rows[-1][0]

    def batch_write(self, puts: Sequence[tuple[str, bytes]], deletes: Sequence[str] = ()) -> None:
        """Apply all puts and deletes in one transaction."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                [(self._key(k), bytes(v)) for k, v in puts],
            )
            conn.executemany("DELETE FROM kv WHERE key=?", [(self._key(k),) for k in deletes])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this thread's connection; idempotent."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
