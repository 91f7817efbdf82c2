"""The fs master: one process holding the export snapshot, access control and transfer jobs.

It attaches to the KV plane as an external client named ``fluxon_fs.master.instance_key`` and
serves the ``/fluxon_fs/...`` paths of :mod:`fluxon_fs.master_api.link` over the KV node RPC.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

from fluxon_core.config import BackendConfig
from fluxon_core.errors import ApiTimeoutError, InvalidArgumentError, NetworkError
from fluxon_core.kv import KvClient, new_store
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import POOL_CAPACITY_BYTES, POOL_USED_BYTES
from fluxon_core.protocols import StateStore
from fluxon_core.rpc import default_transport
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.remote import claims_to_wire, user_access_to_wire
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_fs.config import FsRoleConfig, MasterPanelConfig
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.export.serving.caller_auth import service_auth
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.job_runner import JobRunner
from fluxon_fs.fs_master.mount_registry import MountRegistry
from fluxon_fs.master_api.link import (
    AUTH_EPOCH_PATH,
    AUTH_LOGIN_PATH,
    AUTH_USER_ACCESS_PATH,
    AUTH_VERIFY_PATH,
    CONFIG_PATH,
    EXPORT_REGISTRY_PATH,
    MOUNT_REGISTRY_PATH,
    TRANSFER_ACTION_PATH,
    TRANSFER_CLAIM_PATH,
    TRANSFER_COMPLETE_PATH,
    TRANSFER_CREATE_PATH,
    TRANSFER_FAIL_PATH,
    TRANSFER_IMPORT_PATH,
    TRANSFER_LIST_PATH,
    TRANSFER_RENEW_PATH,
    TRANSFER_SHOW_PATH,
)
from fluxon_fs.panel import FsMasterPanelBackend, start_panel
from fluxon_fs.transfer.codec import from_json, to_json
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.holders import ClaimHolders
from fluxon_fs.transfer.jobs import BatchResult, JobSpec
from fluxon_fs.transfer.state_config import open_state_store
from fluxon_fs.transfer.wire import batch_to_wire, job_spec_from_wire, job_to_wire
from fluxon_plugins.prometheus_metrics import render_prometheus_text

log = get_logger("fluxon.fs.master")

AGENT_LEASE_TTL_S = 6.0
REAPER_INTERVAL_S = 0.5
# What an unreachable state store raises (etcd, TiKV); list/show then answer from the last known jobs.
STATE_STORE_DOWN = (NetworkError, ApiTimeoutError)


def kv_client_config(config: FsRoleConfig, default_instance_key: str) -> dict[str, Any]:
    """The role's ``kvclient`` block with its instance key defaulted (and checked) against the role's."""
    if config.kvclient is None:
        raise InvalidArgumentError("kvclient is required: the FluxonKvClientConfig this role attaches with")
    block = dict(config.kvclient)
    key = block.setdefault("instance_key", default_instance_key)
    if key != default_instance_key:
        raise InvalidArgumentError(
            f"kvclient.instance_key {key!r} must equal {default_instance_key!r} (the instance key peers address)"
        )
    return block


class FsMaster:
    """The running fs master; :meth:`close` stops everything it started."""

    def __init__(self, config: FsRoleConfig, workdir: Path, *, store: KvClient | None = None) -> None:
        if config.fluxon_fs.master_panel is None:
            raise InvalidArgumentError("fluxon_fs.master_panel is required for the fs master")
        self.config = config
        self.workdir = workdir
        self.panel_config: MasterPanelConfig = config.fluxon_fs.master_panel
        self.instance_key = config.fluxon_fs.master.instance_key
        self._owns_store = store is None
        self.store = store or new_store(kv_client_config(config, self.instance_key), role="fs_master").unwrap(
            "new_store failed"
        )
        self.exports = ExportRegistry(config.fluxon_fs.cache, lease_ttl_s=AGENT_LEASE_TTL_S)
        self.mounts = MountRegistry()
        self.access_store = BackendConfig(
            kind="sqlite", options=_sqlite_access_options(self.panel_config.access_db_path)
        ).create("access_store")
        if self.access_store.bootstrap(self.panel_config.bootstrap_access_model):
            log.info("access_db %s was empty: bootstrap_access_model applied", self.panel_config.access_db_path)
        session = self.panel_config.session
        self.signer = TokenSigner(self.access_store.token_secret(), ttl_s=session.token_ttl_s)
        self.authorizer = Authorizer(self.access_store, self.signer, revocation_bound_s=session.revocation_bound_s)
        self.state_store: StateStore = open_state_store(self._state_store_block())
        self.transfers = TransferCoordinator(self.state_store)
        self.transfers.recover_after_restart()
        self.claim_holders = ClaimHolders(offline_after_s=AGENT_LEASE_TTL_S)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rpc_client = default_transport().new_client()
        self._service_auth = service_auth(self.store)
        self.jobs = JobRunner(self.transfers, self.export_ops)
        self._register_handlers()
        self._start_thread("fs-master-reaper", self._reap_forever)
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
            export_ops=self.export_ops,
            start_transfer=lambda spec: self.transfers.job(self.jobs.start_job(spec)),
            cluster_members=self._cluster_members,
            cache_usage=self._cache_usage,
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
        stats = self.store.pool_stats()
        return {
            "used_bytes": stats.get("used_bytes", 0),
            "capacity_bytes": stats.get("capacity_bytes", 0),
            "hits": stats.get("hits", 0),
            "misses": stats.get("misses", 0),
        }

    def _state_store_block(self) -> BackendConfig | dict[str, Any]:
        if self.panel_config.transfer_state_store is not None:
            return self.panel_config.transfer_state_store
        return {"kind": "sqlite", "sqlite": {"path": str(self.workdir / "transfer_state.db")}}

    def export_ops(self, export_name: str) -> ExportOps:
        """The operations of an export through one of its live agents, as the system (cluster member)."""
        agents = self.exports.snapshot().body["exports"].get(export_name, {}).get("agents", [])
        if not agents:
            raise FileNotFoundError(errno.ENOENT, f"no live agent serves export {export_name!r}", export_name)
        return RemoteExportOps(
            self._rpc_client, agents[0]["endpoint"], export_name, auth=self._service_auth, caller=self.instance_key
        )

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reap_forever(self) -> None:
        while not self._stop.wait(REAPER_INTERVAL_S):
            for agent in self.exports.expire():
                log.warning("agent %s missed its lease; its exports left the snapshot", agent)

    # ----- RPC handlers -------------------------------------------------------------------------

    def _register_handlers(self) -> None:
        handlers = {
            CONFIG_PATH: self._on_config,
            EXPORT_REGISTRY_PATH: self._on_export_registry,
            MOUNT_REGISTRY_PATH: self._on_mount_registry,
            AUTH_LOGIN_PATH: self._on_login,
            AUTH_VERIFY_PATH: self._on_verify_token,
            AUTH_USER_ACCESS_PATH: self._on_user_access,
            AUTH_EPOCH_PATH: self._on_auth_epoch,
            TRANSFER_CLAIM_PATH: self._on_transfer_claim,
            TRANSFER_RENEW_PATH: self._on_transfer_renew,
            TRANSFER_COMPLETE_PATH: self._on_transfer_complete,
            TRANSFER_FAIL_PATH: self._on_transfer_fail,
            TRANSFER_CREATE_PATH: self._on_transfer_create,
            TRANSFER_IMPORT_PATH: self._on_transfer_import,
            TRANSFER_LIST_PATH: self._on_transfer_list,
            TRANSFER_SHOW_PATH: self._on_transfer_show,
            TRANSFER_ACTION_PATH: self._on_transfer_action,
        }
        for path, handler in handlers.items():
            self.store.rpc_register(path, handler).unwrap(f"cannot serve {path}")

    def _on_config(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        snapshot = self.exports.snapshot()
        if payload.get("known_version") == snapshot.version:
            return {"version": snapshot.version, "unchanged": True}
        return {"version": snapshot.version, "unchanged": False, **snapshot.body}

    def _on_export_registry(self, caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        op = payload.get("op")
        if op == "register":
            exports = payload.get("exports")
            if not isinstance(exports, dict) or not all(isinstance(v, str) for v in exports.values()):
                raise InvalidArgumentError("export_registry register: exports must map export names to root dirs")
            version = self.exports.register(caller, str(payload["endpoint"]), exports)
            log.info("agent %s registered exports %s at %s", caller, sorted(exports), payload["endpoint"])
            return {"version": version, "lease_ttl_s": self.exports.lease_ttl_s}
        if op == "heartbeat":
            return {"known": self.exports.heartbeat(caller), "lease_ttl_s": self.exports.lease_ttl_s}
        if op == "unregister":
            return {"removed": self.exports.unregister(caller)}
        raise InvalidArgumentError(f"export_registry: unknown op {op!r}; expected register, heartbeat or unregister")

    def _on_mount_registry(self, caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        op = payload.get("op")
        if op == "report":
            self.mounts.report(
                caller,
                str(payload["local_mount_dir_abs"]),
                str(payload["export_name"]),
                username=str(payload.get("username", "")),
                host=str(payload.get("host", "")),
                pid=int(payload.get("pid", 0)),
            )
            return {"ok": True}
        if op == "remove":
            return {"removed": self.mounts.remove(caller, str(payload["local_mount_dir_abs"]))}
        raise InvalidArgumentError(f"mount_registry: unknown op {op!r}; expected report or remove")

    def _on_login(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        token = self.authorizer.login(str(payload.get("username", "")), str(payload.get("password", "")))
        claims = self.signer.verify(token)
        return {"token": token, "expires_at": claims.expires_at}

    def _on_verify_token(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        return claims_to_wire(self.signer.verify(str(payload.get("token", ""))))

    def _on_user_access(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        return user_access_to_wire(self.access_store.user_access(str(payload.get("username", ""))))

    def _on_auth_epoch(self, _caller: str, _payload: dict[str, Any]) -> dict[str, Any]:
        # Agents re-read the epoch at this master's bound, so the configured bound holds on them too.
        return {
            "auth_epoch": self.access_store.auth_epoch(),
            "revocation_bound_s": self.panel_config.session.revocation_bound_s,
        }

    def _on_transfer_claim(self, caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        target_exports = set(payload.get("target_exports", []))
        worker = self.claim_holders.worker_name(
            caller, str(payload.get("incarnation", "")), str(payload.get("worker", "0"))
        )
        registered = {record.agent_instance_key for record in self.exports.agents()}
        assignment = self.transfers.claim(
            worker,
            job_ids=[j.job_id for j in self.transfers.jobs() if j.spec.target_export in target_exports],
            holder_gone=lambda holder: self.claim_holders.gone(holder, registered),
        )
        return {"assignment": None if assignment is None else to_json(assignment)}

    def _on_transfer_renew(self, caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.claim_holders.seen(caller)
        deadline = self.transfers.renew(str(payload["job_id"]), int(payload["number"]), str(payload["claim_token"]))
        return {"lease_deadline": deadline}

    def _on_transfer_complete(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = from_json(BatchResult, payload.get("result"), "result")
        accepted = self.transfers.complete(
            str(payload["job_id"]), int(payload["number"]), str(payload["claim_token"]), result
        )
        return {"accepted": accepted}

    def _on_transfer_fail(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        accepted = self.transfers.fail(
            str(payload["job_id"]), int(payload["number"]), str(payload["claim_token"]), str(payload["error"])
        )
        return {"accepted": accepted}

    # ----- transfer jobs for users (CLI, Python API) ------------------------------------------------

    def authorize_transfer(self, token: str, spec: JobSpec) -> None:
        """A user may move data they may read to where they may write (administrators: anywhere)."""
        self.authorizer.authorize(token, spec.source_export, spec.source_dir, is_write=False)
        self.authorizer.authorize(token, spec.target_export, spec.target_prefix, is_write=True)

    def export_root(self, export_name: str) -> str:
        """The root directory of an export on its agents, from the snapshot."""
        export = self.exports.snapshot().body["exports"].get(export_name)
        if export is None:
            raise InvalidArgumentError(f"unknown export_name {export_name!r}")
        return str(export["remote_root_dir_abs"])

    def _on_transfer_create(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        spec = job_spec_from_wire(payload.get("spec"))
        self.authorize_transfer(str(payload.get("token", "")), spec)
        return {"job_id": self.jobs.start_job(spec)}

    def _on_transfer_import(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        spec = job_spec_from_wire(payload.get("spec"))
        token = str(payload.get("token", ""))
        self.authorizer.authorize(token, spec.target_export, spec.target_prefix, is_write=True)
        if not self.authorizer.authenticate(token).can_manage_users:
            self.authorizer.authorize(token, spec.source_export, "", is_write=False)
        job = self.transfers.create_job_from_prescan(
            str(payload["prescan_job_id"]), spec, self.export_root(spec.source_export)
        )
        return {"job_id": job.job_id}

    def _on_transfer_list(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.authorizer.authenticate(str(payload.get("token", "")))
        try:
            jobs, error = self.transfers.jobs(), ""
        except STATE_STORE_DOWN as exc:
            jobs, error = self.transfers.cached_jobs(), state_store_error(exc)
        return {"jobs": [job_to_wire(job, error) for job in jobs], "state_store_error": error}

    def _on_transfer_show(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.authorizer.authenticate(str(payload.get("token", "")))
        job_id = str(payload["job_id"])
        try:
            job = self.transfers.job(job_id)
            batches = [batch_to_wire(state) for state in self.transfers.batch_states(job_id)]
        except STATE_STORE_DOWN as exc:
            cached = self.transfers.cached_job(job_id)
            if cached is None:
                raise NetworkError(state_store_error(exc)) from exc
            error = state_store_error(exc)
            return {"job": job_to_wire(cached, error), "batches": [], "state_store_error": error}
        return {"job": job_to_wire(job), "batches": batches, "state_store_error": ""}

    def _on_transfer_action(self, _caller: str, payload: dict[str, Any]) -> dict[str, Any]:
        job = self.transfers.job(str(payload["job_id"]))
        self.authorize_transfer(str(payload.get("token", "")), job.spec)
        actions = {
            "pause": self.transfers.pause,
            "resume": self.transfers.resume,
            "cancel": self.transfers.cancel,
            "retry_failed": self.transfers.retry_failed,
        }
        action = payload.get("action")
        if action not in actions:
            raise InvalidArgumentError(f"unknown transfer action {action!r}; expected one of {', '.join(actions)}")
        updated = actions[action](job.job_id)
        self.jobs.wake()
        return {"job": job_to_wire(updated)}

    # ----- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop threads and release the stores; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.panel.stop()
        self.jobs.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._rpc_client.close()
        self.state_store.close()
        self.access_store.close()
        if self._owns_store:
            self.store.close()


def _sqlite_access_options(path: str) -> Any:
    from fluxon_plugins.sqlite_access.store import SqliteAccessStoreConfig

    return SqliteAccessStoreConfig(path=path)


def state_store_error(exc: Exception) -> str:
    """What users see while the transfer state store is unreachable."""
    return f"transfer state store unavailable, jobs are paused until it is back: {exc}"
