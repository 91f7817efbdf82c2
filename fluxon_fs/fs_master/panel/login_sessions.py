"""Server-side panel sessions, the signed cookie that names one, and the login form's CSRF token.

The browser holds only ``<session id>.<HMAC-SHA256(secret, session id)>``; everything else (the
user, the access token from :meth:`Authorizer.login`, the CSRF token, pending flash messages) stays
in this process. A session exists only for a logged-in user and gets a fresh id at every login, so
an id planted before login is worthless afterwards.

Anonymous visitors get no server-side state at all: the login form is protected against CSRF by a
signed double submit (:class:`LoginFormTokens`): a random nonce in a cookie, and in the form a
token that is an HMAC of that nonce and the time it was issued. A flood of login-page requests
therefore costs no memory and can never push a logged-in session out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

import attrs

SESSION_ID_BYTES = 32
COOKIE_SECRET_BYTES = 32


@attrs.define
class PanelSession:
    """The session of one logged-in browser."""

    session_id: str
    csrf_token: str
    created_at: float
    last_seen: float
    username: str
    access_token: str = attrs.field(repr=False)
    flashes: list[tuple[str, str]] = attrs.Factory(list)

    def flash(self, level: str, message: str) -> None:
        """Queue a message (``level`` is ``info`` or ``error``) for the next page this session renders."""
        self.flashes.append((level, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        """The queued messages, removing them."""
        taken, self.flashes = self.flashes, []
        return taken


class CookieSigner:
    """Signs session ids for the cookie and checks returned values in constant time."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < COOKIE_SECRET_BYTES:
            raise ValueError(f"cookie secret must be at least {COOKIE_SECRET_BYTES} bytes")
        self._secret = bytes(secret)

    def _mac(self, session_id: str) -> str:
        digest = hmac.new(self._secret, session_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def sign(self, session_id: str) -> str:
        """The cookie value for ``session_id``."""
        return f"{session_id}.{self._mac(session_id)}"

    def unsign(self, value: str) -> str | None:
        """The session id of a genuine cookie value, None for anything else."""
        session_id, _, mac = value.rpartition(".")
        if not session_id or not session_id.isascii() or len(value) > 256:
            return None
        if not hmac.compare_digest(self._mac(session_id).encode("ascii"), mac.encode("ascii", "replace")):
            return None
        return session_id


class LoginFormTokens:
    """CSRF tokens of the login form without server-side state (a signed double submit).

    The login page sets a random nonce as a cookie (``HttpOnly``) and puts ``<issued>.<mac>`` in
    the form, where ``mac`` is HMAC-SHA256 over the nonce and the issue time. A cross-site form
    can send the cookie but cannot read it, so it cannot produce a matching token. Tokens are
    accepted for ``ttl_s`` after they were issued.
    """

    def __init__(self, secret: bytes, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < COOKIE_SECRET_BYTES:
            raise ValueError(f"login form secret must be at least {COOKIE_SECRET_BYTES} bytes")
        self._secret = bytes(secret)
        self._ttl_s = ttl_s
        self._clock = clock

    @staticmethod
    def new_nonce() -> str:
        """A fresh value for the login form cookie."""
        return secrets.token_urlsafe(SESSION_ID_BYTES)

    @staticmethod
    def usable_nonce(value: str | None) -> bool:
        """True when a cookie value can be a nonce this class made (so the login page may keep it)."""
        return value is not None and 0 < len(value) <= 128 and value.isascii()

    def _mac(self, nonce: str, issued: int) -> str:
        message = f"login-form\x00{nonce}\x00{issued}".encode("ascii", "replace")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self, nonce: str) -> str:
        """The form token for ``nonce``."""
        issued = int(self._clock())
        return f"{issued}.{self._mac(nonce, issued)}"

    def valid(self, nonce: str | None, token: object) -> bool:
        """True when ``token`` was issued for ``nonce`` by this process within ``ttl_s``."""
        if nonce is None or not self.usable_nonce(nonce) or not isinstance(token, str) or len(token) > 128:
            return False
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or not mac:
            return False
        issued = int(issued_text)
        age = self._clock() - issued
        if age < -5 or age > self._ttl_s:
            return False
        expected = self._mac(nonce, issued).encode("ascii")
        return hmac.compare_digest(expected, mac.encode("ascii", "replace"))


class SessionStore:
    """Sessions of logged-in users, expiring after ``idle_timeout_s`` without a request; thread-safe.

    At most ``max_sessions`` are kept, and at most ``max_sessions_per_user`` for one user: a new
    login drops that user's least recently used session first, then the least recently used of
    all. Only a successful login opens a session, so only many users' successful logins (which the
    login throttle and the password cost slow down) could push anyone else's session out.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float,
        max_sessions: int = 10_000,
        max_sessions_per_user: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._max_sessions = max_sessions
        self._max_sessions_per_user = max_sessions_per_user
        self._clock = clock
        self._sessions: dict[str, PanelSession] = {}
        self._lock = threading.Lock()

    def _expired(self, session: PanelSession, now: float) -> bool:
        return now - session.last_seen >= self._idle_timeout_s

    def open(self, username: str, access_token: str) -> PanelSession:
        """A new session (fresh id and CSRF token) for ``username``, who just logged in."""
        now = self._clock()
        session = PanelSession(
            session_id=secrets.token_urlsafe(SESSION_ID_BYTES),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            username=username,
            access_token=access_token,
        )
        with self._lock:
            self._prune(now, username)
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> PanelSession | None:
        """The live session with this id (its idle timer restarts), or None."""
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session

    def drop(self, session_id: str) -> None:
        """Forget a session (logout, revoked user)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def drop_user(self, username: str, *, keep: str = "") -> int:
        """Forget every session of ``username`` except the one with id ``keep``; returns how many."""
        with self._lock:
            ids = [sid for sid, s in self._sessions.items() if s.username == username and sid != keep]
            for sid in ids:
                del self._sessions[sid]
            return len(ids)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _prune(self, now: float, username: str) -> None:
        """Make room for one more session of ``username``."""
        for sid in [sid for sid, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[sid]
        own = [s for s in self._sessions.values() if s.username == username]
        self._drop_least_recent(own, len(own) + 1 - self._max_sessions_per_user)
        self._drop_least_recent(list(self._sessions.values()), len(self._sessions) + 1 - self._max_sessions)

    def _drop_least_recent(self, sessions: list[PanelSession], count: int) -> None:
        if count > 0:
            for session in sorted(sessions, key=lambda s: s.last_seen)[:count]:
                del self._sessions[session.session_id]
