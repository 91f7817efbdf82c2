"""A :class:`fluxon_core.protocols.AccessStore` kept in process memory.

The fs master is the only process that opens its access store, so a store living in that process's
memory is enough for a test cluster or a demo: users and scope grants come from
``bootstrap_access_model`` at start, the panel can change them while the master runs, and a restart
starts over from the bootstrap model with a new token secret, which also ends every session.

Passwords are kept only as salted slow hashes (:mod:`fluxon_core.access.passwords`), exactly as the
sqlite store keeps them; an unknown username costs one verification against a decoy hash, so a
failed login takes as long whichever part was wrong.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Sequence

import attrs

from fluxon_core.access.access_keys import (
    MAX_ACCESS_KEYS_PER_USER,
    AccessKeyRecord,
    NewAccessKey,
    SigningKeyGrant,
    check_access_key_id,
    check_signing_scope,
    new_access_key_id,
    new_secret_access_key,
    sigv4_signing_key,
)
from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.passwords import (
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
from fluxon_core.config.fields import config_field, identifier
from fluxon_core.errors import InvalidArgumentError, StoreClosedError
from fluxon_core.log_setup import get_logger

# A name without the "fluxon" prefix: get_logger puts it under the fluxon tree, so FLUXON_LOG governs it.
log = get_logger("memstate.access")

SCHEMA_VERSION = 1
"""Nothing is persisted, so there is nothing to migrate: the layout is always this one."""

TOKEN_SECRET_BYTES = 32

ScopeKey = tuple[str, str, ScopeMode]
"""(export_name, normalized prefix, mode): what identifies a scope grant."""


@attrs.frozen
class MemoryAccessStoreConfig:
    """Options of access store ``kind: memory``."""

    password_hash: PasswordAlgorithm = config_field(
        doc="algorithm for new password hashes: argon2id (needs argon2-cffi) or scrypt (standard library).",
        default=PasswordAlgorithm.ARGON2ID,
    )


@attrs.frozen
class _StoredUser:
    record: UserRecord
    password_hash: str = attrs.field(repr=False)  # never in logs or tracebacks


@attrs.frozen
class _StoredKey:
    record: AccessKeyRecord
    secret_access_key: str = attrs.field(repr=False)  # shown once at creation, then only used to derive


@attrs.frozen
class _Scope:
    members: frozenset[str]
    created_at: float
    updated_at: float


def _check_name(what: str, value: object) -> None:
    problem = identifier(value) if isinstance(value, str) else f"must be a string, got {type(value).__name__}"
    if problem:
        raise InvalidArgumentError(f"{what} {problem}")


def _scope_mode(mode: ScopeMode | str) -> ScopeMode:
    try:
        return ScopeMode(mode)
    except ValueError:
        raise InvalidArgumentError(f"mode must be read_only or read_write, got {mode!r}") from None


def _scope_change(
    export_name: str, prefix: str, mode: ScopeMode | str, usernames: Sequence[str], known: Iterable[str]
) -> tuple[ScopeKey, frozenset[str]]:
    """The validated scope key and members of a grant; refused with the sqlite store's messages, in its order."""
    _check_name("export_name", export_name)
    checked_mode = _scope_mode(mode)
    if isinstance(usernames, str) or not usernames:
        raise InvalidArgumentError("usernames must be a non-empty list of user names")
    key = (export_name, normalize_prefix(prefix), checked_mode)
    unknown = sorted(set(usernames) - set(known))
    if unknown:
        raise InvalidArgumentError(f"cannot grant scope to unknown users: {', '.join(unknown)}")
    return key, frozenset(usernames)


def _sort_key(key: ScopeKey) -> tuple[str, str, str]:
    return key[0], key[1], key[2].value


class MemoryAccessStore:
    """The ``memory`` access store; thread-safe, every change applied whole or not at all.

    Every change validates first and then applies under one lock, bumping ``auth_epoch`` in the same
    step; password hashing (the slow part) happens before the lock is taken, so logins and the
    authorizer's reads are never held up by it.
    """

    def __init__(self, config: MemoryAccessStoreConfig) -> None:
        require_available(config.password_hash)
        self.config = config
        self._lock = threading.Lock()
        self._users: dict[str, _StoredUser] = {}
        self._scopes: dict[ScopeKey, _Scope] = {}
        self._keys: dict[str, _StoredKey] = {}
        self._epoch = 0
        self._token_secret = secrets.token_bytes(TOKEN_SECRET_BYTES)
        self._closed = False

    # ----------------------------------------------------------------- helpers (call with the lock held)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("memory access store is closed")

    def _bump_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def _existing_user(self, username: str) -> UserRecord:
        stored = self._users.get(username)
        if stored is None:
            raise InvalidArgumentError(f"user {username!r} does not exist")
        return stored.record

    def _refuse_losing_last_manager(self, user: UserRecord, action: str) -> None:
        if not user.can_manage_users:
            return
        managers = sum(1 for stored in self._users.values() if stored.record.can_manage_users)
        if managers <= 1:
            raise InvalidArgumentError(
                f"cannot {action} user {user.username!r}: it is the last user who can manage users"
            )

    def _add_members(self, key: ScopeKey, members: frozenset[str], now: float) -> None:
        scope = self._scopes.get(key)
        if scope is None:
            self._scopes[key] = _Scope(members, now, now)
        else:
            self._scopes[key] = _Scope(scope.members | members, scope.created_at, now)

    def _drop_members(self, usernames: frozenset[str] | None, keys: Iterable[ScopeKey]) -> int:
        removed = 0
        for key in list(keys):
            scope = self._scopes[key]
            gone = scope.members if usernames is None else scope.members & usernames
            if not gone:
                continue
            removed += len(gone)
            left = scope.members - gone
            if left:
                self._scopes[key] = attrs.evolve(scope, members=left)
            else:
                del self._scopes[key]  # a scope without members is deleted, as in the sqlite store
        return removed

    def _record(self, key: ScopeKey) -> ScopeAccessRecord:
        scope = self._scopes[key]
        return ScopeAccessRecord(
            key[0], key[1], key[2], tuple(sorted(scope.members)), scope.created_at, scope.updated_at
        )

    # ----------------------------------------------------------------- AccessStore protocol

    def verify_password(self, username: str, password: str) -> bool:
        """True when the user exists and the password matches its stored hash."""
        return self.verify_credentials(username, password) is not None

    def close(self) -> None:
        """Forget every user, hash and grant; later calls raise StoreClosedError. Idempotent."""
        with self._lock:
            self._closed = True
            self._users.clear()
            self._scopes.clear()
            self._keys.clear()

    # ----------------------------------------------------------------- users

    def verify_credentials(self, username: str, password: str) -> UserRecord | None:
        """The user when the password matches; None otherwise, taking as long for unknown users."""
        with self._lock:
            self._check_open()
            stored = self._users.get(username) if isinstance(username, str) else None
        if stored is None:
            spend_verify_time(self.config.password_hash, password if isinstance(password, str) else "")
            return None
        try:
            matches = verify_password_hash(stored.password_hash, password)
        except ValueError as exc:
            log.error("memory access store: stored password hash of user %r is unusable: %s", username, exc)
            return None
        return stored.record if matches else None

    def bootstrap(self, model: BootstrapAccessModelConfig) -> bool:
        """Write ``model`` when the store has no users; True when it did, False (no change) otherwise."""
        with self._lock:
            self._check_open()
            if self._users:
                return False
        # Validate everything and hash outside the lock; the model is then applied in one step.
        names = [user.username for user in model.users]
        for name in names:
            _check_name("username", name)
        scopes = [
            _scope_change(scope.export_name, scope.prefix, scope.mode, scope.usernames, names)
            for scope in model.scope_access
        ]
        hashes = {user.username: hash_password(user.password, self.config.password_hash) for user in model.users}
        with self._lock:
            self._check_open()
            if self._users:
                return False  # another thread bootstrapped while we were hashing
            epoch = self._bump_epoch()
            now = time.time()
            for user in model.users:
                record = UserRecord(user.username, bool(user.can_manage_users), epoch, now, now)
                self._users[user.username] = _StoredUser(record, hashes[user.username])
            for key, members in scopes:
                self._add_members(key, members, now)
        log.info("memory access store: bootstrap access model applied (%d users)", len(model.users))
        return True

    def add_user(self, username: str, password: str, *, can_manage_users: bool = False) -> UserRecord:
        """Create a user; an existing username is an InvalidArgumentError."""
        _check_name("username", username)
        password_hash = hash_password(password, self.config.password_hash)
        with self._lock:
            self._check_open()
            if username in self._users:
                raise InvalidArgumentError(f"user {username!r} already exists")
            epoch = self._bump_epoch()
            now = time.time()
            # credential_version comes from the epoch, so a re-created user never matches an old token.
            record = UserRecord(username, bool(can_manage_users), epoch, now, now)
            self._users[username] = _StoredUser(record, password_hash)
            return record

    def remove_user(self, username: str) -> None:
        """Delete a user and its scope memberships; refuses to remove the last user who can manage users."""
        with self._lock:
            self._check_open()
            user = self._existing_user(username)
            self._refuse_losing_last_manager(user, "remove")
            self._bump_epoch()
            del self._users[username]
            self._drop_members(frozenset([username]), self._scopes)
            self._keys = {key_id: key for key_id, key in self._keys.items() if key.record.username != username}

    def set_password(self, username: str, new_password: str) -> UserRecord:
        """Replace the password; sessions issued before stop working within the revocation bound."""
        with self._lock:
            self._check_open()
            self._existing_user(username)
        password_hash = hash_password(new_password, self.config.password_hash)
        with self._lock:
            self._check_open()
            user = self._existing_user(username)  # it may have been removed while we were hashing
            epoch = self._bump_epoch()
            record = attrs.evolve(user, credential_version=epoch, updated_at=time.time())
            self._users[username] = _StoredUser(record, password_hash)
            return record

    def set_can_manage_users(self, username: str, can_manage_users: bool) -> UserRecord:
        """Grant or withdraw user management (and access to every export); the last manager stays one."""
        with self._lock:
            self._check_open()
            user = self._existing_user(username)
            if user.can_manage_users == bool(can_manage_users):
                return user
            if not can_manage_users:
                self._refuse_losing_last_manager(user, "withdraw user management from")
            self._bump_epoch()
            record = attrs.evolve(user, can_manage_users=bool(can_manage_users), updated_at=time.time())
            self._users[username] = attrs.evolve(self._users[username], record=record)
            return record

    def get_user(self, username: str) -> UserRecord | None:
        """One user, or None."""
        with self._lock:
            self._check_open()
            stored = self._users.get(username)
            return None if stored is None else stored.record

    def list_users(self) -> list[UserRecord]:
        """All users by username."""
        with self._lock:
            self._check_open()
            return [self._users[name].record for name in sorted(self._users)]

    # ----------------------------------------------------------------- scopes

    def grant(
        self, export_name: str, prefix: str, mode: ScopeMode | str, usernames: Sequence[str]
    ) -> ScopeAccessRecord:
        """Add ``usernames`` to the scope (export, prefix, mode), creating it when needed."""
        with self._lock:
            self._check_open()
            key, members = _scope_change(export_name, prefix, mode, usernames, self._users)
            self._bump_epoch()
            self._add_members(key, members, time.time())
            return self._record(key)

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
        modes = list(ScopeMode) if mode is None else [_scope_mode(mode)]
        normalized = normalize_prefix(prefix)
        keys = [(export_name, normalized, each) for each in modes]
        with self._lock:
            self._check_open()
            removed = self._drop_members(
                None if usernames is None else frozenset(usernames), [key for key in keys if key in self._scopes]
            )
            if removed:
                self._bump_epoch()
            return removed

    def list_scopes(self, export_name: str | None = None) -> list[ScopeAccessRecord]:
        """Scope grants ordered by export, prefix and mode, optionally for one export."""
        with self._lock:
            self._check_open()
            keys = sorted((k for k in self._scopes if export_name is None or k[0] == export_name), key=_sort_key)
            return [self._record(key) for key in keys]

    # ----------------------------------------------------------------- S3 access keys

    def create_access_key(self, username: str) -> NewAccessKey:
        """A new S3 access key of ``username``; the secret is in the result only (never listed again)."""
        with self._lock:
            self._check_open()
            self._existing_user(username)
            held = sum(1 for key in self._keys.values() if key.record.username == username)
            if held >= MAX_ACCESS_KEYS_PER_USER:
                raise InvalidArgumentError(
                    f"user {username!r} already has {held} access keys (at most {MAX_ACCESS_KEYS_PER_USER}); "
                    "revoke one first"
                )
            self._bump_epoch()
            record = AccessKeyRecord(new_access_key_id(), username, time.time())
            secret = new_secret_access_key()
            self._keys[record.access_key_id] = _StoredKey(record, secret)
            return NewAccessKey(record, secret)

    def list_access_keys(self, username: str | None = None) -> list[AccessKeyRecord]:
        """Access keys (without secrets) ordered by user and creation, optionally of one user."""
        with self._lock:
            self._check_open()
            records = [key.record for key in self._keys.values() if username is None or key.record.username == username]
        return sorted(records, key=lambda r: (r.username, r.created_at, r.access_key_id))

    def revoke_access_key(self, access_key_id: str) -> AccessKeyRecord:
        """Delete an access key; requests signed with it are refused from now on."""
        check_access_key_id(access_key_id)
        with self._lock:
            self._check_open()
            stored = self._keys.pop(access_key_id, None)
            if stored is None:
                raise InvalidArgumentError(f"access key {access_key_id!r} does not exist")
            self._bump_epoch()
            return stored.record

    def access_key_signing_key(
        self, access_key_id: str, date: str, region: str, service: str
    ) -> SigningKeyGrant | None:
        """The SigV4 signing key of ``access_key_id`` for one day, region and service (None: no such key)."""
        check_signing_scope(date, region, service)
        with self._lock:
            self._check_open()
            stored = self._keys.get(access_key_id) if isinstance(access_key_id, str) else None
        if stored is None:
            return None
        signing_key = sigv4_signing_key(stored.secret_access_key, date, region, service)
        return SigningKeyGrant(access_key_id, stored.record.username, signing_key)

    # ----------------------------------------------------------------- authorization snapshot

    def user_access(self, username: str) -> UserAccess | None:
        """What authorization needs about ``username`` in one snapshot, or None when there is no such user."""
        with self._lock:
            self._check_open()
            stored = self._users.get(username)
            if stored is None:
                return None
            keys = sorted((k for k, scope in self._scopes.items() if username in scope.members), key=_sort_key)
            return UserAccess(
                username=username,
                can_manage_users=stored.record.can_manage_users,
                credential_version=stored.record.credential_version,
                grants=tuple(ScopeGrant(*key) for key in keys),
            )

    def auth_epoch(self) -> int:
        """A number that increases with every change to users or grants."""
        with self._lock:
            self._check_open()
            return self._epoch

    def token_secret(self) -> bytes:
        """The secret session tokens are signed with: random per store, so a restart ends every session."""
        with self._lock:
            self._check_open()
            return self._token_secret

    def schema_version(self) -> int:
        """Always :data:`SCHEMA_VERSION`: nothing is stored outside the process, so nothing is ever migrated."""
        with self._lock:
            self._check_open()
            return SCHEMA_VERSION
