"""The same-host write channel, attacked: every request is authorised like the RPC, every fd checked.

A real deployment (kv master, owner, fs master, agent: processes; tests/support/access_e2e.py). Each
test opens a write session as ALICE (read-write on ``demo:team_a``) over RPC, learns the agent's
channel from the ``session_open`` answer, and sends hand-made requests to the agent's abstract
socket: what a hostile process on the same host could send. The target file must stay untouched
by every refused request.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.auth.tokens import EXPIRED_TOKEN_MESSAGE, INVALID_TOKEN_MESSAGE, TokenSigner
from fluxon_fs.export.ops import WriteSessionInfo
from fluxon_fs.export.same_host.client import SameHostWriter, usable_writer
from fluxon_fs.export.same_host.protocol import MAX_PAYLOAD_BYTES, SameHostAddress, raise_reply
from fluxon_fs.export.same_host.shared_chunk import SharedChunk
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import AUTH_LOGIN_PATH
from tests.support.access_e2e import ALICE, CAROL, READER, AccessDeployment, Credentials, access_deployment
from tests.support.fs_cluster import MASTER_KEY

MiB = 1024 * 1024
TARGET = "team_a/same-host-target.bin"
ORIGINAL = b"original content\n"


@pytest.fixture(scope="module")
def dep() -> Iterator[AccessDeployment]:
    with access_deployment() as deployment:
        yield deployment


def login_token(dep: AccessDeployment, identity: Credentials) -> str:
    reply = FsMasterLink(dep.client("probe"), MASTER_KEY).call(
        AUTH_LOGIN_PATH, {"username": identity[0], "password": identity[1]}
    )
    return str(reply["token"])


class Session:
    """ALICE's open write session on :data:`TARGET` and the agent's channel address."""

    def __init__(self, dep: AccessDeployment) -> None:
        self.dep = dep
        self.token = login_token(dep, ALICE)
        self.ops = dep.agent_ops("demo", self.token)
        (dep.fs.export_dir("demo") / TARGET).write_bytes(ORIGINAL)
        self.info: WriteSessionInfo = self.ops.session_open(TARGET, create=False, exclusive=False, truncate=False)
        assert self.info.same_host is not None, "the agent names its same-host channel in session_open"
        self.address: SameHostAddress = self.info.same_host

    def request(self, fds: list[int], **overrides: Any) -> bytes:
        """Send one hand-made request with ``fds``; returns the raw reply."""
        fields: dict[str, Any] = {
            "export_name": "demo",
            "session_id": self.info.session_id,
            "offset": 0,
            "length": MiB,
            "auth": self.token,
            "caller": "probe",
        }
        fields.update(overrides)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
            conn.settimeout(30)
            conn.connect("\0" + self.address.name)
            socket.send_fds(conn, [json.dumps(fields).encode()], fds)
            return conn.recv(65536)

    def target(self) -> bytes:
        return (self.dep.fs.export_dir("demo") / TARGET).read_bytes()

    def close(self) -> None:
        self.ops.session_abort(self.info.session_id)


@pytest.fixture
def session(dep: AccessDeployment) -> Iterator[Session]:
    opened = Session(dep)
    try:
        yield opened
    finally:
        opened.close()


def payload(data: bytes) -> SharedChunk:
    chunk = SharedChunk(len(data))
    chunk[:] = data
    return chunk


def refused(reply: bytes, kind: type[BaseException], errno_: int | None = None) -> BaseException:
    with pytest.raises(kind) as caught:
        raise_reply(reply)
    if errno_ is not None:
        assert getattr(caught.value, "errno", None) == errno_, caught.value
    return caught.value


def test_the_owner_of_the_session_writes_through_the_channel(session: Session) -> None:
    data = os.urandom(MiB)
    chunk = payload(data)
    raise_reply(session.request([chunk.memfd]))
    assert session.target() == data


# ----- identity ------------------------------------------------------------------------------------


def test_wrong_missing_and_expired_tokens_are_refused(dep: AccessDeployment, session: Session) -> None:
    chunk = payload(os.urandom(MiB))
    header, claims, mac = session.token.split(".")
    tampered = f"{header}.{claims}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    exc = refused(session.request([chunk.memfd], auth=tampered), PermissionError, errno.EACCES)
    assert INVALID_TOKEN_MESSAGE in str(exc)
    refused(session.request([chunk.memfd], auth=""), PermissionError, errno.EACCES)
    with dep.access_store() as store:
        secret = store.token_secret()
        alice = store.get_user(ALICE[0])
    assert alice is not None
    expired = TokenSigner(secret, ttl_s=60, clock=lambda: time.time() - 3600).issue(ALICE[0], alice.credential_version)
    exc = refused(session.request([chunk.memfd], auth=expired), PermissionError, errno.EACCES)
    assert EXPIRED_TOKEN_MESSAGE in str(exc)
    forged = TokenSigner(os.urandom(32)).issue(ALICE[0], alice.credential_version)
    refused(session.request([chunk.memfd], auth=forged), PermissionError, errno.EACCES)
    assert session.target() == ORIGINAL


def test_another_users_token_cannot_write_into_the_session(dep: AccessDeployment, session: Session) -> None:
    chunk = payload(os.urandom(MiB))
    for other in (READER, CAROL):  # read-only on everything; read-write elsewhere
        refused(session.request([chunk.memfd], auth=login_token(dep, other)), PermissionError, errno.EACCES)
    refused(session.request([chunk.memfd], session_id="0" * 32), OSError, errno.EBADF)  # no such session
    assert session.target() == ORIGINAL


# ----- the payload fd -------------------------------------------------------------------------------


def test_fds_that_are_not_sealed_memfds_are_refused(session: Session, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a read from it would block the agent forever
    left, right = socket.socketpair()
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    plain = tempfile.TemporaryFile(dir=tmp_path)  # noqa: SIM115 - closed below; a regular file that could be truncated under the copy
    plain.write(os.urandom(MiB))
    plain.flush()
    unsealed = os.memfd_create("unsealed")
    os.ftruncate(unsealed, MiB)
    try:
        for fd in (fifo_fd, left.fileno(), directory, plain.fileno(), unsealed):
            refused(session.request([fd]), OSError, errno.EINVAL)
    finally:
        for fd in (fifo_fd, directory, unsealed):
            os.close(fd)
        left.close()
        right.close()
        plain.close()
    assert session.target() == ORIGINAL


def test_lengths_beyond_the_memfd_or_the_limit_and_fd_counts_other_than_one_are_refused(session: Session) -> None:
    chunk = payload(os.urandom(MiB))
    refused(session.request([chunk.memfd], length=MiB + 1), OSError, errno.EINVAL)  # longer than the memfd
    refused(session.request([chunk.memfd], length=MAX_PAYLOAD_BYTES + 1), InvalidArgumentError)
    refused(session.request([chunk.memfd], offset=-1), InvalidArgumentError)
    refused(session.request([]), InvalidArgumentError)
    second = payload(os.urandom(MiB))
    refused(session.request([chunk.memfd, second.memfd]), InvalidArgumentError)
    refused(session.request([chunk.memfd], export_name="aux-not-served"), InvalidArgumentError)
    assert session.target() == ORIGINAL


def test_a_payload_fd_the_agent_may_not_read_is_refused(session: Session) -> None:
    chunk = payload(os.urandom(MiB))
    write_only = os.open(f"/proc/self/fd/{chunk.memfd}", os.O_WRONLY)  # same memfd, not readable
    try:
        refused(session.request([write_only]), OSError, errno.EINVAL)
    finally:
        os.close(write_only)


# ----- the client's side ---------------------------------------------------------------------------


def test_a_client_uses_the_channel_only_when_the_agent_proves_who_it_is(session: Session) -> None:
    assert usable_writer(session.address) is not None
    # The same name claimed by another process (or the agent's pid on another host): not used.
    assert not SameHostWriter(SameHostAddress(session.address.name, 1, session.address.uid)).usable()
    # A name nobody listens on here (another host or network namespace): not used, the RPC serves.
    assert not SameHostWriter(SameHostAddress("fluxon-fs-agent-nobody-here", os.getpid(), os.getuid())).usable()
    impostor = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    impostor.bind("\0fluxon-fs-agent-impostor-test")
    impostor.listen(1)
    try:
        claimed = SameHostAddress("fluxon-fs-agent-impostor-test", session.address.pid, session.address.uid)
        assert not SameHostWriter(claimed).usable()  # listens here, but is not the agent's pid
    finally:
        impostor.close()
