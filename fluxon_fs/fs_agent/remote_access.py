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

from fluxon_core.access.records import UserAccess
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.tokens import TokenClaims
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import AuthEpochQuery, TokenVerification, UserAccessQuery

MAX_CACHED_TOKENS = 4096


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
        reply = self._link.auth_epoch(AuthEpochQuery())
        if reply.revocation_bound_s is not None and reply.revocation_bound_s > 0:
            self.revocation_bound_s = reply.revocation_bound_s
        return reply.auth_epoch

    def user_access(self, username: str) -> UserAccess | None:
        """A user's grants as the master sees them now."""
        return self._link.user_access(UserAccessQuery(username)).user_access()


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
        claims = self._link.verify_token(TokenVerification(token))
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
