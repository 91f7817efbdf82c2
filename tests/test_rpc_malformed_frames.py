"""Property: whatever frames a peer sends, the RPC server process stays up, serves, and stays small.

Hypothesis writes malformed, oversized and truncated multipart messages over raw ZMTP
(:mod:`tests.support.zmtp`) to one server child process: random frame counts, garbage and
half-valid headers, bad tokens, declared bulk sizes that lie, frames just under and over
``max_request_bytes``, frame announcements of up to 2**64-1 bytes followed by a few bytes, and
messages cut off in the middle. After every example the server must still be running, answer a
legitimate call, and its resident memory must stay within a fixed bound of where it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxon_core.rpc_types import RpcMessage
from fluxon_plugins.zmq_transport import wire
from fluxon_plugins.zmq_transport.transport import ZmqTransport
from tests.support.rpc_limits_server import TOKEN, LimitedServerProcess
from tests.support.zmtp import RawZmtpPeer, frame_header

MiB = 1024 * 1024
MAX_REQUEST_BYTES = MiB
RSS_BOUND = 48 * MiB


@pytest.fixture(scope="module")
def server() -> Iterator[LimitedServerProcess]:
    server = LimitedServerProcess(
        max_request_bytes=MAX_REQUEST_BYTES,
        max_connections=16,
        max_queued_calls=8,
        max_queued_bytes=4 * MiB,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def transport() -> Iterator[ZmqTransport]:
    transport = ZmqTransport()
    yield transport
    transport.close()


@pytest.fixture(scope="module")
def baseline_rss(server: LimitedServerProcess, transport: ZmqTransport) -> int:
    client = transport.new_client()
    for _ in range(20):  # warm up: connections, handlers, allocator
        client.call(server.endpoint, "/echo", RpcMessage(frames=(bytes(64 * 1024),)), auth=TOKEN)
    client.close()
    return server.rss_bytes()


# --- what a peer may send ---------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
_sizes = st.one_of(
    st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=2048),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),  # lies, including huge lengths
            st.sampled_from([MAX_REQUEST_BYTES - 1, MAX_REQUEST_BYTES, MAX_REQUEST_BYTES + 1]),
        ),
        max_size=6,
    ),
    _json_values,
)
_headers = st.builds(
    lambda fields: wire.encode_header(fields),
    st.tuples(
        st.sampled_from([1, 1, 1, 0, 2, "1", None]),  # protocol version
        st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), _json_scalars),  # request id
        st.sampled_from(["/echo", "/slow", "/stats", "/nope", "", "/fluxon_kv/x"]),
        st.text(max_size=10),  # caller
        st.sampled_from([TOKEN, TOKEN, "", "forged", "v1.0.00"]),  # auth
        st.one_of(st.floats(min_value=-1, max_value=1e300), _json_scalars),  # seconds left
        st.one_of(st.dictionaries(st.sampled_from(["sleep_s", "k", "x"]), _json_values, max_size=3), _json_values),
        _sizes,
    ).map(list)
    | st.lists(_json_values, max_size=10),  # arrays of the wrong length
)
_frames = st.one_of(
    _headers,
    st.binary(max_size=512),  # garbage
    st.sampled_from([b"", b"[]", b"{}", b"[1]", b"null", b"[1,2,3,4,5,6,7,8,9]"]),
    st.integers(min_value=0, max_value=4096).map(bytes),
    st.sampled_from([MAX_REQUEST_BYTES - 1, MAX_REQUEST_BYTES + 1, 2 * MAX_REQUEST_BYTES]).map(bytes),
)


@st.composite
def _well_formed_calls(draw: st.DrawFn) -> list[bytes]:
    """A call whose header matches its bulk frames, with a good or bad token: it reaches auth and handlers."""
    bulk = draw(st.lists(st.binary(max_size=4096) | st.just(bytes(MAX_REQUEST_BYTES - 64)), max_size=3))
    header = wire.encode_header(
        [
            1,
            draw(st.integers(min_value=0, max_value=2**63 - 1)),
            draw(st.sampled_from(["/echo", "/slow", "/stats", "/nope"])),
            "fuzz",
            draw(st.sampled_from([TOKEN, "forged", ""])),
            draw(st.sampled_from([0.001, 5.0, 1e300])),
            draw(st.dictionaries(st.sampled_from(["sleep_s", "k"]), st.floats(0, 0.05) | st.text(max_size=4))),
            [len(frame) for frame in bulk],
        ]
    )
    return [header, *bulk]


@st.composite
def _attacks(draw: st.DrawFn) -> dict[str, Any]:
    messages = draw(st.lists(st.lists(_frames, min_size=1, max_size=12) | _well_formed_calls(), min_size=1, max_size=4))
    ending = draw(st.sampled_from(["complete", "cut_in_frame", "huge_announcement", "more_never_ends", "no_handshake"]))
    return {
        "messages": messages,
        "ending": ending,
        "announced": draw(st.sampled_from([MAX_REQUEST_BYTES // 2, MAX_REQUEST_BYTES + 1, 2**40, 2**64 - 1])),
        "sent_of_last": draw(st.integers(min_value=0, max_value=4096)),
    }


def _attack(endpoint: str, attack: dict[str, Any]) -> None:
    """Send the attack; the server may drop the connection at any point (which ends it)."""
    handshake = attack["ending"] != "no_handshake"
    with contextlib.suppress(OSError, ConnectionError), RawZmtpPeer(endpoint, timeout_s=2, handshake=handshake) as peer:
        if not handshake:
            peer.send_raw(b"".join(attack["messages"][0])[:4096])
            return
        for message in attack["messages"]:
            peer.send_message(message)
        ending = attack["ending"]
        if ending in ("cut_in_frame", "huge_announcement"):
            peer.send_raw(frame_header(attack["announced"], more=False) + bytes(attack["sent_of_last"]))
        elif ending == "more_never_ends":
            peer.send_frame(b"[1,", more=True)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(attack=_attacks())
def test_server_survives_malformed_oversized_and_truncated_frames(
    server: LimitedServerProcess, transport: ZmqTransport, baseline_rss: int, attack: dict[str, Any]
) -> None:
    _attack(server.endpoint, attack)
    assert server.alive()
    client = transport.new_client()
    try:
        reply = client.call(server.endpoint, "/echo", RpcMessage(meta={"ok": 1}, frames=(b"y" * 10,)), auth=TOKEN)
    finally:
        client.close()
    assert reply.meta == {"ok": 1, "nbytes": 10}
    assert server.rss_bytes() - baseline_rss < RSS_BOUND
