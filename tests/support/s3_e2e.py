"""An S3 gateway on a real stack: kv master, owner, fs master, one fs agent and the gateway, each a process.

Users: ``admin`` (manages users: every export), ``alice`` (read_write on ``demo:team``), ``bob``
(read_only on ``demo:public``). Exports ``demo`` and ``other`` live under the cluster's root. Access
keys are created in the fs master's access db, as the panel and ``fluxon users keys`` do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.access.access_keys import NewAccessKey
from fluxon_core.runtime import RoleProcess
from fluxon_fs.roles import start_s3_gateway_process
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster

ALICE = ("alice", "alice-pw-s3")
BOB = ("bob", "bob-pw-s3")
REGION = "us-east-1"
MIN_PART_BYTES = 1024 * 1024
"""The gateway's min_part_bytes in these tests (AWS's 5 MiB would make every multipart test slow)."""


@attrs.define
class S3Stack:
    """The running stack and what tests need to reach it."""

    fs: FsCluster
    gateway: RoleProcess
    url: str
    exports: dict[str, Path]
    keys: dict[str, NewAccessKey] = attrs.field(factory=dict)

    @contextlib.contextmanager
    def access_store(self) -> Iterator[SqliteAccessStore]:
        """The fs master's access db through the sqlite access store."""
        store = SqliteAccessStore(SqliteAccessStoreConfig(path=str(self.fs.root / "access.db")))
        try:
            yield store
        finally:
            store.close()

    def new_key(self, username: str) -> NewAccessKey:
        """A fresh access key of ``username``."""
        with self.access_store() as store:
            return store.create_access_key(username)

    def client(self, username: str = "admin", **config: Any) -> Any:
        """A boto3 S3 client signing with ``username``'s key (path-style addressing)."""
        import boto3
        from botocore.config import Config

        key = self.keys.get(username) or self.keys.setdefault(username, self.new_key(username))
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key.record.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(
                signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config
            ),
        )


def gateway_config(fs: FsCluster, **section: Any) -> dict[str, Any]:
    """An S3 gateway's YAML as a dict."""
    return {
        "kvclient": fs.kvclient("s3-gateway"),
        "fluxon_fs": {
            "master": {"instance_key": MASTER_KEY, "pull_interval_ms": 200, "report_interval_ms": 200},
            "service_secret_file": str(fs.service_secret_file),
            "s3_gateway": {
                "listen_addr": "127.0.0.1:0",
                "region": REGION,
                "min_part_bytes": MIN_PART_BYTES,
                **section,
            },
        },
    }


@contextlib.contextmanager
def running_s3_stack() -> Iterator[S3Stack]:
    """Start the whole stack; stops it on exit."""
    with fs_cluster() as fs:
        fs.start_master(
            users=[
                {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
                {"username": ALICE[0], "password": ALICE[1]},
                {"username": BOB[0], "password": BOB[1]},
            ],
            scopes=[
                {"export_name": "demo", "prefix": "team", "mode": "read_write", "usernames": ["alice"]},
                {"export_name": "demo", "prefix": "public", "mode": "read_only", "usernames": ["bob"]},
            ],
        )
        exports = {name: fs.export_dir(name) for name in ("demo", "other")}
        fs.start_agent("agent-1", {name: str(path) for name, path in exports.items()})
        gateway = start_s3_gateway_process(gateway_config(fs), workdir=fs.root / "s3-gateway")
        try:
            ready = gateway.wait_ready(60)
            yield S3Stack(fs, gateway, ready.fields["s3"], exports)
        finally:
            if gateway.poll() is None:
                gateway.terminate()
                gateway.wait(15)
