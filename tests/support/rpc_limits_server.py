"""An RPC server in a child process, for tests that measure what attacks cost a real server process.

Run as ``python -m tests.support.rpc_limits_server '<zmq options as JSON>'``: binds
``tcp://127.0.0.1:0`` with a transport built from those options, prints the endpoint on one line and
serves until its stdin closes. Every call must carry :data:`TOKEN` as its auth. Handlers:

* ``/echo`` — the request's meta back, plus ``nbytes``: the bytes of its bulk frames;
* ``/slow`` — sleeps ``meta["sleep_s"]`` (at most 2 s) first (so the server hands the path to its worker pool);
* ``/stats`` — ``connections``, ``max_connections`` and ``queued_calls`` of this server, and
  ``running_slow``: the ``/slow`` handlers running now.

Use :class:`LimitedServerProcess` from the test side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.rpc_types import RpcCall, RpcMessage

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "good-token"
WORKER_THREADS = 3


def _authenticate(call: RpcCall) -> None:
    if call.auth != TOKEN:
        raise PermissionDeniedError(f"RPC {call.path} refused: bad token")


def serve(options: dict[str, Any]) -> None:
    """Serve until stdin closes (the parent went away or closed it)."""
    from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
    from fluxon_plugins.zmq_transport.transport import ZmqTransport

    transport = ZmqTransport(ZmqTransportConfig(**options))
    server = transport.bind_server("tcp://127.0.0.1:0", worker_threads=WORKER_THREADS, authenticate=_authenticate)

    def echo(call: RpcCall) -> RpcMessage:
        nbytes = sum(memoryview(f).nbytes for f in call.message.frames)
        return RpcMessage(meta=dict(call.message.meta, nbytes=nbytes))

    running = [0]  # /slow handlers running now
    lock = threading.Lock()

    def slow(call: RpcCall) -> RpcMessage:
        with lock:
            running[0] += 1
        try:
            time.sleep(min(float(call.message.meta.get("sleep_s", 0.1)), 2.0))  # fuzzed metas stay harmless
        finally:
            with lock:
                running[0] -= 1
        return RpcMessage(meta={"slept": True})

    def stats(call: RpcCall) -> RpcMessage:
        return RpcMessage(
            meta={
                "connections": server.connections,
                "max_connections": server.max_connections,
                "queued_calls": server.queued_calls,
                "running_slow": running[0],
            }
        )

    server.register("/echo", echo)
    server.register("/slow", slow)
    server.register("/stats", stats)
    print(server.endpoint, flush=True)
    sys.stdin.read()
    transport.close()


class LimitedServerProcess:
    """The child server: its ``endpoint``, ``pid``, resident memory and open descriptors."""

    def __init__(self, **options: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.rpc_limits_server", json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint:
            self.proc.kill()
            raise RuntimeError(f"the limited RPC server did not start (exit status {self.proc.wait()})")
        self.pid = self.proc.pid

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident set size of the child now."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line")

    def open_fds(self) -> int:
        """Descriptors the child holds now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> None:
        """Close its stdin, wait, kill if it lingers."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
