"""A live terminal progress display for scans (rich): files, bytes, rate, ETA."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text


def human_bytes(value: float) -> str:
    """``1.5 MiB`` style size for people."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"


class ScanProgress:
    """Counts advanced by scanner threads, rendered a few times a second.

    The ETA uses the file count of the previous epoch of the same job when there is one; a first
    scan cannot know the size of the tree in advance, so it shows the rate only.
    """

    def __init__(self, expected_files: int = 0, console: Console | None = None) -> None:
        self._expected_files = expected_files
        self._console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._files = 0
        self._bytes = 0
        self._dirs = 0
        self._started = time.monotonic()
        self._live: Live | None = None

    def advance(self, *, files: int, bytes_: int, dirs: int) -> None:
        """Add to the counters (thread-safe)."""
        with self._lock:
            self._files += files
            self._bytes += bytes_
            self._dirs += dirs

    def render(self) -> Text:
        """The current line."""
        with self._lock:
            files, size, dirs = self._files, self._bytes, self._dirs
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = files / elapsed
        line = f"pre-scan  files {files:,}  dirs {dirs:,}  {human_bytes(size)}  {rate:,.0f} files/s  "
        if self._expected_files > files and rate > 0:
            line += f"ETA {(self._expected_files - files) / rate:,.0f}s"
        elif self._expected_files:
            line += "ETA 0s"
        else:
            line += f"elapsed {elapsed:,.1f}s"
        return Text(line)

    def start(self) -> None:
        """Begin live rendering."""
        self._live = Live(get_renderable=self.render, console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def stop(self) -> None:
        """Render the final line and stop."""
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
