"""Server-side panel sessions and the signed cookie that names one.

The browser holds only ``<session id>.<HMAC-SHA256(secret, session id)>``; everything else (the
user, the access token from :meth:`Authorizer.login`, the CSRF token, pending flash messages) stays
in this process. A session starts anonymous (the login form needs a CSRF token too) and gets a new
id when a user logs in, so an id planted before login is worthless afterwards.
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
    """One browser session; ``username`` is empty until login succeeds."""

    session_id: str
    csrf_token: str
    created_at: float
    last_seen: float
    username: str = ""
    access_token: str = ""
    flashes: list[tuple[str, str]] = attrs.Factory(list)

    @property
    def logged_in(self) -> bool:
        """True once a user logged in through this session."""
        return bool(self.username)

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


class SessionStore:
    """Live sessions, expiring after ``idle_timeout_s`` without a request; thread-safe.

    Anonymous sessions (opened by visiting the login page) expire after ``anonymous_timeout_s``, and
    at most ``max_sessions`` are kept: the least recently used are dropped first, so a flood of
    login-page visits cannot grow memory without bound.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float,
        anonymous_timeout_s: float = 900.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._anonymous_timeout_s = anonymous_timeout_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, PanelSession] = {}
        self._lock = threading.Lock()

    def _expired(self, session: PanelSession, now: float) -> bool:
        timeout = self._idle_timeout_s if session.logged_in else self._anonymous_timeout_s
        return now - session.last_seen >= timeout

    def create(self) -> PanelSession:
        """A new anonymous session."""
        now = self._clock()
        session = PanelSession(
            session_id=secrets.token_urlsafe(SESSION_ID_BYTES),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
        )
        with self._lock:
            self._prune(now)
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

    def log_in(self, session: PanelSession, username: str, access_token: str) -> PanelSession:
        """A fresh session (new id and CSRF token) for ``username``; ``session`` is dropped."""
        fresh = self.create()
        fresh.username = username
        fresh.access_token = access_token
        self.drop(session.session_id)
        return fresh

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

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[sid]
        excess = len(self._sessions) + 1 - self._max_sessions
        if excess > 0:
            oldest = sorted(self._sessions.values(), key=lambda s: s.last_seen)[:excess]
            for session in oldest:
                del self._sessions[session.session_id]
