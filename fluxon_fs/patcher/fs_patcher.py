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
from fluxon_fs.master_api.paths import MOUNT_REGISTRY_PATH
from fluxon_fs.master_api.records import MountRemoval, MountReport
from fluxon_fs.patcher.cache_rules import CacheRuleSet
from fluxon_fs.patcher.export_client import CACHE_NOT_LOADED, ExportClient
from fluxon_fs.patcher.intercept import process_interceptor
from fluxon_fs.patcher.mount_table import process_mount_table

log = get_logger("fluxon.fs.patcher")

CACHE_CONFIG_FETCH_TIMEOUT_S = 60.0
CACHE_CONFIG_RETRY_S = 0.2


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
        self._client = ExportClient(native)
        self._cache_loaded = threading.Event()
        self._rules: CacheRuleSet | None = None
        self._cache_error: BaseException | None = None
        self._installed = 0
        self._mounts: dict[str, str] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None
        self._monitoring: MonitoringHandle | None = None

    # ----- configuration ------------------------------------------------------------------------

    def set_master_config_yaml(self, yaml_text: str) -> None:
        """Which fs master to follow: YAML with ``fluxon_fs.master.instance_key``."""
        self._follow(_parse_role_yaml(yaml_text, "set_master_config_yaml").fluxon_fs.master)

    def _follow(self, master: FsMasterRef) -> None:
        self._client.follow(master)

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
            self._client.set_cache_config(cache)
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
        assert self._client.cache_config is not None
        return self._client.cache_config

    def set_request_identity(self, username: str, password: str) -> None:
        """Bind later FS requests, on existing mounts too, to this identity (the password is verified
        once by the fs master). When the login is refused, no identity stays bound."""
        self._client.require_link("set_request_identity")
        self.clear_request_identity()
        self._client.set_identity(username, password)

    def clear_request_identity(self) -> None:
        """Forget the identity; later requests, on existing mounts too, are refused as unauthenticated."""
        self._client.clear_identity()
        self._forget_cached_answers()

    def _forget_cached_answers(self) -> None:
        # Metadata answered to the previous identity must not be shown to the new one (or to none).
        mounted = process_mount_table().exports()
        for mount_dir in list(self._mounts):
            if mount_dir in mounted:
                mounted[mount_dir].metadata.clear()

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
                self._client.piece_cache.flush()  # pieces read so far reach the host pool before the process goes
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
        self._client.require_link("mount_remote_dir")
        if self._client.cache_config is None or not self._cache_loaded.is_set():
            raise RuntimeError(f"{CACHE_NOT_LOADED}: call set_cache_config_yaml(...) before mount_remote_dir(...)")
        if self._installed == 0:
            raise RuntimeError("mount_remote_dir: call install() first")
        binding = self._client.bind(export_name)
        mounted = process_mount_table().mount(
            local_mount_dir_abs, binding.ops, export_name, piece_cache=binding.piece_cache, options=binding.options
        )
        with self._lock:
            self._mounts[mounted.mount_dir] = export_name
        self._report_mount(mounted.mount_dir, export_name)
        self._start_reporter()
        log.info("mounted export %s at %s", export_name, mounted.mount_dir)

    def unmount_remote_dir(self, local_mount_dir_abs: str) -> None:
        """Remove a mount of this patcher (its last cache figures go to the fs master first)."""
        mounted = process_mount_table().unmount(local_mount_dir_abs)
        with self._lock:
            self._mounts.pop(mounted.mount_dir, None)
        self._client.report_cache_usage([mounted])
        if self._client.link is not None:
            try:
                self._client.link.remove_mount(MountRemoval(mounted.mount_dir))
            except ApiError as exc:
                log.info("could not report the unmount of %s: %s", mounted.mount_dir, exc)

    def _report_mount(self, mount_dir: str, export_name: str) -> None:
        link = self._client.link
        if link is None:
            return
        try:
            link.report_mount(
                MountReport(
                    mount_dir,
                    export_name,
                    token=self._client.request_token(MOUNT_REGISTRY_PATH),
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
        master = self._client.master
        assert master is not None
        while not self._stop.wait(master.report_interval_ms / 1000):
            mounts = list(self._mounts.items())
            for mount_dir, export_name in mounts:
                self._report_mount(mount_dir, export_name)
            mounted = process_mount_table().exports()
            self._client.report([mounted[mount_dir] for mount_dir, _ in mounts if mount_dir in mounted])


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
                patcher._set_cache_config(patcher._client.load_cache_config_from_master(local_rules))
                return
            except ApiError as exc:
                patcher._cache_error = exc
                time.sleep(CACHE_CONFIG_RETRY_S)

    threading.Thread(target=fetch, name="fluxon-fs-cache-config", daemon=True).start()
    patcher.install()
    return patcher
