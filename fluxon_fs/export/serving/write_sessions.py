"""Write sessions (FS.md §7): an fd held open on the agent between a client's write calls.

A session is addressed by a random id (``uuid4().hex``) that only its opener learns. Writes in
one session may arrive concurrently (the client keeps several payloads in flight); they share
the fd, and closing waits until the writes already running have finished, so an fd number is
never closed under a ``pwrite`` (it could otherwise be reused by another open). A session with
no call for ``idle_timeout_s`` (the client crashed or vanished) is closed by a reaper thread;
the file keeps what was written, as a local file does when its writer dies.

Finalizing a session that wrote gives the file a *fresh version* (:func:`stamp_fresh_version`): an
mtime no reader can have seen before the last write landed. Clients key cached pieces by
``size-mtime_ns``; without the stamp, a reader could cache a piece between two writes of the same
timestamp tick (payloads land in any order), and the finished file would keep that version with
other bytes. With it, a closing writer has no cached piece of its new version to drop.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import attrs

from fluxon_core.log_setup import get_logger

T = TypeVar("T")
log = get_logger("fluxon.fs.agent.sessions")

DEFAULT_IDLE_TIMEOUT_S = 60.0
FRESH_VERSION_WAIT_S = 2.5
"""Longest wait for the clock to move the mtime on (filesystems storing whole seconds, or no stamp rights)."""
_FRESH_VERSION_POLL_S = 0.001
DEFAULT_MAX_SESSIONS = 1024


@attrs.define(eq=False)
class WriteSession:
    """One open session: its id, the path it writes and the fd (owned by the table; never close it)."""

    session_id: str
    relpath: str
    fd: int
    last_used: float
    users: int = 0
    wrote: bool = False
    """Whether a write reached the fd (finalize then stamps a fresh version)."""


class WriteSessionTable:
    """Open write sessions of one export, bounded in number and reaped when idle.

    Thread-safe. The reaper thread starts with the first session and stops in :meth:`close`.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s!r}")
        if not (isinstance(max_sessions, int) and max_sessions > 0):
            raise ValueError(f"max_sessions must be a positive int, got {max_sessions!r}")
        self.idle_timeout_s = idle_timeout_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, WriteSession] = {}
        self._reserved = 0
        self._cond = threading.Condition()
        self._closed = False
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def open(self, relpath: str, opener: Callable[[], int]) -> str:
        """Reserve a slot, run ``opener()`` (returns an fd the table then owns), return the new id.

        Raises ``OSError(EMFILE)`` when ``max_sessions`` are open, before anything is opened.
        """
        with self._cond:
            self._check_open()
            if len(self._sessions) + self._reserved >= self.max_sessions:
                raise OSError(
                    errno.EMFILE, f"too many open write sessions on this export (limit {self.max_sessions})", relpath
                )
            self._reserved += 1
        try:
            fd = opener()
        finally:
            with self._cond:
                self._reserved -= 1
        session = WriteSession(uuid.uuid4().hex, relpath, fd, self._clock())
        with self._cond:
            if self._closed:
                os.close(fd)
                self._check_open()
            self._sessions[session.session_id] = session
            self._start_reaper()
        return session.session_id

    @contextmanager
    def use(self, session_id: str) -> Iterator[WriteSession]:
        """The session for the duration of one call (which counts as activity); its fd stays open meanwhile."""
        with self._cond:
            session = self._live(session_id)
            session.users += 1
            session.last_used = self._clock()
        try:
            yield session
        finally:
            with self._cond:
                session.users -= 1
                session.last_used = self._clock()
                self._cond.notify_all()

    def relpath(self, session_id: str) -> str:
        """The export-relative path the session writes (``OSError(EBADF)`` when not open)."""
        with self._cond:
            return self._live(session_id).relpath

    def finish(self, session_id: str, last: Callable[[WriteSession], T]) -> T:
        """End the session: wait for its running calls, run ``last(session)``, close the fd; returns ``last``'s result."""
        session = self._retire(session_id)
        try:
            return last(session)
        finally:
            os.close(session.fd)

    def reap_idle(self) -> list[str]:
        """Close every session idle for longer than ``idle_timeout_s``; returns their ids."""
        now = self._clock()
        with self._cond:
            idle = [
                s.session_id
                for s in self._sessions.values()
                if s.users == 0 and now - s.last_used > self.idle_timeout_s
            ]
        reaped = []
        for session_id in idle:
            try:
                session = self._retire(session_id)
            except OSError:
                continue  # finished by its client meanwhile
            os.close(session.fd)
            log.info("closed abandoned write session %s on %r", session_id, session.relpath)
            reaped.append(session_id)
        return reaped

    def __len__(self) -> int:
        with self._cond:
            return len(self._sessions)

    def close(self) -> None:
        """Stop the reaper and close every session (files keep their data); idempotent."""
        with self._cond:
            self._closed = True
            ids = list(self._sessions)
        self._stop.set()
        for session_id in ids:
            try:
                session = self._retire(session_id)
            except OSError:
                continue
            os.close(session.fd)
        reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "the export's write sessions are closed (agent shutting down)")

    def _live(self, session_id: str) -> WriteSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise OSError(
                errno.EBADF,
                f"write session {session_id!r} is not open (finalized, aborted, "
                f"or closed after {self.idle_timeout_s:g} s without calls)",
            )
        return session

    def _retire(self, session_id: str) -> WriteSession:
        """Remove the session so no new call can start, then wait for the running ones."""
        with self._cond:
            session = self._live(session_id)
            del self._sessions[session_id]
            self._cond.wait_for(lambda: session.users == 0)
        return session

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="fluxon-fs-session-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        interval = min(max(self.idle_timeout_s / 4, 0.01), 5.0)
        while not self._stop.wait(interval):
            try:
                self.reap_idle()
            except Exception:  # the reaper must outlive one bad close
                log.exception("write session reaper failed")


def stamp_fresh_version(fd: int) -> os.stat_result:
    """Move the file's mtime past every value it had while it was written; returns its stat after.

    Sets the mtime to the wall clock in nanoseconds (past the current value), which needs the
    agent to own the file. When it may not, or the filesystem keeps coarser times and the value
    did not change, it touches the file with the current time until the stored mtime moves on
    (one timestamp tick, at most :data:`FRESH_VERSION_WAIT_S`).
    """
    before = os.fstat(fd)
    try:
        os.utime(fd, ns=(before.st_atime_ns, max(time.time_ns(), before.st_mtime_ns + 1)))
    except PermissionError:
        pass  # not the owner: only "now" may be set, below
    after = os.fstat(fd)
    give_up = time.monotonic() + FRESH_VERSION_WAIT_S
    while after.st_mtime_ns == before.st_mtime_ns:
        if time.monotonic() > give_up:
            log.warning("the mtime of a finalized file did not move within %g s", FRESH_VERSION_WAIT_S)
            break
        time.sleep(_FRESH_VERSION_POLL_S)  # wait for the filesystem clock's next tick
        os.utime(fd)
        after = os.fstat(fd)
    return after
