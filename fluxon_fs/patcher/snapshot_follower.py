"""The fs master's export snapshot as a client follows it: which exports exist, how to cache them, who serves them."""

from __future__ import annotations

import threading
import time

import attrs

from fluxon_core.errors import ApiError
from fluxon_core.log_setup import get_logger
from fluxon_fs.config import FsCacheConfig
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import ExportSnapshotQuery, SnapshotExport

log = get_logger("fluxon.fs.patcher")


class SnapshotFollower:
    """The fs master's export snapshot, polled every ``pull_interval_ms`` while it is used."""

    def __init__(self, link: FsMasterLink, pull_interval_ms: int) -> None:
        self._link = link
        self._interval_s = pull_interval_ms / 1000
        self._lock = threading.Lock()
        self.version = ""
        self.cache: FsCacheConfig | None = None
        self.exports: dict[str, SnapshotExport] = {}
        self._fetched_at = 0.0

    def refresh(self) -> dict[str, SnapshotExport]:
        """Fetch now (cheap when unchanged) and return the snapshot's exports."""
        reply = self._link.export_snapshot(ExportSnapshotQuery(self.version))
        with self._lock:
            if reply.cache is not None and reply.exports is not None:
                self.version, self.cache, self.exports = reply.version, reply.cache, reply.exports
            self._fetched_at = time.monotonic()
            return self.exports

    def current(self) -> dict[str, SnapshotExport]:
        """The snapshot's exports, refreshed when older than the pull interval."""
        if time.monotonic() - self._fetched_at >= self._interval_s:
            try:
                return self.refresh()
            except ApiError as exc:
                log.warning("fs master snapshot refresh failed (%s); using version %s", exc, self.version)
        return self.exports

    def agents(self, export_name: str) -> list[dict[str, str]]:
        """Live agents of an export, in the form :class:`~fluxon_fs.export.routing.RoutedExportOps` takes."""
        export = self.current().get(export_name)
        return [] if export is None else [attrs.asdict(agent) for agent in export.agents]
