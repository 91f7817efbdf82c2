"""The Fluxon FS stack for benchmarks, all on this host: kv master, one owner with a pool big enough for
the data under test, fs master, one fs agent serving one export, and a mounting client in this process.

Built on the test deployment helpers (``tests.support.kv_cluster`` / ``fs_cluster``), which start
real processes; the only difference is the owner's pool size.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fluxon_core.kv import KvClient
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster
from tests.support.kv_cluster import KvCluster

HOST = "h1"
AGENT_KEY = "bench-agent"
# Longer than the tests' 1.5 s: on a loaded machine a short lease lapses mid-run and members re-register.
LEASE_TTL_MS = 10_000
REVOCATION_BOUND_S = 2.0  # the product default (the test deployment uses 0.5 s)
CLIENT_KEY = "bench-reader"


class FsStack:
    """A running stack: ``export_root`` is the agent's directory, ``mount_dir`` shows it in this process
    through ``patcher`` on ``store`` (both replaced by :meth:`reconnect`)."""

    def __init__(
        self, kv: KvCluster, export_name: str, export_root: Path, mount_dir: Path, pids: dict[str, int]
    ) -> None:
        self.export_name = export_name
        self.export_root = export_root
        self.mount_dir = mount_dir
        self.pids = pids
        """Process id of each role ("kv-master", "owner", "fs-master", "agent"), for CPU accounting."""
        self._kv = kv
        self._connections = 0
        self.store: KvClient | None = None
        self.patcher: FluxonFsPatcher | None = None

    def connect(self) -> None:
        """A new KV client and patcher in this process, installed, with the export mounted."""
        self._connections += 1
        self.store = self._kv.external(f"{CLIENT_KEY}-{self._connections}", HOST)
        self.patcher = _patcher(self.store, self.export_name, self.export_root)
        self.patcher.install()
        self.patcher.mount_remote_dir(local_mount_dir_abs=str(self.mount_dir), export_name=self.export_name)

    @property
    def root(self) -> Path:
        """The deployment's directory (access db, FS service secret, role workdirs)."""
        return self._kv.root

    def kvclient(self, instance_key: str) -> dict[str, Any]:
        """An external KV client config of this host (for another role or client process)."""
        return self._kv.external_config(instance_key, HOST)

    def client_config(self, instance_key: str) -> dict[str, Any]:
        """The config a client process of this host uses: its KV client and the fs master to follow."""
        return {
            "kvclient": self._kv.external_config(instance_key, HOST),
            "fluxon_fs": {"master": {"instance_key": MASTER_KEY}},
        }

    def disconnect(self) -> None:
        """Uninstall the patcher (unmounting) and close the KV client."""
        if self.patcher is not None:
            self.patcher.uninstall()
            self.patcher = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def pool_problem(self) -> str:
        """Why the KV client can no longer use the host pool ("" when it can).

        A client that decided its owner is gone stays so (a torn read of the pool's control block
        is enough, see MOUNT_RESULTS.md); every later piece then bypasses the pool.
        """
        assert self.store is not None
        result = self.store.is_exist("/fluxon_fs_cache/bench-health-probe")
        return str(result.unwrap_error()) if result.is_err() else ""

    def reconnect(self) -> None:
        """Replace the client: for a client that has lost its owner (it never recovers by itself)."""
        self.disconnect()
        self.connect()


def _patcher(store: KvClient, export_name: str, export_root: Path) -> FluxonFsPatcher:
    patcher = FluxonFsPatcher(store)
    patcher.set_master_config_yaml(f"fluxon_fs: {{master: {{instance_key: {MASTER_KEY}}}}}")
    patcher.set_cache_config_yaml(
        f"fluxon_fs: {{master: {{instance_key: {MASTER_KEY}}}, "
        f"cache: {{exports: {{{export_name}: {{remote_root_dir_abs: {export_root}}}}}}}}}"
    )
    patcher.set_request_identity(*ADMIN)
    return patcher


@contextlib.contextmanager
def fs_stack(*, pool_bytes: str = "1GiB", export_name: str = "bench") -> Iterator[FsStack]:
    """Start the stack with the patcher installed and the export mounted; everything is stopped afterwards.

    The mount directory's name ("fxmnt...") appears in no other path the benchmark uses, so the
    patcher's hot-path check sees every local path as local, as it would in a real process.
    """
    kv = KvCluster(lease_ttl_ms=LEASE_TTL_MS)
    cluster = FsCluster(kv, HOST)
    mount_parent = Path(tempfile.mkdtemp(prefix="fxmnt", dir="/tmp"))
    stack: FsStack | None = None
    try:
        kv.start_master()
        kv.start_owner(f"owner-{HOST}", HOST, dram=pool_bytes)
        cluster.start_master(session={"revocation_bound_s": REVOCATION_BOUND_S})
        export_root = cluster.export_dir(export_name)
        cluster.start_agent(AGENT_KEY, {export_name: str(export_root)})
        assert kv.master is not None and cluster.master is not None
        pids = {"kv-master": kv.master.pid, "owner": kv.owners[f"owner-{HOST}"].pid}
        pids |= {"fs-master": cluster.master.pid, "agent": cluster.agents[AGENT_KEY].pid}
        stack = FsStack(kv, export_name, export_root, mount_parent / "mnt", pids)
        stack.connect()
        yield stack
    finally:
        if stack is not None:
            stack.disconnect()
        cluster.close()
        kv.close()
        shutil.rmtree(mount_parent, ignore_errors=True)
