"""``FluxonFsPatcher``: the public object that mounts remote exports into this process (FS.md sections 1-2).

Required order: ``set_master_config_yaml`` → ``set_cache_config_yaml`` → ``set_request_identity``
→ ``install`` → ``mount_remote_dir`` → file I/O → ``uninstall`` → ``store.close()``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import attrs

from fluxon_core.config import (
    ConfigError,
    ConfigTypeError,
    load_config,
    load_yaml_file,
    load_yaml_text,
    parse_yaml_text,
    read_yaml_file,
)
from fluxon_core.errors import ApiError
from fluxon_core.kv import as_kv_client
from fluxon_core.log_setup import get_logger
from fluxon_core.monitoring import MonitoringConfig, MonitoringHandle, start_monitoring
from fluxon_fs.config import FsCacheConfig, FsMasterRef, FsRoleConfig
from fluxon_fs.export.routing import RoutedExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import MOUNT_REGISTRY_PATH
from fluxon_fs.master_api.records import (
    CacheUsageReport,
    ExportCacheFigures,
    ExportPoolFigures,
    ExportSnapshotQuery,
    MountRemoval,
    MountReport,
    SnapshotExport,
)
from fluxon_fs.master_api.session import UserSession
from fluxon_fs.patcher.cache_rules import CacheRuleSet
from fluxon_fs.patcher.content_cache import export_cache_prefix
from fluxon_fs.patcher.intercept import process_interceptor
from fluxon_fs.patcher.kv_piece_cache import KvPieceCache
from fluxon_fs.patcher.mount_table import process_mount_table
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.options import MountOptions

log = get_logger("fluxon.fs.patcher")

CACHE_NOT_LOADED = "fluxon_fs cache config is not loaded yet"
REPORTS_VALID_FOR_INTERVALS = 3
"""Cache usage reported now stands for this many report intervals at the fs master."""
CACHE_CONFIG_FETCH_TIMEOUT_S = 60.0
CACHE_CONFIG_RETRY_S = 0.2


class _SnapshotFollower:
    """The fs master's export snapshot, polled every ``pull_interval_ms`` while mounts exist."""

    def __init__(self, link: FsMasterLink, pull_interval_ms: int) -> None:
        self._link = link
        self._interval_s = pull_interval_ms / 1000
        self._lock = threading.Lock()
        self.version = ""
        self.cache: FsCacheConfig | None = None
        self.exports: dict[str, SnapshotExport] = {}
        self._fetched_at = 0.0

    def refresh(self) -> dict[str, SnapshotExport]:
        """Fetch now (cheap when unchanged) and return the snapshot's exports."""
        reply = self._link.export_snapshot(ExportSnapshotQuery(self.version))
        with self._lock:
            if reply.cache is not None and reply.exports is not None:
                self.version, self.cache, self.exports = reply.version, reply.cache, reply.exports
            self._fetched_at = time.monotonic()
            return self.exports

    def current(self) -> dict[str, SnapshotExport]:
        """The snapshot's exports, refreshed when older than the pull interval."""
        if time.monotonic() - self._fetched_at >= self._interval_s:
            try:
                return self.refresh()
            except ApiError as exc:
                log.warning("fs master snapshot refresh failed (%s); using version %s", exc, self.version)
        return self.exports

    def agents(self, export_name: str) -> list[dict[str, str]]:
        """Live agents of an export, in the form :class:`~fluxon_fs.export.routing.RoutedExportOps` takes."""
        export = self.current().get(export_name)
        return [] if export is None else [attrs.asdict(agent) for agent in export.agents]


def _parse_role_yaml(yaml_text: str, what: str) -> FsRoleConfig:
    if not isinstance(yaml_text, str):
        raise TypeError(f"{what} expects YAML text, got {type(yaml_text).__name__}")
    return load_yaml_text(FsRoleConfig, yaml_text)


def _parse_cache_yaml(yaml_text: str) -> tuple[FsCacheConfig, MonitoringConfig | None]:
    """The cache config of ``yaml_text`` and the monitoring block it asks for, from any of three shapes:
    the bare cache mapping (``stale_window_ms``, ``rules``, ``exports`` at the top), ``fluxon_fs: {cache:
    ...}`` alone, or a whole role document (with ``fluxon_fs.master``)."""
    if not isinstance(yaml_text, str):
        raise TypeError(f"set_cache_config_yaml expects YAML text, got {type(yaml_text).__name__}")
    data = parse_yaml_text(yaml_text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigTypeError(
            "<root>", "must be a mapping: the cache section, fluxon_fs: {cache: ...} or a role document"
        )
    if "fluxon_fs" not in data:
        cache: FsCacheConfig = load_config(FsCacheConfig, data)
        return cache, None
    section = data["fluxon_fs"]
    if isinstance(section, dict) and "master" not in section:
        for key in data:
            if key not in ("fluxon_fs", "monitoring"):
                raise ConfigError(key, "is not a known field beside fluxon_fs.cache; expected fluxon_fs or monitoring")
        for key in section:
            if key != "cache":
                raise ConfigError(
                    f"fluxon_fs.{key}",
                    "belongs to a whole role document, which also sets fluxon_fs.master; the cache config alone is fluxon_fs.cache",
                )
        cache = load_config(FsCacheConfig, section.get("cache") or {}, "fluxon_fs.cache")
        monitoring = data.get("monitoring")
        return cache, None if monitoring is None else load_config(MonitoringConfig, monitoring, "monitoring")
    role: FsRoleConfig = load_config(FsRoleConfig, data)
    return role.fluxon_fs.cache, role.monitoring if _asks_for_monitoring(data) else None


def _asks_for_monitoring(data: Any) -> bool:
    # A mount lives inside the user's process: sinks (a Prometheus port, a push thread) start only
    # when the client YAML has a monitoring block, never by default as in a role process.
    return isinstance(data, dict) and data.get("monitoring") is not None


class FluxonFsPatcher:
    """Mounts fs master exports into this process on top of a store from ``new_store``."""

    def __init__(self, store: Any) -> None:
        try:
            native = as_kv_client(store)
        except TypeError:
            raise RuntimeError(
                "fluxon_fs requires a fluxon backend store created by new_store(FluxonKvClientConfig(...)); "
                f"got {type(store).__name__}"
            ) from None
        self._store = native
        self._master: FsMasterRef | None = None
        self._link: FsMasterLink | None = None
        self._snapshot: _SnapshotFollower | None = None
        self._cache_config: FsCacheConfig | None = None
        self._cache_loaded = threading.Event()
        self._rules: CacheRuleSet | None = None
        self._cache_error: BaseException | None = None
        self._identity: UserSession | None = None
        self._installed = 0
        self._mounts: dict[str, str] = {}
        self._rpc_client = native.transport().new_client()
        self._piece_cache = KvPieceCache(native)
        self._cache_budgets: dict[str, int] = {}
        """Budget of each mounted export's pieces in the host pool, as the fs master's snapshot says."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None
        self._monitoring: MonitoringHandle | None = None

    # ----- configuration ------------------------------------------------------------------------

    def set_master_config_yaml(self, yaml_text: str) -> None:
        """Which fs master to follow: YAML with ``fluxon_fs.master.instance_key``."""
        self._follow(_parse_role_yaml(yaml_text, "set_master_config_yaml").fluxon_fs.master)

    def _follow(self, master: FsMasterRef) -> None:
        with self._lock:
            self._master = master
            self._link = FsMasterLink(self._store, master.instance_key)
            self._snapshot = _SnapshotFollower(self._link, master.pull_interval_ms)

    def set_cache_config_yaml(self, yaml_text: str) -> None:
        """The export snapshot / cache config the client expects: the bare cache mapping, ``fluxon_fs:
        {cache: ...}``, or a whole role document; errors name the field.

        A ``monitoring`` block in the same YAML starts (or replaces) this client's metrics sinks.
        """
        cache, monitoring = _parse_cache_yaml(yaml_text)
        self._set_cache_config(cache)
        if monitoring is not None:
            self._start_monitoring(monitoring)

    def _start_monitoring(self, config: MonitoringConfig) -> None:
        handle = start_monitoring(config, role="fs_client", instance_key=self._store.instance_key())
        with self._lock:
            previous, self._monitoring = self._monitoring, handle
        if previous is not None:
            previous.close()

    @property
    def monitoring(self) -> MonitoringHandle | None:
        """The metrics sinks a ``monitoring`` block of the client YAML started (None without one)."""
        return self._monitoring

    def _set_cache_config(self, cache: FsCacheConfig) -> None:
        with self._lock:
            self._cache_config = cache
            self._cache_error = None
            self._rules = CacheRuleSet(self._store, cache.rules, cache.stale_window_ms) if cache.rules else None
            if self._installed:
                process_mount_table().local_rules = self._rules
            self._cache_loaded.set()

    def wait_cache_config_loaded(self, timeout_s: float = 30.0) -> FsCacheConfig:
        """Block until the cache config arrived (from :func:`install_patcher_from_master`)."""
        if not self._cache_loaded.wait(timeout_s):
            detail = f": {self._cache_error}" if self._cache_error else ""
            raise TimeoutError(
                f"{CACHE_NOT_LOADED} after {timeout_s}s{detail}; check FS_MASTER_INSTANCE_KEY, EXPORT_NAME, REMOTE_ROOT_DIR"
            )
        assert self._cache_config is not None
        return self._cache_config

    def set_request_identity(self, username: str, password: str) -> None:
        """Bind later FS requests, on existing mounts too, to this identity (the password is verified
        once by the fs master). When the login is refused, no identity stays bound."""
        link = self._require_link("set_request_identity")
        self.clear_request_identity()
        self._identity = UserSession(link, username, password)

    def clear_request_identity(self) -> None:
        """Forget the identity; later requests, on existing mounts too, are refused as unauthenticated."""
        self._identity = None
        self._forget_cached_answers()

    def _request_token(self, rpc_path: str) -> str:
        """The token of the identity bound now ("" without one: the agent refuses the call)."""
        identity = self._identity
        return identity.token(rpc_path) if identity is not None else ""

    def _forget_cached_answers(self) -> None:
        # Metadata answered to the previous identity must not be shown to the new one (or to none).
        mounted = process_mount_table().exports()
        for mount_dir in list(self._mounts):
            if mount_dir in mounted:
                mounted[mount_dir].metadata.clear()

    def _require_link(self, what: str) -> FsMasterLink:
        if self._link is None:
            raise RuntimeError(f"{what}: call set_master_config_yaml(...) first (which fs master to follow)")
        return self._link

    # ----- install ------------------------------------------------------------------------------

    def install(self) -> None:
        """Patch ``open``/``os``/``pathlib`` (ref-counted across patchers in this process)."""
        with self._lock:
            process_interceptor().install()
            self._installed += 1
            if self._rules is not None:
                process_mount_table().local_rules = self._rules

    def uninstall(self) -> None:
        """Unmount this patcher's mounts and undo one :meth:`install`; the last one restores every original."""
        with self._lock:
            if self._installed == 0:
                raise RuntimeError("uninstall() without a matching install()")
            self._installed -= 1
            if self._installed == 0:
                for mount_dir in list(self._mounts):
                    self.unmount_remote_dir(mount_dir)
                self._piece_cache.flush()  # pieces read so far reach the host pool before the process goes
                if process_mount_table().local_rules is self._rules:
                    process_mount_table().local_rules = None
                self._stop.set()
                monitoring, self._monitoring = self._monitoring, None
                if monitoring is not None:
                    monitoring.close()
            process_interceptor().uninstall()

    def __enter__(self) -> FluxonFsPatcher:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ----- mounts -------------------------------------------------------------------------------

    def mount_remote_dir(self, local_mount_dir_abs: str, export_name: str) -> None:
        """Show ``export_name`` at ``local_mount_dir_abs`` (FS.md §2 rules)."""
        self._require_link("mount_remote_dir")
        if self._cache_config is None or not self._cache_loaded.is_set():
            raise RuntimeError(f"{CACHE_NOT_LOADED}: call set_cache_config_yaml(...) before mount_remote_dir(...)")
        if self._installed == 0:
            raise RuntimeError("mount_remote_dir: call install() first")
        assert self._snapshot is not None and self._master is not None
        served = self._snapshot.refresh()
        if export_name not in served:
            known = ", ".join(sorted(served)) or "none"
            raise ValueError(
                f"unknown export_name {export_name!r}: not in the fs master export snapshot (exports: {known}); "
                "check EXPORT_NAME and that its fs agent is running"
            )
        client_export = self._cache_config.exports.get(export_name)
        export = served[export_name]
        server_root = export.remote_root_dir_abs
        if client_export is not None and client_export.remote_root_dir_abs != server_root:
            raise RuntimeError(
                f"{CACHE_NOT_LOADED}: client cache config says export {export_name!r} is "
                f"{client_export.remote_root_dir_abs!r} but the fs master serves it from {server_root!r}; "
                "check REMOTE_ROOT_DIR"
            )
        ops = RoutedExportOps(
            self._rpc_client,
            export_name,
            lambda: self._snapshot.agents(export_name) if self._snapshot else [],
            auth=self._request_token,
            caller=self._store.instance_key(),
            static_nodes=(client_export.nodes if client_export is not None else None) or export.nodes,
        )
        options = MountOptions(
            metadata_cache_ttl_ms=(client_export or export).metadata_cache_ttl_ms,
            stale_window_ms=self._cache_config.stale_window_ms,
            write_inflight_bytes=self._cache_config.write_session_target_inflight_bytes,
        )
        mounted = process_mount_table().mount(
            local_mount_dir_abs, ops, export_name, piece_cache=self._piece_cache, options=options
        )
        with self._lock:
            self._mounts[mounted.mount_dir] = export_name
        self._set_cache_budget(export_name, export.cache_max_bytes)
        self._report_mount(mounted.mount_dir, export_name)
        self._start_reporter()
        log.info("mounted export %s at %s", export_name, mounted.mount_dir)

    def unmount_remote_dir(self, local_mount_dir_abs: str) -> None:
        """Remove a mount of this patcher (its last cache figures go to the fs master first)."""
        mounted = process_mount_table().unmount(local_mount_dir_abs)
        with self._lock:
            self._mounts.pop(mounted.mount_dir, None)
        self._report_cache_usage([mounted])
        if self._link is not None:
            try:
                self._link.remove_mount(MountRemoval(mounted.mount_dir))
            except ApiError as exc:
                log.info("could not report the unmount of %s: %s", mounted.mount_dir, exc)

    def _report_mount(self, mount_dir: str, export_name: str) -> None:
        if self._link is None:
            return
        try:
            self._link.report_mount(
                MountReport(
                    mount_dir,
                    export_name,
                    token=self._request_token(MOUNT_REGISTRY_PATH),
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
            )
        except ApiError as exc:
            log.info("could not report mount %s to the fs master: %s", mount_dir, exc)

    def _start_reporter(self) -> None:
        with self._lock:
            if self._reporter is not None and self._reporter.is_alive():
                return
            self._stop.clear()
            self._reporter = threading.Thread(target=self._report_forever, name="fluxon-fs-mounts", daemon=True)
            self._reporter.start()

    def _report_forever(self) -> None:
        assert self._master is not None
        while not self._stop.wait(self._master.report_interval_ms / 1000):
            mounts = list(self._mounts.items())
            for mount_dir, export_name in mounts:
                self._report_mount(mount_dir, export_name)
            served = self._snapshot.current() if self._snapshot is not None else {}
            for _, export_name in mounts:
                if export_name in served:  # a budget changed at the fs master is applied with the next report
                    self._cache_budgets[export_name] = served[export_name].cache_max_bytes
            mounted = process_mount_table().exports()
            self._report_cache_usage([mounted[mount_dir] for mount_dir, _ in mounts if mount_dir in mounted])

    # ----- content cache budgets and figures ----------------------------------------------------

    def _set_cache_budget(self, export_name: str, max_bytes: int) -> None:
        """Give the export's pieces their budget in the host pool.

        The budget is the fs master's ``cache_max_bytes`` (its snapshot), not this client's config:
        the pool is shared by every process of the host, so they must all set the same one.
        """
        self._cache_budgets[export_name] = max_bytes
        result = self._store.set_prefix_budget(export_cache_prefix(export_name), max_bytes)
        if result.is_err():
            log.warning(
                "export %s is cached without a budget in this host's pool: %s", export_name, result.unwrap_error()
            )

    def _report_cache_usage(self, mounts: list[MountedExport]) -> None:
        """Send each mount's hits and misses since the last report, and its export's usage of the host pool.

        The pool's budget for each export is also brought back to the fs master's, should another
        process of the host have set a different one (the last setter wins in the pool).
        """
        if self._link is None or self._master is None or not mounts:
            return
        try:
            pool_owner = self._store.pool_owner()
        except ApiError as exc:  # the store is closed
            log.info("content cache figures not reported: %s", exc)
            return
        answer = self._store.prefix_usage()
        if answer.is_err():  # a pool kind without budgets: hits and misses are still worth reporting
            log.info("content cache usage of this host's pool unavailable: %s", answer.unwrap_error())
        pool_usage = answer.unwrap() if answer.is_ok() else {}
        taken = [(mounted, *mounted.piece_reads.take_unreported()) for mounted in mounts]
        reads: dict[str, tuple[int, int]] = {}
        for mounted, hits, misses in taken:
            before = reads.get(mounted.export_name, (0, 0))
            reads[mounted.export_name] = (before[0] + hits, before[1] + misses)
        figures = {}
        for name, (hits, misses) in reads.items():
            usage = pool_usage.get(export_cache_prefix(name))
            wanted = self._cache_budgets.get(name)
            if answer.is_ok() and wanted is not None and (usage is None or usage.budget_bytes != wanted):
                self._set_cache_budget(name, wanted)
            pool = (
                None
                if usage is None
                else ExportPoolFigures(usage.budget_bytes, usage.used_bytes, usage.entries, usage.evictions)
            )
            figures[name] = ExportCacheFigures(hits, misses, pool)
        report = CacheUsageReport(
            pool_owner=pool_owner,
            host=socket.gethostname(),
            valid_for_s=REPORTS_VALID_FOR_INTERVALS * self._master.report_interval_ms / 1000,
            exports=figures,
        )
        try:
            self._link.report_cache_usage(report)
        except ApiError as exc:
            log.info("could not report content cache usage to the fs master: %s", exc)
            for mounted, hits, misses in taken:
                mounted.piece_reads.give_back(hits, misses)


def install_patcher_from_master(*, kv_store: Any, config_path: str | os.PathLike[str]) -> FluxonFsPatcher:
    """Read the master section of ``config_path``, fetch the cache config from that fs master in the
    background, and install; call :meth:`FluxonFsPatcher.wait_cache_config_loaded` before mounting.

    Local cache ``rules`` come from the file (they describe this host); the export part of the cache
    config comes from the master. When the file has ``fluxon_fs.identity``, it is bound with
    ``set_request_identity``.
    """
    config = load_yaml_file(FsRoleConfig, config_path)
    patcher = FluxonFsPatcher(kv_store)
    patcher._follow(config.fluxon_fs.master)
    if _asks_for_monitoring(read_yaml_file(config_path)):
        patcher._start_monitoring(config.monitoring)
    if config.fluxon_fs.identity is not None:
        patcher.set_request_identity(config.fluxon_fs.identity.username, config.fluxon_fs.identity.password)
    local_rules = config.fluxon_fs.cache.rules

    def fetch() -> None:
        deadline = time.monotonic() + CACHE_CONFIG_FETCH_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                assert patcher._snapshot is not None
                patcher._snapshot.refresh()
                assert patcher._snapshot.cache is not None
                patcher._set_cache_config(attrs.evolve(patcher._snapshot.cache, rules=local_rules))
                return
            except ApiError as exc:
                patcher._cache_error = exc
                time.sleep(CACHE_CONFIG_RETRY_S)

    threading.Thread(target=fetch, name="fluxon-fs-cache-config", daemon=True).start()
    patcher.install()
    return patcher
