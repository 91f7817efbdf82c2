"""The access db on one sqlite file (WAL): users, salted password hashes, scope grants, auth epoch."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from fluxon_core.access.access_keys import (
    MAX_ACCESS_KEYS_PER_USER,
    AccessKeyRecord,
    NewAccessKey,
    SigningKeyGrant,
    check_access_key_id,
    check_signing_scope,
    is_access_key_id,
    new_access_key_id,
    new_secret_access_key,
    sigv4_signing_key,
)
from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.passwords import (
    MAX_PASSWORD_CHARS,
    PasswordAlgorithm,
    hash_password,
    require_available,
    spend_verify_time,
    verify_password_hash,
)
from fluxon_core.access.records import (
    ScopeAccessRecord,
    ScopeGrant,
    ScopeMode,
    UserAccess,
    UserRecord,
    normalize_prefix,
)
from fluxon_core.config.fields import config_field, identifier, non_empty, positive
from fluxon_core.errors import InvalidArgumentError, StoreClosedError, StoreInitFailedError
from fluxon_core.log_setup import get_logger
from fluxon_plugins.sqlite_access.migrations import MIGRATIONS, current_version, run_migrations

log = get_logger("fluxon.access")

_USER_COLUMNS = "username, can_manage_users, credential_version, created_at, updated_at"
# Verified in place of a password that can never match, so refusing it costs a full hash; the
# result is ignored (a user whose password happened to be this string still cannot log in with "").
_STAND_IN_PASSWORD = "\x00fluxon: no password given"


@attrs.frozen
class SqliteAccessStoreConfig:
    """Options of access store ``kind: sqlite``."""

    path: str = config_field(
        doc="sqlite file holding users, password hashes and scope grants; created (mode 0600) "
        "with its directory if missing; an existing one that group or others may read is made "
        "owner-only when the store opens (refused when that is not possible).",
        check=non_empty,
    )
    password_hash: PasswordAlgorithm = config_field(
        doc="algorithm for new password hashes: argon2id (needs argon2-cffi) or scrypt (standard library); "
        "stored hashes of either kind keep verifying.",
        default=PasswordAlgorithm.ARGON2ID,
    )
    busy_timeout_ms: int = config_field(
        doc="how long a writer waits for the database lock held by another process.", default=10000, check=positive
    )


def _check_name(what: str, value: str) -> None:
    problem = identifier(value) if isinstance(value, str) else f"must be a string, got {type(value).__name__}"
    if problem:
        raise InvalidArgumentError(f"{what} {problem}")


def _scope_mode(mode: ScopeMode | str) -> ScopeMode:
    try:
        return ScopeMode(mode)
    except ValueError:
        raise InvalidArgumentError(f"mode must be read_only or read_write, got {mode!r}") from None


def _user(row: sqlite3.Row | tuple) -> UserRecord:  # type: ignore[type-arg]
    return UserRecord(row[0], bool(row[1]), int(row[2]), float(row[3]), float(row[4]))


class SqliteAccessStore:
    """:class:`fluxon_core.protocols.AccessStore` on sqlite, safe across threads and processes.

    Each thread gets its own connection; WAL lets readers proceed while another process writes, and
    writers wait up to ``busy_timeout_ms`` for the lock. Every change runs in a ``BEGIN IMMEDIATE``
    transaction that also bumps ``auth_epoch``.
    """

    def __init__(self, config: SqliteAccessStoreConfig) -> None:
        require_available(config.password_hash)
        self.config = config
        self._label = f"access db {config.path!r}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        path = Path(config.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Create it owner-only before sqlite does; sqlite gives -wal/-shm files the same mode.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600))
            self._make_private(path)
            run_migrations(self._conn(), MIGRATIONS, db_label=self._label)
        except (OSError, sqlite3.Error) as exc:
            raise StoreInitFailedError(f"cannot open {self._label}: {exc}") from exc

    def _make_private(self, path: Path) -> None:
        """Make the database and its WAL files owner-only: they hold password hashes and the token secret.

        Anyone who can read the token secret can forge a session for any user, so a file that cannot
        be tightened (another user's) is refused rather than used.
        """
        for file_path in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                mode = stat.S_IMODE(file_path.stat().st_mode)
            except FileNotFoundError:
                continue
            if not mode & 0o077:
                continue
            try:
                file_path.chmod(mode & 0o700)
            except PermissionError:
                raise StoreInitFailedError(
                    f"{self._label}: {file_path} is mode {mode:04o} (group/others may read the password hashes "
                    "and the token secret) and is not ours to change; chmod 600 it"
                ) from None
            log.warning("%s: %s was mode %04o; made it owner-only (%04o)", self._label, file_path, mode, mode & 0o700)

    # ----------------------------------------------------------------- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError(f"{self._label} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(
                self.config.path,
                timeout=self.config.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,  # only so close() can close every thread's connection
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.pid = os.getpid()
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self, mode: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # sqlite may already have rolled back
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._transaction("DEFERRED")

    def _writing(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._transaction("IMMEDIATE")

    @staticmethod
    def _bump_epoch(conn: sqlite3.Connection) -> int:
        row = conn.execute("UPDATE settings SET value = value + 1 WHERE key = 'auth_epoch' RETURNING value").fetchone()
        return int(row[0])

    # ----------------------------------------------------------------- AccessStore protocol

    def verify_password(self, username: str, password: str) -> bool:
        """True when the user exists and the password matches its stored hash."""
        return self.verify_credentials(username, password) is not None

    def close(self) -> None:
        """Close every connection this store opened; later calls raise StoreClosedError. Idempotent."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # ----------------------------------------------------------------- users

    def verify_credentials(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches; None otherwise.

        Every call does one full hash verification, whatever was wrong: an unknown user is checked
        against a decoy hash of the configured algorithm, and a password that can never match
        (empty, not a string, too long) is replaced by a stand-in and checked all the same. So the
        time a failure takes does not tell whether the username exists.
        """
        row = None
        if isinstance(username, str):
            row = (
                self._conn()
                .execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = ?", (username,))
                .fetchone()
            )
        checkable = isinstance(password, str) and 0 < len(password) <= MAX_PASSWORD_CHARS
        candidate = password if checkable else _STAND_IN_PASSWORD
        if row is None:
            spend_verify_time(self.config.password_hash, candidate)
            return None
        try:
            matches = verify_password_hash(row[5], candidate)
        except ValueError as exc:
            log.error("%s: stored password hash of user %r is unusable: %s", self._label, username, exc)
            spend_verify_time(self.config.password_hash, candidate)
            return None
        return _user(row) if matches and checkable else None

    def bootstrap(self, model: BootstrapAccessModelConfig) -> bool:
        """Write ``model`` when the store has no users; True when it did, False (no change) otherwise."""
        with self._reading() as conn:
            if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
                return False
        # Hash before taking the write lock: slow hashes must not hold other processes up.
        hashes = {user.username: hash_password(user.password, self.config.password_hash) for user in model.users}
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
                return False  # another process bootstrapped between our check and our lock
            epoch = self._bump_epoch(conn)
            now = time.time()
            for user in model.users:
                _check_name("username", user.username)
                conn.execute(
                    "INSERT INTO users(username, password_hash, can_manage_users, credential_version, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (user.username, hashes[user.username], int(user.can_manage_users), epoch, now, now),
                )
            for scope in model.scope_access:
                self._add_members(conn, scope.export_name, scope.prefix, scope.mode, scope.usernames, now)
        log.info("%s: bootstrap access model applied (%d users)", self._label, len(model.users))
        return True

    def add_user(self, username: str, password: str, *, can_manage_users: bool = False) -> UserRecord:
        """Create a user; an existing username is an InvalidArgumentError."""
        _check_name("username", username)
        password_hash = hash_password(password, self.config.password_hash)
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is not None:
                raise InvalidArgumentError(f"user {username!r} already exists")
            epoch = self._bump_epoch(conn)
            now = time.time()
            conn.execute(
                "INSERT INTO users(username, password_hash, can_manage_users, credential_version, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (username, password_hash, int(can_manage_users), epoch, now, now),
            )
            return UserRecord(username, bool(can_manage_users), epoch, now, now)

    def _existing_user(self, conn: sqlite3.Connection, username: str) -> UserRecord:
        row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise InvalidArgumentError(f"user {username!r} does not exist")
        return _user(row)

    def _refuse_losing_last_manager(self, conn: sqlite3.Connection, user: UserRecord, action: str) -> None:
        if not user.can_manage_users:
            return
        managers = conn.execute("SELECT COUNT(*) FROM users WHERE can_manage_users = 1").fetchone()[0]
        if managers <= 1:
            raise InvalidArgumentError(
                f"cannot {action} user {user.username!r}: it is the last user who can manage users"
            )

    def remove_user(self, username: str) -> None:
        """Delete a user and its scope memberships; refuses to remove the last user who can manage users."""
        with self._writing() as conn:
            user = self._existing_user(conn, username)
            self._refuse_losing_last_manager(conn, user, "remove")
            self._bump_epoch(conn)
            conn.execute("DELETE FROM users WHERE username = ?", (username,))
            self._drop_empty_scopes(conn)

    def set_password(self, username: str, new_password: str) -> UserRecord:
        """Replace the password; sessions issued before stop working within the revocation bound."""
        with self._reading() as conn:
            self._existing_user(conn, username)
        password_hash = hash_password(new_password, self.config.password_hash)
        with self._writing() as conn:
            user = self._existing_user(conn, username)
            epoch = self._bump_epoch(conn)
            now = time.time()
            conn.execute(
                "UPDATE users SET password_hash = ?, credential_version = ?, updated_at = ? WHERE username = ?",
                (password_hash, epoch, now, username),
            )
            return attrs.evolve(user, credential_version=epoch, updated_at=now)

    def set_can_manage_users(self, username: str, can_manage_users: bool) -> UserRecord:
        """Grant or withdraw user management (and access to every export); the last manager stays one."""
        with self._writing() as conn:
            user = self._existing_user(conn, username)
            if user.can_manage_users == bool(can_manage_users):
                return user
            if not can_manage_users:
                self._refuse_losing_last_manager(conn, user, "withdraw user management from")
            self._bump_epoch(conn)
            now = time.time()
            conn.execute(
                "UPDATE users SET can_manage_users = ?, updated_at = ? WHERE username = ?",
                (int(can_manage_users), now, username),
            )
            return attrs.evolve(user, can_manage_users=bool(can_manage_users), updated_at=now)

    def get_user(self, username: str) -> UserRecord | None:
        """One user, or None."""
        row = self._conn().execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else _user(row)

    def list_users(self) -> list[UserRecord]:
        """All users by username."""
        rows = self._conn().execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username").fetchall()
        return [_user(row) for row in rows]

    # ----------------------------------------------------------------- scopes

    def _add_members(
        self,
        conn: sqlite3.Connection,
        export_name: str,
        prefix: str,
        mode: ScopeMode | str,
        usernames: Sequence[str],
        now: float,
    ) -> tuple[int, str]:
        _check_name("export_name", export_name)
        mode = _scope_mode(mode)
        if isinstance(usernames, str) or not usernames:
            raise InvalidArgumentError("usernames must be a non-empty list of user names")
        prefix = normalize_prefix(prefix)
        known = {row[0] for row in conn.execute("SELECT username FROM users")}
        unknown = sorted(set(usernames) - known)
        if unknown:
            raise InvalidArgumentError(f"cannot grant scope to unknown users: {', '.join(unknown)}")
        conn.execute(
            "INSERT INTO scopes(export_name, prefix, mode, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(export_name, prefix, mode) DO UPDATE SET updated_at = excluded.updated_at",
            (export_name, prefix, mode.value, now, now),
        )
        scope_id = conn.execute(
            "SELECT scope_id FROM scopes WHERE export_name = ? AND prefix = ? AND mode = ?",
            (export_name, prefix, mode.value),
        ).fetchone()[0]
        conn.executemany(
            "INSERT OR IGNORE INTO scope_members(scope_id, username) VALUES (?, ?)",
            [(scope_id, name) for name in usernames],
        )
        return int(scope_id), prefix

    @staticmethod
    def _drop_empty_scopes(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM scopes WHERE scope_id NOT IN (SELECT scope_id FROM scope_members)")

    def grant(
        self, export_name: str, prefix: str, mode: ScopeMode | str, usernames: Sequence[str]
    ) -> ScopeAccessRecord:
        """Add ``usernames`` to the scope (export, prefix, mode), creating it when needed."""
        with self._writing() as conn:
            self._bump_epoch(conn)
            scope_id, _ = self._add_members(conn, export_name, prefix, mode, usernames, time.time())
            return self._scopes(conn, "WHERE s.scope_id = ?", (scope_id,))[0]

    def revoke(
        self,
        export_name: str,
        prefix: str,
        *,
        mode: ScopeMode | str | None = None,
        usernames: Sequence[str] | None = None,
    ) -> int:
        """Remove ``usernames`` (all members when None) from the matching scopes; returns memberships removed.

        ``mode`` None matches both modes. A scope left without members is deleted.
        """
        if isinstance(usernames, str):
            raise InvalidArgumentError("usernames must be a list of user names, not one string")
        if usernames is not None and not usernames:
            return 0
        modes = [m.value for m in ScopeMode] if mode is None else [_scope_mode(mode).value]
        sql = (
            "DELETE FROM scope_members WHERE scope_id IN (SELECT scope_id FROM scopes "
            f"WHERE export_name = ? AND prefix = ? AND mode IN ({', '.join('?' * len(modes))}))"
        )
        params: list[object] = [export_name, normalize_prefix(prefix), *modes]
        if usernames is not None:
            sql += f" AND username IN ({', '.join('?' * len(usernames))})"
            params.extend(usernames)
        with self._writing() as conn:
            removed = int(conn.execute(sql, params).rowcount)
            if removed:
                self._bump_epoch(conn)
                self._drop_empty_scopes(conn)
            return removed

    def _scopes(self, conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[ScopeAccessRecord]:
        rows = conn.execute(
            "SELECT s.scope_id, s.export_name, s.prefix, s.mode, s.created_at, s.updated_at, m.username "
            f"FROM scopes s LEFT JOIN scope_members m ON m.scope_id = s.scope_id {where} "
            "ORDER BY s.export_name, s.prefix, s.mode, m.username",
            params,
        ).fetchall()
        members: dict[int, list[str]] = {}
        heads: dict[int, tuple] = {}  # type: ignore[type-arg]
        for row in rows:
            heads.setdefault(row[0], row)
            if row[6] is not None:
                members.setdefault(row[0], []).append(row[6])
        return [
            ScopeAccessRecord(head[1], head[2], ScopeMode(head[3]), tuple(members.get(sid, ())), head[4], head[5])
            for sid, head in heads.items()
        ]

    def list_scopes(self, export_name: str | None = None) -> list[ScopeAccessRecord]:
        """Scope grants ordered by export, prefix and mode, optionally for one export."""
        with self._reading() as conn:
            if export_name is None:
                return self._scopes(conn, "", ())
            return self._scopes(conn, "WHERE s.export_name = ?", (export_name,))

    # ----------------------------------------------------------------- S3 access keys

    def create_access_key(self, username: str) -> NewAccessKey:
        """A new S3 access key of ``username``; the secret is in the result only (never listed again)."""
        with self._writing() as conn:
            self._existing_user(conn, username)
            held = conn.execute("SELECT COUNT(*) FROM access_keys WHERE username = ?", (username,)).fetchone()[0]
            if held >= MAX_ACCESS_KEYS_PER_USER:
                raise InvalidArgumentError(
                    f"user {username!r} already has {held} access keys (at most {MAX_ACCESS_KEYS_PER_USER}); "
                    "revoke one first"
                )
            self._bump_epoch(conn)
            record = AccessKeyRecord(new_access_key_id(), username, time.time())
            secret = new_secret_access_key()
            conn.execute(
                "INSERT INTO access_keys(access_key_id, username, secret_access_key, created_at) VALUES (?, ?, ?, ?)",
                (record.access_key_id, username, secret, record.created_at),
            )
            return NewAccessKey(record, secret)

    def list_access_keys(self, username: str | None = None) -> list[AccessKeyRecord]:
        """Access keys (without secrets) ordered by user and creation, optionally of one user."""
        sql = "SELECT access_key_id, username, created_at FROM access_keys"
        params: tuple[str, ...] = ()
        if username is not None:
            sql, params = sql + " WHERE username = ?", (username,)
        rows = self._conn().execute(sql + " ORDER BY username, created_at, access_key_id", params).fetchall()
        return [AccessKeyRecord(row[0], row[1], float(row[2])) for row in rows]

    def revoke_access_key(self, access_key_id: str) -> AccessKeyRecord:
        """Delete an access key; requests signed with it are refused from now on."""
        check_access_key_id(access_key_id)
        with self._writing() as conn:
            row = conn.execute(
                "DELETE FROM access_keys WHERE access_key_id = ? RETURNING access_key_id, username, created_at",
                (access_key_id,),
            ).fetchone()
            if row is None:
                raise InvalidArgumentError(f"access key {access_key_id!r} does not exist")
            self._bump_epoch(conn)
            return AccessKeyRecord(row[0], row[1], float(row[2]))

    def access_key_signing_key(
        self, access_key_id: str, date: str, region: str, service: str
    ) -> SigningKeyGrant | None:
        """The SigV4 signing key of ``access_key_id`` for one day, region and service (None: no such key)."""
        check_signing_scope(date, region, service)
        if not is_access_key_id(access_key_id):
            return None
        row = (
            self._conn()
            .execute("SELECT username, secret_access_key FROM access_keys WHERE access_key_id = ?", (access_key_id,))
            .fetchone()
        )
        if row is None:
            return None
        return SigningKeyGrant(access_key_id, row[0], sigv4_signing_key(row[1], date, region, service))

    # ----------------------------------------------------------------- authorization snapshot

    def user_access(self, username: str) -> UserAccess | None:
        """What authorization needs about ``username`` in one snapshot, or None when there is no such user."""
        with self._reading() as conn:
            row = conn.execute(
                "SELECT can_manage_users, credential_version FROM users WHERE username = ?", (username,)
            ).fetchone()
            if row is None:
                return None
            grants = conn.execute(
                "SELECT s.export_name, s.prefix, s.mode FROM scopes s "
                "JOIN scope_members m ON m.scope_id = s.scope_id WHERE m.username = ? "
                "ORDER BY s.export_name, s.prefix, s.mode",
                (username,),
            ).fetchall()
        return UserAccess(
            username=username,
            can_manage_users=bool(row[0]),
            credential_version=int(row[1]),
            grants=tuple(ScopeGrant(g[0], g[1], ScopeMode(g[2])) for g in grants),
        )

    def auth_epoch(self) -> int:
        """A number that increases with every change to users or grants."""
        return int(self._conn().execute("SELECT value FROM settings WHERE key = 'auth_epoch'").fetchone()[0])

    def token_secret(self) -> bytes:
        """The secret session tokens are signed with, shared by every process using this store."""
        return bytes(self._conn().execute("SELECT value FROM settings WHERE key = 'token_secret'").fetchone()[0])

    def schema_version(self) -> int:
        """The schema version the store is at."""
        with self._reading() as conn:
            return current_version(conn)
