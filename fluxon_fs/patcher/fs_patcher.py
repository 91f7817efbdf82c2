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

from fluxon_core.config import dump_config, load_config, load_yaml_file, load_yaml_text
from fluxon_core.errors import ApiError
from fluxon_core.kv import KvClient
from fluxon_core.log_setup import get_logger
from fluxon_core.rpc import default_transport
from fluxon_fs.config import DEFAULT_METADATA_CACHE_TTL_MS, FsCacheConfig, FsMasterRef, FsRoleConfig
from fluxon_fs.export.routing import RoutedExportOps
from fluxon_fs.master_api.link import AUTH_LOGIN_PATH, CONFIG_PATH, MOUNT_REGISTRY_PATH, FsMasterLink
from fluxon_fs.patcher.cache_rules import CacheRuleSet
from fluxon_fs.patcher.intercept import process_interceptor
from fluxon_fs.patcher.kv_piece_cache import KvPieceCache
from fluxon_fs.patcher.mount_table import process_mount_table
from fluxon_fs.patcher.options import MountOptions

log = get_logger("fluxon.fs.patcher")

CACHE_NOT_LOADED = "fluxon_fs cache config is not loaded yet"
TOKEN_REFRESH_MARGIN_S = 60.0
MOUNT_REPORT_INTERVAL_S = 10.0
CACHE_CONFIG_FETCH_TIMEOUT_S = 60.0
CACHE_CONFIG_RETRY_S = 0.2


class _Identity:
    """The bound identity: a session token, renewed with the password shortly before it expires."""

    def __init__(self, link: FsMasterLink, username: str, password: str) -> None:
        self._link = link
        self.username = username
        self._password = password
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0
        self._login()

    def _login(self) -> None:
        reply = self._link.call(AUTH_LOGIN_PATH, {"username": self.username, "password": self._password})
        self._token, self._expires_at = str(reply["token"]), float(reply["expires_at"])

    def token(self, _rpc_path: str = "") -> str:
        """The current token (logs in again when it is about to expire)."""
        with self._lock:
            if time.time() > self._expires_at - TOKEN_REFRESH_MARGIN_S:
                self._login()
            return self._token


class _SnapshotFollower:
    """The fs master's export snapshot, polled every ``pull_interval_ms`` while mounts exist."""

    def __init__(self, link: FsMasterLink, pull_interval_ms: int) -> None:
        self._link = link
        self._interval_s = pull_interval_ms / 1000
        self._lock = threading.Lock()
        self.version = ""
        self.body: dict[str, Any] = {}
        self._fetched_at = 0.0

    def refresh(self) -> dict[str, Any]:
        """Fetch now (cheap when unchanged) and return the snapshot body."""
        reply = self._link.call(CONFIG_PATH, {"known_version": self.version})
        with self._lock:
            if not reply.get("unchanged"):
                self.version = str(reply["version"])
                self.body = {k: v for k, v in reply.items() if k not in ("version", "unchanged")}
            self._fetched_at = time.monotonic()
            return self.body

    def current(self) -> dict[str, Any]:
        """The snapshot, refreshed when older than the pull interval."""
        if time.monotonic() - self._fetched_at >= self._interval_s:
            try:
                return self.refresh()
            except ApiError as exc:
                log.warning("fs master snapshot refresh failed (%s); using version %s", exc, self.version)
        return self.body

    def agents(self, export_name: str) -> list[dict[str, str]]:
        """Live agents of an export."""
        return list(self.current().get("exports", {}).get(export_name, {}).get("agents", []))


def _parse_role_yaml(yaml_text: str, what: str) -> FsRoleConfig:
    if not isinstance(yaml_text, str):
        raise TypeError(f"{what} expects YAML text, got {type(yaml_text).__name__}")
    return load_yaml_text(FsRoleConfig, yaml_text)


class FluxonFsPatcher:
    """Mounts fs master exports into this process on top of a store from ``new_store``."""

    def __init__(self, store: Any) -> None:
        if not isinstance(store, KvClient):
            raise RuntimeError(
                "fluxon_fs requires a fluxon backend store created by new_store(FluxonKvClientConfig(...)); "
                f"got {type(store).__name__}"
            )
        self._store = store
        self._master: FsMasterRef | None = None
        self._link: FsMasterLink | None = None
        self._snapshot: _SnapshotFollower | None = None
        self._cache_config: FsCacheConfig | None = None
        self._cache_loaded = threading.Event()
        self._rules: CacheRuleSet | None = None
        self._cache_error: BaseException | None = None
        self._identity: _Identity | None = None
        self._installed = 0
        self._mounts: dict[str, str] = {}
        self._rpc_client = default_transport().new_client()
        self._piece_cache = KvPieceCache(store)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None

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
        """The export snapshot / cache config the client expects (YAML with ``fluxon_fs.cache``)."""
        self._set_cache_config(_parse_role_yaml(yaml_text, "set_cache_config_yaml").fluxon_fs.cache)

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
        self._identity = _Identity(link, username, password)

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
                if process_mount_table().local_rules is self._rules:
                    process_mount_table().local_rules = None
                self._stop.set()
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
        snapshot = self._snapshot.refresh()
        served = snapshot.get("exports", {})
        if export_name not in served:
            known = ", ".join(sorted(served)) or "none"
            raise ValueError(
                f"unknown export_name {export_name!r}: not in the fs master export snapshot (exports: {known}); "
                "check EXPORT_NAME and that its fs agent is running"
            )
        client_export = self._cache_config.exports.get(export_name)
        server_root = served[export_name]["remote_root_dir_abs"]
        if client_export is not None and client_export.remote_root_dir_abs != server_root:
            raise RuntimeError(
                f"{CACHE_NOT_LOADED}: client cache config says export {export_name!r} is "
                f"{client_export.remote_root_dir_abs!r} but the fs master serves it from {server_root!r}; "
                "check REMOTE_ROOT_DIR"
            )
        export_config = served[export_name]
        ops = RoutedExportOps(
            self._rpc_client,
            export_name,
            lambda: self._snapshot.agents(export_name) if self._snapshot else [],
            auth=self._request_token,
            caller=self._store.instance_key(),
            static_nodes=(client_export.nodes if client_export is not None else None) or export_config.get("nodes"),
        )
        options = MountOptions(
            metadata_cache_ttl_ms=int(
                client_export.metadata_cache_ttl_ms
                if client_export is not None
                else export_config.get("metadata_cache_ttl_ms", DEFAULT_METADATA_CACHE_TTL_MS)
            ),
            stale_window_ms=self._cache_config.stale_window_ms,
            write_inflight_bytes=self._cache_config.write_session_target_inflight_bytes,
        )
        mounted = process_mount_table().mount(
            local_mount_dir_abs, ops, export_name, piece_cache=self._piece_cache, options=options
        )
        with self._lock:
            self._mounts[mounted.mount_dir] = export_name
        self._report_mount(mounted.mount_dir, export_name)
        self._start_reporter()
        log.info("mounted export %s at %s", export_name, mounted.mount_dir)

    def unmount_remote_dir(self, local_mount_dir_abs: str) -> None:
        """Remove a mount of this patcher."""
        mounted = process_mount_table().unmount(local_mount_dir_abs)
        with self._lock:
            self._mounts.pop(mounted.mount_dir, None)
        if self._link is not None:
            try:
                self._link.call(MOUNT_REGISTRY_PATH, {"op": "remove", "local_mount_dir_abs": mounted.mount_dir})
            except ApiError as exc:
                log.info("could not report the unmount of %s: %s", mounted.mount_dir, exc)

    def _report_mount(self, mount_dir: str, export_name: str) -> None:
        if self._link is None:
            return
        try:
            self._link.call(
                MOUNT_REGISTRY_PATH,
                {
                    "op": "report",
                    "local_mount_dir_abs": mount_dir,
                    "export_name": export_name,
                    "username": self._identity.username if self._identity else "",
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                },
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
        while not self._stop.wait(MOUNT_REPORT_INTERVAL_S):
            for mount_dir, export_name in list(self._mounts.items()):
                self._report_mount(mount_dir, export_name)


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
    if config.fluxon_fs.identity is not None:
        patcher.set_request_identity(config.fluxon_fs.identity.username, config.fluxon_fs.identity.password)
    local_rules = [dump_config(rule) for rule in config.fluxon_fs.cache.rules]

    def fetch() -> None:
        deadline = time.monotonic() + CACHE_CONFIG_FETCH_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                assert patcher._snapshot is not None
                body = patcher._snapshot.refresh()
                patcher._set_cache_config(
                    load_config(FsCacheConfig, {**body["cache"], "rules": local_rules}, "fluxon_fs.cache")
                )
                return
            except ApiError as exc:
                patcher._cache_error = exc
                time.sleep(CACHE_CONFIG_RETRY_S)

    threading.Thread(target=fetch, name="fluxon-fs-cache-config", daemon=True).start()
    patcher.install()
    return patcher
