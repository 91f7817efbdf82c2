"""The one interface between the panel and the rest of the fs master.

The panel never reaches into the fs master directly: everything it shows or does goes through a
:class:`PanelBackend`. :class:`FsMasterPanelBackend` is the implementation the fs master builds
from its registries, stores and coordinator plus a few callables (cluster members, cache usage,
metrics, browsing, starting transfer jobs) that other layers supply; tests build the same class
around local directories.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fluxon_core.errors import KeyNotFoundError
from fluxon_core.protocols import AccessStore
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.fs_master.cache_usage import ExportCacheUsage
from fluxon_fs.fs_master.export_registry import AgentRecord, ExportRegistry, ExportSnapshot
from fluxon_fs.fs_master.job_authority import JobAuthority
from fluxon_fs.fs_master.mount_registry import MountRecord, MountRegistry
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.jobs import JobOwner, JobRecord, JobSpec
from fluxon_fs.transfer.records import PrescanRecord

ClusterMembersSource = Callable[[], list[dict[str, Any]]]
"""Returns one dict per cluster member, e.g. ``instance_key``, ``role``, ``endpoint``, ``state``,
``pool_used_bytes``, ``pool_capacity_bytes``; any other keys are shown as extra columns."""

CacheUsageSource = Callable[[], dict[str, Any]]
"""Returns the content cache's usage, e.g. ``used_bytes``, ``capacity_bytes``, ``hits``, ``misses``
(``hit_rate`` is computed from hits and misses when absent); other keys are shown as they are."""

ExportCacheUsageSource = Callable[[], dict[str, ExportCacheUsage]]
"""Returns each export's content cache as clients report it: usage per host pool, hits and misses."""


class PanelBackend(Protocol):
    """What the panel needs from the fs master. Every method may be called from several threads."""

    @property
    def authorizer(self) -> Authorizer:
        """Logs users in (password checked once) and authorizes every browse and transfer."""
        ...

    @property
    def access_store(self) -> AccessStore:
        """The access db: users and scope grants, changed by the users and scopes pages."""
        ...

    @property
    def transfers(self) -> TransferCoordinator:
        """Transfer jobs and their batches (lists, pause / resume / cancel / retry)."""
        ...

    @property
    def job_authority(self) -> JobAuthority:
        """Whether a job's owner can still run it (decides who may resume a job; see ``job_access``)."""
        ...

    def cluster_members(self) -> list[dict[str, Any]]:
        """Members of the KV cluster with their roles and pool usage (see :data:`ClusterMembersSource`)."""
        ...

    def cache_usage(self) -> dict[str, Any]:
        """Content cache usage and hit counters (see :data:`CacheUsageSource`)."""
        ...

    def export_cache_usage(self) -> dict[str, ExportCacheUsage]:
        """Each export's content cache: usage in each host pool, hits and misses (see :data:`ExportCacheUsageSource`)."""
        ...

    def export_snapshot(self) -> ExportSnapshot:
        """The current export snapshot (configured exports plus those of live agents)."""
        ...

    def agents(self) -> list[AgentRecord]:
        """Live fs agents and the exports they serve."""
        ...

    def mounts(self) -> list[MountRecord]:
        """Mounts that clients reported."""
        ...

    def export_root_dir(self, export_name: str) -> str:
        """The export's root directory on its agents; :class:`KeyNotFoundError` for an unknown export."""
        ...

    def export_ops(self, export_name: str, access_token: str) -> ExportOps:
        """Operations on an export as the user holding ``access_token``: the agent authorises every call
        by that user's scopes and re-authorises a symlink on its real path, exactly as for a mount."""
        ...

    def prescans(self) -> list[PrescanRecord]:
        """Pre-scans in the transfer state store, newest first."""
        ...

    def prescan(self, prescan_job_id: str) -> PrescanRecord:
        """One pre-scan; :class:`KeyNotFoundError` when the state store has no such pre-scan."""
        ...

    def start_transfer(self, spec: JobSpec, owner: JobOwner) -> JobRecord:
        """Create a job run for ``owner`` that scans ``spec.source_dir`` and then runs; returns it
        (usually ``scanning``)."""
        ...

    def import_prescan(self, prescan_job_id: str, spec: JobSpec, owner: JobOwner) -> JobRecord:
        """Create a running job for ``owner`` from a finished pre-scan; ``spec.source_dir`` is derived
        from the pre-scan."""
        ...

    def metrics_text(self) -> str:
        """Prometheus text exposition served at ``/metrics``."""
        ...


def _no_cluster_members() -> list[dict[str, Any]]:
    return []


def _no_cache_usage() -> dict[str, Any]:
    return {}


def _no_export_cache_usage() -> dict[str, ExportCacheUsage]:
    return {}


def _no_metrics() -> str:
    return ""


class FsMasterPanelBackend:
    """:class:`PanelBackend` over the fs master's own components.

    ``export_ops(name, access_token)`` returns the operations of an export as that user (the fs master:
    an RPC client to an agent serving it, carrying the user's token; tests:
    :class:`~fluxon_fs.export.serving.local_ops.LocalExportOps`); the panel does not close what it returns.
    ``start_transfer(spec, owner)`` creates a job that scans and then runs (the fs master's job
    runner). Pre-scans are read from the coordinator's state store.
    """

    def __init__(
        self,
        *,
        export_registry: ExportRegistry,
        mount_registry: MountRegistry,
        access_store: AccessStore,
        authorizer: Authorizer,
        transfers: TransferCoordinator,
        job_authority: JobAuthority,
        export_ops: Callable[[str, str], ExportOps],
        start_transfer: Callable[[JobSpec, JobOwner], JobRecord],
        cluster_members: ClusterMembersSource = _no_cluster_members,
        cache_usage: CacheUsageSource = _no_cache_usage,
        export_cache_usage: ExportCacheUsageSource = _no_export_cache_usage,
        metrics_text: Callable[[], str] = _no_metrics,
    ) -> None:
        self._exports = export_registry
        self._mounts = mount_registry
        self._access_store = access_store
        self._authorizer = authorizer
        self._transfers = transfers
        self._job_authority = job_authority
        self._export_ops = export_ops
        self._start_transfer = start_transfer
        self._cluster_members = cluster_members
        self._cache_usage = cache_usage
        self._export_cache_usage = export_cache_usage
        self._metrics_text = metrics_text

    @property
    def authorizer(self) -> Authorizer:
        """The fs master's authorizer."""
        return self._authorizer

    @property
    def access_store(self) -> AccessStore:
        """The fs master's access db."""
        return self._access_store

    @property
    def transfers(self) -> TransferCoordinator:
        """The fs master's transfer coordinator."""
        return self._transfers

    @property
    def job_authority(self) -> JobAuthority:
        """The fs master's job authority."""
        return self._job_authority

    def cluster_members(self) -> list[dict[str, Any]]:
        """From the KV layer's callable."""
        return self._cluster_members()

    def cache_usage(self) -> dict[str, Any]:
        """From the cache layer's callable."""
        return self._cache_usage()

    def export_cache_usage(self) -> dict[str, ExportCacheUsage]:
        """From the cache layer's callable."""
        return self._export_cache_usage()

    def export_snapshot(self) -> ExportSnapshot:
        """The export registry's snapshot."""
        return self._exports.snapshot()

    def agents(self) -> list[AgentRecord]:
        """The export registry's live agents."""
        return self._exports.agents()

    def mounts(self) -> list[MountRecord]:
        """The mount registry's live mounts."""
        return self._mounts.mounts()

    def export_root_dir(self, export_name: str) -> str:
        """``remote_root_dir_abs`` of the export in the current snapshot."""
        entry = self.export_snapshot().body["exports"].get(export_name)
        if entry is None:
            raise KeyNotFoundError(f"unknown export_name {export_name!r}: it is not in the current export snapshot")
        return str(entry["remote_root_dir_abs"])

    def export_ops(self, export_name: str, access_token: str) -> ExportOps:
        """The supplied factory's ops as the user of ``access_token``, for exports in the snapshot only."""
        self.export_root_dir(export_name)
        return self._export_ops(export_name, access_token)

    def prescans(self) -> list[PrescanRecord]:
        """Pre-scans in the coordinator's state store, newest first."""
        return self._transfers.job_store.prescans()

    def prescan(self, prescan_job_id: str) -> PrescanRecord:
        """One pre-scan record; :class:`KeyNotFoundError` when it does not exist."""
        return self._transfers.job_store.prescan(prescan_job_id)

    def start_transfer(self, spec: JobSpec, owner: JobOwner) -> JobRecord:
        """Validate and hand the spec to the supplied job runner."""
        spec.validate()
        self.export_root_dir(spec.source_export)
        self.export_root_dir(spec.target_export)
        return self._start_transfer(spec, owner)

    def import_prescan(self, prescan_job_id: str, spec: JobSpec, owner: JobOwner) -> JobRecord:
        """The coordinator imports the pre-scan, rebased onto the source export's root directory."""
        self.export_root_dir(spec.target_export)
        root = self.export_root_dir(spec.source_export)
        return self._transfers.create_job_from_prescan(prescan_job_id, spec, root, owner=owner)

    def metrics_text(self) -> str:
        """From the metrics layer's callable."""
        return self._metrics_text()
