"""An access-controlled Fluxon FS deployment for end-to-end tests, used through real mounts.

Processes: kv master, one owner, fs master (access db seeded from a bootstrap model) and an fs agent
serving export ``demo``; more agents and masters can be started later. Users mount exports in this
process with :class:`~fluxon_fs.patcher.fs_patcher.FluxonFsPatcher` on their own external KV client, exactly
as an application does.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.kv import KvClient
from fluxon_core.rpc import default_transport
from fluxon_core.runtime import RoleProcess
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import CONFIG_PATH
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher
from fluxon_fs.roles import start_fs_master_process
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig
from tests.support.fs_cluster import MASTER_KEY, FsCluster, fs_cluster

Credentials = tuple[str, str]

ADMIN: Credentials = ("admin", "Adm1n-plain-7f3a")
ALICE: Credentials = ("alice", "Al1ce-plain-91bc")  # read_write on demo:team_a
READER: Credentials = ("reader", "Read3r-plain-c04d")  # read_only on the whole of demo
CAROL: Credentials = ("carol", "Car0l-plain-5e21")  # read_write on demo:shared (revocation tests)
DAVE: Credentials = ("dave", "Dav3-plain-a8f0")  # read_only on demo:shared (removal test)

USERS = [
    {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
    {"username": ALICE[0], "password": ALICE[1]},
    {"username": READER[0], "password": READER[1]},
    {"username": CAROL[0], "password": CAROL[1]},
    {"username": DAVE[0], "password": DAVE[1]},
]
SCOPES = [
    {"export_name": "demo", "prefix": "team_a", "mode": "read_write", "usernames": [ALICE[0]]},
    {"export_name": "demo", "prefix": "", "mode": "read_only", "usernames": [READER[0]]},
    {"export_name": "demo", "prefix": "shared", "mode": "read_write", "usernames": [CAROL[0]]},
    {"export_name": "demo", "prefix": "shared", "mode": "read_only", "usernames": [DAVE[0]]},
]
DEMO_TREE = {
    "secret.txt": b"top secret\n",
    "team_a/notes.txt": b"alice's notes\n",
    "team_a/sub/deep.txt": b"deep\n",
    "team_b/x": b"team b data\n",
    "shared/common.txt": b"shared content\n",
    "public/readme.txt": b"hello\n",
}


@attrs.define
class UserMount:
    """A mount of one export in this process, bound (or not) to an identity."""

    patcher: FluxonFsPatcher
    path: Path
    export_name: str

    def at(self, relpath: str = "") -> str:
        """The mount path of an export-relative path."""
        return str(self.path / relpath) if relpath else str(self.path)


class AccessDeployment:
    """A running deployment; see the module docstring."""

    def __init__(self, fs: FsCluster, mounts_root: Path) -> None:
        self.fs = fs
        self._mounts_root = mounts_root
        self._mount_count = 0
        self._clients: dict[str, KvClient] = {}
        self._rpc_client = default_transport().new_client()
        self._extra_masters: list[RoleProcess] = []

    @property
    def access_db(self) -> Path:
        """The fs master's access db (from its config)."""
        return Path(self.fs.master_config()["fluxon_fs"]["master_panel"]["access_db_path"])

    @property
    def revocation_bound_s(self) -> float:
        """The session policy's revocation bound the fs master runs with."""
        return float(self.fs.master_config()["fluxon_fs"]["master_panel"]["session"]["revocation_bound_s"])

    def client(self, instance_key: str) -> KvClient:
        """An external KV client in this process (one per key, closed with the deployment)."""
        if instance_key not in self._clients:
            self._clients[instance_key] = self.fs.kv.external(instance_key, self.fs.host)
        return self._clients[instance_key]

    def patcher(
        self, identity: Credentials | None, *, master_key: str = MASTER_KEY, client_key: str = "app"
    ) -> FluxonFsPatcher:
        """A configured patcher on the client ``client_key``; ``identity`` is bound with ``set_request_identity``."""
        patcher = FluxonFsPatcher(self.client(client_key))
        patcher.set_master_config_yaml(f"fluxon_fs: {{master: {{instance_key: {master_key}}}}}")
        patcher.set_cache_config_yaml(f"fluxon_fs: {{master: {{instance_key: {master_key}}}}}")
        if identity is not None:
            patcher.set_request_identity(*identity)
        return patcher

    @contextlib.contextmanager
    def mount(self, identity: Credentials | None, export_name: str = "demo") -> Iterator[UserMount]:
        """Install a patcher for ``identity`` and mount ``export_name`` at a fresh directory."""
        patcher = self.patcher(identity)
        self._mount_count += 1
        path = self._mounts_root / f"m{self._mount_count}"
        patcher.install()
        try:
            patcher.mount_remote_dir(local_mount_dir_abs=str(path), export_name=export_name)
            yield UserMount(patcher, path, export_name)
        finally:
            patcher.uninstall()

    @contextlib.contextmanager
    def access_store(self, db: Path | None = None) -> Iterator[SqliteAccessStore]:
        """The access db (default: the fs master's) through the sqlite access store API."""
        store = SqliteAccessStore(SqliteAccessStoreConfig(path=str(db or self.access_db)))
        try:
            yield store
        finally:
            store.close()

    def agent_endpoint(self, export_name: str) -> str:
        """The endpoint of a live agent serving ``export_name``, from the fs master's snapshot."""
        snapshot = FsMasterLink(self.client("probe"), MASTER_KEY).call(CONFIG_PATH, {})
        return str(snapshot["exports"][export_name]["agents"][0]["endpoint"])

    def agent_ops(self, export_name: str, auth: str | Callable[[str], str], caller: str = "probe") -> RemoteExportOps:
        """The export's operations called directly on its agent with a hand-made ``auth``."""
        return RemoteExportOps(
            self._rpc_client, self.agent_endpoint(export_name), export_name, auth=auth, caller=caller
        )

    def start_master(self, instance_key: str, access_db: Path, users: list[dict], scopes: list[dict]) -> RoleProcess:
        """Another fs master on the same KV plane, with its own access db and bootstrap model."""
        config = self.fs.master_config(users=users, scopes=scopes)
        config["kvclient"] = self.fs.kvclient(instance_key)
        config["fluxon_fs"]["master"]["instance_key"] = instance_key
        config["fluxon_fs"]["master_panel"]["access_db_path"] = str(access_db)
        proc = start_fs_master_process(config, workdir=self.fs.root / instance_key)
        self._extra_masters.append(proc)
        proc.wait_ready(60)
        return proc

    def role_logs(self) -> list[Path]:
        """Every role process's log file."""
        return sorted(self.fs.root.glob("**/log/*.log"))

    def close(self) -> None:
        """Stop the extra masters and close this deployment's RPC client (KV clients close with the cluster)."""
        for proc in self._extra_masters:
            stop(proc)
        self._rpc_client.close()


def stop(proc: RoleProcess) -> None:
    """Stop a role process (SIGTERM, then SIGKILL if it hangs) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Create ``files`` (export-relative path -> content) under ``root`` on the agent's side."""
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@contextlib.contextmanager
def access_deployment(**master: Any) -> Iterator[AccessDeployment]:
    """Start the deployment with :data:`USERS`/:data:`SCOPES` (override with ``users=``/``scopes=``)."""
    mounts_root = Path(tempfile.mkdtemp(prefix="fxm", dir="/tmp"))
    with fs_cluster() as fs:
        fs.start_master(users=master.pop("users", USERS), scopes=master.pop("scopes", SCOPES), **master)
        demo = fs.export_dir("demo")
        write_tree(demo, DEMO_TREE)
        fs.start_agent("agent-1", {"demo": str(demo)})
        deployment = AccessDeployment(fs, mounts_root)
        try:
            yield deployment
        finally:
            deployment.close()
            shutil.rmtree(mounts_root, ignore_errors=True)
