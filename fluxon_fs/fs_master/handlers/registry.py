"""``/fluxon_fs/export_registry`` and ``/fluxon_fs/mount_registry``: who serves which export, who mounts it."""

from __future__ import annotations

from collections.abc import Callable

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.fs_master.mount_registry import MountRegistry
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import (
    ExportHeartbeat,
    ExportHeartbeatReply,
    ExportRegistration,
    ExportRegistrationReply,
    ExportUnregistration,
    ExportUnregistrationReply,
    MountRemoval,
    MountRemovalReply,
    MountReport,
    MountReportReply,
)

log = get_logger("fluxon.fs.master")


class RegistryHandlers:
    """Agents register their exports under a lease; clients report their mounts (shown in the panel)."""

    def __init__(
        self,
        exports: ExportRegistry,
        mounts: MountRegistry,
        username_of: Callable[[str], str],
        endpoint_problem: Callable[[str, str], str | None] = lambda _agent, _endpoint: None,
    ) -> None:
        self._exports = exports
        self._mounts = mounts
        self._username_of = username_of
        """The user a session token names ("" for a missing or invalid one)."""
        self._endpoint_problem = endpoint_problem
        """Why an agent must not register at an endpoint (one the cluster cannot reach), or None."""

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.REGISTER_EXPORT, self.register_export)
        table.add(calls.HEARTBEAT_EXPORT, self.heartbeat_export)
        table.add(calls.UNREGISTER_EXPORT, self.unregister_export)
        table.add(calls.REPORT_MOUNT, self.report_mount)
        table.add(calls.REMOVE_MOUNT, self.remove_mount)

    def register_export(self, caller: str, registration: ExportRegistration) -> ExportRegistrationReply:
        """Record (or refresh) the calling agent's exports; refused when the endpoint is unreachable."""
        problem = self._endpoint_problem(caller, registration.endpoint)
        if problem is not None:
            log.error("refusing the exports of agent %s: %s", caller, problem)
            raise InvalidArgumentError(problem)
        version = self._exports.register(caller, registration.endpoint, registration.exports)
        log.info("agent %s registered exports %s at %s", caller, sorted(registration.exports), registration.endpoint)
        return ExportRegistrationReply(version, self._exports.lease_ttl_s)

    def heartbeat_export(self, caller: str, _heartbeat: ExportHeartbeat) -> ExportHeartbeatReply:
        """Renew the calling agent's lease."""
        return ExportHeartbeatReply(self._exports.heartbeat(caller), self._exports.lease_ttl_s)

    def unregister_export(self, caller: str, _unregistration: ExportUnregistration) -> ExportUnregistrationReply:
        """Drop the calling agent now (clean stop)."""
        return ExportUnregistrationReply(self._exports.unregister(caller))

    def report_mount(self, caller: str, report: MountReport) -> MountReportReply:
        """Record (or refresh) a mount of the calling client."""
        self._mounts.report(
            caller,
            report.local_mount_dir_abs,
            report.export_name,
            username=self._username_of(report.token) if report.token else "",
            host=report.host,
            pid=report.pid,
        )
        return MountReportReply(ok=True)

    def remove_mount(self, caller: str, removal: MountRemoval) -> MountRemovalReply:
        """Forget a mount of the calling client."""
        return MountRemovalReply(self._mounts.remove(caller, removal.local_mount_dir_abs))
