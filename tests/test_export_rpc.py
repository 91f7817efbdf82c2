"""Export operations over RPC: codec, service, authorization and RemoteExportOps.

Exercised three ways: an in-process loopback transport (JSON meta, zero-copy-like frames, errors
through the RPC error codec), the real zmq transport in this process, and the real zmq transport
talking to ``python -m fluxon_fs.export.serving.serve_dir`` in a separate process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError, UnknownPathError
from fluxon_core.plugins import get_backends
from fluxon_core.rpc import decode_error, encode_error
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.export.ops import DirEntryInfo, FileStat
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.export.serving.rpc_service import serve_export
from fluxon_fs.export.wire import (
    OPS,
    decode_request,
    encode_request,
    op_path,
    pack_entries,
    path_from_wire,
    path_to_wire,
    unpack_entries,
)
from tests.support.poll import wait_until

EXPORT = "data"


class LoopbackServer:
    """An in-process RpcServer: handlers by path."""

    endpoint = "loopback://test"

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[RpcCall], RpcMessage]] = {}

    def register(self, path: str, handler: Callable[[RpcCall], RpcMessage]) -> None:
        self.handlers[path] = handler

    def unregister(self, path: str) -> None:
        self.handlers.pop(path, None)

    def close(self) -> None:
        self.handlers.clear()


class LoopbackClient:
    """An RpcClient delivering to a LoopbackServer the way a transport does: meta through JSON,
    frames as memoryviews, handler errors through the RPC error codec."""

    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.calls: list[RpcCall] = []

    def call(
        self,
        endpoint: str,
        path: str,
        message: RpcMessage,
        *,
        timeout_s: float = 10.0,
        caller: str = "",
        auth: str = "",
    ) -> RpcMessage:
        handler = self.server.handlers.get(path)
        if handler is None:
            raise UnknownPathError(f"no handler for {path}")
        request = _through_wire(message)
        call = RpcCall(path, caller, auth, request, time.monotonic() + timeout_s)
        self.calls.append(call)
        try:
            reply = handler(call)
        except Exception as exc:
            raise decode_error(json.loads(json.dumps(encode_error(exc)))) from None
        return _through_wire(reply)

    def close(self) -> None:
        pass


def _through_wire(message: RpcMessage) -> RpcMessage:
    meta = json.loads(json.dumps(dict(message.meta), ensure_ascii=False).encode())
    return RpcMessage(meta, tuple(memoryview(bytes(frame)) for frame in message.frames))


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file.txt").write_bytes(b"hello world")
    return root


@pytest.fixture
def local_ops(export_dir: Path) -> Iterator[LocalExportOps]:
    with LocalExportOps(str(export_dir), session_idle_timeout_s=30) as ops:
        yield ops


@pytest.fixture
def loopback(local_ops: LocalExportOps) -> tuple[RemoteExportOps, LoopbackClient]:
    server = LoopbackServer()
    serve_export(server, EXPORT, local_ops)
    client = LoopbackClient(server)
    return RemoteExportOps(client, server.endpoint, EXPORT, auth="token-1", caller="test-host"), client


@pytest.fixture(scope="module")
def zmq_transport():
    transport = get_backends().create("transport", "zmq", None)
    yield transport
    transport.close()


@pytest.fixture
def zmq_remote(zmq_transport, local_ops: LocalExportOps) -> Iterator[RemoteExportOps]:
    server = zmq_transport.bind_server("tcp://127.0.0.1:0")
    serve_export(server, EXPORT, local_ops)
    client = zmq_transport.new_client()
    try:
        yield RemoteExportOps(client, server.endpoint, EXPORT, timeout_s=10)
    finally:
        client.close()
        server.close()


# -- codec --------------------------------------------------------------------------------------


def test_every_op_of_the_spec_has_a_path_and_an_exportops_method() -> None:
    assert set(OPS) == {
        "stat",
        "list_dir",
        "read_chunk",
        "write_chunk",
        "truncate",
        "mkdir",
        "rmdir",
        "unlink",
        "rename",
        "chmod",
        "utime",
        "session_open",
        "session_write",
        "session_flush",
        "session_finalize",
        "session_abort",
    }
    assert op_path("exp", "read_chunk") == "/fluxon_fs/exp/read_chunk"
    for name in OPS:
        assert callable(getattr(RemoteExportOps, name)) and callable(getattr(LocalExportOps, name))
    with pytest.raises(InvalidArgumentError, match="export_name"):
        op_path("a/b", "stat")
    with pytest.raises(InvalidArgumentError, match="unknown export operation"):
        op_path("a", "chown")


def test_bulk_bytes_travel_as_frames_not_meta() -> None:
    payload = memoryview(b"x" * 1000)
    message = encode_request(OPS["session_write"], {"session_id": "s", "offset": 5, "data": payload})
    assert message.frames == (payload,) and message.frames[0] is payload
    assert "data" not in message.meta and len(json.dumps(dict(message.meta))) < 60


def test_non_utf8_names_round_trip() -> None:
    odd = os.fsdecode(b"dir/caf\xe9")
    assert path_from_wire(json.loads(json.dumps(path_to_wire(odd))), "relpath") == odd
    assert path_to_wire("dir/café") == "dir/café"
    entries = [DirEntryInfo(os.fsdecode(b"\xff\xfe"), FileStat(0o100644, 3, 4, 5, 6, 7, 1, 0, 0))]
    assert unpack_entries(pack_entries(entries)) == entries


def test_bad_requests_name_the_field() -> None:
    with pytest.raises(InvalidArgumentError, match="offset must be an integer"):
        decode_request(OPS["read_chunk"], RpcMessage({"relpath": "a", "offset": "1", "length": 1}))
    with pytest.raises(InvalidArgumentError, match="missing argument 'length'"):
        decode_request(OPS["read_chunk"], RpcMessage({"relpath": "a", "offset": 1}))
    with pytest.raises(InvalidArgumentError, match="follow_symlinks must be a boolean"):
        decode_request(OPS["stat"], RpcMessage({"relpath": "a", "follow_symlinks": 1}))
    with pytest.raises(InvalidArgumentError, match="relpath must be"):
        decode_request(OPS["stat"], RpcMessage({"relpath": 5, "follow_symlinks": True}))
    with pytest.raises(InvalidArgumentError, match="times_ns"):
        decode_request(OPS["utime"], RpcMessage({"relpath": "a", "times_ns": [1]}))
    with pytest.raises(InvalidArgumentError, match="1 data frame"):
        decode_request(OPS["write_chunk"], RpcMessage({"relpath": "a", "offset": 0}))


# -- behaviour over a transport (loopback, then real zmq) ---------------------------------------


def exercise_every_op(remote: RemoteExportOps, export_dir: Path) -> None:
    """The whole ExportOps surface through ``remote``, checked against the real directory."""
    assert remote.stat("dir/file.txt") == FileStat.from_os(os.stat(export_dir / "dir" / "file.txt"))
    assert remote.stat("").is_dir()
    assert [e.name for e in remote.list_dir("dir")] == ["file.txt"]
    stat, data = remote.read_chunk("dir/file.txt", 6, 100)
    assert data == b"world" and isinstance(data, bytes) and stat.size == 11
    assert bytes(remote.read_chunk_view("dir/file.txt", 0, 5)[1]) == b"hello"
    assert remote.write_chunk("dir/file.txt", 0, b"HELLO").size == 11
    assert remote.truncate("dir/file.txt", 5).size == 5
    assert (export_dir / "dir" / "file.txt").read_bytes() == b"HELLO"
    remote.mkdir("dir/sub", 0o755)
    remote.rename("dir/file.txt", "dir/sub/moved.txt")
    remote.chmod("dir/sub/moved.txt", 0o600)
    remote.utime("dir/sub/moved.txt", (1_000, 2_000))
    moved = export_dir / "dir" / "sub" / "moved.txt"
    assert moved.stat().st_mtime_ns == 2_000 and moved.stat().st_mode & 0o777 == 0o600
    remote.utime("dir/sub/moved.txt", None)
    remote.unlink("dir/sub/moved.txt")
    remote.rmdir("dir/sub")
    assert sorted(os.listdir(export_dir / "dir")) == []

    info = remote.session_open("dir/big.bin", create=True, exclusive=True, truncate=False)
    chunk = os.urandom(256 * 1024)
    remote.session_write(info.session_id, 0, chunk)
    remote.session_write(info.session_id, len(chunk), memoryview(chunk))
    assert remote.session_flush(info.session_id).size == 2 * len(chunk)
    assert remote.session_finalize(info.session_id).size == 2 * len(chunk)
    assert (export_dir / "dir" / "big.bin").read_bytes() == chunk + chunk
    second = remote.session_open("dir/big.bin", create=False, exclusive=False, truncate=True)
    remote.session_write(second.session_id, 0, b"kept")
    remote.session_abort(second.session_id)
    assert (export_dir / "dir" / "big.bin").read_bytes() == b"kept"


def exercise_errors(remote: RemoteExportOps, export_dir: Path) -> None:
    """Errors keep their class, errno and export-relative filenames across the wire."""
    with pytest.raises(FileNotFoundError) as missing:
        remote.read_chunk("dir/missing", 0, 1)
    assert missing.value.errno == errno.ENOENT and missing.value.filename == "dir/missing"
    with pytest.raises(IsADirectoryError) as isdir:
        remote.session_open("dir", create=True, exclusive=False, truncate=False)
    assert isdir.value.filename == "dir"
    (export_dir / "dir" / "x").touch()
    with pytest.raises(OSError) as notempty:
        remote.rmdir("dir")
    assert notempty.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        remote.mkdir("dir")
    with pytest.raises(FileNotFoundError) as renamed:
        remote.rename("nope", "dir/dst")
    assert (renamed.value.filename, renamed.value.filename2) == ("nope", "dir/dst")
    with pytest.raises(PermissionError) as escape:
        remote.stat("../outside")
    assert escape.value.errno == errno.EACCES and "escapes the export root" in str(escape.value)
    with pytest.raises(ValueError, match="null byte"):
        remote.stat("a\0b")
    with pytest.raises(OSError) as closed:
        remote.session_write("0" * 32, 0, b"x")
    assert closed.value.errno == errno.EBADF


def test_loopback_every_op(loopback, export_dir: Path) -> None:
    remote, client = loopback
    exercise_every_op(remote, export_dir)
    assert all(call.auth == "token-1" and call.caller == "test-host" for call in client.calls)
    read_calls = [c for c in client.calls if c.path == "/fluxon_fs/data/read_chunk"]
    assert read_calls and all(not c.message.frames for c in read_calls)


def test_loopback_errors(loopback, export_dir: Path) -> None:
    exercise_errors(loopback[0], export_dir)


def test_authorize_sees_every_call_with_paths_and_identity(local_ops: LocalExportOps, export_dir: Path) -> None:
    seen: list[tuple[str, str, list[str], bool]] = []

    def authorize(call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool) -> None:
        seen.append((call.auth, op, list(relpaths), is_write))
        if call.auth != "good":
            raise PermissionDeniedError("permission denied: bad identity")
        if is_write and relpaths[0].startswith("ro/"):
            raise PermissionDeniedError(f"permission denied: {relpaths[0]} is read-only for this user")

    server = LoopbackServer()
    served = serve_export(server, EXPORT, local_ops, authorize=authorize)
    client = LoopbackClient(server)
    tokens = iter(["good"] * 6 + ["bad", "good"])
    remote = RemoteExportOps(client, server.endpoint, EXPORT, auth=lambda _rpc_path: next(tokens))
    (export_dir / "ro").mkdir()
    assert remote.stat("ro").is_dir()
    with pytest.raises(PermissionDeniedError, match="read-only"):
        remote.mkdir("ro/new")
    assert not (export_dir / "ro" / "new").exists()
    info = remote.session_open("dir/s.bin", create=True, exclusive=False, truncate=False)
    remote.session_write(info.session_id, 0, b"abc")
    remote.rename("dir/file.txt", "dir/renamed.txt")
    remote.session_finalize(info.session_id)
    with pytest.raises(PermissionError, match="bad identity"):  # PermissionDeniedError is a PermissionError
        remote.stat("dir")
    assert seen == [
        ("good", "stat", ["ro"], False),
        ("good", "mkdir", ["ro/new"], True),
        ("good", "session_open", ["dir/s.bin"], True),
        ("good", "session_write", ["dir/s.bin"], True),  # checked against the session's real path
        ("good", "rename", ["dir/file.txt", "dir/renamed.txt"], True),
        ("good", "session_finalize", ["dir/s.bin"], True),
        ("bad", "stat", ["dir"], False),
    ]
    served.close()
    assert server.handlers == {}
    with pytest.raises(UnknownPathError):
        remote.stat("dir")


def test_symlinks_cannot_lead_out_of_granted_paths(local_ops: LocalExportOps, export_dir: Path) -> None:
    """A grant on public/ does not extend through a link into private/; the listing filter applies."""
    (export_dir / "public" / "sub").mkdir(parents=True)
    (export_dir / "public" / "sub" / "ok.txt").write_bytes(b"public data")
    (export_dir / "private").mkdir()
    (export_dir / "private" / "secret").write_bytes(b"private data")
    os.symlink("../private/secret", export_dir / "public" / "to_secret")
    os.symlink("../private", export_dir / "public" / "to_private")
    os.symlink("sub/ok.txt", export_dir / "public" / "alias")
    checked: list[tuple[str, list[str]]] = []

    def authorize(call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool):
        checked.append((op, list(relpaths)))
        if op == "list_dir" and relpaths == [""]:
            return lambda name: name == "public"  # above the grant: only the way towards it
        for relpath in relpaths:
            if relpath != "public" and not relpath.startswith("public/"):
                raise PermissionDeniedError(f"permission denied: {relpath!r}")
        return None

    server = LoopbackServer()
    serve_export(server, EXPORT, local_ops, authorize=authorize)
    remote = RemoteExportOps(LoopbackClient(server), server.endpoint, EXPORT)
    assert [e.name for e in remote.list_dir("")] == ["public"]
    assert remote.read_chunk("public/alias", 0, 100)[1] == b"public data"
    assert ("read_chunk", ["public/sub/ok.txt"]) in checked  # the real path was checked too
    for attempt in (
        lambda: remote.read_chunk("public/to_secret", 0, 100),
        lambda: remote.stat("public/to_secret"),
        lambda: remote.list_dir("public/to_private"),
        lambda: remote.write_chunk("public/to_private/secret", 0, b"x"),
        lambda: remote.unlink("public/to_private/secret"),
        lambda: remote.rename("public/to_private/secret", "public/stolen"),
        lambda: remote.session_open("public/to_secret", create=False, exclusive=False, truncate=True),
    ):
        with pytest.raises(PermissionDeniedError):
            attempt()
    assert (export_dir / "private" / "secret").read_bytes() == b"private data"
    assert not (export_dir / "public" / "stolen").exists()
    # The link itself is inside the grant: lstat and unlink address the link, not its target.
    assert remote.stat("public/to_secret", follow_symlinks=False).mode & 0o170000 == 0o120000
    remote.unlink("public/to_secret")


def test_zmq_in_process_every_op_and_errors(zmq_remote: RemoteExportOps, export_dir: Path) -> None:
    exercise_every_op(zmq_remote, export_dir)
    exercise_errors(zmq_remote, export_dir)


def test_zmq_concurrent_session_writes_and_reads(zmq_remote: RemoteExportOps, export_dir: Path) -> None:
    piece = 512 * 1024
    pieces = 16
    info = zmq_remote.session_open("par.bin", create=True, exclusive=False, truncate=True)

    def writer(first: int) -> None:
        for index in range(first, pieces, 4):
            zmq_remote.session_write(info.session_id, index * piece, bytes([index]) * piece)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert zmq_remote.session_finalize(info.session_id).size == piece * pieces
    for index in range(pieces):
        _, data = zmq_remote.read_chunk("par.bin", index * piece, piece)
        assert data == bytes([index]) * piece


# -- a separate agent process -------------------------------------------------------------------


@pytest.fixture
def agent_process(export_dir: Path) -> Iterator[tuple[str, int]]:
    """``serve_dir`` in a child process; yields (endpoint, pid)."""
    sock_dir = tempfile.mkdtemp(prefix="fx", dir="/tmp")
    proc = _serve_dir(str(export_dir), f"ipc://{sock_dir}/agent.sock", "--session-idle-timeout", "0.5")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the entry prints READY once serving (or exits on error)
        assert line.startswith("READY endpoint="), f"agent did not start: {line!r}, rc={proc.poll()}"
        yield line.strip().split("=", 1)[1], proc.pid
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            shutil.rmtree(sock_dir, ignore_errors=True)


def _open_in_process(pid: int, path: Path) -> bool:
    """True while process ``pid`` holds an fd on ``path``."""
    fd_dir = Path(f"/proc/{pid}/fd")
    for link in fd_dir.iterdir():
        try:
            if os.readlink(link) == str(path):
                return True
        except FileNotFoundError:
            continue
    return False


def test_separate_agent_process(zmq_transport, agent_process: tuple[str, int], export_dir: Path) -> None:
    endpoint, pid = agent_process
    client = zmq_transport.new_client()
    try:
        remote = RemoteExportOps(client, endpoint, EXPORT, timeout_s=10)
        exercise_every_op(remote, export_dir)
        exercise_errors(remote, export_dir)
        # The agent reaps a session its client abandoned (idle timeout 0.5 s); the file keeps the data.
        info = remote.session_open("abandoned.bin", create=True, exclusive=False, truncate=True)
        remote.session_write(info.session_id, 0, b"partial")
        target = export_dir / "abandoned.bin"
        assert _open_in_process(pid, target)
        wait_until(lambda: not _open_in_process(pid, target), timeout_s=10, message="abandoned session closed")
        with pytest.raises(OSError) as gone:
            remote.session_write(info.session_id, 7, b"late")
        assert gone.value.errno == errno.EBADF
        assert target.read_bytes() == b"partial"
    finally:
        client.close()


def _serve_dir(root: str, bind: str, *extra: str, capture_stderr: bool = False) -> subprocess.Popen[str]:
    """``python -m fluxon_fs.export.serving.serve_dir`` as a child that also stops when its stdin closes.

    stderr (its log) is inherited unless captured, so a chatty FLUXON_LOG=DEBUG cannot fill a pipe."""
    command = ["-m", "fluxon_fs.export.serving.serve_dir", "--export", EXPORT, "--root", root, "--bind", bind]
    return subprocess.Popen(
        [sys.executable, *command, "--watch-stdin", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
    )


def test_serve_dir_stops_when_its_parent_closes_stdin(export_dir: Path) -> None:
    proc = _serve_dir(str(export_dir), "tcp://127.0.0.1:0")
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("READY endpoint=tcp://127.0.0.1:")
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_dir_with_a_missing_root_fails_without_ready(tmp_path: Path) -> None:
    proc = _serve_dir(str(tmp_path / "missing"), "tcp://127.0.0.1:0", capture_stderr=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "READY" not in out
    assert "missing" in err


def test_zmq_non_utf8_file_names(zmq_remote: RemoteExportOps, export_dir: Path) -> None:
    name = os.fsdecode(b"caf\xe9")  # a Latin-1 name: not valid UTF-8
    (export_dir / name).write_bytes(b"latin-1 name")
    assert name in [e.name for e in zmq_remote.list_dir("")]
    assert zmq_remote.read_chunk(name, 0, 100)[1] == b"latin-1 name"
    zmq_remote.rename(name, name + ".bak")
    assert os.fsencode(name + ".bak") in os.listdir(os.fsencode(export_dir))
    with pytest.raises(NotADirectoryError) as info:  # still typed, the name shown escaped
        zmq_remote.stat(name + ".bak/x")
    assert info.value.filename == "caf\\xe9.bak/x"
