"""A client process a test drives inside a lab host: ``python -m tests.support.netns_worker``.

It reads one JSON request per line on stdin, ``{"id": N, "op": NAME, "args": {...}}``, runs each in
its own thread and writes ``{"id": N, "ok": RESULT}`` or ``{"id": N, "error": {"type", "message",
"errno"}}`` on stdout. The ops attach a store to the host's owner, mount exports through the public
patcher, read and write files through the mount, put and get KV values, call the fs master and fetch
a URL — everything a test on another host needs, in a process of that host.

:class:`Worker` (in :mod:`tests.support.netns_cluster`) is the test side.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

from fluxon_core.kv import KvClient, new_store
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import ExportSnapshotQuery, Login
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher
from fluxon_fs.patcher.mount_table import process_mount_table
from fluxon_fs.transfer.jobs import JobSpec

MiB = 1024 * 1024
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def settle_cache() -> None:
    """Wait until what this process read is in its host's pool (mounts fill it in the background), so
    a process started next finds it there."""
    for export in process_mount_table().exports().values():
        export.piece_cache.flush(30)


def content(size: int, seed: int) -> bytes:
    """The deterministic bytes of a test file (the test side computes the same)."""
    return random.Random(seed).randbytes(size)


class WorkerState:
    """What the ops of one worker process share."""

    def __init__(self) -> None:
        self.store: KvClient | None = None
        self.patcher: FluxonFsPatcher | None = None
        self.read_progress = 0

    def need_store(self) -> KvClient:
        if self.store is None:
            raise RuntimeError("attach first")
        return self.store

    # -- ops ----------------------------------------------------------------------------------------

    def attach(self, config: dict[str, Any]) -> dict[str, Any]:
        self.store = new_store(config).unwrap("new_store failed")
        return {"endpoint": self.store.endpoint()}

    def mount(self, section: dict[str, Any], identity: list[str], mounts: dict[str, str]) -> dict[str, Any]:
        patcher = FluxonFsPatcher(self.need_store())
        patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": section["master"]}}))
        patcher.set_cache_config_yaml(json.dumps({"fluxon_fs": section}))
        patcher.set_request_identity(*identity)
        patcher.install()
        for export_name, mount_dir in mounts.items():
            patcher.mount_remote_dir(local_mount_dir_abs=mount_dir, export_name=export_name)
        self.patcher = patcher
        return {}

    def write_file(self, path: str, size: int, seed: int) -> dict[str, Any]:
        data = content(size, seed)
        with open(path, "wb") as handle:
            for start in range(0, size, MiB):
                handle.write(data[start : start + MiB])
        return {"size": size, "sha256": hashlib.sha256(data).hexdigest()}

    def read_file(self, path: str, chunk: int = MiB, pause_s: float = 0.0) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        self.read_progress = 0
        started = time.monotonic()
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
                size += len(block)
                self.read_progress = size
                if pause_s:
                    time.sleep(pause_s)
        settle_cache()
        return {"size": size, "sha256": digest.hexdigest(), "seconds": time.monotonic() - started}

    def read_files(self, paths: list[str]) -> dict[str, Any]:
        """Read each file once with ``open().read()`` (no hashing: benchmarks time this)."""
        size = 0
        started = time.perf_counter()
        for path in paths:
            with open(path, "rb") as handle:
                size += len(handle.read())
        return {"files": len(paths), "size": size, "seconds": time.perf_counter() - started}

    def progress(self) -> int:
        return self.read_progress

    def kv_put(self, key: str, size: int, seed: int) -> dict[str, Any]:
        data = content(size, seed)
        self.need_store().put_blocking(key, {"data": data}).unwrap("put failed")
        return {"sha256": hashlib.sha256(data).hexdigest()}

    def kv_get(self, key: str) -> dict[str, Any]:
        holder = self.need_store().get_blocking(key).unwrap("get failed")
        data = bytes(holder.access()["data"])  # type: ignore[arg-type]
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def master_login(self, master: str, identity: list[str], timeout_ms: float = 10_000) -> dict[str, Any]:
        started = time.monotonic()
        FsMasterLink(self.need_store(), master).login(Login(*identity), timeout_ms=timeout_ms)
        return {"seconds": time.monotonic() - started}

    def snapshot(self, master: str) -> dict[str, Any]:
        reply = FsMasterLink(self.need_store(), master).export_snapshot(ExportSnapshotQuery())
        return {name: [agent.endpoint for agent in export.agents] for name, export in (reply.exports or {}).items()}

    def transfer(
        self, master: str, identity: list[str], spec: dict[str, Any], job_timeout_s: float, poll_s: float = 0.2
    ) -> dict[str, Any]:
        client = TransferClient(self.need_store(), master, *identity)
        job_id = client.create_job(JobSpec(**spec))
        return client.wait(job_id, timeout_s=job_timeout_s, poll_s=poll_s)

    def status(self) -> dict[str, Any]:
        return self.need_store().cluster_status().unwrap("status")

    def http_get(self, url: str) -> str:
        with _NO_PROXY.open(url, timeout=10) as reply:
            return str(reply.read().decode())

    def close(self) -> dict[str, Any]:
        if self.patcher is not None:
            self.patcher.uninstall()
        if self.store is not None:
            self.store.close()
        return {}


def _serve(state: WorkerState, request: dict[str, Any], write: Callable[[dict[str, Any]], None]) -> None:
    try:
        op = getattr(state, request["op"])
        write({"id": request["id"], "ok": op(**request.get("args", {}))})
    except BaseException as exc:  # every failure goes back to the test, typed
        write(
            {
                "id": request["id"],
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "errno": getattr(exc, "errno", None),
                    "traceback": traceback.format_exc(),
                },
            }
        )


def main() -> int:
    """Serve requests until stdin closes."""
    state = WorkerState()
    lock = threading.Lock()
    out = sys.stdout

    def write(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message, default=str) + "\n")
            out.flush()

    write({"id": 0, "ok": "ready"})
    for line in sys.stdin:
        if line.strip():
            request = json.loads(line)
            threading.Thread(target=_serve, args=(state, request, write), daemon=True).start()
    state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
