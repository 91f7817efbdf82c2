"""``/fluxon_fs/config``: the versioned export snapshot clients poll."""

from __future__ import annotations

from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import ExportSnapshotQuery, ExportSnapshotReply


class ConfigHandlers:
    """Answers snapshot polls from the export registry."""

    def __init__(self, exports: ExportRegistry) -> None:
        self._exports = exports

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.EXPORT_SNAPSHOT, self.export_snapshot)

    def export_snapshot(self, _caller: str, query: ExportSnapshotQuery) -> ExportSnapshotReply:
        """The snapshot, or only its version when the caller holds it already."""
        return self._exports.snapshot().reply(query.known_version)
