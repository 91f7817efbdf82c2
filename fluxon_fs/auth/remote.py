"""The access model as seen from an fs agent: answers come from the fs master, cached.

An agent never holds the token secret or the access database. It asks the master to verify each
new token once (then caches the claims until they expire) and to describe a user's access when the
master's ``auth_epoch`` moved; the :class:`~fluxon_fs.auth.identity.Authorizer` logic is the same
one the master runs, so decisions cannot differ.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.records import ScopeGrant, ScopeMode, UserAccess
from fluxon_fs.auth.tokens import TokenClaims
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import AUTH_EPOCH_PATH, AUTH_USER_ACCESS_PATH, AUTH_VERIFY_PATH

MAX_CACHED_TOKENS = 4096


def user_access_to_wire(access: UserAccess | None) -> dict:
    """JSON form of a user's access (None = no such user)."""
    if access is None:
        return {"exists": False}
    return {
        "exists": True,
        "username": access.username,
        "can_manage_users": access.can_manage_users,
        "credential_version": access.credential_version,
        "grants": [[g.export_name, g.prefix, g.mode.value] for g in access.grants],
    }


def user_access_from_wire(data: dict) -> UserAccess | None:
    """Inverse of :func:`user_access_to_wire`."""
    if not data.get("exists"):
        return None
    grants = tuple(ScopeGrant(export, prefix, ScopeMode(mode)) for export, prefix, mode in data["grants"])
    return UserAccess(data["username"], bool(data["can_manage_users"]), int(data["credential_version"]), grants)


def claims_to_wire(claims: TokenClaims) -> dict:
    """JSON form of verified token claims."""
    return {
        "username": claims.username,
        "issued_at": claims.issued_at,
        "expires_at": claims.expires_at,
        "credential_version": claims.credential_version,
    }


class RemoteAccessView:
    """``auth_epoch`` and ``user_access`` answered by the fs master.

    ``revocation_bound_s`` is the master's session policy bound, learned from its epoch replies
    (None until the first reply, or from a master that does not send it).
    """

    def __init__(self, link: FsMasterLink) -> None:
        self._link = link
        self.revocation_bound_s: float | None = None

    def auth_epoch(self) -> int:
        """The master's current access epoch."""
        reply = self._link.call(AUTH_EPOCH_PATH, {})
        bound = reply.get("revocation_bound_s")
        if isinstance(bound, int | float) and not isinstance(bound, bool) and bound > 0:
            self.revocation_bound_s = float(bound)
        return int(reply["auth_epoch"])

    def user_access(self, username: str) -> UserAccess | None:
        """A user's grants as the master sees them now."""
        return user_access_from_wire(self._link.call(AUTH_USER_ACCESS_PATH, {"username": username}))


class RemoteTokenVerifier:
    """Verifies tokens through the master once each; cached claims are reused until they expire."""

    def __init__(self, link: FsMasterLink) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._claims: OrderedDict[str, TokenClaims] = OrderedDict()

    def verify(self, token: str) -> TokenClaims:
        """Claims of a valid token; the master's PermissionDeniedError otherwise."""

        with self._lock:
            cached = self._claims.get(token)
            if cached is not None and cached.expires_at > time.time():
                self._claims.move_to_end(token)
                return cached
        data = self._link.call(AUTH_VERIFY_PATH, {"token": token})
        claims = TokenClaims(data["username"], data["issued_at"], data["expires_at"], data["credential_version"])
        with self._lock:
            self._claims[token] = claims
            while len(self._claims) > MAX_CACHED_TOKENS:
                self._claims.popitem(last=False)
        return claims


class _MasterPacedAuthorizer(Authorizer):
    """An :class:`Authorizer` re-reading the epoch at the fs master's configured bound once it is known.

    The agent has no session policy of its own; without this, a master configured with a shorter
    bound than the agent's default would see its changes reach agents late.
    """

    def __init__(self, view: RemoteAccessView, verifier: RemoteTokenVerifier, default_bound_s: float) -> None:
        self._view = view
        super().__init__(view, verifier, revocation_bound_s=default_bound_s)  # type: ignore[arg-type]

    @property  # type: ignore[override]
    def _bound_s(self) -> float:
        return self._view.revocation_bound_s or self._default_bound_s

    @_bound_s.setter
    def _bound_s(self, value: float) -> None:
        self._default_bound_s = value


def remote_authorizer(link: FsMasterLink, revocation_bound_s: float) -> Authorizer:
    """An :class:`Authorizer` whose store and token verification live on the fs master.

    ``revocation_bound_s`` applies until the master's first epoch reply names its own bound.
    """
    return _MasterPacedAuthorizer(RemoteAccessView(link), RemoteTokenVerifier(link), revocation_bound_s)
