"""The ``zmq`` transport over real sockets: addressing, deadlines, typed errors, bulk frames, concurrency, shutdown."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from fluxon_core.addresses import primary_host_address
from fluxon_core.config import BackendConfig, ConfigError, load_config
from fluxon_core.config.fields import config_field
from fluxon_core.errors import (
    ApiTimeoutError,
    InvalidArgumentError,
    KeyNotFoundError,
    NetworkError,
    PermissionDeniedError,
    RemoteHandlerError,
    StoreClosedError,
    UnknownPathError,
)
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import RpcClient, RpcServer, Transport
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.transport import ZmqTransport
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def echo(call: RpcCall) -> RpcMessage:
    """Reply with the request's meta (plus who called) and the same bulk frames."""
    meta = dict(call.message.meta, caller=call.caller, auth=call.auth)
    return RpcMessage(meta=meta, frames=call.message.frames)


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="fx", dir="/tmp")  # AF_UNIX paths are limited to 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def transport(ipc_dir: str) -> Iterator[ZmqTransport]:
    """A transport closed at teardown (before ``ipc_dir`` goes: a server's socket file must outlive it)."""
    transport = ZmqTransport()
    yield transport
    transport.close()


@pytest.fixture
def server(transport: ZmqTransport) -> RpcServer:
    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/echo", echo)
    return server


@pytest.fixture
def client(transport: ZmqTransport) -> RpcClient:
    return transport.new_client()


def unused_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def non_loopback_ipv4() -> str | None:
    """This host's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def call_in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    """Run ``fn`` in a thread; its result or exception lands in the returned dict."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# --- registration and configuration ---------------------------------------------------------------


def test_plugin_provides_zmq_transport_with_options() -> None:
    entry = get_backends().entry("transport", "zmq")
    assert entry.plugin == "zmq_transport"
    assert entry.config_type is ZmqTransportConfig
    transport = get_backends().create("transport", "zmq", ZmqTransportConfig(io_threads=2))
    try:
        assert isinstance(transport, Transport)
        assert transport.config.io_threads == 2
    finally:
        transport.close()


def test_transport_options_are_parsed_strictly() -> None:
    import attrs

    @attrs.frozen
    class Holder:
        transport: BackendConfig = config_field(doc="rpc", backend="transport")

    parsed = load_config(Holder, {"transport": {"kind": "zmq", "zmq": {"zero_copy_min_bytes": "1MiB"}}})
    assert parsed.transport.options.zero_copy_min_bytes == MiB
    with pytest.raises(ConfigError, match=r"transport\.zmq\.io_threads must be > 0"):
        load_config(Holder, {"transport": {"kind": "zmq", "zmq": {"io_threads": 0}}})


# --- addressing -----------------------------------------------------------------------------------


def test_tcp_call_reaches_the_handler_by_path(server: RpcServer, client: RpcClient) -> None:
    assert server.endpoint.startswith("tcp://127.0.0.1:")
    assert not server.endpoint.endswith(":0")
    server.register("/other", lambda call: RpcMessage(meta={"served_by": "other"}))
    reply = client.call(server.endpoint, "/echo", RpcMessage(meta={"n": 1}), caller="node-a", auth="tok")
    assert reply.meta == {"n": 1, "caller": "node-a", "auth": "tok"}
    assert client.call(server.endpoint, "/other", RpcMessage()).meta == {"served_by": "other"}


def test_ipc_call_on_one_host(transport: ZmqTransport, client: RpcClient, ipc_dir: str) -> None:
    server = transport.bind_server(f"ipc://{ipc_dir}/rpc.sock")
    server.register("/echo", echo)
    assert server.endpoint == f"ipc://{ipc_dir}/rpc.sock"
    reply = client.call(server.endpoint, "/echo", RpcMessage(meta={"via": "ipc"}, frames=(b"abc",)))
    assert reply.meta["via"] == "ipc"
    assert bytes(reply.frames[0]) == b"abc"


def test_wildcard_bind_reports_a_connectable_endpoint(client: RpcClient) -> None:
    plain = ZmqTransport()
    advertised = ZmqTransport(ZmqTransportConfig(advertise_host="fluxon-node-7.example"))
    try:
        server = plain.bind_server("tcp://0.0.0.0:0")
        server.register("/echo", echo)
        assert server.endpoint.startswith(f"tcp://{primary_host_address()}:")  # the default advertise_host
        assert client.call(server.endpoint, "/echo", RpcMessage(meta={"w": 1})).meta["w"] == 1
        other = advertised.bind_server("tcp://*:0")
        port = other.endpoint.rsplit(":", 1)[1]
        assert other.endpoint == f"tcp://fluxon-node-7.example:{port}"
    finally:
        plain.close()
        advertised.close()


SERVER_SCRIPT = """
import sys
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.transport import ZmqTransport
from fluxon_core.rpc_types import RpcMessage

transport = ZmqTransport(ZmqTransportConfig(advertise_host=sys.argv[1]))
server = transport.bind_server("tcp://0.0.0.0:0")
server.register("/whoami", lambda call: RpcMessage(meta={"pid": __import__("os").getpid(), "got": len(call.message.frames[0])}, frames=(bytes(3 * 1024 * 1024),)))
print(server.endpoint, flush=True)
sys.stdin.read()
server.close()
transport.close()
"""


def test_tcp_to_a_server_process_on_the_host_address(client: RpcClient) -> None:
    host = non_loopback_ipv4()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to stand in for another host")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, host], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith(f"tcp://{host}:")
        reply = client.call(endpoint, "/whoami", RpcMessage(frames=(bytes(MiB),)), timeout_s=10)
        assert reply.meta == {"pid": proc.pid, "got": MiB}
        assert len(reply.frames[0]) == 3 * MiB
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


# --- bulk frames ----------------------------------------------------------------------------------


def test_large_frames_travel_zero_copy_and_small_ones_as_bytes(transport: ZmqTransport, client: RpcClient) -> None:
    seen: dict[str, object] = {}

    def inspect(call: RpcCall) -> RpcMessage:
        big, small = call.message.frames
        seen["big_type"], seen["big_owner"], seen["small_type"] = type(big), type(big.obj), type(small)  # type: ignore[union-attr]
        return RpcMessage(meta={"sum": sum(bytes(big[:16]))}, frames=(big, small, bytearray(b"tail")))

    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/inspect", inspect)
    payload = os.urandom(8 * MiB)
    reply = client.call(server.endpoint, "/inspect", RpcMessage(frames=(payload, b"small")))
    # Received large frames are views of the zmq message itself: nothing re-encoded or copied.
    assert seen == {"big_type": memoryview, "big_owner": zmq.Frame, "small_type": bytes}
    big, small, tail = reply.frames
    assert isinstance(big, memoryview) and isinstance(big.obj, zmq.Frame)
    assert big == payload
    assert (small, tail) == (b"small", b"tail")


def test_meta_must_be_json(server: RpcServer, client: RpcClient) -> None:
    with pytest.raises(InvalidArgumentError, match="not JSON"):
        client.call(server.endpoint, "/echo", RpcMessage(meta={"x": object()}))


# --- deadlines --------------------------------------------------------------------------------------


def test_deadline_travels_to_the_handler(transport: ZmqTransport, client: RpcClient) -> None:
    remaining: list[float] = []

    def measure(call: RpcCall) -> RpcMessage:
        remaining.append(call.deadline_monotonic - time.monotonic())
        return RpcMessage()

    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/measure", measure)
    client.call(server.endpoint, "/measure", RpcMessage(), timeout_s=3.0)
    client.call(server.endpoint, "/measure", RpcMessage())
    assert 2.0 < remaining[0] <= 3.0
    assert 9.0 < remaining[1] <= 10.0  # the default deadline is 10 s


def test_timeout_is_typed_and_a_late_reply_never_answers_a_later_call(transport: ZmqTransport) -> None:
    # One server thread: the slow call and the next one are served in order, so the late reply
    # is certain to reach the client before the reply to the next call.
    server = transport.bind_server("tcp://127.0.0.1:0", worker_threads=1)
    release = threading.Event()

    def slow(call: RpcCall) -> RpcMessage:
        release.wait(10)
        return RpcMessage(meta={"answer": "late"})

    server.register("/slow", slow)
    server.register("/echo", echo)
    client = transport.new_client()
    started = time.monotonic()
    with pytest.raises(ApiTimeoutError, match="/slow"):
        client.call(server.endpoint, "/slow", RpcMessage(), timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    release.set()
    for i in range(3):
        assert client.call(server.endpoint, "/echo", RpcMessage(meta={"i": i}), timeout_s=5).meta["i"] == i


def test_nothing_listening_fails_within_the_timeout(client: RpcClient, ipc_dir: str) -> None:
    for endpoint in (unused_tcp_endpoint(), f"ipc://{ipc_dir}/nobody.sock"):
        started = time.monotonic()
        with pytest.raises((NetworkError, ApiTimeoutError)):
            client.call(endpoint, "/echo", RpcMessage(), timeout_s=0.5)
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan")])
def test_timeout_must_be_positive(server: RpcServer, client: RpcClient, timeout_s: float) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout_s"):
        client.call(server.endpoint, "/echo", RpcMessage(), timeout_s=timeout_s)


def test_malformed_endpoint_is_a_network_error(client: RpcClient) -> None:
    with pytest.raises(NetworkError, match="nonsense"):
        client.call("nonsense://where", "/echo", RpcMessage(), timeout_s=1)


HANGING_SERVER_SCRIPT = """
import sys, threading
from fluxon_plugins.zmq_transport.transport import ZmqTransport
from fluxon_core.rpc_types import RpcMessage

def hang(call):
    print("entered", flush=True)
    threading.Event().wait()

server = ZmqTransport().bind_server("tcp://127.0.0.1:0")
server.register("/hang", hang)
print(server.endpoint, flush=True)
sys.stdin.read()
"""


def test_server_process_dying_mid_call_gives_a_timeout(client: RpcClient) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        started = time.monotonic()
        thread, outcome = call_in_thread(lambda: client.call(endpoint, "/hang", RpcMessage(), timeout_s=1.0))
        assert proc.stdout.readline().strip() == "entered"
        proc.kill()
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), ApiTimeoutError)
        assert time.monotonic() - started < 3.0
    finally:
        proc.kill()
        proc.wait()


def test_a_call_whose_server_dies_fails_long_before_its_deadline(client: RpcClient) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        endpoint = proc.stdout.readline().strip()
        thread, outcome = call_in_thread(lambda: client.call(endpoint, "/hang", RpcMessage(), timeout_s=30.0))
        assert proc.stdout.readline().strip() == "entered"
        killed = time.monotonic()
        proc.kill()
        thread.join(10)
        assert not thread.is_alive()
        error = outcome.get("error")
        assert isinstance(error, ApiTimeoutError) and "connection closed" in str(error)
        assert time.monotonic() - killed < 5.0  # not the 30 s deadline
    finally:
        proc.kill()
        proc.wait()


# --- typed errors -----------------------------------------------------------------------------------


def test_handler_errors_come_back_typed(transport: ZmqTransport, client: RpcClient) -> None:
    server = transport.bind_server("tcp://127.0.0.1:0")

    def fail(call: RpcCall) -> RpcMessage:
        kind = call.message.meta["kind"]
        if kind == "value":
            raise ValueError("bad input 42")
        if kind == "missing":
            raise KeyNotFoundError("no key k1")
        if kind == "enoent":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/mnt/x.txt")
        if kind == "enotempty":
            raise OSError(errno.ENOTEMPTY, "Directory not empty", "/mnt/d")
        if kind == "not_a_message":
            return {"meta": 1}  # type: ignore[return-value]
        return RpcMessage(meta={"unserialisable": {1, 2}})

    server.register("/fail", fail)

    def call(kind: str) -> None:
        client.call(server.endpoint, "/fail", RpcMessage(meta={"kind": kind}))

    with pytest.raises(RemoteHandlerError) as info:
        call("value")
    assert (info.value.remote_type, info.value.message) == ("ValueError", "bad input 42")
    with pytest.raises(KeyNotFoundError, match="no key k1"):
        call("missing")
    with pytest.raises(FileNotFoundError) as enoent:
        call("enoent")
    assert (enoent.value.errno, enoent.value.filename) == (errno.ENOENT, "/mnt/x.txt")
    with pytest.raises(OSError) as enotempty:
        call("enotempty")
    assert enotempty.value.errno == errno.ENOTEMPTY
    with pytest.raises(RemoteHandlerError, match="expected RpcMessage"):
        call("not_a_message")
    with pytest.raises(RemoteHandlerError) as unserialisable:
        call("unserialisable_meta")
    assert unserialisable.value.remote_type == "TypeError"


def test_unknown_and_unregistered_paths(server: RpcServer, client: RpcClient) -> None:
    with pytest.raises(UnknownPathError, match="/nope"):
        client.call(server.endpoint, "/nope", RpcMessage())
    assert client.call(server.endpoint, "/echo", RpcMessage(meta={"a": 1})).meta["a"] == 1
    server.unregister("/echo")
    with pytest.raises(UnknownPathError, match="/echo"):
        client.call(server.endpoint, "/echo", RpcMessage())


def test_register_rejects_duplicates_and_bad_input(server: RpcServer) -> None:
    with pytest.raises(InvalidArgumentError, match="already has a handler"):
        server.register("/echo", echo)
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        server.register("", echo)
    with pytest.raises(InvalidArgumentError, match="callable"):
        server.register("/x", "not callable")  # type: ignore[arg-type]


def test_authenticate_runs_before_the_handler(transport: ZmqTransport, client: RpcClient) -> None:
    ran: list[str] = []

    def authenticate(call: RpcCall) -> None:
        if call.auth != "secret":
            raise PermissionDeniedError(f"caller {call.caller!r} may not call {call.path}")

    def handler(call: RpcCall) -> RpcMessage:
        ran.append(call.caller)
        return RpcMessage(meta={"ok": True})

    server = transport.bind_server("tcp://127.0.0.1:0", authenticate=authenticate)
    server.register("/guarded", handler)
    with pytest.raises(PermissionDeniedError, match="'mallory' may not call /guarded"):
        client.call(server.endpoint, "/guarded", RpcMessage(), caller="mallory", auth="guess")
    # Unknown paths are not revealed to callers that fail authentication.
    with pytest.raises(PermissionDeniedError):
        client.call(server.endpoint, "/does-not-exist", RpcMessage(), caller="mallory")
    assert client.call(server.endpoint, "/guarded", RpcMessage(), caller="alice", auth="secret").meta == {"ok": True}
    assert ran == ["alice"]


def test_bad_worker_thread_count_is_rejected(transport: ZmqTransport) -> None:
    with pytest.raises(InvalidArgumentError, match="worker_threads"):
        transport.bind_server("tcp://127.0.0.1:0", worker_threads=0)


def test_bind_failure_is_a_network_error(transport: ZmqTransport, server: RpcServer) -> None:
    with pytest.raises(NetworkError, match="cannot bind"):
        transport.bind_server(server.endpoint)


# --- concurrency ------------------------------------------------------------------------------------


def test_slow_handler_does_not_block_other_calls(transport: ZmqTransport, client: RpcClient) -> None:
    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/echo", echo)
    release = threading.Event()
    entered: list[int] = []

    def block(call: RpcCall) -> RpcMessage:
        entered.append(call.message.meta["n"])
        release.wait(10)
        return RpcMessage(meta={"n": call.message.meta["n"]})

    server.register("/block", block)
    try:
        calls = [
            call_in_thread(lambda n=n: client.call(server.endpoint, "/block", RpcMessage(meta={"n": n})))
            for n in range(3)
        ]
        # All three blocking handlers run at once, and a fast call still completes meanwhile.
        wait_until(lambda: len(entered) == 3, 5, "three blocking handlers running concurrently")
        started = time.monotonic()
        assert client.call(server.endpoint, "/echo", RpcMessage(meta={"quick": 1}), timeout_s=3).meta["quick"] == 1
        assert time.monotonic() - started < 1.0
        assert not release.is_set()
    finally:
        release.set()
    for n, (thread, outcome) in enumerate(calls):
        thread.join(5)
        assert outcome["result"].meta == {"n": n}  # type: ignore[union-attr]


def test_server_drops_queued_work_whose_deadline_passed(transport: ZmqTransport, client: RpcClient) -> None:
    # Two threads: while one is stuck in a handler the other receives, so a second call to the
    # (now known slow) path waits in the queue until its caller gives up.
    server = transport.bind_server("tcp://127.0.0.1:0", worker_threads=2)
    release = threading.Event()
    runs: list[int] = []

    def block(call: RpcCall) -> RpcMessage:
        runs.append(call.message.meta["n"])
        release.wait(10)
        return RpcMessage(meta={"n": call.message.meta["n"]})

    server.register("/block", block)
    first, first_outcome = call_in_thread(lambda: client.call(server.endpoint, "/block", RpcMessage(meta={"n": 1})))
    wait_until(lambda: runs == [1], 5, "first blocking call running")
    with pytest.raises(ApiTimeoutError):
        client.call(server.endpoint, "/block", RpcMessage(meta={"n": 2}), timeout_s=0.3)
    # The server starts the clock when it reads the call, a few ms after the client did; the
    # condition here is the passage of time itself, well beyond that skew.
    timed_out_at = time.monotonic()
    wait_until(lambda: time.monotonic() - timed_out_at > 0.5, 5, "the server-side deadline of call 2 to pass")
    release.set()
    first.join(5)
    assert first_outcome["result"].meta == {"n": 1}  # type: ignore[union-attr]
    assert client.call(server.endpoint, "/block", RpcMessage(meta={"n": 3}), timeout_s=5).meta == {"n": 3}
    assert runs == [1, 3]  # the expired call 2 never ran


def test_many_threads_share_one_client(transport: ZmqTransport, client: RpcClient, ipc_dir: str) -> None:
    tcp = transport.bind_server("tcp://127.0.0.1:0")
    ipc = transport.bind_server(f"ipc://{ipc_dir}/many.sock")
    for server in (tcp, ipc):
        server.register("/echo", echo)
    endpoints = (tcp.endpoint, ipc.endpoint)
    mismatches: list[str] = []
    done: list[int] = []

    def worker(thread_no: int) -> None:
        for i in range(200):
            endpoint = endpoints[(thread_no + i) % 2]
            blob = f"{thread_no}:{i}".encode()
            reply = client.call(endpoint, "/echo", RpcMessage(meta={"t": thread_no, "i": i}, frames=(blob,)))
            if reply.meta["t"] != thread_no or reply.meta["i"] != i or bytes(reply.frames[0]) != blob:
                mismatches.append(f"thread {thread_no} call {i} got {reply.meta}")
        done.append(thread_no)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert mismatches == []
    assert sorted(done) == list(range(16))


# --- shutdown ---------------------------------------------------------------------------------------


def warm_up_pyzmq_gc_thread() -> None:
    """pyzmq starts one process-wide helper thread on the first zero-copy send; start it up front."""
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    a.bind("inproc://warm")
    b.connect("inproc://warm")
    a.send(bytes(MiB), copy=False)
    b.recv()
    a.close()
    b.close()
    context.term()


def test_close_releases_every_thread_and_is_idempotent(ipc_dir: str) -> None:
    warm_up_pyzmq_gc_thread()
    before = set(threading.enumerate())
    transport = ZmqTransport()
    server = transport.bind_server(f"ipc://{ipc_dir}/close.sock")
    server.register("/echo", echo)
    release = threading.Event()

    def slow(call: RpcCall) -> RpcMessage:
        release.wait(10)
        return RpcMessage()

    server.register("/slow", slow)
    client = transport.new_client()
    slow_call, _ = call_in_thread(lambda: client.call(server.endpoint, "/slow", RpcMessage()))
    callers = [
        threading.Thread(target=lambda: client.call(server.endpoint, "/echo", RpcMessage(frames=(bytes(MiB),))))
        for _ in range(4)
    ]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(10)
    release.set()
    slow_call.join(10)

    client.close()
    client.close()
    server.close()
    server.close()
    transport.close()
    transport.close()
    wait_until(lambda: set(threading.enumerate()) <= before, 5, "transport threads to exit")
    assert not os.path.exists(f"{ipc_dir}/close.sock")
    with pytest.raises(StoreClosedError):
        client.call(server.endpoint, "/echo", RpcMessage())


def test_sockets_of_finished_threads_are_reclaimed(server: RpcServer, client: RpcClient) -> None:
    def one_call() -> None:
        client.call(server.endpoint, "/echo", RpcMessage())

    for _ in range(20):
        thread = threading.Thread(target=one_call)
        thread.start()
        thread.join(10)
    one_call()
    # The client keeps per-thread sockets only for threads that are still alive.
    assert len(client._threads) <= 2  # type: ignore[attr-defined]


def test_close_from_inside_a_handler_stops_the_server(transport: ZmqTransport, client: RpcClient) -> None:
    server = transport.bind_server("tcp://127.0.0.1:0")
    closed = threading.Event()

    def shutdown(call: RpcCall) -> RpcMessage:
        server.close()
        closed.set()
        return RpcMessage(meta={"bye": True})

    server.register("/shutdown", shutdown)
    prefix = f"fluxon-rpc[{server.endpoint}]"
    # Replies of handlers still running at close() are dropped, so the caller times out.
    with pytest.raises(ApiTimeoutError):
        client.call(server.endpoint, "/shutdown", RpcMessage(), timeout_s=1.0)
    assert closed.is_set()
    wait_until(lambda: not any(t.name.startswith(prefix) for t in threading.enumerate()), 5, "server threads to exit")


# --- wire robustness ------------------------------------------------------------------------------


def test_malformed_messages_never_break_the_server(server: RpcServer, client: RpcClient) -> None:
    import orjson

    context = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.RCVTIMEO, 5000)
    raw.connect(server.endpoint)
    try:
        raw.send(b"not json at all")
        raw.send_multipart([b"[1, 7]", b"stray part"])  # wrong field count: answered, since the id is known
        assert orjson.loads(raw.recv())[1]["code"] == "network_error"
        good = orjson.dumps([1, 8, "/echo", "", "", 5.0, {"ok": 1}, []])
        raw.send_multipart([good, b"unannounced bulk"])
        assert orjson.loads(raw.recv())[1]["code"] == "network_error"
        raw.send_multipart([orjson.dumps([1, 9, "/echo", "", "", 5.0, {}, [10]]), b"short"])
        assert orjson.loads(raw.recv())[1]["code"] == "network_error"
        raw.send(orjson.dumps([2, 10, "/echo", "", "", 5.0, {}, []]))  # a future protocol version
        assert orjson.loads(raw.recv())[1]["code"] == "network_error"
        raw.send(orjson.dumps([1, 11, "/echo", "", "", 5.0, {"after": "garbage"}, []]))
        reply_id, meta, sizes = orjson.loads(raw.recv())
        assert (reply_id, meta["after"], sizes) == (11, "garbage", [])
    finally:
        raw.close(linger=0)
        context.term()
    assert client.call(server.endpoint, "/echo", RpcMessage(meta={"still": "serving"})).meta["still"] == "serving"


def test_first_large_bulk_frame_is_placed_at_the_fast_stream_offset() -> None:
    import orjson

    from fluxon_plugins.zmq_transport import wire

    for header_len in (5, 36, 49, 200, 250, 300):
        header = orjson.dumps(["x" * header_len])
        padded = wire.align_bulk(header, (bytes(MiB),), 64 * 1024)
        prefix = 2 if len(padded) < 256 else 9
        assert (prefix + len(padded) + 9) % 32 == 16
        assert orjson.loads(padded) == orjson.loads(header)
    small = orjson.dumps([1])
    assert wire.align_bulk(small, (b"tiny",), 64 * 1024) == small
    assert wire.align_bulk(small, (), 64 * 1024) == small
