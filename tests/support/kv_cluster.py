"""A real KV plane for tests: a kv master process, owner processes and in-process external clients.

"Hosts" are simulated on one machine by giving each owner its own shared paths
(``/dev/shm/<root>/<host>`` for the pool, ``<root>/<host>`` for ``shared.json``), exactly like two
machines that each have their own ``/dev/shm``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fluxon_core.kv import KvClient, new_store
from fluxon_core.runtime import RoleProcess, start_kv_master_process, start_owner_kvclient_process
from fluxon_core.runtime.readiness import ReadyInfo

# Short leases keep "member death drops its routes" tests fast (etcd rounds TTLs up to whole seconds).
TEST_LEASE_TTL_MS = 1500
TEST_RPC_TIMEOUT_MS = 3000


class KvCluster:
    """One test cluster; ``coordination`` is None (local) or an etcd endpoint ``host:port``."""

    def __init__(self, etcd_endpoint: str | None = None, lease_ttl_ms: int = TEST_LEASE_TTL_MS) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fx", dir="/tmp"))
        self.shm_root = Path("/dev/shm") / self.root.name
        self.cluster_name = f"c{uuid.uuid4().hex[:10]}"
        self.secret_file = self.root / "cluster.secret"
        self.etcd_endpoint = etcd_endpoint
        self.lease_ttl_ms = lease_ttl_ms
        self.master: RoleProcess | None = None
        self.master_ready: ReadyInfo | None = None
        self.owners: dict[str, RoleProcess] = {}
        self.owner_ready: dict[str, ReadyInfo] = {}
        self.clients: list[KvClient] = []

    # -- configs ----------------------------------------------------------------------------------

    def master_config(self, **overrides: Any) -> dict[str, Any]:
        """The kv master's config dict."""
        config: dict[str, Any] = {
            "instance_key": "master",
            "cluster_name": self.cluster_name,
            "member_lease_ttl_ms": self.lease_ttl_ms,
            "holder_call_timeout_ms": 2000,
            "cluster_secret_file": str(self.secret_file),
        }
        if self.etcd_endpoint is not None:
            config["coordination"] = {"kind": "etcd", "etcd": {"endpoints": [self.etcd_endpoint]}}
        config.update(overrides)
        return config

    def spec(self, host: str, **overrides: Any) -> dict[str, Any]:
        """``fluxonkv_spec`` of a process on ``host`` (external client keys only)."""
        spec: dict[str, Any] = {
            "cluster_name": self.cluster_name,
            "shared_memory_path": str(self.shm_root / host),
            "shared_file_path": str(self.root / host),
            "rpc_timeout_ms": TEST_RPC_TIMEOUT_MS,
            "attach_timeout_ms": 5000,
        }
        spec.update(overrides)
        return spec

    def owner_config(
        self,
        instance_key: str,
        host: str,
        dram: int | str = "64MiB",
        *,
        client_fields: Mapping[str, Any] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """An owner's ``FluxonKvClientConfig`` dict; ``client_fields`` adds top-level keys (``pool``, ``transport``)."""
        owner_spec = self.spec(host, **spec)
        if self.etcd_endpoint is not None:
            owner_spec.setdefault("etcd_addresses", [self.etcd_endpoint])
        else:
            assert self.master_ready is not None, "start the master first"
            owner_spec.setdefault("master_address", self.master_ready.endpoint)
            owner_spec.setdefault("cluster_secret_file", str(self.secret_file))
        return {
            "instance_key": instance_key,
            "contribute_to_cluster_pool_size": {"dram": dram},
            "fluxonkv_spec": owner_spec,
            **(client_fields or {}),
        }

    def external_config(
        self, instance_key: str, host: str, *, client_fields: Mapping[str, Any] | None = None, **spec: Any
    ) -> dict[str, Any]:
        """An external client's config dict; ``client_fields`` adds top-level keys (``pool``, ``transport``)."""
        return {"instance_key": instance_key, "fluxonkv_spec": self.spec(host, **spec), **(client_fields or {})}

    # -- processes --------------------------------------------------------------------------------

    def start_master(self, **overrides: Any) -> ReadyInfo:
        """Start the kv master process and wait for its readiness line."""
        self.master = start_kv_master_process(self.master_config(**overrides), workdir=self.root / "master")
        self.master_ready = self.master.wait_ready(30)
        return self.master_ready

    def restart_master(self, **overrides: Any) -> ReadyInfo:
        """Stop the master cleanly and start a new generation with the same config."""
        assert self.master is not None
        self.master.terminate()
        self.master.wait(15)
        return self.start_master(**overrides)

    def start_owner(
        self,
        instance_key: str,
        host: str,
        dram: int | str = "64MiB",
        *,
        client_fields: Mapping[str, Any] | None = None,
        **spec: Any,
    ) -> ReadyInfo:
        """Start an owner process on ``host`` and wait until it is ready."""
        proc = start_owner_kvclient_process(
            self.owner_config(instance_key, host, dram, client_fields=client_fields, **spec),
            workdir=self.root / f"owner-{instance_key}",
        )
        self.owners[instance_key] = proc
        ready = proc.wait_ready(30)
        self.owner_ready[instance_key] = ready
        return ready

    def kill_owner(self, instance_key: str) -> None:
        """SIGKILL an owner and reap it."""
        proc = self.owners.pop(instance_key)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_owner(self, instance_key: str) -> int:
        """SIGTERM an owner (clean stop) and return its exit status."""
        proc = self.owners.pop(instance_key)
        proc.terminate()
        return proc.wait(15)

    def external(
        self, instance_key: str, host: str, *, client_fields: Mapping[str, Any] | None = None, **spec: Any
    ) -> KvClient:
        """An in-process external client on ``host`` (closed by :meth:`close`)."""
        config = self.external_config(instance_key, host, client_fields=client_fields, **spec)
        client = new_store(config).unwrap("new_store failed")
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Close clients, stop owners then the master, remove the directories."""
        for client in self.clients:
            client.close()
        for proc in [*self.owners.values(), *([self.master] if self.master else [])]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except Exception:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.shm_root, ignore_errors=True)


@contextlib.contextmanager
def kv_cluster(etcd_endpoint: str | None = None, **kwargs: Any) -> Iterator[KvCluster]:
    """A :class:`KvCluster` closed at the end of the block."""
    cluster = KvCluster(etcd_endpoint, **kwargs)
    try:
        yield cluster
    finally:
        cluster.close()
