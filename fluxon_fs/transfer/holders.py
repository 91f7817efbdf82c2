"""Knowing, before a lease runs out, that the worker holding a batch claim is dead.

Workers are named ``<agent>/<incarnation>/<index>``: an agent process picks a fresh incarnation when
it starts. The fs master treats a claim's holder as gone when

* its agent has claimed since under another incarnation (the agent process was restarted), or
* its agent is neither registered (export registry lease) nor seen (a claim or renewal) within
  ``offline_after_s`` — counted only once the master itself has been up that long, so agents have
  had time to reach a freshly restarted master before they are suspected.

A claim whose holder is gone is handed out again at once; a holder that was merely slow finds its
claim lost at the next renewal and its result is ignored, so the worst case is a batch copied twice,
never a corrupt file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection


class ClaimHolders:
    """Incarnations and last contact of the agents whose workers claim batches. Thread-safe."""

    def __init__(self, offline_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._offline_after_s = offline_after_s
        self._clock = clock
        self._started = clock()
        self._incarnations: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def worker_name(self, agent: str, incarnation: str, index: str) -> str:
        """Record that ``agent`` runs as ``incarnation`` now and return the name its worker claims under."""
        with self._lock:
            if incarnation:
                self._incarnations[agent] = incarnation
            self._last_seen[agent] = self._clock()
        return f"{agent}/{incarnation}/{index}"

    def seen(self, agent: str) -> None:
        """``agent`` just talked to the master (e.g. renewed a lease)."""
        with self._lock:
            self._last_seen[agent] = self._clock()

    def gone(self, worker: str, registered_agents: Collection[str]) -> bool:
        """True when the holder ``worker`` is known to be dead (see the module docstring)."""
        parts = worker.split("/")
        if len(parts) != 3:
            return False  # not named by an agent: only its lease decides
        agent, incarnation, _ = parts
        now = self._clock()
        with self._lock:
            current = self._incarnations.get(agent)
            if current is not None and incarnation and current != incarnation:
                return True
            if agent in registered_agents or now - self._started < self._offline_after_s:
                return False
            return now - self._last_seen.get(agent, self._started) >= self._offline_after_s
