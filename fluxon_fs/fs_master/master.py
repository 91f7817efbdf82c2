"""The fs master: one process holding the export snapshot, access control and transfer jobs.

It attaches to the KV plane as an external client named ``fluxon_fs.master.instance_key`` and
serves the calls of :mod:`fluxon_fs.master_api.calls` over the KV node RPC, through the handlers of
:mod:`fluxon_fs.fs_master.handlers`. This module wires the process: stores, registries, panel,
threads and their shutdown.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxon_core.config import BackendConfig
from fluxon_core.errors import ApiError, InvalidArgumentError
from fluxon_core.kv import KvClient, new_store
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import POOL_CAPACITY_BYTES, POOL_USED_BYTES
from fluxon_core.metrics_exposition import render_prometheus_text
from fluxon_core.protocols import StateStore
from fluxon_fs.auth.delegation import DelegatedSessions
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.service import create_service_credential
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_fs.config import FsRoleConfig, MasterPanelConfig
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.fs_master.agent_reachability import export_endpoint_problem
from fluxon_fs.fs_master.cache_usage import CacheUsageRegistry
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.handlers.access_keys import AccessKeyHandlers
from fluxon_fs.fs_master.handlers.auth import AuthHandlers
from fluxon_fs.fs_master.handlers.cache import CacheUsageHandlers
from fluxon_fs.fs_master.handlers.config import ConfigHandlers
from fluxon_fs.fs_master.handlers.registry import RegistryHandlers
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.fs_master.handlers.transfers import TransferHandlers
from fluxon_fs.fs_master.job_authority import JobAuthority
from fluxon_fs.fs_master.job_runner import JobRunner
from fluxon_fs.fs_master.mount_registry import MountRegistry
from fluxon_fs.fs_master.panel import FsMasterPanelBackend, start_panel
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.holders import ClaimHolders
from fluxon_fs.transfer.state_config import open_state_store

log = get_logger("fluxon.fs.master")

AGENT_LEASE_TTL_S = 6.0
REAPER_INTERVAL_S = 0.5


class FsMaster:
    """The running fs master; :meth:`close` stops everything it started."""

    def __init__(self, config: FsRoleConfig, workdir: Path, *, store: KvClient | None = None) -> None:
        if config.fluxon_fs.master_panel is None:
            raise InvalidArgumentError("fluxon_fs.master_panel is required for the fs master")
        self.config = config
        self.workdir = workdir
        self.panel_config: MasterPanelConfig = config.fluxon_fs.master_panel
        self.instance_key = config.fluxon_fs.master.instance_key
        self.service = create_service_credential(
            config.service_secret_path(), config.fluxon_fs.service_secret_accept_files
        )
        self._owns_store = store is None
        self.store = store or new_store(config.kv_client_config(self.instance_key), role="fs_master").unwrap(
            "new_store failed"
        )
        self.exports = ExportRegistry(config.fluxon_fs.cache, lease_ttl_s=AGENT_LEASE_TTL_S)
        self.mounts = MountRegistry()
        self.cache_usage = CacheUsageRegistry()
        access_backend = self.panel_config.access_store_backend()
        self.access_store = access_backend.create("access_store")
        if self.access_store.bootstrap(self.panel_config.bootstrap_access_model):
            log.info("access store (kind %s) was empty: bootstrap_access_model applied", access_backend.kind)
        session = self.panel_config.session
        self.signer = TokenSigner(self.access_store.token_secret(), ttl_s=session.token_ttl_s)
        self.authorizer = Authorizer(self.access_store, self.signer, revocation_bound_s=session.revocation_bound_s)
        self.state_store: StateStore = open_state_store(self._state_store_block())
        self.transfers = TransferCoordinator(self.state_store)
        self.transfers.recover_after_restart()
        self.claim_holders = ClaimHolders(offline_after_s=AGENT_LEASE_TTL_S)
        self._stop = threading.Event()
        self._rpc_client = self.store.transport().new_client()
        self.job_authority = JobAuthority(DelegatedSessions(self.authorizer, self.signer))
        self.jobs = JobRunner(self.transfers, self.export_ops_as, self.job_authority)
        self._serve_protocol()
        self._reaper = threading.Thread(target=self._reap_forever, name="fs-master-reaper", daemon=True)
        self._reaper.start()
        self.jobs.start()
        POOL_CAPACITY_BYTES.get().set_function(lambda: self._pool_stat("capacity_bytes"))
        POOL_USED_BYTES.get().set_function(lambda: self._pool_stat("used_bytes"))
        self.panel = start_panel(self._panel_backend(), self.panel_config)
        self.panel_url = self.panel.url

    def _panel_backend(self) -> FsMasterPanelBackend:
        return FsMasterPanelBackend(
            export_registry=self.exports,
            mount_registry=self.mounts,
            access_store=self.access_store,
            authorizer=self.authorizer,
            transfers=self.transfers,
            export_ops=self.export_ops_as_user,
            job_authority=self.job_authority,
            start_transfer=lambda spec, owner: self.transfers.job(self.jobs.start_job(spec, owner)),
            cluster_members=self._cluster_members,
            cache_usage=self._cache_usage,
            export_cache_usage=self.cache_usage.exports,
            metrics_text=render_prometheus_text,
        )

    def _pool_stat(self, name: str) -> float | None:
        if self.store.closed():
            return None
        return float(self.store.pool_stats().get(name, 0))

    def _cluster_members(self) -> list[dict[str, Any]]:
        status = self.store.cluster_status().unwrap("cluster status")
        members = []
        for member in status.get("members", []):
            stats = member.get("stats") or {}
            members.append(
                {
                    "instance_key": member.get("instance_key"),
                    "role": member.get("role"),
                    "endpoint": member.get("endpoint"),
                    "host": member.get("host", ""),
                    "state": "alive",
                    "pool_used_bytes": stats.get("used_bytes", ""),
                    "pool_capacity_bytes": stats.get("capacity_bytes", ""),
                    "keys_held": member.get("keys_held", ""),
                    "last_seen_s_ago": member.get("last_seen_s_ago", ""),
                }
            )
        return members

    def _cache_usage(self) -> dict[str, Any]:
        # The pool figures are this host's; hits and misses are the pieces every reporting mount client
        # read from the cache or from an agent (this process reads no file content itself).
        stats = self.store.pool_stats()
        hits, misses = self.cache_usage.totals()
        return {
            "used_bytes": stats.get("used_bytes", 0),
            "capacity_bytes": stats.get("capacity_bytes", 0),
            "hits": hits,
            "misses": misses,
        }

    def _state_store_block(self) -> BackendConfig | dict[str, Any]:
        if self.panel_config.transfer_state_store is not None:
            return self.panel_config.transfer_state_store
        return {"kind": "sqlite", "sqlite": {"path": str(self.workdir / "transfer_state.db")}}

    def export_ops_as_user(self, export_name: str, access_token: str) -> ExportOps:
        """The operations of an export as the user of ``access_token``: the agent applies that user's scopes."""
        return self.export_ops_as(export_name, lambda _path: access_token)

    def export_ops_as(self, export_name: str, auth: Callable[[str], str]) -> ExportOps:
        """The operations of an export through one of its live agents, every call carrying the user token
        ``auth(rpc_path)`` returns (the fs master never calls an export as the system)."""
        export = self.exports.snapshot().exports.get(export_name)
        if export is None or not export.agents:
            raise FileNotFoundError(errno.ENOENT, f"no live agent serves export {export_name!r}", export_name)
        return RemoteExportOps(
            self._rpc_client, export.agents[0].endpoint, export_name, auth=auth, caller=self.instance_key
        )

    def _username_of(self, token: str) -> str:
        try:
            return self.authorizer.authenticate(token).username
        except ApiError:
            return ""

    def _serve_protocol(self) -> None:
        table = HandlerTable(self.service)
        ConfigHandlers(self.exports).register_paths(table)
        RegistryHandlers(
            self.exports,
            self.mounts,
            self._username_of,
            lambda agent, endpoint: export_endpoint_problem(self.store, agent, endpoint),
        ).register_paths(table)
        CacheUsageHandlers(self.cache_usage).register_paths(table)
        self._auth = AuthHandlers(
            self.authorizer,
            self.signer,
            self.access_store,
            self.panel_config.session.revocation_bound_s,
            self.panel_config.login_protection,
        )
        self._auth.register_paths(table)
        AccessKeyHandlers(
            self.access_store,
            self.authorizer,
            DelegatedSessions(self.authorizer, self.signer),
            self.panel_config.session.revocation_bound_s,
        ).register_paths(table)
        transfers = TransferHandlers(
            self.transfers, self.jobs, self.claim_holders, self.exports, self.authorizer, self.job_authority
        )
        transfers.register_paths(table)
        table.serve(self.store)

    def _reap_forever(self) -> None:
        while not self._stop.wait(REAPER_INTERVAL_S):
            for agent in self.exports.expire():
                log.warning("agent %s missed its lease; its exports left the snapshot", agent)

    # ----- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop threads and release the stores; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.panel.stop()
        self.transfers.work.close()  # releases held claim calls
        self.jobs.stop()
        self._reaper.join(timeout=5)
        self._auth.close()
        self._rpc_client.close()
        self.state_store.close()
        self.access_store.close()
        if self._owns_store:
            self.store.close()
