"""Session tokens the fs master mints for a user it acts for, when that user is not there.

Work a user started goes on without them: the fs master scans and verifies a transfer job, and
the agents' workers copy it. Every call that work makes carries a session token *of that user*,
minted here, so the agent applies the user's scopes and re-authorises a symlink on its real path
exactly as for the user's own requests — the FS service identity never stands in for a user.

The work is bound to the user and the credential version they had when they started it. A token
is minted only while the user exists with that version, so removing the user or changing their
password stops the work: new tokens are refused at once (within the authorizer's
``revocation_bound_s``), and agents refuse tokens already handed out within the same bound.
A token is reused until half its lifetime is over, so each agent verifies it with the fs master
only once in a while.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.tokens import TokenSigner


class DelegationRefusedError(PermissionDeniedError):
    """The user a token was to be minted for no longer exists (``user_removed``), or their password changed."""

    def __init__(self, message: str, *, user_removed: bool) -> None:
        super().__init__(message)
        self.user_removed = user_removed


@attrs.frozen
class _Minted:
    token: str
    refresh_at: float


class DelegatedSessions:
    """Mints (and reuses) session tokens for users the fs master acts for. Thread-safe.

    ``clock`` is Unix time in seconds, as the signer's.
    """

    def __init__(self, authorizer: Authorizer, signer: TokenSigner, *, clock: Callable[[], float] = time.time) -> None:
        self._authorizer = authorizer
        self._signer = signer
        self._clock = clock
        self._lock = threading.Lock()
        self._minted: dict[tuple[str, int], _Minted] = {}

    def token(self, username: str, credential_version: int) -> str:
        """A session token of ``username``, if they still exist with ``credential_version``.

        Raises :class:`DelegationRefusedError` saying what changed otherwise.
        """
        current = self._authorizer.credential_version(username)
        if current is None:
            raise DelegationRefusedError(f"permission denied: user {username!r} no longer exists", user_removed=True)
        if current != credential_version:
            raise DelegationRefusedError(
                f"permission denied: the password of user {username!r} changed", user_removed=False
            )
        key = (username, credential_version)
        now = self._clock()
        with self._lock:
            minted = self._minted.get(key)
            if minted is None or now >= minted.refresh_at:
                minted = _Minted(self._signer.issue(username, credential_version), now + self._signer.ttl_s / 2)
                self._minted[key] = minted
                for stale in [k for k, m in self._minted.items() if now >= m.refresh_at + self._signer.ttl_s / 2]:
                    del self._minted[stale]
            return minted.token
