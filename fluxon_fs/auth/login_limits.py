"""How often and how many passwords the fs master checks: login throttling and the password-check gate.

The panel and the login RPC (``/fluxon_fs/auth/login``, which mount clients use) each hold one
throttle and one pool; the RPC counts the calling instance key as the client address.

* :class:`LoginThrottle` counts failed logins per username and per client address. After the free
  failures of a key (``free_failures_per_user`` / ``_per_address``), each further failure makes the
  key wait ``backoff_initial_s``, doubling up to ``backoff_max_s``; an attempt while a key waits is
  refused without checking the password (:class:`TooManyAttemptsError`, HTTP 429 + ``Retry-After``).
  An attempt counts as a failure from the moment it starts, so a burst of parallel guesses is
  throttled as surely as a sequence; a success takes that count back and forgets the username's
  failures.
* :class:`PasswordCheckPool` runs password hashes on ``max_concurrent_password_checks`` dedicated
  threads (argon2id holds 19 MiB for each, scrypt 128 MiB); a few more calls wait up to
  ``password_check_wait_s``, the rest are refused at once (:class:`PasswordChecksBusyError`, HTTP
  503 + ``Retry-After``). So the memory and threads a login flood can take are bounded.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import attrs

from fluxon_core.errors import ApiError
from fluxon_fs.config import LoginProtectionConfig

T = TypeVar("T")

MAX_TRACKED_KEYS = 10_000
"""Failure records kept per kind (usernames, addresses); the least recently failed are forgotten first."""
MAX_USERNAME_CHARS = 256
WAITING_CHECKS_PER_SLOT = 4
"""Callers that may wait for a password check, per concurrent check allowed."""


class TooManyAttemptsError(ApiError):
    """A login refused because its username or client address must wait out a backoff."""

    code = "too_many_attempts"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PasswordChecksBusyError(ApiError):
    """A password check refused because enough of them are already running or waiting."""

    code = "busy"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value (whole seconds, at least 1) for a wait of ``seconds``."""
    return str(max(1, math.ceil(seconds)))


@attrs.define
class _Failures:
    count: int = 0
    last_at: float = 0.0
    blocked_until: float = 0.0


class _FailureTable:
    """Failures by key, with the backoff they impose; not thread-safe (the throttle locks)."""

    def __init__(self, free_failures: int, config: LoginProtectionConfig) -> None:
        self._free = free_failures
        self._config = config
        self._records: OrderedDict[str, _Failures] = OrderedDict()

    def _live(self, key: str, now: float) -> _Failures | None:
        record = self._records.get(key)
        if record is not None and now - record.last_at >= self._config.forget_failures_after_s:
            del self._records[key]
            return None
        return record

    def wait_s(self, key: str, now: float) -> float:
        """How long ``key`` must still wait (0 when it may try now)."""
        record = self._live(key, now)
        return 0.0 if record is None else max(0.0, record.blocked_until - now)

    def add(self, key: str, now: float) -> None:
        """One more failure; beyond the free ones it sets a backoff."""
        record = self._live(key, now) or _Failures()
        record.count += 1
        record.last_at = now
        beyond = record.count - self._free
        if beyond > 0:
            backoff = self._config.backoff_initial_s * 2.0 ** min(beyond - 1, 60)
            record.blocked_until = now + min(backoff, self._config.backoff_max_s)
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > MAX_TRACKED_KEYS:
            self._records.popitem(last=False)

    def take_back(self, key: str, now: float) -> None:
        """Undo one :meth:`add` (an attempt that did not fail); lifts the backoff it may have set."""
        record = self._live(key, now)
        if record is None:
            return
        record.count -= 1
        if record.count <= self._free:
            record.blocked_until = 0.0
        if record.count <= 0:
            del self._records[key]

    def forget(self, key: str) -> None:
        """Drop every failure of ``key``."""
        self._records.pop(key, None)


class LoginAttempt:
    """One password attempt, counted as a failure until :meth:`succeeded` or :meth:`not_made`."""

    def __init__(self, throttle: LoginThrottle, username: str, address: str) -> None:
        self._throttle = throttle
        self._username = username
        self._address = address
        self._settled = False

    def succeeded(self) -> None:
        """The password was right: take the failure back and forget the username's failures."""
        if not self._settled:
            self._settled = True
            self._throttle._settle(self._username, self._address, succeeded=True)

    def not_made(self) -> None:
        """The password was never checked (the server was busy): take the failure back."""
        if not self._settled:
            self._settled = True
            self._throttle._settle(self._username, self._address, succeeded=False)


class LoginThrottle:
    """Failed logins per username and per client address, with exponential backoff; thread-safe."""

    def __init__(self, config: LoginProtectionConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._users = _FailureTable(config.free_failures_per_user, config)
        self._addresses = _FailureTable(config.free_failures_per_address, config)

    @staticmethod
    def _user_key(username: str) -> str:
        return username[:MAX_USERNAME_CHARS]

    def begin(self, username: str, address: str) -> LoginAttempt:
        """Start an attempt (counted as failed until settled), or raise :class:`TooManyAttemptsError`."""
        user_key = self._user_key(username)
        with self._lock:
            now = self._clock()
            wait_s = max(self._users.wait_s(user_key, now), self._addresses.wait_s(address, now))
            if wait_s > 0:
                raise TooManyAttemptsError(
                    "too many failed logins for this user or from this address; "
                    f"try again in {retry_after_header(wait_s)} s",
                    wait_s,
                )
            self._users.add(user_key, now)
            self._addresses.add(address, now)
        return LoginAttempt(self, user_key, address)

    @contextlib.contextmanager
    def attempt(self, username: str, address: str) -> Iterator[LoginAttempt]:
        """:meth:`begin` as a context: a :class:`PasswordChecksBusyError` inside means no attempt was made."""
        attempt = self.begin(username, address)
        try:
            yield attempt
        except PasswordChecksBusyError:
            attempt.not_made()
            raise

    def _settle(self, user_key: str, address: str, *, succeeded: bool) -> None:
        with self._lock:
            now = self._clock()
            self._addresses.take_back(address, now)
            if succeeded:
                self._users.forget(user_key)
            else:
                self._users.take_back(user_key, now)


class PasswordCheckPool:
    """Runs password checks (and new-password hashes) on ``limit`` dedicated threads; thread-safe.

    A hash needs a lot of memory while it runs (argon2id 19 MiB, scrypt 128 MiB), and the C
    allocator keeps what a thread freed for that thread's next use. Running every hash on the same
    few threads bounds both the peak and the memory kept afterwards to ``limit`` hashes, however
    many requests arrive. A call waits at most ``wait_s`` for its check to start; beyond ``limit``
    running and ``limit * WAITING_CHECKS_PER_SLOT`` waiting, calls are refused at once
    (:class:`PasswordChecksBusyError`).
    """

    def __init__(self, limit: int, wait_s: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="password-check")
        self._wait_s = wait_s
        self._admitted = 0
        self._max_admitted = limit * (1 + WAITING_CHECKS_PER_SLOT)
        self._lock = threading.Lock()

    def _refusal(self) -> PasswordChecksBusyError:
        return PasswordChecksBusyError(
            "the fs master is busy checking other passwords; try again in a moment", max(1.0, self._wait_s)
        )

    def run(self, check: Callable[[], T]) -> T:
        """``check()`` on a password-check thread, blocking until it returns (or raising its error)."""
        with self._lock:
            if self._admitted >= self._max_admitted:
                raise self._refusal()
            self._admitted += 1
        started = threading.Event()

        def run_check() -> T:
            started.set()
            return check()

        try:
            future = self._executor.submit(run_check)
            if not started.wait(self._wait_s) and future.cancel():
                raise self._refusal()
            return future.result()
        finally:
            with self._lock:
                self._admitted -= 1

    def close(self) -> None:
        """Let the threads finish and exit; later calls are refused with RuntimeError."""
        self._executor.shutdown(wait=False, cancel_futures=True)
