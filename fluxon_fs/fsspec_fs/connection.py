"""What a ``fluxon://`` filesystem stands on: this process's KV client and an :class:`ExportClient`.

The config is the one a mounting process uses (``examples/start_fluxon_fs_reader.py``'s
``reader.yaml``, the demo stack's client files): a YAML path, YAML text or a mapping with
``kvclient`` (how to attach to this host's owner) and ``fluxon_fs.master`` (which fs master to
follow); ``fluxon_fs.identity`` is the identity unless ``username``/``password`` are given. The
cache config (TTLs, windows, export budgets) comes from the fs master, as
:func:`~fluxon_fs.patcher.fs_patcher.install_patcher_from_master` takes it.
"""

from __future__ import annotations

import json
import multiprocessing.util
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.config import ConfigError, load_config, load_yaml_file, load_yaml_text
from fluxon_core.errors import ApiTimeoutError, NetworkError
from fluxon_core.kv import FluxonKvClientConfig, KvClient, new_store
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.patcher.export_client import ExportClient
from fluxon_fs.patcher.mounted_export import MountedExport

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]


def load_client_config(config: ConfigSource) -> FsRoleConfig:
    """The client config from a YAML file path, YAML text (with a newline) or a mapping; errors name the field."""
    if isinstance(config, Mapping):
        loaded: FsRoleConfig = load_config(FsRoleConfig, dict(config))
        return loaded
    if isinstance(config, str) and "\n" in config:
        return load_yaml_text(FsRoleConfig, config)
    if isinstance(config, str | os.PathLike):
        if not Path(config).is_file():
            raise FileNotFoundError(f"fluxon storage_options 'config': no such YAML file {os.fspath(config)!r}")
        return load_yaml_file(FsRoleConfig, config)
    raise TypeError(
        f"fluxon storage_options 'config' must be a YAML path or a mapping (the mount client's config), "
        f"got {type(config).__name__}"
    )


@attrs.frozen(eq=False)
class ConnectionOptions:
    """The ``storage_options`` that pick a connection: the client config and the identity."""

    config: ConfigSource
    username: str | None
    password: str | None
    key: str = attrs.field(init=False)

    @key.default
    def _key(self) -> str:
        if not isinstance(self.config, Mapping | str | os.PathLike):
            raise TypeError(
                "fluxon storage_options 'config' must be a YAML path, YAML text or a mapping "
                f"(the mount client's config), got {type(self.config).__name__}"
            )
        config = self.config if isinstance(self.config, Mapping) else os.fspath(self.config)
        return json.dumps([config, self.username, self.password], default=str, sort_keys=True)


_connections: dict[str, FluxonConnection] = {}
_connections_lock = threading.Lock()


def shared_connection(options: ConnectionOptions) -> FluxonConnection:
    """The process's connection for these options, made on first use (and again after :meth:`close` or a fork).

    fsspec makes one filesystem instance per thread; they all share one KV client and one set of
    opened exports, so a threaded reader attaches to the owner once.
    """
    connection = _connections.get(options.key)
    if connection is not None and not connection.closed and connection.pid == os.getpid():
        return connection
    with _connections_lock:
        connection = _connections.get(options.key)
        if connection is None or connection.closed or connection.pid != os.getpid():
            connection = FluxonConnection(load_client_config(options.config), options.username, options.password)
            _connections[options.key] = connection
        return connection


def close_shared_connection(options: ConnectionOptions) -> None:
    """Close the process's connection for these options, if there is one."""
    with _connections_lock:
        connection = _connections.pop(options.key, None)
    if connection is not None:
        connection.close()


class FluxonConnection:
    """One KV client and export client of this process, with the exports it opened (thread-safe)."""

    def __init__(self, config: FsRoleConfig, username: str | None, password: str | None) -> None:
        if config.kvclient is None:
            raise ConfigError("kvclient", "is required: how this process attaches to this host's owner")
        identity = config.fluxon_fs.identity
        if username is None and identity is not None:
            username, password = identity.username, identity.password
        if username is None:
            raise ValueError(
                "fluxon storage_options need an identity: 'username' and 'password', or fluxon_fs.identity in 'config'"
            )
        kvclient = dict(config.kvclient)
        # One member per process: dask workers and a mount of the same config must not share a name.
        kvclient["instance_key"] = f"{kvclient.get('instance_key', 'fluxon')}-fsspec-{os.getpid()}"
        self.store: KvClient = new_store(FluxonKvClientConfig(kvclient)).unwrap("fluxon: attaching to the owner failed")
        master = config.fluxon_fs.master.instance_key
        try:
            self.client = ExportClient(self.store)
            self.client.follow(config.fluxon_fs.master)
            try:
                self.client.load_cache_config_from_master(config.fluxon_fs.cache.rules)
            except (NetworkError, ApiTimeoutError) as exc:
                raise ConnectionError(
                    f"fluxon: the fs master {master!r} (fluxon_fs.master.instance_key) does not answer: {exc}"
                ) from exc
            self.client.set_identity(username, password or "")
        except BaseException:
            self.store.close()
            raise
        self._exports: dict[str, MountedExport] = {}
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self.closed = False
        self._stop = threading.Event()
        self._report_interval_s = config.fluxon_fs.master.report_interval_ms / 1000
        threading.Thread(target=self._report_forever, name="fluxon-fsspec-reports", daemon=True).start()
        # Runs at interpreter exit, also in multiprocessing workers (dask's processes), which skip atexit.
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def export_names(self) -> list[str]:
        """The exports the fs master's snapshot has now, sorted."""
        snapshot = self.client.snapshot
        assert snapshot is not None
        return sorted(snapshot.current())

    def export(self, name: str) -> MountedExport:
        """The export ``name`` (opened once per connection); ``ValueError`` when the fs master has none."""
        with self._lock:
            export = self._exports.get(name)
            if export is None:
                export = self._exports[name] = self.client.open_export(name)
            return export

    def _report_forever(self) -> None:
        # Like a mount: the exports' cache figures reach the fs master (and the panel) while reading goes on.
        while not self._stop.wait(self._report_interval_s):
            with self._lock:
                exports = list(self._exports.values())
            if exports:
                self.client.report(exports)

    def close(self) -> None:
        """Send the last cache figures and detach from the owner (idempotent)."""
        with self._lock:
            exports, self._exports = list(self._exports.values()), {}
            already, self.closed = self.closed, True
        if already:
            return
        self._stop.set()
        if exports:
            self.client.report_cache_usage(exports)
        self.client.piece_cache.flush()  # pieces read so far reach the host pool before the store goes
        self.store.close()
