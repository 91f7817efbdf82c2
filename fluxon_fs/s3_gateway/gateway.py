"""The S3 gateway process: attached to the KV plane, following the fs master, serving HTTP with uvicorn.

It holds the FS service secret like an agent (to ask the fs master for signing keys), never a
secret access key and never the access db. Each request runs as the user whose key signed it:
the gateway opens one :class:`~fluxon_fs.patcher.mounted_export.MountedExport` per (user, export),
whose calls carry that user's session token, so the agents apply the user's scopes — the same
ones that govern the user's mounts — and each user's metadata cache is their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv import KvClient, new_store
from fluxon_core.log_setup import get_logger
from fluxon_fs.auth.scopes import ScopeSet
from fluxon_fs.auth.service import read_service_credential
from fluxon_fs.config import FsRoleConfig, S3GatewayConfig
from fluxon_fs.fs_master.panel.server import PanelServer, bind_listen_socket
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import UserAccessQuery
from fluxon_fs.patcher.export_client import ExportClient
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.s3_gateway.bucket import Bucket
from fluxon_fs.s3_gateway.credentials import KeyHolder, SigningKeys
from fluxon_fs.s3_gateway.errors import S3Error

log = get_logger("fluxon.s3.gateway")


class S3Gateway:
    """A running gateway; :meth:`close` stops serving and detaches."""

    def __init__(self, config: FsRoleConfig, workdir: Path) -> None:
        section = config.fluxon_fs.s3_gateway
        if section is None:
            raise InvalidArgumentError("fluxon_fs.s3_gateway is required for an S3 gateway")
        self.settings: S3GatewayConfig = section
        self.workdir = workdir
        service = read_service_credential(config.service_secret_path(), config.fluxon_fs.service_secret_accept_files)
        instance_key = str((config.kvclient or {}).get("instance_key") or section.instance_key)
        self.store: KvClient = new_store(config.kv_client_config(instance_key), role="s3_gateway").unwrap(
            "S3 gateway: attaching to the owner failed"
        )
        self.instance_key = instance_key
        try:
            self.client = ExportClient(self.store)
            self.client.follow(config.fluxon_fs.master)
            self.client.load_cache_config_from_master(config.fluxon_fs.cache.rules)
            self.link = FsMasterLink(self.store, config.fluxon_fs.master.instance_key, service=service)
            self.signing_keys = SigningKeys(self.link)
            self._tokens: dict[str, str] = {}
            self._buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()
            self._lock = threading.Lock()
            self._stop = threading.Event()
            self._report_interval_s = config.fluxon_fs.master.report_interval_ms / 1000
            from fluxon_fs.s3_gateway.app import create_app

            sock = bind_listen_socket(section.listen_addr, what="fluxon_fs.s3_gateway")
            try:
                self.server = PanelServer(create_app(self), sock, name="S3 gateway").start()
            except BaseException:
                sock.close()
                raise
        except BaseException:
            self.store.close()
            raise
        self.url = self.server.url
        self._reporter = threading.Thread(target=self._report_forever, name="s3-gateway-reports", daemon=True)
        self._reporter.start()
        log.info("S3 gateway %s serving on %s (region %s)", instance_key, self.url, section.region)

    def note_holder(self, holder: KeyHolder) -> None:
        """Remember the freshest session token of a key's user (the user's buckets call agents with it)."""
        self._tokens[holder.username] = holder.token

    def bucket(self, username: str, name: str) -> Bucket:
        """``name`` as ``username`` sees it; ``NoSuchBucket`` when no live agent serves such an export."""
        snapshot = self.client.snapshot
        if snapshot is None or name not in snapshot.current():
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", resource=f"/{name}")
        key = (username, name)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                self._buckets.move_to_end(key)
                return bucket
        try:
            export = self.client.open_export(name, auth=lambda _path: self._tokens.get(username, ""))
        except ValueError:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", resource=f"/{name}") from None
        bucket = Bucket(name, export)
        with self._lock:
            bucket = self._buckets.setdefault(key, bucket)
            while len(self._buckets) > self.settings.open_exports:
                self._buckets.popitem(last=False)
        return bucket

    def bucket_names(self, username: str) -> list[str]:
        """Exports the user has any grant on (every export for a user who can manage users), sorted."""
        access = self.link.user_access(UserAccessQuery(username)).user_access()
        if access is None:
            return []
        scopes = ScopeSet(access.grants, unrestricted=access.can_manage_users)
        snapshot = self.client.snapshot
        served = snapshot.current() if snapshot is not None else {}
        return sorted(name for name in served if scopes.unrestricted or name in scopes.exports())

    def _open_exports(self) -> list[MountedExport]:
        with self._lock:
            return [bucket.export for bucket in self._buckets.values()]

    def _report_forever(self) -> None:
        # Like a mount: hits and misses of the gateway's reads reach the fs master (and the panel).
        while not self._stop.wait(self._report_interval_s):
            exports = self._open_exports()
            if exports:
                self.client.report(exports)

    def close(self) -> None:
        """Stop serving, send the last cache figures and detach from the owner; idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.server.stop()
        self._reporter.join(timeout=5)
        exports = self._open_exports()
        if exports:
            self.client.report_cache_usage(exports)
        self.client.piece_cache.flush()  # pieces read so far reach the host pool before the store goes
        self.store.close()
