"""Configs of the KV service plane: ``FluxonKvClientConfig`` (owners and external clients) and ``KvMasterConfig``.

``FluxonKvClientConfig`` is the dict users build (KV.md §2); it is parsed strictly into
:class:`KvClientSettings`. Keys that only an owner may set are rejected on an external client,
because externals inherit them from the owner's ``shared.json``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from fluxon_core.addresses import HostAddress
from fluxon_core.config import (
    BackendConfig,
    ByteSize,
    ConfigError,
    ConfigTypeError,
    config_field,
    load_config,
    load_yaml_file,
)
from fluxon_core.config.fields import (
    absolute_path,
    all_of,
    each,
    host_port,
    identifier,
    non_empty,
    port_number,
    positive,
)
from fluxon_core.kv.pool import pool_block_problems
from fluxon_core.monitoring import MonitoringConfig
from fluxon_core.rpc import transport_field

DEFAULT_ATTACH_TIMEOUT_MS = 30_000
DEFAULT_RPC_HOST = "127.0.0.1"


def _zero_vram(value: Any) -> str | None:
    sizes = value.values() if isinstance(value, Mapping) else [value]
    if all(size == 0 for size in sizes):
        return None
    return "must be 0 (or a mapping of GPU ids to 0): vram pools are not supported by this build"


def _master_address(value: Any) -> str | None:
    if value.startswith(("tcp://", "ipc://")):
        return None
    return host_port(value)


@attrs.frozen
class PoolContribution:
    """``contribute_to_cluster_pool_size``: what this process gives to the cluster-wide cache."""

    dram: ByteSize = config_field(
        doc="bytes of shared memory this process contributes; > 0 makes it the host's owner, 0 an external client.",
        default=0,
    )
    vram: ByteSize | dict[int | str, ByteSize] = config_field(
        doc="GPU memory contribution, one size or a mapping of GPU id to size (`{}` for none); accepted for "
        "compatibility, every size must be 0.",
        default=0,
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        problem = _zero_vram(self.vram)
        return [("vram", problem)] if problem else []


OWNER_ONLY_SPEC_FIELDS = (
    "etcd_addresses",
    "coordination",
    "master_address",
    "cluster_secret_file",
    "sub_cluster",
    "large_file_paths",
    "rpc_host",
    "rpc_advertise_host",
    "master_connect_timeout_ms",
)


@attrs.frozen
class FluxonKvSpec:
    """``fluxonkv_spec``: where the cluster's local files live and, for owners, how to reach the kv master."""

    cluster_name: str = config_field(doc="name of the KV cluster; shared.json lives under it.", check=identifier)
    shared_memory_path: str | None = config_field(
        doc="directory holding the host's shared-memory pool, e.g. /dev/shm/fluxon_fs_demo.",
        default=None,
        check=absolute_path,
    )
    shared_file_path: str | None = config_field(
        doc="directory holding <cluster_name>/shared.json, the owner lock and other local shared files.",
        default=None,
        check=absolute_path,
    )
    share_mem_path: str | None = config_field(
        doc="older single-root spelling: used as both shared_memory_path and shared_file_path.",
        default=None,
        check=absolute_path,
    )
    attach_timeout_ms: int = config_field(
        doc="how long new_store waits for an owner (externals) or the kv master (owners) before failing.",
        default=DEFAULT_ATTACH_TIMEOUT_MS,
        check=positive,
    )
    rpc_timeout_ms: int = config_field(doc="deadline of one internal RPC.", default=10_000, check=positive)
    etcd_addresses: list[str] | None = config_field(
        doc="owner only: etcd endpoints (host:port) where the kv master publishes itself.",
        default=None,
        check=all_of(non_empty, each(host_port)),
    )
    coordination: BackendConfig | None = config_field(
        doc="owner only: a coordination backend block used to discover the kv master (instead of etcd_addresses).",
        default=None,
        backend="coordinator",
    )
    master_address: str | None = config_field(
        doc="owner only: the kv master endpoint (tcp://host:port or host:port); needed without etcd.",
        default=None,
        check=_master_address,
    )
    cluster_secret_file: str | None = config_field(
        doc="owner only: file holding the cluster secret; default: read from the coordinator when one is "
        "configured, else ~/.fluxon/secrets/<cluster_name>.secret.",
        default=None,
        check=absolute_path,
    )
    sub_cluster: str | None = config_field(doc="owner only: sub-cluster label of this host.", default=None)
    large_file_paths: list[str] | None = config_field(
        doc="owner only: directories where large files are kept; published in shared.json.",
        default=None,
        check=each(absolute_path),
    )
    rpc_host: str | None = config_field(
        doc="owner only: address this host's roles (owner, external clients, fs agents) bind for cross-host RPC; "
        "default 127.0.0.1 (one host). Set this host's cluster-reachable address, or 0.0.0.0 to bind every "
        "interface and advertise the host's primary address.",
        default=None,
        check=non_empty,
    )
    rpc_advertise_host: str | None = config_field(
        doc="owner only: address this host's roles advertise instead (NAT, several interfaces); default: rpc_host, "
        "or the host's primary address when rpc_host is a wildcard.",
        default=None,
        check=non_empty,
    )
    master_connect_timeout_ms: int | None = config_field(
        doc="owner only: how long the owner retries reaching the kv master at start; default attach_timeout_ms.",
        default=None,
        check=positive,
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.share_mem_path is not None:
            for name in ("shared_memory_path", "shared_file_path"):
                if getattr(self, name) is not None:
                    problems.append(("share_mem_path", f"cannot be combined with {name}; use one spelling"))
        else:
            for name in ("shared_memory_path", "shared_file_path"):
                if getattr(self, name) is None:
                    problems.append((name, "is required (or give the older share_mem_path for both)"))
        if self.etcd_addresses is not None and self.coordination is not None:
            problems.append(("coordination", "cannot be combined with etcd_addresses; use one"))
        return problems

    @property
    def pool_root(self) -> str:
        """Directory of the shared-memory pool."""
        return self.shared_memory_path or self.share_mem_path or ""

    @property
    def file_root(self) -> str:
        """Directory holding ``<cluster_name>/shared.json``."""
        return self.shared_file_path or self.share_mem_path or ""

    @property
    def cluster_file_dir(self) -> Path:
        """``<shared_file_path>/<cluster_name>``."""
        return Path(self.file_root) / self.cluster_name

    @property
    def cluster_pool_dir(self) -> Path:
        """``<shared_memory_path>/<cluster_name>``."""
        return Path(self.pool_root) / self.cluster_name


@attrs.frozen
class TestSpecConfig:
    """``test_spec_config``: switches for test runs of a client (the published guides' spelling)."""

    __test__ = False  # not a pytest test class, despite the name

    disable_observability: bool = config_field(
        doc="start no metrics sinks in this process (a `monitoring:` block given later is ignored, with a log line), "
        "so test processes open no Prometheus port and push nothing.",
        default=False,
    )


@attrs.frozen
class KvClientSettings:
    """A parsed ``FluxonKvClientConfig``."""

    instance_key: str = config_field(doc="this process's name in the cluster; unique.", check=identifier)
    fluxonkv_spec: FluxonKvSpec = config_field(doc="cluster name, shared paths and (owners) master discovery.")
    contribute_to_cluster_pool_size: PoolContribution = config_field(
        doc="pool contribution; dram > 0 makes this process the host's owner.", factory=PoolContribution
    )
    pool: BackendConfig | None = config_field(
        doc="the host's shared-memory pool, e.g. `{kind: shm, shm: {view_cache_bytes: 1GiB}}`. Owner: default "
        "`shm`; the kind is recorded in shared.json. External client: default the owner's kind (naming "
        "another is an error); its options tune this client's reads. The pool's path, role and capacity "
        "come from fluxonkv_spec and contribute_to_cluster_pool_size and are left out of the block.",
        default=None,
        backend="cache",
    )
    transport: BackendConfig | None = transport_field()
    test_spec_config: TestSpecConfig = config_field(
        doc="switches for test runs (see below); unknown keys are refused.", factory=TestSpecConfig
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        pool_problems = [(f"pool.{rel}", problem) for rel, problem in pool_block_problems(self.pool)]
        return pool_problems or self._spec_problems()

    def _spec_problems(self) -> list[tuple[str, str]]:
        spec = self.fluxonkv_spec
        if self.is_owner:
            if spec.master_address is None and spec.etcd_addresses is None and spec.coordination is None:
                return [
                    (
                        "fluxonkv_spec.master_address",
                        "is required for an owner unless etcd_addresses or coordination names where the "
                        "kv master publishes itself",
                    )
                ]
            if spec.coordination is not None and spec.coordination.kind == "local" and spec.master_address is None:
                return [
                    (
                        "fluxonkv_spec.master_address",
                        "is required with local coordination (the kv master cannot be discovered)",
                    )
                ]
            return []
        for name in OWNER_ONLY_SPEC_FIELDS:
            if getattr(spec, name) is not None:
                return [
                    (
                        f"fluxonkv_spec.{name}",
                        "is owner-only (contribute_to_cluster_pool_size.dram > 0); an external client "
                        "inherits it from the owner's shared.json — remove it",
                    )
                ]
        return []

    @property
    def is_owner(self) -> bool:
        """True when this process contributes a pool (it is the host's owner)."""
        return self.contribute_to_cluster_pool_size.dram > 0

    @property
    def rpc_host(self) -> str:
        """Address the host's roles bind (an owner's setting)."""
        return self.fluxonkv_spec.rpc_host or DEFAULT_RPC_HOST

    @property
    def host_address(self) -> HostAddress:
        """What the host's roles bind and advertise (an owner's settings)."""
        return HostAddress(self.rpc_host, self.fluxonkv_spec.rpc_advertise_host)


def default_secret_file(cluster_name: str) -> Path:
    """Where the cluster secret lives when no ``cluster_secret_file`` is configured."""
    return Path.home() / ".fluxon" / "secrets" / f"{cluster_name}.secret"


class FluxonKvClientConfig(dict):  # type: ignore[type-arg]
    """The KV client config of KV.md §2: a dict, validated strictly when built.

    Build it from a dict (``FluxonKvClientConfig({...})``) or a file (:meth:`from_file`); a bad value
    raises ``ValueError``/``TypeError`` naming the path. :meth:`settings` gives the typed view.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__(copy.deepcopy(dict(data or {})), **fields)
        self.settings()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> FluxonKvClientConfig:
        """Load a YAML file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(str(path), "does not exist; expected a YAML config file") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigTypeError(str(path), "must hold a mapping at the top level")
        return cls(data)

    @classmethod
    def from_settings(cls, settings: KvClientSettings) -> FluxonKvClientConfig:
        """The dict form of already parsed settings."""
        from fluxon_core.config import dump_config

        return cls(_drop_none(dump_config(settings)))

    def settings(self) -> KvClientSettings:
        """The typed, validated view of the current contents."""
        settings: KvClientSettings = load_config(KvClientSettings, dict(self))
        return settings

    def to_dict(self) -> dict[str, Any]:
        """A plain deep copy."""
        return copy.deepcopy(dict(self))

    def to_yaml_str(self) -> str:
        """YAML text that :meth:`from_file` reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@attrs.frozen
class MasterUiConfig:
    """``master_ui``: where the kv master serves its status page."""

    http_listen_addr: str | None = config_field(
        doc="host:port of a read-only HTTP page of the cluster status (`GET /` as text, `GET /status.json` as "
        "JSON: members, pool usage, keys); absent: no page.",
        default=None,
        check=host_port,
    )


@attrs.frozen
class KvMasterConfig:
    """Config of the kv master role."""

    instance_key: str = config_field(doc="the master's name in the cluster.", check=identifier)
    cluster_name: str = config_field(doc="name of the KV cluster this master governs.", check=identifier)
    host: str = config_field(
        doc="address the master binds (and advertises unless advertise_host is set); 0.0.0.0 binds every "
        "interface and advertises the host's primary address.",
        default="127.0.0.1",
        check=non_empty,
    )
    advertise_host: str | None = config_field(
        doc="address written into the master's endpoint (the readiness line, kv_master.json, the coordinator "
        "record owners discover); default: host, or the primary address when host is a wildcard.",
        default=None,
        check=non_empty,
    )
    port: int = config_field(
        doc="TCP port; 0 picks a free one (printed in the readiness line).", default=0, check=port_number
    )
    coordination: BackendConfig | None = config_field(
        doc="where membership, leases and the master's own endpoint are kept; default `local` (in memory).",
        default=None,
        backend="coordinator",
    )
    etcd_endpoints: list[str] | None = config_field(
        doc="the guides' shorthand for `coordination: {kind: etcd, etcd: {endpoints: [...]}}` (host:port each).",
        default=None,
        check=all_of(non_empty, each(host_port)),
    )
    master_ui: MasterUiConfig = config_field(
        doc="the master's read-only HTTP status page (the published guides' `master_ui`).",
        factory=lambda: MasterUiConfig(),
    )
    transport: BackendConfig | None = transport_field()
    member_lease_ttl_ms: int = config_field(
        doc="a member that sends no keep-alive for this long is dropped with its replicas.",
        default=10_000,
        check=positive,
    )
    cluster_secret_file: str | None = config_field(
        doc="file holding the cluster secret (created 0600 when missing); default "
        "~/.fluxon/secrets/<cluster_name>.secret.",
        default=None,
        check=absolute_path,
    )
    publish_secret: bool = config_field(
        doc="also store the secret in a non-local coordinator so owners knowing only etcd can join.", default=True
    )
    holder_call_timeout_ms: int = config_field(
        doc="deadline of the master's invalidation calls to replica holders.", default=3000, check=positive
    )
    rpc_worker_threads: int = config_field(doc="threads serving RPCs.", default=8, check=positive)
    monitoring: MonitoringConfig = config_field(
        doc="metrics sinks of the kv master (see docs/metrics.md).", factory=MonitoringConfig
    )
    log_dir: str | None = config_field(
        doc="also write the master's log to <log_dir>/kv_master.<instance_key>.log (besides stderr, which the "
        "runtime helpers send to <workdir>/log/kv_master.log).",
        default=None,
        check=absolute_path,
    )

    def __config_validate__(self) -> list[tuple[str, str]]:
        if self.etcd_endpoints is not None and self.coordination is not None:
            return [("etcd_endpoints", "cannot be combined with coordination; use one")]
        return []

    def coordination_block(self) -> BackendConfig | None:
        """The coordination to use: ``coordination``, or etcd at ``etcd_endpoints``, or None (local)."""
        if self.etcd_endpoints is not None:
            from fluxon_core.kv.coordination import etcd_block

            return etcd_block(self.etcd_endpoints, "etcd_endpoints")
        return self.coordination

    def secret_file(self) -> Path:
        """The configured or default secret file."""
        return Path(self.cluster_secret_file) if self.cluster_secret_file else default_secret_file(self.cluster_name)


def load_master_config(source: Mapping[str, Any] | str | os.PathLike[str] | KvMasterConfig) -> KvMasterConfig:
    """Parse a master config from a dict, a YAML path or an already parsed object."""
    if isinstance(source, KvMasterConfig):
        return source
    if isinstance(source, Mapping):
        config: KvMasterConfig = load_config(KvMasterConfig, dict(source))
        return config
    loaded: KvMasterConfig = load_yaml_file(KvMasterConfig, source)
    return loaded


def load_client_settings(
    source: Mapping[str, Any] | str | os.PathLike[str] | KvClientSettings,
) -> KvClientSettings:
    """Parse client settings from a ``FluxonKvClientConfig``/dict, a YAML path or parsed settings."""
    if isinstance(source, KvClientSettings):
        return source
    if isinstance(source, FluxonKvClientConfig):
        return source.settings()
    if isinstance(source, Mapping):
        settings: KvClientSettings = load_config(KvClientSettings, dict(source))
        return settings
    loaded: KvClientSettings = load_yaml_file(KvClientSettings, source)
    return loaded
