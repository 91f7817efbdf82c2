"""``/fluxon_fs/cache_usage``: mount clients report their content-cache figures (shown in the panel)."""

from __future__ import annotations

from fluxon_fs.fs_master.cache_usage import CacheUsageRegistry
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import CacheUsageReport, CacheUsageReportReply


class CacheUsageHandlers:
    """Adds clients' reports to the :class:`~fluxon_fs.fs_master.cache_usage.CacheUsageRegistry`."""

    def __init__(self, usage: CacheUsageRegistry) -> None:
        self._usage = usage

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.REPORT_CACHE_USAGE, self.report_cache_usage)

    def report_cache_usage(self, _caller: str, report: CacheUsageReport) -> CacheUsageReportReply:
        """Add a client's figures."""
        self._usage.report(report)
        return CacheUsageReportReply(ok=True)
