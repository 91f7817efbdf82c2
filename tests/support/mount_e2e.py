"""Mounts served by a REAL fs agent process, for the end-to-end mount tests.

:func:`running_mount_e2e` starts a kv master, an owner, an fs master and one fs agent (separate
processes, :mod:`tests.support.fs_cluster`) serving two exports, ``demo`` and ``aux``, and mounts
both in this process through the public :class:`~fluxon_fs.patcher.fs_patcher.FluxonFsPatcher`.
:func:`mount_e2e_fixture` wraps it as a module-scoped pytest fixture, so a test module pays the
cluster start (a few seconds) once.

The agent counts the operations it serves (``fluxon_fs_ops_total{op=...}`` on its Prometheus
endpoint, the ``metrics=`` field of its readiness line): :meth:`MountE2E.agent_ops` reads them,
which is how the tests see what reached the agent — from this process or any other.

``python -m tests.support.mount_e2e read CONFIG_JSON RELPATH...`` is a second reader process: it
attaches to the same host's pool, mounts ``demo`` and prints one JSON line
``{"relpath": [size, sha256], ...}`` of the files it read through the mount.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core.kv import KvClient, new_store
from fluxon_core.rpc import default_transport
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import AUTH_LOGIN_PATH
from fluxon_fs.patcher import MountedExport, process_mount_table
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster

EXPORTS = ("demo", "aux")
AGENT_KEY = "agent-1"
HOST = "h1"
ROOT = Path(__file__).resolve().parents[2]
_OPS_SAMPLE = re.compile(r'^fluxon_fs_ops_total\{op="(\w+)",result="(\w+)"\} ([0-9.e+]+)$', re.M)


def cache_config(
    export_roots: dict[str, str],
    stale_window_ms: int,
    metadata_cache_ttl_ms: int,
    report_interval_ms: int | None = None,
) -> dict[str, Any]:
    """The ``fluxon_fs`` section a mount client injects with ``set_cache_config_yaml``."""
    master: dict[str, Any] = {"instance_key": MASTER_KEY}
    if report_interval_ms is not None:
        master["report_interval_ms"] = report_interval_ms
    return {
        "master": master,
        "cache": {
            "stale_window_ms": stale_window_ms,
            "exports": {
                name: {"remote_root_dir_abs": root, "metadata_cache_ttl_ms": metadata_cache_ttl_ms}
                for name, root in export_roots.items()
            },
        },
    }


def new_patcher(store: KvClient, section: dict[str, Any]) -> FluxonFsPatcher:
    """A patcher configured in the documented order, identity bound, not yet installed."""
    patcher = FluxonFsPatcher(store)
    patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": section["master"]}}))
    patcher.set_cache_config_yaml(json.dumps({"fluxon_fs": section}))  # JSON is YAML
    patcher.set_request_identity(*ADMIN)
    return patcher


@attrs.define
class MountE2E:
    """A running cluster with ``demo`` mounted at :attr:`mount` and ``aux`` at :attr:`aux_mount`."""

    fs: FsCluster
    store: KvClient
    patcher: FluxonFsPatcher
    section: dict[str, Any]
    """The ``fluxon_fs`` section given to ``set_cache_config_yaml``."""
    base: Path
    """Local scratch directory holding the mount directories (not exported)."""
    export_roots: dict[str, Path]
    """Agent-side directory of each export."""
    mount_dirs: dict[str, Path]
    """Mount directory of each export."""
    metrics_url: str
    """The agent's Prometheus endpoint."""
    agent_endpoint: str
    """The agent's RPC endpoint."""

    @property
    def export_dir(self) -> Path:
        """The agent-side directory of ``demo``."""
        return self.export_roots["demo"]

    @property
    def mount(self) -> Path:
        """Where ``demo`` is mounted."""
        return self.mount_dirs["demo"]

    @property
    def aux_mount(self) -> Path:
        """Where ``aux`` is mounted."""
        return self.mount_dirs["aux"]

    def path(self, relpath: str = "", export: str = "demo") -> str:
        """The mount path of an export-relative path."""
        mount = str(self.mount_dirs[export])
        return f"{mount}/{relpath}" if relpath else mount

    def real(self, relpath: str = "", export: str = "demo") -> Path:
        """The agent-side path of an export-relative path (a local path: the interceptor passes it)."""
        return self.export_roots[export] / relpath if relpath else self.export_roots[export]

    def mounted(self, export: str = "demo") -> MountedExport:
        """The mounted export object of this process."""
        return process_mount_table().exports()[str(self.mount_dirs[export])]

    def agent_ops(self) -> Counter[str]:
        """Operations the agent process has served so far, by op (every result counted)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
            text = reply.read().decode()
        samples = _OPS_SAMPLE.findall(text)
        if not samples:
            raise AssertionError(f"the agent's metrics at {self.metrics_url} carry no fluxon_fs_ops_total samples")
        counts: Counter[str] = Counter()
        for op, _result, value in samples:
            counts[op] += int(float(value))
        return counts

    def agent_ops_during(self, action: Callable[[], Any]) -> tuple[Any, Counter[str]]:
        """Run ``action`` and return its value and the agent operations it caused (zero counts dropped)."""
        before = self.agent_ops()
        value = action()
        after = self.agent_ops()
        return value, Counter({op: n - before[op] for op, n in after.items() if n - before[op]})

    def settle_cache(self) -> None:
        """Wait until the pieces this process read are in the host pool (the mount puts them in the background)."""
        for export in process_mount_table().exports().values():
            assert export.piece_cache.flush(30), f"{export}: cache puts still queued after 30 s"

    def login_token(self) -> str:
        """A session token of the admin identity, as the patcher gets one."""
        reply = FsMasterLink(self.store, MASTER_KEY).call(AUTH_LOGIN_PATH, {"username": ADMIN[0], "password": ADMIN[1]})
        return str(reply["token"])

    def direct_ops(self, export: str = "demo") -> RemoteExportOps:
        """Raw RPC access to the agent's export (for crafted requests no mount would send)."""
        return RemoteExportOps(
            default_transport().new_client(),
            self.agent_endpoint,
            export,
            auth=self.login_token(),
            caller=self.store.instance_key(),
        )

    def mount_all(self) -> None:
        """Mount every export at its mount directory (the patcher must be installed)."""
        for name, mount_dir in self.mount_dirs.items():
            self.patcher.mount_remote_dir(local_mount_dir_abs=str(mount_dir), export_name=name)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Uninstall the module's patcher (unmounting) for the block, then install and mount again."""
        self.patcher.uninstall()
        try:
            yield
        finally:
            self.patcher.install()
            self.mount_all()

    def reader_process(
        self, instance_key: str, *relpaths: str, export: str = "demo", just_exit: bool = False
    ) -> dict[str, tuple[int, str]]:
        """Read ``relpaths`` of ``export`` in a separate process on this host (it unmounts and exits;
        with ``just_exit`` it ends right after reading, as a script that never unmounts does);
        their (size, sha256)."""
        scratch = Path(tempfile.mkdtemp(prefix="fxr", dir="/tmp"))
        config = {
            "kvclient": self.fs.kv.external_config(instance_key, HOST),
            "section": self.section,
            "mount": str(scratch / "mnt"),
            "export": export,
            "just_exit": just_exit,
        }
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tests.support.mount_e2e", "read", json.dumps(config), *relpaths],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if done.returncode != 0:
            raise AssertionError(f"reader process failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return {path: (size, digest) for path, (size, digest) in answer.items()}


@contextlib.contextmanager
def running_mount_e2e(
    *,
    stale_window_ms: int = 1000,
    metadata_cache_ttl_ms: int = 5000,
    cache_max_bytes: dict[str, int] | None = None,
    report_interval_ms: int | None = None,
    users: list[dict[str, Any]] | None = None,
    scopes: list[dict[str, Any]] | None = None,
) -> Iterator[MountE2E]:
    """Start the cluster, serve ``demo`` and ``aux`` from one agent process, mount both here.

    ``cache_max_bytes`` configures those exports' budgets at the fs master (its ``fluxon_fs.cache``);
    ``report_interval_ms`` is how often the mount clients report to the fs master; ``users`` and
    ``scopes`` seed the fs master's access db (default: the admin alone, who may do anything).
    """
    base = Path(tempfile.mkdtemp(prefix="fxm", dir="/tmp"))
    with fs_cluster(HOST) as fs:
        roots = {name: fs.export_dir(name) for name in EXPORTS}
        master_cache = None
        if cache_max_bytes:
            master_cache = {
                "exports": {
                    name: {"remote_root_dir_abs": str(roots[name]), "cache_max_bytes": size}
                    for name, size in cache_max_bytes.items()
                }
            }
        fs.start_master(cache=master_cache, users=users, scopes=scopes)
        ready = fs.start_agent(AGENT_KEY, {name: str(root) for name, root in roots.items()})
        metrics_url = ready.fields.get("metrics", "")
        assert metrics_url, f"the fs agent announced no metrics endpoint: {ready.fields}"
        store = fs.kv.external("mount-e2e", HOST)
        section = cache_config(
            {n: str(r) for n, r in roots.items()}, stale_window_ms, metadata_cache_ttl_ms, report_interval_ms
        )
        patcher = new_patcher(store, section)
        env = MountE2E(
            fs=fs,
            store=store,
            patcher=patcher,
            section=section,
            base=base,
            export_roots=roots,
            mount_dirs={name: base / ("mnt" if name == "demo" else f"mnt-{name}") for name in EXPORTS},
            metrics_url=metrics_url,
            agent_endpoint=ready.endpoint,
        )
        patcher.install()
        try:
            env.mount_all()
            yield env
        finally:
            patcher.uninstall()
            shutil.rmtree(base, ignore_errors=True)


def mount_e2e_fixture(**options: Any) -> Any:
    """A module-scoped pytest fixture yielding a :class:`MountE2E` (``options`` as for :func:`running_mount_e2e`)."""

    @pytest.fixture(scope="module")
    def fixture() -> Iterator[MountE2E]:
        with running_mount_e2e(**options) as env:
            yield env

    return fixture


def _read_main(config_json: str, relpaths: list[str]) -> int:
    config = json.loads(config_json)
    store = new_store(config["kvclient"]).unwrap("new_store failed")
    if config["just_exit"]:
        print(json.dumps(_read_mounted(store, config, relpaths)), flush=True)
        return 0  # no uninstall, no close: the interpreter's exit does what it does for a user's script
    try:
        answer = _read_mounted(store, config, relpaths)
    finally:
        store.close()
    print(json.dumps(answer), flush=True)
    return 0


def _read_mounted(store: Any, config: dict[str, Any], relpaths: list[str]) -> dict[str, list[Any]]:
    patcher = new_patcher(store, config["section"])
    patcher.install()
    answer = {}
    try:
        patcher.mount_remote_dir(local_mount_dir_abs=config["mount"], export_name=config["export"])
        for relpath in relpaths:
            with open(f"{config['mount']}/{relpath}", "rb") as f:
                data = f.read()
            answer[relpath] = [len(data), hashlib.sha256(data).hexdigest()]
    finally:
        if not config["just_exit"]:
            patcher.uninstall()
    return answer


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "read":
        sys.exit("usage: python -m tests.support.mount_e2e read CONFIG_JSON RELPATH...")
    sys.exit(_read_main(sys.argv[2], sys.argv[3:]))
