"""RPC benchmarks: Fluxon's zmq transport against raw pyzmq, side by side in one run.

Both servers run in their own child process (as real roles do), so client and server do not share
a GIL. Calls to the two servers alternate in short blocks so drift in machine load hits both
equally; each figure is the median over all calls.

* small call: round-trip latency of a tiny request/reply — raw ``REQ``/``REP`` vs ``RpcClient.call``.
* 8 MiB download / upload: one call moving 8 MiB in the reply / request — raw zero-copy
  (``copy=False``) send and receive vs an RPC whose bulk frame travels zero-copy.

Run ``python -m benchmarks.bench_rpc serve-raw|serve-fluxon ENDPOINT`` to start a server by hand.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import zmq

from benchmarks.rows import result_row
from fluxon_core.rpc import default_transport
from fluxon_core.rpc_types import RpcCall, RpcMessage

BIG = 8 * 1024 * 1024
SMALL_PAYLOAD = b"x" * 16
LATENCY_TARGET = 1.5
THROUGHPUT_TARGET = 0.8


def serve_raw(endpoint: str) -> None:
    """Raw pyzmq REP server: ``big`` → 8 MiB zero-copy reply, ``put`` + data → ``ok``, else echo."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.bind(endpoint)
    big = bytes(BIG)
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    while True:
        parts = sock.recv_multipart(copy=False)
        op = parts[0].bytes
        if op == b"big":
            sock.send(big, copy=False)
        elif op == b"put":
            sock.send(b"ok")
        else:
            sock.send(op)


def serve_fluxon(endpoint: str) -> None:
    """Fluxon RPC server with ``/echo``, ``/big`` (8 MiB reply) and ``/put`` (accepts bulk) handlers."""
    big = bytes(BIG)
    server = default_transport().bind_server(endpoint)
    server.register("/echo", lambda call: RpcMessage(meta=call.message.meta))
    server.register("/big", lambda call: RpcMessage(frames=(big,)))

    def put(call: RpcCall) -> RpcMessage:
        return RpcMessage(meta={"bytes": sum(len(f) for f in call.message.frames)})

    server.register("/put", put)
    print(server.endpoint, flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin


def _start(kind: str, endpoint: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_rpc", kind, endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError(f"benchmark server {kind} did not start")
    return proc, line


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


@attrs.frozen
class Paired:
    """Two operations timed side by side: overall medians and the median of per-round ratios."""

    median_a_s: float
    median_b_s: float
    ratio_a_over_b: float


def _paired(a: Callable[[], Any], b: Callable[[], Any], rounds: int, per_round: int) -> Paired:
    """Time ``a`` and ``b`` in alternating blocks of ``per_round`` calls (which goes first alternates too).

    The ratio is the median over rounds of (median time of ``a``) / (median time of ``b``) within
    the round, so load that drifts over the run affects both sides of each ratio alike.
    """
    for _ in range(max(2, per_round // 4)):  # warm-up: connections, caches, allocator
        a()
        b()
    all_a: list[float] = []
    all_b: list[float] = []
    ratios: list[float] = []
    for round_no in range(rounds):
        block: dict[str, list[float]] = {"a": [], "b": []}
        order = (("a", a), ("b", b)) if round_no % 2 == 0 else (("b", b), ("a", a))
        for name, fn in order:
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                block[name].append(time.perf_counter() - start)
        ratios.append(statistics.median(block["a"]) / statistics.median(block["b"]))
        all_a += block["a"]
        all_b += block["b"]
    return Paired(statistics.median(all_a), statistics.median(all_b), statistics.median(ratios))


def _row(scenario: str, fluxon: float, baseline: float, ratio: float, unit: str, note: str) -> dict[str, Any]:
    if unit == "us":  # latency: lower is better
        target, met = f"<= {LATENCY_TARGET}x", ratio <= LATENCY_TARGET
    else:
        target, met = f">= {THROUGHPUT_TARGET}x", ratio >= THROUGHPUT_TARGET
    return result_row(scenario, fluxon, baseline, unit, target, met, note, ratio=ratio)


def run(quick: bool) -> list[dict[str, Any]]:
    """Small-call latency over tcp and ipc, 8 MiB download and upload throughput over tcp."""
    rounds = 15 if quick else 40
    small_calls = 100 if quick else 250
    big_calls = 2 if quick else 3
    rows: list[dict[str, Any]] = []
    ipc_dir = tempfile.mkdtemp(prefix="fxb", dir="/tmp")
    context = zmq.Context()
    client = default_transport().new_client()
    procs: list[subprocess.Popen[str]] = []
    big = bytes(BIG)
    try:
        for scheme, raw_bind, fluxon_bind in (
            ("tcp", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"),
            ("ipc", f"ipc://{ipc_dir}/raw", f"ipc://{ipc_dir}/fluxon"),
        ):
            raw_proc, raw_ep = _start("serve-raw", raw_bind)
            fluxon_proc, fluxon_ep = _start("serve-fluxon", fluxon_bind)
            procs += [raw_proc, fluxon_proc]
            req = context.socket(zmq.REQ)
            req.connect(raw_ep)

            def raw_small(req: zmq.Socket = req) -> None:
                req.send(SMALL_PAYLOAD)
                req.recv()

            def fluxon_small(ep: str = fluxon_ep) -> None:
                client.call(ep, "/echo", RpcMessage(meta={"k": "x" * 16}))

            pair = _paired(fluxon_small, raw_small, rounds, small_calls)
            rows.append(
                _row(
                    f"small call latency ({scheme})",
                    pair.median_a_s * 1e6,
                    pair.median_b_s * 1e6,
                    pair.ratio_a_over_b,
                    "us",
                    "vs raw pyzmq REQ/REP round trip; servers in child processes",
                )
            )
            if scheme == "tcp":

                def raw_down(req: zmq.Socket = req) -> None:
                    req.send(b"big")
                    assert len(req.recv(copy=False)) == BIG

                def fluxon_down(ep: str = fluxon_ep) -> None:
                    assert len(client.call(ep, "/big", RpcMessage()).frames[0]) == BIG

                def raw_up(req: zmq.Socket = req) -> None:
                    req.send_multipart([b"put", big], copy=False)
                    req.recv()

                def fluxon_up(ep: str = fluxon_ep) -> None:
                    client.call(ep, "/put", RpcMessage(frames=(big,)))

                for label, fl_fn, raw_fn in (("download", fluxon_down, raw_down), ("upload", fluxon_up, raw_up)):
                    pair = _paired(fl_fn, raw_fn, rounds, big_calls)
                    rows.append(
                        _row(
                            f"8 MiB {label} throughput (tcp)",
                            BIG / pair.median_a_s / 1e6,
                            BIG / pair.median_b_s / 1e6,
                            1 / pair.ratio_a_over_b,
                            "MB/s",
                            "vs raw pyzmq REQ/REP, both zero-copy (copy=False)",
                        )
                    )
            req.close(linger=0)
            _stop(raw_proc)
            _stop(fluxon_proc)
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
        client.close()
        context.term()
        shutil.rmtree(ipc_dir, ignore_errors=True)
    return rows


def main(argv: list[str]) -> int:
    """``serve-raw ENDPOINT`` / ``serve-fluxon ENDPOINT``: run a benchmark server in this process."""
    if len(argv) != 2 or argv[0] not in ("serve-raw", "serve-fluxon"):
        print("usage: python -m benchmarks.bench_rpc serve-raw|serve-fluxon ENDPOINT", file=sys.stderr)
        return 2
    (serve_raw if argv[0] == "serve-raw" else serve_fluxon)(argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
