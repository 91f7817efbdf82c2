"""What an unauthenticated peer can make an RPC server hold: frame size, waiting calls, connections.

The attacks run through real sockets against a server in a child process
(:mod:`tests.support.rpc_limits_server`), whose resident memory and open descriptors are read from
``/proc``. The attacker side speaks raw ZMTP (:mod:`tests.support.zmtp`) where libzmq would not
send what it needs to, and a plain pyzmq DEALER to pipeline many calls.
"""

from __future__ import annotations

import resource
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest
import zmq

from fluxon_core.config import ConfigError, load_config
from fluxon_core.errors import ApiTimeoutError, InvalidArgumentError, PermissionDeniedError, ServerBusyError
from fluxon_core.rpc import decode_error
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_plugins.zmq_transport import wire
from fluxon_plugins.zmq_transport.config import ZmqTransportConfig
from fluxon_plugins.zmq_transport.connection_cap import effective_connection_limit, listening_address
from fluxon_plugins.zmq_transport.transport import ZmqTransport
from tests.support.poll import wait_until
from tests.support.rpc_limits_server import TOKEN, LimitedServerProcess
from tests.support.zmtp import RawZmtpPeer, frame_header

MiB = 1024 * 1024
LIMITS = {
    "max_request_bytes": MiB,
    "max_reply_bytes": 4 * MiB,
    "max_connections": 16,
    "max_queued_calls": 8,
    "max_queued_bytes": 4 * MiB,
}


@pytest.fixture
def server() -> Iterator[LimitedServerProcess]:
    server = LimitedServerProcess(**LIMITS)
    yield server
    server.stop()


@pytest.fixture
def transport() -> Iterator[ZmqTransport]:
    transport = ZmqTransport()
    yield transport
    transport.close()


def echo_works(transport: ZmqTransport, endpoint: str, tag: int = 0) -> bool:
    """A legitimate call with a small bulk frame gets its answer."""
    client = transport.new_client()
    try:
        reply = client.call(endpoint, "/echo", RpcMessage(meta={"tag": tag}, frames=(b"x" * 100,)), auth=TOKEN)
    finally:
        client.close()
    return reply.meta == {"tag": tag, "nbytes": 100}


# --- defaults and options ---------------------------------------------------------------------------


def test_defaults_fit_the_largest_frames_the_system_sends() -> None:
    from fluxon_fs.export.serving.local_ops import DEFAULT_MAX_CHUNK_BYTES
    from fluxon_fs.patcher.options import MountOptions

    config = ZmqTransportConfig()
    options = MountOptions()
    # read_chunk answers up to DEFAULT_MAX_CHUNK_BYTES; writes go in write_chunk_bytes; pieces are piece_bytes
    largest_fs_frame = max(DEFAULT_MAX_CHUNK_BYTES, options.write_chunk_bytes, options.piece_bytes)
    assert largest_fs_frame < config.max_request_bytes <= config.max_reply_bytes
    assert config.max_request_bytes <= 2 * largest_fs_frame  # "a bit above", not unbounded
    assert config.max_connections == 1024
    assert config.max_queued_calls == 1024
    assert config.max_queued_bytes == 1024 * MiB


def test_frames_of_the_fs_and_kv_data_paths_pass_the_default_limits(transport: ZmqTransport) -> None:
    big_reply = bytes(100 * MiB)  # above max_request_bytes: only replies may be this large by default

    def answer(call: RpcCall) -> RpcMessage:
        size = call.message.meta["reply_bytes"]
        return RpcMessage(meta={"got": sum(len(f) for f in call.message.frames)}, frames=(big_reply[:size],))

    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/data", answer)
    client = transport.new_client()
    for request_bytes, reply_bytes in ((8 * MiB, MiB), (MiB, 64 * MiB), (64 * MiB, 0), (0, 100 * MiB)):
        reply = client.call(
            server.endpoint, "/data", RpcMessage(meta={"reply_bytes": reply_bytes}, frames=(bytes(request_bytes),))
        )
        assert (reply.meta["got"], len(reply.frames[0])) == (request_bytes, reply_bytes)


def test_limits_are_options_of_the_transport_block() -> None:
    config = load_config(
        ZmqTransportConfig,
        {"max_request_bytes": "8MiB", "max_reply_bytes": "2GiB", "max_connections": 64, "max_queued_calls": 16},
    )
    assert (config.max_request_bytes, config.max_reply_bytes) == (8 * MiB, 2048 * MiB)
    assert (config.max_connections, config.max_queued_calls) == (64, 16)
    for field in ("max_request_bytes", "max_connections", "max_queued_calls", "max_queued_bytes"):
        with pytest.raises(ConfigError, match=field):
            load_config(ZmqTransportConfig, {field: 0})


def test_connection_cap_stays_below_the_open_files_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert effective_connection_limit(10) == min(10, soft // 2)
    assert effective_connection_limit(10**9) == (10**9 if soft == resource.RLIM_INFINITY else soft // 2)


def test_listening_address_of_bound_endpoints() -> None:
    assert listening_address("tcp://127.0.0.1:5555") == (socket.AF_INET, 5555)
    assert listening_address("tcp://[::1]:5555") == (socket.AF_INET, 5555)
    assert listening_address("ipc:///tmp/x.sock") == (socket.AF_UNIX, "/tmp/x.sock")
    assert listening_address("ipc://@abstract") == (socket.AF_UNIX, "\0abstract")
    assert listening_address("inproc://x") is None


# --- frame size -------------------------------------------------------------------------------------


def test_unauthenticated_oversized_frame_is_dropped_before_it_is_buffered(
    server: LimitedServerProcess, transport: ZmqTransport
) -> None:
    assert echo_works(transport, server.endpoint)
    before = server.rss_bytes()
    # The frame announces 1 GiB; the server must drop the connection at the announcement, not after
    # buffering what arrives. (Kernel socket buffers take a few MiB before the reset shows here.)
    with RawZmtpPeer(server.endpoint) as peer:
        peer.send_raw(frame_header(1024 * MiB))
        chunk = bytes(MiB)
        with pytest.raises(OSError):
            for _ in range(256):
                peer.send_raw(chunk)
        assert peer.sent < 64 * MiB
    assert server.rss_bytes() - before < 16 * MiB
    assert server.alive()
    assert echo_works(transport, server.endpoint, tag=1)


def test_oversized_header_and_bulk_frames_are_refused_alike(
    server: LimitedServerProcess, transport: ZmqTransport
) -> None:
    before = server.rss_bytes()
    for parts in (
        [bytes(2 * MiB)],  # a header frame above the limit
        [wire.encode_header([1, 1, "/echo", "", TOKEN, 5.0, {}, [2 * MiB]]), bytes(2 * MiB)],
    ):
        with RawZmtpPeer(server.endpoint) as peer, pytest.raises(OSError):
            peer.send_message(parts)
            peer.recv_message()  # a reply would mean the frame was accepted
    assert server.rss_bytes() - before < 16 * MiB
    assert echo_works(transport, server.endpoint)


@pytest.mark.xfail(
    strict=True,
    reason="known limit (docs/rpc-limits.md): libzmq checks ZMQ_MAXMSGSIZE per frame and buffers a "
    "message's frames until its last one, however many there are",
)
def test_an_unfinished_message_of_many_small_frames_is_bounded(server: LimitedServerProcess) -> None:
    before = server.rss_bytes()
    with RawZmtpPeer(server.endpoint) as peer:
        for _ in range(200):  # 100 MiB in frames of half the limit; the message never ends
            peer.send_frame(bytes(MiB // 2), more=True)
        time.sleep(0.3)
        grown = server.rss_bytes() - before
    assert grown < 32 * MiB


def test_a_frame_just_under_the_limit_is_served(server: LimitedServerProcess) -> None:
    with RawZmtpPeer(server.endpoint) as peer:
        size = MiB - 64
        peer.send_message([wire.encode_header([1, 7, "/echo", "", TOKEN, 5.0, {}, [size]]), bytes(size)])
        header = wire.decode_header(peer.recv_message()[0])
    assert header == [7, {"nbytes": size}, []]


def test_client_refuses_to_send_a_frame_above_its_max_request_bytes(transport: ZmqTransport) -> None:
    server = transport.bind_server("tcp://127.0.0.1:0")
    server.register("/echo", lambda call: RpcMessage(meta=call.message.meta))
    small = ZmqTransport(ZmqTransportConfig(max_request_bytes=MiB))
    try:
        client = small.new_client()
        started = time.monotonic()
        with pytest.raises(InvalidArgumentError, match="max_request_bytes"):
            client.call(server.endpoint, "/echo", RpcMessage(frames=(bytes(MiB + 1),)), timeout_s=5)
        with pytest.raises(InvalidArgumentError, match="max_request_bytes"):
            client.call(server.endpoint, "/echo", RpcMessage(meta={"big": "x" * MiB}), timeout_s=5)
        assert time.monotonic() - started < 1.0
        assert client.call(server.endpoint, "/echo", RpcMessage(meta={"ok": 1}, frames=(bytes(MiB - 1024),))).meta == {
            "ok": 1
        }
    finally:
        small.close()


def test_reply_limits_on_both_sides() -> None:
    big = bytes(3 * MiB)

    def answer(call: RpcCall) -> RpcMessage:
        return RpcMessage(frames=(big,))

    strict = ZmqTransport(ZmqTransportConfig(max_reply_bytes=2 * MiB))
    lenient = ZmqTransport(ZmqTransportConfig(max_reply_bytes=8 * MiB))
    try:
        # A server does not send a frame above its own max_reply_bytes: the caller gets a typed error.
        strict_server = strict.bind_server("tcp://127.0.0.1:0")
        strict_server.register("/big", answer)
        with pytest.raises(InvalidArgumentError, match="max_reply_bytes"):
            lenient.new_client().call(strict_server.endpoint, "/big", RpcMessage(), timeout_s=5)
        # A client whose limit is lower than the server's drops the connection at the frame's
        # announcement (libzmq): the call ends at its deadline, nothing is buffered.
        lenient_server = lenient.bind_server("tcp://127.0.0.1:0")
        lenient_server.register("/big", answer)
        with pytest.raises(ApiTimeoutError):
            strict.new_client().call(lenient_server.endpoint, "/big", RpcMessage(), timeout_s=0.5)
        assert len(lenient.new_client().call(lenient_server.endpoint, "/big", RpcMessage()).frames[0]) == 3 * MiB
    finally:
        strict.close()
        lenient.close()


# --- waiting calls ------------------------------------------------------------------------------------


def _flood(endpoint: str, count: int, token: str, frame: bytes, sleep_s: float) -> dict[str, list[float]]:
    """Pipeline ``count`` calls to /slow on one DEALER; reply kinds (error code or ``ok``) -> arrival times."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 10_000)
    dealer.connect(endpoint)
    arrivals: dict[str, list[float]] = {}
    try:
        started = time.monotonic()
        for request_id in range(count):
            header = wire.encode_header(
                [1, request_id, "/slow", "flood", token, 20.0, {"sleep_s": sleep_s}, [len(frame)]]
            )
            dealer.send_multipart([header, frame], copy=False)
        for _ in range(count):
            header = wire.decode_header(dealer.recv_multipart()[0])
            kind = "ok" if len(header) == 3 else type(decode_error(header[1])).__name__
            arrivals.setdefault(kind, []).append(time.monotonic() - started)
    finally:
        dealer.close()
        context.term()
    return arrivals


def test_flood_of_slow_calls_gets_prompt_busy_errors_with_bounded_memory(
    server: LimitedServerProcess, transport: ZmqTransport
) -> None:
    client = transport.new_client()
    # One overrunning call makes the server hand /slow to its worker pool from then on.
    client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.05}), auth=TOKEN)
    before = server.rss_bytes()
    count = 400
    arrivals = _flood(server.endpoint, count, TOKEN, bytes(256 * 1024), sleep_s=0.3)  # 100 MiB offered
    busy = arrivals.get("ServerBusyError", [])
    served = arrivals.get("ok", [])
    assert len(busy) + len(served) == count, arrivals.keys()
    # max_queued_calls (8) wait (max_queued_bytes, 16 of these calls, is not the binding limit here),
    # plus the few that workers took from the queue while the flood was still being read.
    assert len(served) <= 8 + 12
    assert len(busy) >= count - 20
    assert max(busy) < 3.0  # answered as they arrive, not after the queue drained
    assert server.rss_bytes() - before < 32 * MiB  # unbounded, the 400 calls held ~100 MiB
    assert echo_works(transport, server.endpoint)
    client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.01}), auth=TOKEN)


def test_waiting_bytes_are_bounded_as_well_as_waiting_calls(server: LimitedServerProcess) -> None:
    with RawZmtpPeer(server.endpoint) as peer:  # mark /slow as slow
        peer.send_message([wire.encode_header([1, 0, "/slow", "", TOKEN, 5.0, {"sleep_s": 0.05}, []])])
        peer.recv_message()
    # 900 KiB each: 4 of them fill max_queued_bytes (4 MiB) before max_queued_calls (8) is reached.
    arrivals = _flood(server.endpoint, 40, TOKEN, bytes(900 * 1024), sleep_s=0.2)
    assert len(arrivals.get("ok", [])) <= 4 + 3
    assert len(arrivals.get("ServerBusyError", [])) >= 40 - 7


def test_unauthenticated_slow_calls_never_wait_in_the_queue(
    server: LimitedServerProcess, transport: ZmqTransport
) -> None:
    client = transport.new_client()
    client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.05}), auth=TOKEN)
    arrivals = _flood(server.endpoint, 200, "forged", bytes(64 * 1024), sleep_s=0.5)
    assert set(arrivals) == {"PermissionDeniedError"}
    assert max(arrivals["PermissionDeniedError"]) < 3.0  # none waited for the 0.5 s handler
    # and the queue is free for legitimate calls
    assert client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.01}), auth=TOKEN).meta == {"slept": True}
    with pytest.raises(PermissionDeniedError):
        client.call(server.endpoint, "/slow", RpcMessage(), auth="forged")


def test_busy_error_reaches_an_rpc_client_typed(server: LimitedServerProcess, transport: ZmqTransport) -> None:
    client = transport.new_client()
    client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.05}), auth=TOKEN)
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(server.endpoint)

    def send_slow(request_id: int, sleep_s: float) -> None:
        dealer.send(wire.encode_header([1, request_id, "/slow", "", TOKEN, 20.0, {"sleep_s": sleep_s}, []]))

    def stats() -> tuple[int, int]:
        meta = client.call(server.endpoint, "/stats", RpcMessage(), auth=TOKEN).meta
        return meta["running_slow"], meta["queued_calls"]

    try:
        for request_id in range(2):  # occupy both pool threads for 2 s
            send_slow(request_id, 2.0)
        wait_until(lambda: stats() == (2, 0), message="the pool threads to take the first calls")
        for request_id in range(2, 10):  # then fill the queue (8 places)
            send_slow(request_id, 0.01)
        wait_until(lambda: stats() == (2, 8), message="the queue to fill")
        started = time.monotonic()
        with pytest.raises(ServerBusyError, match="max_queued_calls"):
            client.call(server.endpoint, "/slow", RpcMessage(meta={"sleep_s": 0.01}), auth=TOKEN, timeout_s=5)
        assert time.monotonic() - started < 1.5  # at once, not after the 2 s calls
    finally:
        dealer.close(linger=0)
        context.term()


# --- connections --------------------------------------------------------------------------------------


def test_idle_connections_above_the_cap_do_not_take_descriptors(
    server: LimitedServerProcess, transport: ZmqTransport
) -> None:
    cap = LIMITS["max_connections"]
    client = transport.new_client()

    def stats() -> dict:
        return client.call(server.endpoint, "/stats", RpcMessage(), auth=TOKEN).meta

    # The socket monitor reports the accepted connection a moment after it serves the first call.
    wait_until(lambda: stats()["connections"] == 1, message="the client's connection to be counted")
    assert stats()["max_connections"] == cap
    fds_before = server.open_fds()
    host, _, port = server.endpoint.removeprefix("tcp://").rpartition(":")
    idle: list[socket.socket | RawZmtpPeer] = []
    try:
        for index in range(300):  # half bare TCP connections, half that finish the ZMTP handshake
            if index % 2:
                idle.append(socket.create_connection((host, int(port))))
            else:
                try:
                    idle.append(RawZmtpPeer(server.endpoint, timeout_s=2))
                except (OSError, ConnectionError):
                    pass  # shut out during the handshake: the cap is full
        # The established connection keeps working while the cap is full.
        wait_until(lambda: stats()["connections"] <= cap, message="connections above the cap to be shut out")
        assert server.open_fds() - fds_before <= cap
        assert server.alive()
    finally:
        for conn in idle:
            conn.close()
    wait_until(lambda: stats()["connections"] == 1, message="the idle connections to be gone")
    assert abs(server.open_fds() - fds_before) <= 2
    assert echo_works(transport, server.endpoint)  # a new connection is accepted again


def test_the_cap_holds_for_ipc_endpoints_too() -> None:
    ipc_dir = tempfile.mkdtemp(prefix="fx", dir="/tmp")  # AF_UNIX paths are limited to 107 bytes
    transport = ZmqTransport(ZmqTransportConfig(max_connections=4))
    idle: list[socket.socket] = []
    try:
        server = transport.bind_server(f"ipc://{ipc_dir}/cap.sock")
        server.register("/echo", lambda call: RpcMessage(meta=call.message.meta))
        for _ in range(20):
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(f"{ipc_dir}/cap.sock")
            idle.append(conn)
        wait_until(lambda: server.connections <= 4 and sum(_closed_by_peer(c) for c in idle) >= 16)
        assert server.max_connections == 4
    finally:
        for conn in idle:
            conn.close()
        transport.close()
        shutil.rmtree(ipc_dir, ignore_errors=True)


def _closed_by_peer(conn: socket.socket) -> bool:
    """True once the server shut the connection down: reading reaches end-of-stream (after its greeting)."""
    try:
        while conn.recv(4096, socket.MSG_DONTWAIT):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
