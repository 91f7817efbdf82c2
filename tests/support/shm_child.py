"""A pool process driven by JSON lines on stdin, for tests that need a real second process.

Run as ``python -m tests.support.shm_child``; every request line ``{"op": ..., ...}`` gets one
reply line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Use :class:`ShmChild`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fluxon_plugins.shm_cache import ShmCacheConfig, ShmPoolOwner, ShmPoolReader
from tests.support.shm_values import make_value, value_seed

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Session:
    def __init__(self) -> None:
        self.pool: ShmPoolOwner | ShmPoolReader | None = None
        self.held: list[memoryview] = []
        self.keep: list[Any] = []

    def handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "owner":
            self.pool = ShmPoolOwner(ShmCacheConfig(path=args["path"], capacity=args["capacity"]))
            return {"pid": os.getpid()}
        if op == "reader":
            self.pool = ShmPoolReader(ShmCacheConfig(path=args["path"], role="reader"))
            return {"pid": os.getpid()}
        pool = self.pool
        assert pool is not None, "create the owner or reader first"
        if op == "put":
            assert isinstance(pool, ShmPoolOwner)
            pool.put(args["key"], [make_value(args["seed"], args["size"])])
            return {}
        if op == "check":
            view = pool.get(args["key"])
            return {"seed": None if view is None else value_seed(view)}
        if op == "read_into":
            buffer = bytearray(args["size"])
            count = pool.read_into(args["key"], buffer)
            return {"seed": None if count is None else value_seed(memoryview(buffer)[:count])}
        if op == "hold":
            view = pool.get(args["key"])
            assert view is not None, f"{args['key']} is absent"
            self.held.append(view)
            return {"seed": value_seed(view)}
        if op == "check_held":
            return {"seeds": [value_seed(view) for view in self.held]}
        if op == "stage":
            assert isinstance(pool, ShmPoolReader)
            staged = pool.stage(args["key"], [make_value(args["seed"], args["size"])])
            self.keep.append(staged)
            return {"token": staged.token}
        if op == "begin_write":
            data = make_value(args["seed"], args["size"])
            writer = pool.open_writer(args["key"], len(data))
            writer.write(data[: args["written"]])
            self.keep.append(writer)
            return {}
        if op == "touch":
            assert isinstance(pool, ShmPoolReader)
            assert pool.get(args["key"]) is not None, f"{args['key']} is absent"
            pool.flush_touches()
            return {}
        if op == "read_loop":
            return self.read_loop(pool, args["key"], args["distinct"], args["timeout_s"])
        if op == "stats":
            return {"stats": pool.stats()}
        raise ValueError(f"unknown op {op!r}")

    @staticmethod
    def read_loop(pool: ShmPoolOwner | ShmPoolReader, key: str, distinct: int, timeout_s: float) -> dict[str, Any]:
        """Read ``key`` until ``distinct`` different values were seen, checking every one."""
        seen: set[int] = set()
        reads = 0
        deadline = time.monotonic() + timeout_s
        while len(seen) < distinct and time.monotonic() < deadline:
            view = pool.get(key)
            if view is not None:
                seen.add(value_seed(view))
                reads += 1
        return {"reads": reads, "distinct": len(seen)}


def main() -> None:
    """Serve requests until stdin closes or an ``exit`` op arrives."""
    session = _Session()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "exit":
            break
        try:
            reply = {"ok": True, **session.handle(op, request)}
        except Exception as exc:  # reported to the parent, which fails the test with it
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class ShmChild:
    """A :mod:`tests.support.shm_child` process; :meth:`call` sends one request and returns its reply."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.shm_child"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request and wait for its reply; a failed request raises AssertionError."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"shm child exited with {self.proc.wait()} during {op!r}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise AssertionError(f"shm child {op!r} failed: {reply['error']}")
        return reply

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        """Ask the child to exit; kill it if it does not within 10 s."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write('{"op": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()
