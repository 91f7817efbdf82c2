"""Configs and start-up of a whole Fluxon FS deployment on this host.

Every name can be overridden by the environment variable of the same name. The host that runs
the masters writes a join token (``WORKDIR/join.token``, 0600: the cluster secret, the FS service
secret and where the kv master is); another machine joins with ``--without-master`` and
``FLUXON_JOIN_TOKEN_FILE`` pointing at a copy of it (``OWNER_INSTANCE_KEY``,
``FS_AGENT_INSTANCE_KEY``, ``EXPORT_NAME`` and ``REMOTE_ROOT_DIR`` must be unique per machine; the
defaults derive from the host name). Without a token, ``ETCD_ENDPOINT`` or ``KV_MASTER_ADDRESS``
must point at the cluster's and the secrets must be copied by hand. Paths that are not set live under
the workdir (``WORKDIR`` for the example script): the export directory defaults to
``<workdir>/export_<EXPORT_NAME>``.

Addresses default to loopback (one host). For several hosts, each role's bind and advertised
address is set by: ``KV_MASTER_HOST`` / ``KV_MASTER_ADVERTISE_HOST`` (kv master ``host`` /
``advertise_host``), ``OWNER_RPC_HOST`` / ``OWNER_RPC_ADVERTISE_HOST`` (owner
``fluxonkv_spec.rpc_host`` / ``rpc_advertise_host``, which the fs master, the fs agent and every
client of the host follow), ``FS_AGENT_LISTEN_ADDRESS`` / ``FS_AGENT_ADVERTISE_HOST`` (fs agent
``listen_address`` / ``advertise_host``, when it must differ from the owner's) and
``FS_PANEL_LISTEN_ADDR`` / ``FS_PANEL_PUBLIC_BASE_URL`` (panel). ``0.0.0.0`` binds every interface
and advertises the host's primary address.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from fluxon_core.addresses import advertised_host
from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv.auth import read_secret_file
from fluxon_core.runtime import (
    ManagedSubprocess,
    start_kv_master_process,
    start_owner_kvclient_process,
)
from fluxon_core.runtime.processes import RoleProcess
from fluxon_fs.auth.join_token import (
    JOIN_TOKEN_ENV,
    JoinToken,
    install_join_secrets,
    join_token_for,
    read_join_token,
    write_join_token,
)
from fluxon_fs.roles import start_fs_agent_process, start_fs_master_process, start_s3_gateway_process

READY_TIMEOUT_S = 90.0
JOIN_TOKEN_NAME = "join.token"


def _host() -> str:
    return socket.gethostname().split(".")[0].lower().replace("_", "-") or "host"


TRANSFER_STATE_ENV = (
    "TRANSFER_STATE_STORE_PD_ENDPOINTS",
    "TRANSFER_STATE_STORE_ETCD_ENDPOINTS",
    "TRANSFER_STATE_STORE_KEY_PREFIX",
)
DEFAULT_TRANSFER_KEY_PREFIX = "/fluxon_fs_transfer/{cluster}/"


def transfer_state_store_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The fs master's ``transfer_state_store`` the guide's environment names select, or None (sqlite).

    ``TRANSFER_STATE_STORE_PD_ENDPOINTS`` (comma-separated ``host:port``) selects TiKV,
    ``TRANSFER_STATE_STORE_ETCD_ENDPOINTS`` etcd; ``TRANSFER_STATE_STORE_KEY_PREFIX`` names the
    namespace (default ``/fluxon_fs_transfer/<CLUSTER_NAME>/``). Both set at once is an error.
    """
    pd, etcd = env.get("TRANSFER_STATE_STORE_PD_ENDPOINTS"), env.get("TRANSFER_STATE_STORE_ETCD_ENDPOINTS")
    if pd and etcd:
        raise ValueError(
            "set TRANSFER_STATE_STORE_PD_ENDPOINTS (TiKV) or TRANSFER_STATE_STORE_ETCD_ENDPOINTS (etcd), not both"
        )
    prefix = env.get("TRANSFER_STATE_STORE_KEY_PREFIX")
    if not pd and not etcd:
        if prefix:
            raise ValueError(
                "TRANSFER_STATE_STORE_KEY_PREFIX needs TRANSFER_STATE_STORE_PD_ENDPOINTS or "
                "TRANSFER_STATE_STORE_ETCD_ENDPOINTS (the embedded sqlite store has no key prefix)"
            )
        return None
    prefix = prefix or DEFAULT_TRANSFER_KEY_PREFIX.format(cluster=env.get("CLUSTER_NAME") or "demo-fs-cluster")
    endpoints = [endpoint.strip() for endpoint in (pd or etcd or "").split(",") if endpoint.strip()]
    if pd:
        return {"kind": "tikv", "tikv": {"pd_endpoints": endpoints, "key_prefix": prefix}}
    return {"kind": "etcd", "etcd": {"endpoints": endpoints, "key_prefix": prefix}}


@attrs.frozen
class StackSettings:
    """Names, paths and addresses of the demo deployment (defaults: everything on this host)."""

    workdir: Path
    cluster_name: str = "demo-fs-cluster"
    shared_memory_path: str = "/dev/shm/fluxon_fs_demo"
    shared_file_path: str = "/tmp/fluxon_fs_demo/shared"
    etcd_endpoint: str | None = None
    kv_master_host: str = "127.0.0.1"
    kv_master_advertise_host: str | None = None
    kv_master_port: int = 31000
    kv_master_address: str | None = None
    kv_master_instance_key: str = "kv-master"
    fs_master_instance_key: str = "fs-master"
    owner_instance_key: str = attrs.field(factory=lambda: f"owner-{_host()}")
    fs_agent_instance_key: str = attrs.field(factory=lambda: f"fs-agent-{_host()}")
    owner_rpc_host: str = "127.0.0.1"
    owner_rpc_advertise_host: str | None = None
    fs_agent_listen_address: str | None = None
    fs_agent_advertise_host: str | None = None
    export_name: str = "demo"
    remote_root_dir: str = attrs.field(
        default=attrs.Factory(lambda self: str(self.workdir / f"export_{self.export_name}"), takes_self=True)
    )
    """``REMOTE_ROOT_DIR``; unless set it follows the workdir: ``<workdir>/export_<export_name>``."""
    panel_listen_addr: str = "127.0.0.1:18080"
    panel_public_base_url: str | None = None
    s3_listen_addr: str = "127.0.0.1:19000"
    s3_gateway_instance_key: str = attrs.field(factory=lambda: f"s3-gateway-{_host()}")
    admin_username: str = "admin"
    admin_password: str = "admin"
    pool_size: str = "512MiB"
    transfer_state_store: Mapping[str, Any] | None = None
    join_token: JoinToken | None = None
    """Set on a joining host (``FLUXON_JOIN_TOKEN_FILE``): the cluster it joins and its secrets."""

    @classmethod
    def from_env(cls, workdir: Path, environ: Mapping[str, str] | None = None, **overrides: Any) -> StackSettings:
        """Defaults, then environment variables (``CLUSTER_NAME``, ``ETCD_ENDPOINT``, …), then ``overrides``."""
        env = os.environ if environ is None else environ
        names = {
            "CLUSTER_NAME": "cluster_name",
            "SHARED_MEMORY_PATH": "shared_memory_path",
            "SHARED_FILE_PATH": "shared_file_path",
            "ETCD_ENDPOINT": "etcd_endpoint",
            "KV_MASTER_ADDRESS": "kv_master_address",
            "KV_MASTER_HOST": "kv_master_host",
            "KV_MASTER_ADVERTISE_HOST": "kv_master_advertise_host",
            "OWNER_RPC_HOST": "owner_rpc_host",
            "OWNER_RPC_ADVERTISE_HOST": "owner_rpc_advertise_host",
            "FS_AGENT_LISTEN_ADDRESS": "fs_agent_listen_address",
            "FS_AGENT_ADVERTISE_HOST": "fs_agent_advertise_host",
            "FS_MASTER_INSTANCE_KEY": "fs_master_instance_key",
            "OWNER_INSTANCE_KEY": "owner_instance_key",
            "FS_AGENT_INSTANCE_KEY": "fs_agent_instance_key",
            "EXPORT_NAME": "export_name",
            "REMOTE_ROOT_DIR": "remote_root_dir",
            "FS_PANEL_LISTEN_ADDR": "panel_listen_addr",
            "FS_PANEL_PUBLIC_BASE_URL": "panel_public_base_url",
            "S3_GATEWAY_LISTEN_ADDR": "s3_listen_addr",
            "S3_GATEWAY_INSTANCE_KEY": "s3_gateway_instance_key",
            "ADMIN_USERNAME": "admin_username",
            "ADMIN_PASSWORD": "admin_password",
        }
        values: dict[str, Any] = {field: env[var] for var, field in names.items() if env.get(var)}
        if env.get("KV_MASTER_PORT"):
            values["kv_master_port"] = int(env["KV_MASTER_PORT"])
        state_store = transfer_state_store_from_env(env)
        if state_store is not None:
            values["transfer_state_store"] = state_store
        if env.get(JOIN_TOKEN_ENV):
            values = _joining(env[JOIN_TOKEN_ENV], values)
        values.update(overrides)
        return cls(workdir=workdir, **values)

    @property
    def master_address(self) -> str:
        """Where owners find the kv master when no etcd is used."""
        if self.kv_master_address:
            return self.kv_master_address
        return f"tcp://{advertised_host(self.kv_master_host, self.kv_master_advertise_host)}:{self.kv_master_port}"

    @property
    def etcd_endpoints(self) -> list[str]:
        """``ETCD_ENDPOINT`` split at commas (several members of one etcd cluster)."""
        return [endpoint.strip() for endpoint in (self.etcd_endpoint or "").split(",") if endpoint.strip()]

    @property
    def join_token_path(self) -> Path:
        """Where a host that runs the masters writes the join token of its cluster."""
        return self.workdir / JOIN_TOKEN_NAME

    @property
    def panel_url(self) -> str:
        """The panel's public URL (the host's primary address in place of a wildcard listen host)."""
        host, _, port = self.panel_listen_addr.rpartition(":")
        return self.panel_public_base_url or f"http://{advertised_host(host)}:{port}"

    @property
    def s3_url(self) -> str:
        """The S3 gateway's endpoint URL (the host's primary address in place of a wildcard listen host)."""
        host, _, port = self.s3_listen_addr.rpartition(":")
        return f"http://{advertised_host(host)}:{port}"

    @property
    def access_db_path(self) -> Path:
        """The fs master's access db (users, grants, S3 access keys)."""
        return self.workdir / "fs_master" / "access.db"

    @property
    def local_cache_dir(self) -> str:
        """The local directory the example clients cache through KV (a cache rule)."""
        return str(self.workdir / "local_cache")

    @property
    def secret_file(self) -> str:
        """The cluster secret shared by the roles of this host."""
        return str(self.workdir / "cluster.secret")


def _joining(token_file: str, values: dict[str, Any]) -> dict[str, Any]:
    """Settings of a host joining with a join token: the token names the cluster; addresses default to every interface."""
    token = read_join_token(token_file)
    token.check_usable_here(token_file)
    joined = {
        "cluster_name": token.cluster_name,
        "fs_master_instance_key": token.fs_master_instance_key,
        "etcd_endpoint": ",".join(token.etcd_endpoints) or None,
        "kv_master_address": token.kv_master_address,
    }
    for field, value in joined.items():
        if field in values and values[field] != value:
            raise InvalidArgumentError(
                f"{field} {values[field]!r} from the environment contradicts the join token {token_file} ({value!r})"
            )
    # A joining host is by definition not alone: bind every interface and advertise the primary address.
    defaults = {"owner_rpc_host": "0.0.0.0", "export_name": f"demo-{_host()}"}
    return {**defaults, **values, **joined, "join_token": token}


def _coordination(settings: StackSettings) -> dict[str, Any]:
    if settings.etcd_endpoint:
        return {"kind": "etcd", "etcd": {"endpoints": settings.etcd_endpoints}}
    return {"kind": "local"}


def kv_master_config(settings: StackSettings) -> dict[str, Any]:
    """The kv master's config."""
    config: dict[str, Any] = {
        "instance_key": settings.kv_master_instance_key,
        "cluster_name": settings.cluster_name,
        "host": settings.kv_master_host,
        "port": settings.kv_master_port,
        "coordination": _coordination(settings),
        "cluster_secret_file": settings.secret_file,
    }
    if settings.kv_master_advertise_host:
        config["advertise_host"] = settings.kv_master_advertise_host
    return config


def _spec(settings: StackSettings) -> dict[str, Any]:
    return {
        "cluster_name": settings.cluster_name,
        "shared_memory_path": settings.shared_memory_path,
        "shared_file_path": settings.shared_file_path,
    }


def owner_config(settings: StackSettings) -> dict[str, Any]:
    """This host's owner (its pool is what every process on the host caches into)."""
    spec = _spec(settings)
    spec["rpc_host"] = settings.owner_rpc_host
    if settings.owner_rpc_advertise_host:
        spec["rpc_advertise_host"] = settings.owner_rpc_advertise_host
    if settings.etcd_endpoint:
        spec["etcd_addresses"] = settings.etcd_endpoints
    else:
        spec["master_address"] = settings.master_address
    if not settings.etcd_endpoint or settings.join_token is not None:
        spec["cluster_secret_file"] = settings.secret_file
    return {
        "instance_key": settings.owner_instance_key,
        "contribute_to_cluster_pool_size": {"dram": settings.pool_size},
        "fluxonkv_spec": spec,
    }


def _kvclient(settings: StackSettings, instance_key: str) -> dict[str, Any]:
    return {"instance_key": instance_key, "fluxonkv_spec": _spec(settings)}


def _cache_section(settings: StackSettings, *, rules: bool) -> dict[str, Any]:
    section: dict[str, Any] = {
        "exports": {settings.export_name: {"remote_root_dir_abs": settings.remote_root_dir}},
    }
    if rules:
        section["rules"] = [
            {
                "dir_abs": settings.local_cache_dir,
                "kv_key_prefix": f"/fluxon_local_cache/{settings.cluster_name}/",
                "cache_mode": "read_through",
                "write_mode": "write_through",
            }
        ]
    return section


def fs_master_config(settings: StackSettings) -> dict[str, Any]:
    """The fs master (panel, access_db, export snapshot, transfer jobs)."""
    panel: dict[str, Any] = {
        "listen_addr": settings.panel_listen_addr,
        "access_db_path": str(settings.access_db_path),
        "bootstrap_access_model": {
            "users": [
                {"username": settings.admin_username, "password": settings.admin_password, "can_manage_users": True}
            ],
            "scope_access": [],
        },
    }
    if settings.panel_public_base_url:
        panel["public_base_url"] = settings.panel_public_base_url
    if settings.transfer_state_store is not None:
        panel["transfer_state_store"] = dict(settings.transfer_state_store)
    return {
        "kvclient": _kvclient(settings, settings.fs_master_instance_key),
        "fluxon_fs": {
            "master": {"instance_key": settings.fs_master_instance_key},
            "master_panel": panel,
            "cache": _cache_section(settings, rules=False),
            "service_secret_file": str(service_secret_file(settings)),
        },
        "monitoring": {"prometheus": None},
    }


def service_secret_file(settings: StackSettings) -> Path:
    """The FS service secret of the stack: created by the fs master, read by the fs agent (WORKDIR)."""
    return settings.workdir / "fs_service.secret"


def fs_agent_config(settings: StackSettings) -> dict[str, Any]:
    """The fs agent serving ``REMOTE_ROOT_DIR`` as ``EXPORT_NAME``."""
    agent: dict[str, Any] = {"exports": {settings.export_name: {"root_dir_abs": settings.remote_root_dir}}}
    if settings.fs_agent_listen_address:
        agent["listen_address"] = settings.fs_agent_listen_address
    if settings.fs_agent_advertise_host:
        agent["advertise_host"] = settings.fs_agent_advertise_host
    return {
        "kvclient": _kvclient(settings, settings.fs_agent_instance_key),
        "fluxon_fs": {
            "master": {"instance_key": settings.fs_master_instance_key},
            "agent": agent,
            "service_secret_file": str(service_secret_file(settings)),
        },
    }


def s3_gateway_config(settings: StackSettings) -> dict[str, Any]:
    """The S3 gateway: each export a bucket at ``S3_GATEWAY_LISTEN_ADDR``."""
    return {
        "kvclient": _kvclient(settings, settings.s3_gateway_instance_key),
        "fluxon_fs": {
            "master": {"instance_key": settings.fs_master_instance_key},
            "service_secret_file": str(service_secret_file(settings)),
            "s3_gateway": {"listen_addr": settings.s3_listen_addr},
        },
    }


def client_config(settings: StackSettings, role: str) -> dict[str, Any]:
    """A ready-to-use config for ``examples/start_fluxon_fs_<role>.py`` (role: writer or reader)."""
    return {
        "kvclient": _kvclient(settings, f"{role}-{_host()}-{os.getpid()}"),
        "fluxon_fs": {
            "master": {"instance_key": settings.fs_master_instance_key},
            "cache": _cache_section(settings, rules=True),
            "mount": {
                "local_mount_dir_abs": str(settings.workdir / f"mnt_{role}"),
                "export_name": settings.export_name,
            },
            "identity": {"username": settings.admin_username, "password": settings.admin_password},
        },
    }


def write_client_configs(settings: StackSettings) -> dict[str, Path]:
    """Write ``writer.yaml`` and ``reader.yaml`` into the workdir; returns their paths."""
    paths = {}
    for role in ("writer", "reader"):
        path = settings.workdir / f"{role}.yaml"
        config = client_config(settings, role)
        config["kvclient"]["instance_key"] = f"{role}-{_host()}"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        paths[role] = path
    return paths


def _start(label: str, proc: RoleProcess, children: list[ManagedSubprocess], say: Any) -> dict[str, str]:
    children.append(ManagedSubprocess(label, proc))
    ready = proc.wait_ready(READY_TIMEOUT_S)
    say(f"{label:<9} ready  {ready.instance_key:<22} {ready.endpoint}  (log: {proc.log_path})")
    return ready.fields


def start_stack(settings: StackSettings, *, with_master: bool = True, say: Any = print) -> list[ManagedSubprocess]:
    """Start the roles in order (kv master, owner, fs master, fs agent, S3 gateway with the masters);
    returns them for supervision.

    On failure the roles already started are stopped and the error is raised.
    """
    work = settings.workdir
    log_dir = work / "log"
    if settings.join_token is not None:
        if with_master:
            raise InvalidArgumentError(f"{JOIN_TOKEN_ENV} is for a host that joins a cluster (--without-master)")
        install_join_secrets(settings.join_token, Path(settings.secret_file), service_secret_file(settings))
    Path(settings.remote_root_dir).mkdir(parents=True, exist_ok=True)
    Path(settings.local_cache_dir).mkdir(parents=True, exist_ok=True)
    children: list[ManagedSubprocess] = []
    try:
        if with_master:
            _start(
                "kv_master",
                start_kv_master_process(
                    kv_master_config(settings), workdir=work / "kv_master", log_path=log_dir / "kv_master.log"
                ),
                children,
                say,
            )
        _start(
            "owner",
            start_owner_kvclient_process(
                owner_config(settings), workdir=work / "owner", log_path=log_dir / "owner.log"
            ),
            children,
            say,
        )
        if with_master:
            _start(
                "fs_master",
                start_fs_master_process(
                    fs_master_config(settings), workdir=work / "fs_master", log_path=log_dir / "fs_master.log"
                ),
                children,
                say,
            )
        _start(
            "fs_agent",
            start_fs_agent_process(
                fs_agent_config(settings), workdir=work / "fs_agent", log_path=log_dir / "fs_agent.log"
            ),
            children,
            say,
        )
        if with_master:
            _start(
                "s3",
                start_s3_gateway_process(
                    s3_gateway_config(settings), workdir=work / "s3_gateway", log_path=log_dir / "s3_gateway.log"
                ),
                children,
                say,
            )
    except BaseException:
        for child in reversed(children):
            if child.proc.poll() is None:
                child.proc.terminate()
                child.proc.wait(10)
        raise
    return children


def write_stack_join_token(settings: StackSettings) -> Path:
    """Write the join token of the cluster this host's masters run (after :func:`start_stack`), mode 0600.

    It holds the cluster secret, the FS service secret and where the kv master is; copy it to each
    host that joins and set ``FLUXON_JOIN_TOKEN_FILE`` there (docs/deploy.md).
    """
    token = join_token_for(
        cluster_name=settings.cluster_name,
        fs_master_instance_key=settings.fs_master_instance_key,
        cluster_secret=read_secret_file(settings.secret_file),
        fs_service_secret=read_secret_file(service_secret_file(settings)),
        etcd_endpoints=settings.etcd_endpoints,
        kv_master_address=None if settings.etcd_endpoint else settings.master_address,
    )
    return write_join_token(settings.join_token_path, token)
