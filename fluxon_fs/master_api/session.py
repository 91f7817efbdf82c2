"""A user's session with the fs master: a session token, renewed with the password before it expires.

Mount clients (``set_request_identity``) and :class:`~fluxon_fs.master_api.transfer_client.TransferClient`
hold one. The password is verified by the fs master at each login and kept in memory only to log in
again: a token lives ``fluxon_fs.master_panel.session.token_ttl_s``, and a process may run longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.tokens import EXPIRED_TOKEN_MESSAGE
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import Login

T = TypeVar("T")

RENEW_MARGIN_MAX_S = 60.0
"""Log in again at most this long before the token expires..."""
RENEW_MARGIN_FRACTION = 0.25
"""...and at most this fraction of its lifetime before, so a short lifetime is not renewed on every call."""


def is_expired_token_error(exc: BaseException) -> bool:
    """True when the fs master (or an agent) refused a call because its session token expired."""
    return isinstance(exc, PermissionDeniedError) and EXPIRED_TOKEN_MESSAGE in str(exc)


class UserSession:
    """One user's token for calls to the fs master and to agents; thread-safe.

    The lifetime is measured on this host's monotonic clock from the login (the master's
    ``expires_at`` only says how long the token lives), so a clock offset between hosts does not
    make the token look expired or valid for too long.
    """

    def __init__(
        self, link: FsMasterLink, username: str, password: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._link = link
        self.username = username
        self._password = password
        self._clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self.logins = 0
        """How many times this session logged in (the first login included)."""
        with self._lock:
            self._login()

    def _login(self) -> None:
        sent_at = self._clock()
        reply = self._link.login(Login(self.username, self._password))
        lifetime = max(0.0, float(reply.expires_at) - time.time())
        self._token = reply.token
        self._renew_at = sent_at + lifetime - min(RENEW_MARGIN_MAX_S, lifetime * RENEW_MARGIN_FRACTION)
        self.logins += 1

    def token(self, _rpc_path: str = "") -> str:
        """The current token; logs in again first when it is close to expiry (the signature of an ``auth`` callable)."""
        with self._lock:
            if self._clock() >= self._renew_at:
                self._login()
            return self._token

    def renew(self, stale_token: str) -> str:
        """Log in again unless another thread already replaced ``stale_token``; the current token."""
        with self._lock:
            if self._token == stale_token:
                self._login()
            return self._token

    def call(self, request: Callable[[str], T]) -> T:
        """``request(token)``; when it is refused because the token expired (a process suspended past
        the renewal, clocks far apart), log in once more and repeat it."""
        token = self.token()
        try:
            return request(token)
        except PermissionDeniedError as exc:
            if not is_expired_token_error(exc):
                raise
        return request(self.renew(token))
