"""Waking claimers when batches may have become claimable, instead of letting them poll.

A worker that finds nothing to claim may wait in its claim call (a long poll) until the
coordinator records a change that can give it work — a job whose scan finished, a job resumed or
retried, a batch made pending again — or until its wait runs out. The signal is a
counter: a claimer reads :attr:`WorkSignal.generation` before it looks for work and waits for it
to move on, so a change made between the look and the wait is never missed.
"""

from __future__ import annotations

import threading
import time


class WorkSignal:
    """A generation counter that waiters block on. Thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0
        self._closed = False

    @property
    def generation(self) -> int:
        """The number of changes so far."""
        with self._changed:
            return self._generation

    def notify(self) -> None:
        """Something may be claimable now: wake every waiter."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, since: int, timeout_s: float) -> bool:
        """Block until the generation differs from ``since``, the signal closes, or ``timeout_s`` passes;
        True when the generation moved on."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._generation == since and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return self._generation != since

    def close(self) -> None:
        """Release every waiter now and make later waits return at once (the process is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
