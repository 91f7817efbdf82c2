"""Schema migrations of the access db: ordered steps applied in one transaction, recorded in ``schema_version``."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence

import attrs

from fluxon_core.errors import StoreInitFailedError


@attrs.frozen
class Migration:
    """One schema step: ``apply(conn)`` runs inside the runner's transaction."""

    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _v1_initial_schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID")
    conn.execute("INSERT INTO settings(key, value) VALUES ('auth_epoch', 0)")
    # Generated in Python: sqlite's randomblob() is not documented as a cryptographic source.
    conn.execute("INSERT INTO settings(key, value) VALUES ('token_secret', ?)", (secrets.token_bytes(32),))
    conn.execute(
        """CREATE TABLE users (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            can_manage_users INTEGER NOT NULL CHECK (can_manage_users IN (0, 1)),
            credential_version INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE scopes (
            scope_id INTEGER PRIMARY KEY AUTOINCREMENT,
            export_name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('read_only', 'read_write')),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (export_name, prefix, mode)
        )"""
    )
    conn.execute(
        """CREATE TABLE scope_members (
            scope_id INTEGER NOT NULL REFERENCES scopes(scope_id) ON DELETE CASCADE,
            username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
            PRIMARY KEY (scope_id, username)
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX scope_members_by_user ON scope_members(username)")


def _v2_access_keys(conn: sqlite3.Connection) -> None:
    # The secret is kept as created: a SigV4 verifier needs it to derive each day's signing key. It
    # sits beside the token secret in this owner-only file and is only ever read to derive one.
    conn.execute(
        """CREATE TABLE access_keys (
            access_key_id TEXT PRIMARY KEY,
            username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
            secret_access_key TEXT NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID"""
    )
    conn.execute("CREATE INDEX access_keys_by_user ON access_keys(username)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1_initial_schema),
    Migration(2, "S3 access keys", _v2_access_keys),
)
"""Every schema step, oldest first. Append new steps; never edit or reorder shipped ones."""


def current_version(conn: sqlite3.Connection) -> int:
    """The highest applied version (0 for a new database)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def run_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration], *, db_label: str) -> list[int]:
    """Bring the database to the last version of ``migrations``; returns the versions applied now.

    All pending steps run in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers serialize and
    the loser sees nothing left to do; a failing step leaves the database untouched. A database newer
    than the code is refused rather than used with a schema this code does not know.
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {versions}")
    latest = len(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        version = current_version(conn)
        if version > latest:
            raise StoreInitFailedError(
                f"{db_label} has schema version {version}, newer than this Fluxon supports ({latest}); "
                "upgrade Fluxon or use another database"
            )
        applied: list[int] = []
        for migration in migrations[version:]:
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_version(version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            applied.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # sqlite may already have rolled back
            conn.execute("ROLLBACK")
        raise
    return applied
