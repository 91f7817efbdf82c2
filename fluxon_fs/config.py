"""Config of the FS roles and of the mount client (the ``fluxon_fs`` YAML section)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.config import BackendConfig, ByteSize, ConfigError, config_field, load_backend_block, load_config
from fluxon_core.config.fields import (
    Check,
    absolute_path,
    all_of,
    each,
    host_port,
    http_url,
    identifier,
    non_empty,
    positive,
    slash_wrapped,
)
from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv.config import KvClientSettings
from fluxon_core.monitoring import MonitoringConfig

MiB = 1024 * 1024


def default_service_secret_file(cluster_name: str) -> Path:
    """Where the FS service secret lives when ``fluxon_fs.service_secret_file`` is not set."""
    return Path.home() / ".fluxon" / "secrets" / f"{cluster_name}.fs_service.secret"


DEFAULT_METADATA_CACHE_TTL_MS = 5000


class CacheMode(Enum):
    """How reads under a local cache rule use the KV cache."""

    READ_THROUGH = "read_through"
    DISABLED = "disabled"


class WriteMode(Enum):
    """When writes under a local cache rule are published to KV."""

    WRITE_THROUGH = "write_through"
    WRITE_BACK = "write_back"


class RefreshErrorPolicy(Enum):
    """What a read does when revalidating a cached entry fails."""

    APPLY_STALE_WINDOW = "apply_stale_window"
    BYPASS_CACHE_FOR_DIR = "bypass_cache_for_dir"


@attrs.frozen
class CacheRuleConfig:
    """A local cache rule: reads and writes of local files under ``dir_abs`` go through the KV cache."""

    dir_abs: str = config_field(doc="local directory the rule covers (absolute).", check=absolute_path)
    kv_key_prefix: str = config_field(
        doc="KV key prefix; a file is published at kv_key_prefix + its path relative to dir_abs.",
        check=slash_wrapped,
    )
    cache_mode: CacheMode = config_field(doc="`read_through` or `disabled`.", default=CacheMode.READ_THROUGH)
    write_mode: WriteMode = config_field(
        doc="`write_through` (publish on close) or `write_back`.", default=WriteMode.WRITE_THROUGH
    )
    bytes_field_key: str = config_field(doc="field of the KV value that holds the file bytes.", default="data")
    max_cache_bytes: ByteSize = config_field(
        doc="files larger than this are not cached.", default=ByteSize(64 * MiB), check=positive
    )
    on_refresh_error: RefreshErrorPolicy = config_field(
        doc="`apply_stale_window` (serve the cached version within stale_window_ms) or `bypass_cache_for_dir`.",
        default=RefreshErrorPolicy.APPLY_STALE_WINDOW,
    )


@attrs.frozen
class ExportCacheConfig:
    """How a client caches one export."""

    remote_root_dir_abs: str = config_field(
        doc="the export's root directory on the agent; must match what the agent serves.", check=absolute_path
    )
    nodes: list[str] | None = config_field(
        doc="agent instance keys serving the export (static routing); absent = route by the agent registry.",
        default=None,
        check=all_of(non_empty, each(identifier)),
    )
    cache_max_bytes: ByteSize = config_field(
        doc="content-cache budget for this export inside the host pool.", default=ByteSize(1024 * MiB), check=positive
    )
    metadata_cache_ttl_ms: int = config_field(
        doc="how long stat/listdir results are reused in one process.",
        default=DEFAULT_METADATA_CACHE_TTL_MS,
        check=positive,
    )


@attrs.frozen
class FsCacheConfig:
    """The ``fluxon_fs.cache`` section: export snapshot for clients plus local cache rules."""

    stale_window_ms: int = config_field(
        doc="how long a reader may use a cached file version without revalidating at open.",
        default=1000,
        check=positive,
    )
    write_session_target_inflight_bytes: ByteSize = config_field(
        doc="bytes a writer keeps in flight to the agent before waiting.", default=ByteSize(128 * MiB), check=positive
    )
    rules: list[CacheRuleConfig] = config_field(doc="local cache rules.", factory=list)
    exports: dict[str, ExportCacheConfig] = config_field(doc="exports by name.", factory=dict)

    def __config_validate__(self) -> list[tuple[str, str]]:
        problems = []
        for name in self.exports:
            problem = identifier(name)
            if problem:
                problems.append((f"exports[{name!r}]", f"name {problem}"))
        return problems


MAX_REPORT_INTERVAL_MS = 10_000


def _at_most(limit: int) -> Check:
    def check(value: Any) -> str | None:
        return None if value <= limit else f"must be at most {limit}"

    return check


@attrs.frozen
class FsMasterRef:
    """Which fs master a role or client follows."""

    instance_key: str = config_field(doc="instance key of the fs master.", check=identifier)
    pull_interval_ms: int = config_field(
        doc="how often clients poll the master's versioned config.", default=1000, check=positive
    )
    report_interval_ms: int = config_field(
        doc="how often mount clients report their mounts and content-cache figures (usage, hits, misses) "
        "to the master for the panel; at most 10000, as the master forgets a mount not reported for 30 s.",
        default=10_000,
        check=all_of(positive, _at_most(MAX_REPORT_INTERVAL_MS)),
    )


@attrs.frozen
class MountConfig:
    """A mount the example reader/writer scripts create."""

    local_mount_dir_abs: str = config_field(doc="where the export appears locally.", check=absolute_path)
    export_name: str = config_field(doc="export to mount.", check=identifier)


@attrs.frozen
class IdentityConfig:
    """The identity a client binds with ``set_request_identity``."""

    username: str = config_field(doc="user name in the access_db.", check=non_empty)
    password: str = config_field(doc="the user's password.")


@attrs.frozen
class AgentExportConfig:
    """One directory an fs agent serves."""

    root_dir_abs: str = config_field(doc="directory served as the export root.", check=absolute_path)
    allow_setid_bits: bool = config_field(
        doc="keep the setuid, setgid and sticky bits (0o7000) in modes applied through the export (chmod, "
        "creating files and directories); off, they are cleared, as on a nosuid mount. Transfer copies never "
        "carry them.",
        default=False,
    )


@attrs.frozen
class FsAgentConfig:
    """The ``fluxon_fs.agent`` section of an fs agent."""

    exports: dict[str, AgentExportConfig] = config_field(doc="exports served by this agent, by name.", factory=dict)
    session_idle_timeout_s: float = config_field(
        doc="an idle write session (crashed client) is closed after this long.", default=120.0, check=positive
    )
    transfer_workers: int = config_field(doc="transfer worker threads in this agent.", default=2, check=positive)
    listen_address: str | None = config_field(
        doc="where the agent serves export RPCs (tcp://host:port, port 0 = any; ipc:// for one host); default "
        "tcp://<this host's fluxonkv_spec.rpc_host>:0, the address the host's owner names in shared.json.",
        default=None,
        check=non_empty,
    )
    advertise_host: str | None = config_field(
        doc="host written into the endpoint the agent registers with the fs master (what mounts dial); default: "
        "the host of listen_address (the primary address for a wildcard such as 0.0.0.0), or the owner's "
        "rpc_advertise_host when listen_address is not set.",
        default=None,
        check=non_empty,
    )


@attrs.frozen
class SessionPolicyConfig:
    """How long session tokens live and how quickly access changes reach running servers."""

    token_ttl_s: int = config_field(
        doc="lifetime of a session token issued at login; clients log in again after it.", default=3600, check=positive
    )
    revocation_bound_s: float = config_field(
        doc="longest time before a password change, user removal or grant change applies to open sessions.",
        default=2.0,
        check=positive,
    )


@attrs.frozen
class LoginProtectionConfig:
    """How the panel slows password guessing down and bounds the memory password checks take."""

    free_failures_per_user: int = config_field(
        doc="failed logins for one username (within forget_failures_after_s) before every further "
        "attempt for it must wait out a backoff; refused attempts answer 429 with Retry-After.",
        default=5,
        check=positive,
    )
    free_failures_per_address: int = config_field(
        doc="the same from one client address (behind a reverse proxy every client shares the proxy's "
        "address, so keep this well above free_failures_per_user).",
        default=20,
        check=positive,
    )
    backoff_initial_s: float = config_field(
        doc="wait after the first failure beyond the free ones; it doubles with every further failure.",
        default=1.0,
        check=positive,
    )
    backoff_max_s: float = config_field(doc="longest backoff.", default=60.0, check=positive)
    forget_failures_after_s: float = config_field(
        doc="failures of a username or address are forgotten this long after the last one.",
        default=900.0,
        check=positive,
    )
    max_concurrent_password_checks: int = config_field(
        doc="password hashes (login, password change) computed at once; each argon2id check takes "
        "19 MiB (scrypt 128 MiB) while it runs.",
        default=2,
        check=positive,
    )
    password_check_wait_s: float = config_field(
        doc="how long a login waits for a free password check before it is refused with 503 and Retry-After.",
        default=2.0,
        check=positive,
    )


@attrs.frozen
class MasterPanelConfig:
    """The ``fluxon_fs.master_panel`` section of the fs master."""

    bootstrap_access_model: BootstrapAccessModelConfig = config_field(
        doc="seed for an empty access_db (required; applied only when the database has no users)."
    )
    access_db_path: str | None = config_field(
        doc="sqlite access_db, the long-lived authority (shorthand for access_store kind sqlite at this path).",
        default=None,
        check=absolute_path,
    )
    access_store: BackendConfig | None = config_field(
        doc="access store backend holding users, password hashes and scope grants, chosen by kind; "
        "use instead of access_db_path for a store other than sqlite or for sqlite options.",
        default=None,
        backend="access_store",
    )
    listen_addr: str = config_field(doc="host:port the panel binds.", default="127.0.0.1:18080", check=host_port)
    public_base_url: str | None = config_field(
        doc="base URL the UI uses in links; default http://<listen_addr> (the host's primary address in place of a "
        "wildcard host such as 0.0.0.0).",
        default=None,
        check=http_url,
    )
    auto_refresh_interval_secs: int = config_field(doc="page auto-refresh period.", default=5, check=positive)
    session: SessionPolicyConfig = config_field(
        doc="login session tokens: lifetime and revocation bound.", factory=SessionPolicyConfig
    )
    login_protection: LoginProtectionConfig = config_field(
        doc="login throttling (per username and per client address, with backoff) and the bound on "
        "concurrent password checks.",
        factory=LoginProtectionConfig,
    )
    transfer_state_store: BackendConfig | None = config_field(
        doc="durable store of transfer jobs and pre-scans; default sqlite under the workdir.",
        default=None,
        backend="state_store",
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        """Exactly one of access_db_path and access_store names the access store."""
        if self.access_db_path is None and self.access_store is None:
            return [("access_db_path", "is required (or set access_store: {kind: ..., <kind>: {...}})")]
        if self.access_db_path is not None and self.access_store is not None:
            return [("access_store", "conflicts with access_db_path; set one of them")]
        return []

    def access_store_backend(self) -> BackendConfig:
        """The access store to open: ``access_store`` as given, or kind sqlite at ``access_db_path``."""
        if self.access_store is not None:
            return self.access_store
        block = {"kind": "sqlite", "sqlite": {"path": self.access_db_path}}
        return load_backend_block("access_store", block, "fluxon_fs.master_panel.access_db_path")


GiB = 1024 * MiB


@attrs.frozen
class S3GatewayConfig:
    """The ``fluxon_fs.s3_gateway`` section of an S3 gateway (docs/s3.md)."""

    instance_key: str = config_field(
        doc="the gateway's instance key on the KV plane (it attaches to its host's owner like an agent).",
        default="s3-gateway",
        check=identifier,
    )
    listen_addr: str = config_field(
        doc="host:port the S3 endpoint binds (port 0 picks a free port); put TLS in front of it for other hosts.",
        default="127.0.0.1:19000",
        check=host_port,
    )
    region: str = config_field(
        doc="the region clients sign for (their credential scope must name it).", default="us-east-1", check=non_empty
    )
    max_clock_skew_s: float = config_field(
        doc="how far a request's x-amz-date may be from the gateway's clock (AWS: 900).", default=900.0, check=positive
    )
    max_object_bytes: ByteSize = config_field(
        doc="largest object a single PutObject (or a completed multipart upload) may create.",
        default=ByteSize(5 * GiB),
        check=positive,
    )
    min_part_bytes: ByteSize = config_field(
        doc="smallest part of a multipart upload, except the last (AWS: 5 MiB).",
        default=ByteSize(5 * MiB),
        check=positive,
    )
    max_part_bytes: ByteSize = config_field(
        doc="largest part of a multipart upload (AWS: 5 GiB).", default=ByteSize(5 * GiB), check=positive
    )
    max_parts: int = config_field(
        doc="most parts of one multipart upload (AWS: 10000).", default=10_000, check=positive
    )
    max_keys: int = config_field(
        doc="most keys one ListObjectsV2 page returns (a client asking for more gets this many).",
        default=1000,
        check=positive,
    )
    open_exports: int = config_field(
        doc="(user, export) clients kept open, each with its own metadata cache; the least recently used is dropped.",
        default=256,
        check=positive,
    )


@attrs.frozen
class FluxonFsSection:
    """The ``fluxon_fs`` section shared by the fs master, fs agents and mount clients."""

    master: FsMasterRef = config_field(doc="the fs master to follow.")
    cache: FsCacheConfig = config_field(doc="export snapshot and local cache rules.", factory=FsCacheConfig)
    master_panel: MasterPanelConfig | None = config_field(doc="fs master only: panel and access control.", default=None)
    agent: FsAgentConfig | None = config_field(doc="fs agent only: exports it serves.", default=None)
    mount: MountConfig | None = config_field(doc="example clients: the mount to create.", default=None)
    identity: IdentityConfig | None = config_field(doc="example clients: the identity to use.", default=None)
    s3_gateway: S3GatewayConfig | None = config_field(
        doc="S3 gateway only: its endpoint, region and limits (docs/s3.md).", default=None
    )
    service_secret_file: str | None = config_field(
        doc="fs master, fs agents and S3 gateways: the 0600 file holding the FS service secret, the credential that lets them "
        "act as the system (the fs master creates it when missing; copy it to agent hosts). Mount clients never "
        "need it. Default ~/.fluxon/secrets/<cluster_name>.fs_service.secret.",
        default=None,
        check=absolute_path,
    )
    service_secret_accept_files: list[str] = config_field(
        doc="fs master and fs agents: more service secrets accepted (never used to sign), so the secret can be "
        "rotated with rolling restarts (docs/security.md).",
        factory=list,
        check=each(absolute_path),
    )


@attrs.frozen
class FsRoleConfig:
    """FS roles and mount clients: the `kvclient` block plus the `fluxon_fs` section."""

    fluxon_fs: FluxonFsSection = config_field(doc="the FS section.")
    kvclient: dict[str, Any] | None = config_field(
        doc="FluxonKvClientConfig of the process (see the KV client reference).", default=None
    )
    monitoring: MonitoringConfig = config_field(
        doc="metrics sinks of this role (see docs/metrics.md).", factory=MonitoringConfig
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        """A bad ``kvclient`` block is reported when the file is read, under ``kvclient.``."""
        if self.kvclient is None:
            return []
        try:
            # The role fills in its own instance key later (kv_client_config); any valid name checks the rest.
            load_config(KvClientSettings, {"instance_key": "fs-role", **self.kvclient}, "kvclient")
        except ConfigError as exc:
            return [(exc.path, exc.expectation)]
        return []

    def service_secret_path(self) -> Path:
        """The service secret file: ``fluxon_fs.service_secret_file`` or the default of the cluster."""
        if self.fluxon_fs.service_secret_file is not None:
            return Path(self.fluxon_fs.service_secret_file)
        spec = (self.kvclient or {}).get("fluxonkv_spec") or {}
        cluster = spec.get("cluster_name") if isinstance(spec, dict) else None
        if not isinstance(cluster, str):
            raise InvalidArgumentError("fluxon_fs.service_secret_file is required when kvclient names no cluster_name")
        return default_service_secret_file(cluster)

    def kv_client_config(self, default_instance_key: str) -> dict[str, Any]:
        """The ``kvclient`` block with its instance key defaulted to (and checked against) the role's."""
        if self.kvclient is None:
            raise InvalidArgumentError("kvclient is required: the FluxonKvClientConfig this role attaches with")
        block = dict(self.kvclient)
        key = block.setdefault("instance_key", default_instance_key)
        if key != default_instance_key:
            raise InvalidArgumentError(
                f"kvclient.instance_key {key!r} must equal {default_instance_key!r} (the instance key peers address)"
            )
        return block
