"""A Fluxon deployment on three lab hosts (:mod:`tests.support.netns`), every process in its host.

* host **a** (198.18.0.1): etcd, the kv master (binds ``0.0.0.0``: advertises the host's primary
  address, which it publishes in etcd), owner ``owner-a``, the fs master;
* host **b** (198.18.0.2): owner ``owner-b`` (``rpc_host: 0.0.0.0``), fs agent ``agent-b`` exporting
  ``bdata`` (its listen address follows the owner's);
* host **c** (198.18.0.3): owner ``owner-c`` (``rpc_host: 198.18.0.3``), fs agent ``agent-c``
  exporting ``cdata`` (a transfer target) and the test's client processes (:class:`Worker`).

Each host has its own directories under the cluster root (its "disk": pool, ``shared.json``,
exports, secrets) and its own ``/dev/shm`` directory. Owners find the kv master and the cluster
secret in etcd; the FS service secret is copied from host a to the agents' hosts, as an operator
would. The test process itself is on none of these networks: it drives clients through workers and
reads the hosts' disks directly.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fluxon_core.runtime import RoleProcess
from fluxon_core.runtime.parent_death import set_parent_death_signal
from fluxon_core.runtime.processes import KV_MASTER_MODULE, OWNER_MODULE, start_role_process
from fluxon_core.runtime.readiness import ReadyInfo
from fluxon_fs.roles import FS_AGENT_MODULE, FS_MASTER_MODULE
from tests.support.etcd_server import EtcdServer
from tests.support.netns import Host, NetnsLab

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "fs-master"
ADMIN = ("admin", "admin-pw")
KV_MASTER_PORT = 31000
ETCD_PORTS = (2379, 2380)
MEMBER_LEASE_TTL_MS = 30_000
"""Longer than the link outage the tests make, so a host that comes back is still a member."""
RPC_TIMEOUT_MS = 10_000
READY_TIMEOUT_S = 90.0
EXPORTS = {"b": "bdata", "c": "cdata"}


class WorkerError(RuntimeError):
    """An op failed inside a worker; ``type``, ``message`` and ``errno`` describe the exception there."""

    def __init__(self, op: str, error: dict[str, Any]) -> None:
        self.type = str(error.get("type"))
        self.message = str(error.get("message"))
        self.errno = error.get("errno")
        super().__init__(f"{op} failed in the worker: {self.type}: {self.message}\n{error.get('traceback', '')}")


class Worker:
    """A :mod:`tests.support.netns_worker` process inside a lab host, driven over its stdin/stdout."""

    def __init__(self, host: Host, name: str, log_path: Path) -> None:
        self.host = host
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [*host.launcher, sys.executable, "-m", "tests.support.netns_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            text=True,
            preexec_fn=set_parent_death_signal,  # a worker ends with the test process
        )
        self._next_id = 1
        self._pending: dict[int, Future[Any]] = {0: Future()}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_replies, name=f"worker-{name}", daemon=True)
        self._reader.start()
        self._pending_ready = self._pending[0]
        self._pending_ready.result(timeout=60)

    def _read_replies(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self._lock:
                future = self._pending.pop(reply["id"], None)
            if future is not None:
                future.set_result(reply)
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_result({"error": {"type": "WorkerExited", "message": f"worker {self.name} exited"}})

    def submit(self, op: str, **args: Any) -> Future[Any]:
        """Start ``op`` in the worker; the future holds the raw reply."""
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            future: Future[Any] = Future()
            self._pending[request_id] = future
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": request_id, "op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        future.op = op  # type: ignore[attr-defined]
        return future

    @staticmethod
    def result(future: Future[Any], timeout_s: float = 60.0) -> Any:
        """The op's result; WorkerError when it failed there."""
        reply = future.result(timeout=timeout_s)
        if "error" in reply:
            raise WorkerError(getattr(future, "op", "?"), reply["error"])
        return reply["ok"]

    def call(self, op: str, timeout_s: float = 60.0, **args: Any) -> Any:
        """Run ``op`` and wait for its result."""
        return self.result(self.submit(op, **args), timeout_s)

    def close(self) -> None:
        """Close the store (politely) and end the process."""
        if self.proc.poll() is None:
            try:
                self.call("close", timeout_s=10)
            except Exception:  # stopping anyway
                pass
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class NetnsCluster:
    """The deployment of the module docstring; start it with :meth:`start`, end it with :meth:`close`."""

    def __init__(self, lab: NetnsLab) -> None:
        self.lab = lab
        self.root = Path(tempfile.mkdtemp(prefix="fxns", dir="/tmp"))
        self.shm_root = Path("/dev/shm") / self.root.name
        self.cluster_name = f"ns{self.root.name[4:].lower()}"
        self.roles: dict[str, RoleProcess] = {}
        self.ready: dict[str, ReadyInfo] = {}
        self.configs: dict[str, tuple[str, str, dict[str, Any], Host]] = {}
        self.workers: list[Worker] = []
        self.etcd = EtcdServer(
            self.dir("a", "etcd"), host=lab["a"].address, ports=ETCD_PORTS, launcher=lab["a"].launcher
        )

    # -- layout ---------------------------------------------------------------------------------------

    def dir(self, host: str, *parts: str) -> Path:
        """``<root>/<host>/<parts>``, created."""
        path = self.root.joinpath(host, *parts)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def export_dir(self, host: str) -> Path:
        """The directory agent ``agent-<host>`` exports."""
        return self.dir(host, "exports", EXPORTS[host])

    def spec(self, host: str) -> dict[str, Any]:
        """``fluxonkv_spec`` of an external client on ``host``."""
        return {
            "cluster_name": self.cluster_name,
            "shared_memory_path": str(self.shm_root / host),
            "shared_file_path": str(self.dir(host, "shared")),
            "rpc_timeout_ms": RPC_TIMEOUT_MS,
        }

    def service_secret(self, host: str) -> Path:
        """Where host ``host`` keeps the FS service secret."""
        return self.dir(host, "secrets") / "fs_service.secret"

    def mount_section(self) -> dict[str, Any]:
        """The ``fluxon_fs`` section a mount client injects."""
        return {
            "master": {"instance_key": MASTER_KEY, "pull_interval_ms": 200},
            "cache": {
                "stale_window_ms": 1000,
                "exports": {
                    name: {"remote_root_dir_abs": str(self.export_dir(host)), "metadata_cache_ttl_ms": 1000}
                    for host, name in EXPORTS.items()
                },
            },
        }

    # -- roles ----------------------------------------------------------------------------------------

    def start_role(self, label: str, module: str, role: str, config: dict[str, Any], host: Host) -> RoleProcess:
        """Start a role process inside ``host`` (not waited for); :meth:`restart_role` reuses its config."""
        self.configs[label] = (module, role, config, host)
        proc = start_role_process(
            module,
            role,
            config,
            workdir=self.dir(host.name, "work", label),
            log_path=self.dir(host.name, "log") / f"{label}.log",
            launcher=host.launcher,
        )
        self.roles[label] = proc
        return proc

    def _wait(self, *labels: str) -> None:
        for label in labels:
            self.ready[label] = self.roles[label].wait_ready(READY_TIMEOUT_S)

    def start(self) -> None:
        """etcd, kv master, three owners, fs master, two agents; each waited for in turn."""
        a = self.lab["a"]
        self.etcd.start(timeout_s=60)
        kv_master = {
            "instance_key": "kv-master",
            "cluster_name": self.cluster_name,
            "host": "0.0.0.0",
            "port": KV_MASTER_PORT,
            "etcd_endpoints": [self.etcd.endpoint],
            "member_lease_ttl_ms": MEMBER_LEASE_TTL_MS,
            "holder_call_timeout_ms": 2000,
            "cluster_secret_file": str(self.dir("a", "secrets") / "cluster.secret"),
        }
        self.start_role("kv-master", KV_MASTER_MODULE, "kv_master", kv_master, a)
        self._wait("kv-master")
        for name, rpc_host in (("a", None), ("b", "0.0.0.0"), ("c", self.lab["c"].address)):
            self.start_role(f"owner-{name}", OWNER_MODULE, "owner", self.owner_config(name, rpc_host), self.lab[name])
        self._wait("owner-a", "owner-b", "owner-c")
        self.start_role("fs-master", FS_MASTER_MODULE, "fs_master", self.fs_master_config(), a)
        self._wait("fs-master")
        for name in EXPORTS:
            shutil.copy2(self.service_secret("a"), self.service_secret(name))  # what an operator does
            self.start_role(f"agent-{name}", FS_AGENT_MODULE, "fs_agent", self.agent_config(name), self.lab[name])
        self._wait(*(f"agent-{name}" for name in EXPORTS))

    def owner_config(self, host: str, rpc_host: str | None) -> dict[str, Any]:
        spec = {**self.spec(host), "etcd_addresses": [self.etcd.endpoint]}
        spec["rpc_host"] = rpc_host or self.lab[host].address
        return {
            "instance_key": f"owner-{host}",
            "contribute_to_cluster_pool_size": {"dram": "96MiB"},
            "fluxonkv_spec": spec,
        }

    def fs_master_config(self) -> dict[str, Any]:
        return {
            "kvclient": {"instance_key": MASTER_KEY, "fluxonkv_spec": self.spec("a")},
            "fluxon_fs": {
                "master": {"instance_key": MASTER_KEY, "pull_interval_ms": 200},
                "service_secret_file": str(self.service_secret("a")),
                "master_panel": {
                    "listen_addr": "0.0.0.0:18080",
                    "access_db_path": str(self.dir("a") / "access.db"),
                    "bootstrap_access_model": {
                        "users": [{"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True}],
                        "scope_access": [],
                    },
                },
            },
            "monitoring": {"prometheus": None},
        }

    def agent_config(self, host: str) -> dict[str, Any]:
        return {
            "kvclient": {"instance_key": f"agent-{host}", "fluxonkv_spec": self.spec(host)},
            "fluxon_fs": {
                "master": {"instance_key": MASTER_KEY},
                "service_secret_file": str(self.service_secret(host)),
                "agent": {
                    "exports": {EXPORTS[host]: {"root_dir_abs": str(self.export_dir(host))}},
                    "session_idle_timeout_s": 30,
                },
            },
        }

    def signal_role(self, label: str, signum: int = signal.SIGKILL) -> int:
        """Send ``signum`` to a role and reap it; returns its exit status."""
        proc = self.roles[label]
        proc.send_signal(signum)
        return proc.wait(30)

    def restart_role(self, label: str) -> ReadyInfo:
        """Start a role again with the config it had (after it stopped)."""
        module, role, config, host = self.configs[label]
        assert self.roles[label].poll() is not None, f"{label} still runs"
        self.start_role(label, module, role, config, host)
        self._wait(label)
        return self.ready[label]

    # -- clients --------------------------------------------------------------------------------------

    def worker(self, host: str, name: str, *, attach: bool = True, mount: bool = False) -> Worker:
        """A worker process on ``host``, attached to its owner as ``name`` (and mounting every export)."""
        worker = Worker(self.lab[host], name, self.dir(host, "log") / f"{name}.log")
        self.workers.append(worker)
        if attach or mount:
            worker.call("attach", config={"instance_key": name, "fluxonkv_spec": self.spec(host)})
        if mount:
            mounts = {export: str(self.mount_dir(host, name, export)) for export in EXPORTS.values()}
            worker.call("mount", section=self.mount_section(), identity=list(ADMIN), mounts=mounts)
        return worker

    def mount_dir(self, host: str, worker: str, export: str) -> Path:
        """Where ``worker`` on ``host`` mounts ``export`` (not created: the patcher makes it)."""
        return self.dir(host, "mnt", worker) / export

    def agent_ops(self, host: str, via: Worker) -> dict[str, int]:
        """Operations agent-<host> served so far, by op (its Prometheus endpoint, read from its host)."""
        url = self.ready[f"agent-{host}"].fields["metrics"]
        text = via.call("http_get", url=url)
        counts: dict[str, int] = {}
        for op, _result, value in re.findall(
            r'^fluxon_fs_ops_total\{op="(\w+)",result="(\w+)"\} ([0-9.e+]+)$', text, re.M
        ):
            counts[op] = counts.get(op, 0) + int(float(value))
        return counts

    def close(self) -> None:
        """Stop workers and roles (reverse order), etcd, then remove the directories."""
        for worker in self.workers:
            worker.close()
        for proc in reversed(list(self.roles.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.etcd.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.shm_root, ignore_errors=True)


@contextmanager
def netns_cluster() -> Iterator[NetnsCluster]:
    """A lab of three hosts with the deployment started; everything removed at the end."""
    with NetnsLab(("a", "b", "c")) as lab:
        cluster = NetnsCluster(lab)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> float:
    """Poll ``predicate()`` until truthy; returns the seconds it took (AssertionError on timeout)."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout_s:
        try:
            last = predicate()
            if last:
                return time.monotonic() - started
        except Exception as exc:  # retried until the deadline
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last!r})")
