"""The fs agent: serves its exports over RPC, keeps them registered with the fs master, runs transfer workers."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from fluxon_core.addresses import HostAddress, advertised_endpoint
from fluxon_core.errors import ApiError, InvalidArgumentError
from fluxon_core.kv import KvClient, as_kv_client, new_store
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import RpcServer
from fluxon_fs.auth.service import ServiceCredential, read_service_credential
from fluxon_fs.config import AgentExportConfig, FsAgentConfig, FsRoleConfig, default_service_secret_file
from fluxon_fs.export.same_host.server import start_same_host_writes
from fluxon_fs.export.serving.caller_auth import export_authorizer
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.export.serving.rpc_service import ServedExport, serve_export
from fluxon_fs.fs_agent.remote_access import remote_authorizer
from fluxon_fs.fs_agent.transfer_worker import TransferWorkerPool
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import ExportHeartbeat, ExportRegistration, ExportUnregistration

log = get_logger("fluxon.fs.agent")

DEFAULT_REVOCATION_BOUND_S = 2.0
HEARTBEAT_RETRY_S = 0.5


class FsAgent:
    """A running fs agent; :meth:`close` unregisters and stops everything."""

    def __init__(
        self,
        instance_key: str,
        agent_config: FsAgentConfig,
        master_instance_key: str,
        store: KvClient,
        service: ServiceCredential,
        *,
        owns_store: bool = False,
        listen_address: str | None = None,
        advertise_host: str | None = None,
    ) -> None:
        if not agent_config.exports:
            raise InvalidArgumentError("fluxon_fs.agent.exports is empty: an fs agent must serve at least one export")
        self.instance_key = instance_key
        self.store = store
        self._owns_store = owns_store
        self.service = service
        self.master = FsMasterLink(store, master_instance_key, service=service)
        self.ops: dict[str, LocalExportOps] = {
            name: LocalExportOps(
                export.root_dir_abs,
                session_idle_timeout_s=agent_config.session_idle_timeout_s,
                allow_setid_bits=export.allow_setid_bits,
            )
            for name, export in agent_config.exports.items()
        }
        self.export_roots = {name: export.root_dir_abs for name, export in agent_config.exports.items()}
        self.authorize = export_authorizer(remote_authorizer(self.master, DEFAULT_REVOCATION_BOUND_S), service)
        """The access check of every export call: RPC requests, and this agent's transfer workers."""
        bind_address, advertise = export_listen_address(store.host_address(), listen_address, advertise_host)
        self.server: RpcServer = store.transport().bind_server(bind_address, worker_threads=16)
        self.same_host = start_same_host_writes(self.ops, self.authorize)
        """Write payloads of clients on this host, passed as sealed memfds (None: not on this platform)."""
        same_host = self.same_host.address if self.same_host is not None else None
        self.served: list[ServedExport] = [
            serve_export(self.server, name, ops, self.authorize, same_host=same_host) for name, ops in self.ops.items()
        ]
        self.endpoint = advertised_endpoint(self.server.endpoint, advertise)
        self._stop = threading.Event()
        self._lease_ttl_s = self._register()
        self._heartbeat = threading.Thread(target=self._heartbeat_forever, name="fs-agent-heartbeat", daemon=True)
        self._heartbeat.start()
        self.workers = TransferWorkerPool(self, agent_config.transfer_workers)
        self.workers.start()
        log.info("fs agent %s serving %s at %s", instance_key, sorted(self.ops), self.endpoint)

    def _register(self) -> float:
        return self.master.register_export(ExportRegistration(self.endpoint, self.export_roots)).lease_ttl_s

    def _heartbeat_forever(self) -> None:
        interval_s = self._lease_ttl_s / 3
        while not self._stop.wait(interval_s):
            try:
                if not self.master.heartbeat_export(ExportHeartbeat()).known:
                    log.warning(
                        "fs master forgot agent %s (restart or missed lease); registering again", self.instance_key
                    )
                    self._lease_ttl_s = self._register()
                interval_s = self._lease_ttl_s / 3
            except ApiError as exc:
                log.warning("heartbeat to fs master failed: %s", exc)
                # the fs master is away (restarting?): try again soon, so its exports are back within a lease
                interval_s = min(HEARTBEAT_RETRY_S, self._lease_ttl_s / 3)

    def close(self) -> None:
        """Unregister, stop workers and the server, release the exports; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.workers.stop()
        self._heartbeat.join(timeout=5)
        try:
            self.master.unregister_export(ExportUnregistration(), timeout_ms=2000)
        except ApiError as exc:
            log.info("could not unregister from the fs master: %s", exc)
        self.server.close()
        if self.same_host is not None:
            self.same_host.close()
        for ops in self.ops.values():
            ops.close()
        if self._owns_store:
            self.store.close()


def export_listen_address(
    host: HostAddress, listen_address: str | None, advertise_host: str | None
) -> tuple[str, str | None]:
    """Where an agent binds its export server and the host it advertises (None: what the transport reports).

    Without ``listen_address`` the agent binds the host's ``rpc_host`` on any port and advertises
    what the host's owner advertises; an explicit ``advertise_host`` always wins.
    """
    if listen_address is None:
        return f"tcp://{host.bind_host}:0", advertise_host or host.advertise_host
    return listen_address, advertise_host


def start_fs_agent(config: FsRoleConfig, workdir: Path, *, store: KvClient | None = None) -> FsAgent:
    """Start an fs agent from a whole FS role config (the public registration function for Python users).

    The agent's instance key is ``kvclient.instance_key``.
    """
    agent_config = config.fluxon_fs.agent
    if agent_config is None:
        raise InvalidArgumentError("fluxon_fs.agent is required for an fs agent")
    service = read_service_credential(config.service_secret_path(), config.fluxon_fs.service_secret_accept_files)
    if store is None:
        if config.kvclient is None or "instance_key" not in config.kvclient:
            raise InvalidArgumentError(
                "kvclient.instance_key is required for an fs agent (it is FS_AGENT_INSTANCE_KEY)"
            )
        key = str(config.kvclient["instance_key"])
        store = new_store(config.kv_client_config(key), role="fs_agent").unwrap("new_store failed")
        owns = True
    else:
        owns = False
    return FsAgent(
        store.instance_key(),
        agent_config,
        config.fluxon_fs.master.instance_key,
        store,
        service,
        owns_store=owns,
        listen_address=agent_config.listen_address,
        advertise_host=agent_config.advertise_host,
    )


def publish_export(
    kv_store: Any,
    export_name: str,
    root_dir_abs: str,
    *,
    master_instance_key: str,
    service_secret_file: str | os.PathLike[str] | None = None,
    listen_address: str | None = None,
) -> FsAgent:
    """Serve ``root_dir_abs`` as ``export_name`` from this process and register it with the fs master.

    The in-process form of an fs agent (for tests and writer scripts); stop with :func:`unpublish_export`.
    Registering an export is a service action: the process needs the FS service secret
    (``service_secret_file``, default ``~/.fluxon/secrets/<cluster_name>.fs_service.secret``).
    """
    store = as_kv_client(kv_store, "kv_store")
    path = service_secret_file or default_service_secret_file(store.get_cluster_name())
    config = FsAgentConfig(exports={export_name: AgentExportConfig(root_dir_abs=root_dir_abs)})
    return FsAgent(
        store.instance_key(),
        config,
        master_instance_key,
        store,
        read_service_credential(path),
        listen_address=listen_address,
    )


def unpublish_export(agent: FsAgent) -> None:
    """Unregister and stop an export served by :func:`publish_export` (the store stays open)."""
    agent.close()
