"""Login (password checked once, token issued) and the :class:`Authorizer` every FS request goes through.

Per request the authorizer verifies the token's HMAC and consults a per-user cache; the store is
read only when the cache is older than ``revocation_bound_s`` and the store's ``auth_epoch`` moved.
So a password change, a removed user, or a changed grant applies to open sessions within
``revocation_bound_s``, while a steady stream of requests costs one small read per bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError
from fluxon_core.protocols import AccessStore
from fluxon_fs.auth.scopes import ListingVisibility, PathAccess, ScopeSet
from fluxon_fs.auth.tokens import TokenSigner

LOGIN_FAILED_MESSAGE = "permission denied: wrong username or password"
SESSION_REVOKED_MESSAGE = "permission denied: session no longer valid (password changed or user removed); log in again"


@attrs.frozen
class Identity:
    """The user behind a verified session token."""

    username: str
    can_manage_users: bool
    token_expires_at: int
    credential_version: int = 0
    """The user's credential version the token carries (current: an older one is refused)."""


def login(store: AccessStore, signer: TokenSigner, username: str, password: str) -> str:
    """Check the password (the only slow step of a session) and return a session token.

    A wrong username and a wrong password raise the same :class:`PermissionDeniedError`.
    """
    user = store.verify_credentials(username, password)
    if user is None:
        raise PermissionDeniedError(LOGIN_FAILED_MESSAGE)
    return signer.issue(user.username, user.credential_version)


@attrs.frozen
class _CachedUser:
    can_manage_users: bool
    credential_version: int
    scopes: ScopeSet


class Authorizer:
    """Decides, per request, whether a session token may read or write a path of an export.

    Users who can manage users reach every export, including exports registered later. Others reach
    the union of their grants: export match, prefix match on whole path components, and a
    read_write grant for writes. ``clock`` is monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        store: AccessStore,
        signer: TokenSigner,
        *,
        revocation_bound_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._signer = signer
        self._bound_s = revocation_bound_s
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, _CachedUser | None] = {}
        self._epoch: int | None = None
        self._epoch_checked_at = float("-inf")

    def login(self, username: str, password: str) -> str:
        """:func:`login` against this authorizer's store and signer."""
        return login(self._store, self._signer, username, password)

    def _user(self, username: str) -> _CachedUser | None:
        with self._lock:
            now = self._clock()
            if now - self._epoch_checked_at >= self._bound_s:
                epoch = self._store.auth_epoch()
                if epoch != self._epoch:
                    self._users.clear()
                    self._epoch = epoch
                self._epoch_checked_at = now
            if username in self._users:
                return self._users[username]
            access = self._store.user_access(username)
            cached = None
            if access is not None:
                scopes = ScopeSet(access.grants, unrestricted=access.can_manage_users)
                cached = _CachedUser(access.can_manage_users, access.credential_version, scopes)
            self._users[username] = cached
            return cached

    def _session(self, token: str) -> tuple[Identity, _CachedUser]:
        claims = self._signer.verify(token)
        user = self._user(claims.username)
        if user is None or user.credential_version != claims.credential_version:
            raise PermissionDeniedError(SESSION_REVOKED_MESSAGE)
        return Identity(claims.username, user.can_manage_users, claims.expires_at, claims.credential_version), user

    def authenticate(self, token: str) -> Identity:
        """The identity of a valid, unrevoked session token; otherwise :class:`PermissionDeniedError`."""
        return self._session(token)[0]

    def credential_version(self, username: str) -> int | None:
        """The user's current credential version (None: no such user), known within ``revocation_bound_s``."""
        user = self._user(username)
        return None if user is None else user.credential_version

    def path_access(self, token: str, export_name: str, path: str) -> PathAccess:
        """What the session may do with ``path`` (export-relative) of ``export_name``."""
        _, user = self._session(token)
        return _access(user, export_name, path)

    def authorize(self, token: str, export_name: str, path: str, *, is_write: bool) -> Identity:
        """Allow reading (or, with ``is_write``, changing) ``path`` of ``export_name``, or raise.

        Reading needs a grant covering ``path``; directories above a grant are only reachable
        through :meth:`authorize_lookup` and :meth:`authorize_listing`.
        """
        identity, user = self._session(token)
        needed = PathAccess.READ_WRITE if is_write else PathAccess.READ
        if _access(user, export_name, path) < needed:
            raise _denied(identity, "write" if is_write else "read", export_name, path)
        return identity

    def authorize_lookup(self, token: str, export_name: str, path: str) -> Identity:
        """Allow looking ``path`` up (stat, exists): inside a grant or on the way to one."""
        identity, user = self._session(token)
        if _access(user, export_name, path) is PathAccess.NONE:
            raise _denied(identity, "look up", export_name, path)
        return identity

    def authorize_listing(self, token: str, export_name: str, dir_path: str) -> ListingVisibility:
        """Which entries of directory ``dir_path`` the session may see; raises when it may see none of it."""
        identity, user = self._session(token)
        _access(user, export_name, dir_path)  # refuses escaping paths with the errors below
        visibility = user.scopes.listing(export_name, dir_path)
        if visibility is None:
            raise _denied(identity, "list", export_name, dir_path)
        return visibility


def _access(user: _CachedUser, export_name: str, path: str) -> PathAccess:
    """Scope decision, with path-syntax failures turned into this module's typed errors."""
    try:
        return user.scopes.access(export_name, path)
    except PermissionError as exc:  # '..' or an absolute path: it could only be an escape attempt
        raise PermissionDeniedError(f"permission denied: {exc.strerror}: {path!r}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"bad export-relative path {path!r}: {exc}") from None


def _denied(identity: Identity, action: str, export_name: str, path: str) -> PermissionDeniedError:
    shown = "/" + path.strip("/")
    return PermissionDeniedError(
        f"permission denied: user {identity.username!r} may not {action} {shown!r} in export {export_name!r}"
    )
