"""A warning logged at most once per interval: a flood of refused calls or connections must not flood the log."""

from __future__ import annotations

import logging
import time
from typing import Any


class ThrottledWarning:
    """``warn(msg, *args)`` logs to ``log`` unless it already did less than ``interval_s`` ago."""

    def __init__(self, log: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = log
        self._interval_s = interval_s
        self._last = -interval_s

    def warn(self, msg: str, *args: Any) -> None:
        """Log ``msg % args`` as a warning, or nothing when the last one is recent (racy by design: harmless)."""
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            self._log.warning(msg, *args)
