"""File semantics on a mount (FS.md §4): open() modes, text, seek, flush visibility, errors."""

# ruff: noqa: SIM115 - open() without a context manager is the behaviour under test here

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_fs.patcher import MountOptions
from tests.support.mount_harness import Mounted, mounted_export

MiB = 1024 * 1024


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mounted]:
    with mounted_export(tmp_path) as mounted:
        yield mounted


def agent_bytes(mnt: Mounted, relpath: str) -> bytes:
    """What the agent's disk holds (a local path: the interceptor passes it through)."""
    return mnt.real(relpath).read_bytes()


def test_write_then_read_small_file(mnt: Mounted) -> None:
    path = mnt.path("a.txt")
    with open(path, "w") as f:
        assert f.write("hello\nworld\n") == 12
    assert agent_bytes(mnt, "a.txt") == b"hello\nworld\n"
    with open(path) as f:
        assert f.read() == "hello\nworld\n"
    with open(path, "rb") as f:
        assert f.read() == b"hello\nworld\n"


def test_large_file_roundtrip_and_partial_reads(mnt: Mounted) -> None:
    data = os.urandom(3 * MiB + 12345)
    with open(mnt.path("big.bin"), "wb") as f:
        f.write(data[: MiB + 7])
        f.write(data[MiB + 7 :])
    assert agent_bytes(mnt, "big.bin") == data
    with open(mnt.path("big.bin"), "rb") as f:
        assert f.read(10) == data[:10]
        f.seek(MiB - 5)
        assert f.read(10) == data[MiB - 5 : MiB + 5]
        assert f.tell() == MiB + 5
        f.seek(-100, os.SEEK_END)
        assert f.read() == data[-100:]
        assert f.read() == b""
        f.seek(0)
        assert f.read() == data


def test_readinto_readline_iteration(mnt: Mounted) -> None:
    lines = [f"line {i}\n".encode() for i in range(1000)]
    mnt.real("lines.txt").write_bytes(b"".join(lines))
    with open(mnt.path("lines.txt"), "rb") as f:
        assert f.readline() == lines[0]
        buffer = bytearray(len(lines[1]))
        assert f.readinto(buffer) == len(lines[1])
        assert bytes(buffer) == lines[1]
        assert list(f) == lines[2:]
    with open(mnt.path("lines.txt"), "rb", buffering=0) as raw:
        buffer = bytearray(6)
        assert raw.readinto(buffer) == 6
        assert bytes(buffer) == b"line 0"
    with open(mnt.path("lines.txt")) as text:
        assert [line for line in text][-1] == "line 999\n"


def test_truncate_on_open_and_append(mnt: Mounted) -> None:
    path = mnt.path("log.txt")
    mnt.real("log.txt").write_bytes(b"old content that is long")
    f = open(path, "w")
    assert agent_bytes(mnt, "log.txt") == b""  # truncated at open, before any write
    f.write("one\n")
    f.close()
    with open(path, "a") as f:
        assert f.tell() == 4
        f.write("two\n")
    with open(path, "ab") as f:
        f.seek(0)
        f.write(b"three\n")  # append mode writes at the end whatever the position
    assert agent_bytes(mnt, "log.txt") == b"one\ntwo\nthree\n"


def test_exclusive_create(mnt: Mounted) -> None:
    path = mnt.path("x.txt")
    with open(path, "x") as f:
        f.write("first")
    with pytest.raises(FileExistsError) as caught:
        open(path, "x")
    assert caught.value.errno == errno.EEXIST
    assert caught.value.filename == path
    assert agent_bytes(mnt, "x.txt") == b"first"


def test_read_write_update_modes(mnt: Mounted) -> None:
    mnt.real("u.bin").write_bytes(b"0123456789")
    with open(mnt.path("u.bin"), "r+b") as f:
        assert f.read(3) == b"012"
        f.write(b"abc")
        f.seek(0)
        assert f.read() == b"012abc6789"
        f.seek(8)
        f.write(b"XYZ")
    assert agent_bytes(mnt, "u.bin") == b"012abc67XYZ"
    with open(mnt.path("u.bin"), "w+") as f:
        f.write("fresh")
        f.seek(0)
        assert f.read() == "fresh"
    with open(mnt.path("u.bin"), "a+") as f:
        f.write("!")
        f.seek(0)
        assert f.read() == "fresh!"
    assert agent_bytes(mnt, "u.bin") == b"fresh!"


def test_text_encoding_newline_and_errors(mnt: Mounted) -> None:
    path = mnt.path("t.txt")
    with open(path, "w", encoding="utf-16", newline="\r\n") as f:
        f.write("héllo\nwörld\n")
    assert agent_bytes(mnt, "t.txt") == "héllo\r\nwörld\r\n".encode("utf-16")
    with open(path, encoding="utf-16") as f:
        assert f.read() == "héllo\nwörld\n"
    with open(path, encoding="utf-16", newline="") as f:
        assert f.readlines() == ["héllo\r\n", "wörld\r\n"]
    mnt.real("bad.txt").write_bytes(b"ok\xffok")
    with open(mnt.path("bad.txt"), encoding="utf-8", errors="replace") as f:
        assert f.read() == "ok\ufffdok"
    with open(mnt.path("bad.txt"), encoding="utf-8") as f, pytest.raises(UnicodeDecodeError):
        f.read()


def test_unbuffered_binary_and_modes(mnt: Mounted) -> None:
    with open(mnt.path("r.bin"), "wb", buffering=0) as raw:
        assert raw.mode == "wb"
        assert raw.write(b"abc") == 3
    with open(mnt.path("r.bin"), "rb", buffering=0) as raw:
        assert raw.mode == "rb"
        assert raw.read() == b"abc"
    with open(mnt.path("r.bin"), "rb") as f:
        assert isinstance(f, io.BufferedReader)
        assert f.name == mnt.path("r.bin")
    with open(Path(mnt.path("r.bin"))) as text:
        assert text.mode == "r"
        assert text.name == mnt.path("r.bin")


def test_flush_makes_data_visible_at_the_agent(mnt: Mounted) -> None:
    with open(mnt.path("f.txt"), "w") as f:
        f.write("part one;")
        assert agent_bytes(mnt, "f.txt") == b""  # still buffered in this process
        f.flush()
        assert agent_bytes(mnt, "f.txt") == b"part one;"
        f.write("part two")
        f.flush()
        assert agent_bytes(mnt, "f.txt") == b"part one;part two"


def test_writes_larger_than_a_chunk_are_streamed(tmp_path: Path) -> None:
    options = MountOptions(write_chunk_bytes=64 * 1024, write_inflight_bytes=256 * 1024)
    data = os.urandom(MiB + 99)
    with mounted_export(tmp_path, options=options) as mnt:
        with open(mnt.path("s.bin"), "wb") as f:
            f.write(data)  # immutable: sent in slices
            f.write(bytearray(data[:70000]))  # mutable: copied
        assert agent_bytes(mnt, "s.bin") == data + data[:70000]
        assert mnt.ops.calls["session_write"] >= len(data) // (64 * 1024)


def test_truncate_method_keeps_position(mnt: Mounted) -> None:
    with open(mnt.path("t.bin"), "wb+") as f:
        f.write(b"0123456789")
        assert f.truncate(4) == 4
        assert f.tell() == 10
        f.seek(0)
        assert f.read() == b"0123"
        f.seek(6)
        f.write(b"x")
    assert agent_bytes(mnt, "t.bin") == b"0123\0\0x"


def test_close_to_open_reader_keeps_its_version(mnt: Mounted) -> None:
    mnt.real("c.txt").write_bytes(b"version one")
    reader = open(mnt.path("c.txt"), "rb")
    with open(mnt.path("c.txt"), "wb") as writer:
        writer.write(b"version two!")
    assert reader.read() == b"version one"
    reader.close()
    with open(mnt.path("c.txt"), "rb") as again:
        assert again.read() == b"version two!"


def test_fileno_is_unsupported(mnt: Mounted) -> None:
    mnt.real("n.txt").write_bytes(b"x")
    for mode in ("r", "rb", "w", "ab", "r+b"):
        with open(mnt.path("n.txt"), mode) as f, pytest.raises(io.UnsupportedOperation):
            f.fileno()


def test_missing_file_and_directory_errors_name_the_mount_path(mnt: Mounted) -> None:
    missing = mnt.path("nope/a.txt")
    with pytest.raises(FileNotFoundError) as caught:
        open(missing)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOENT,
        "No such file or directory",
        missing,
    )
    with pytest.raises(FileNotFoundError):
        open(missing, "w")
    with pytest.raises(FileNotFoundError):
        open(mnt.path("absent.txt"), "r+")
    os.mkdir(mnt.path("dir"))
    for mode in ("r", "rb", "w", "a"):
        with pytest.raises(IsADirectoryError) as denied:
            open(mnt.path("dir"), mode)
        assert denied.value.filename == mnt.path("dir")
    with pytest.raises(IsADirectoryError):
        open(mnt.mount)


def test_trailing_slash_on_a_file(mnt: Mounted) -> None:
    mnt.real("plain").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        open(mnt.path("plain") + "/")
    with pytest.raises(NotADirectoryError):
        os.stat(mnt.path("plain") + "/")
    with pytest.raises(IsADirectoryError):
        open(mnt.path("new") + "/", "w")


def test_bad_open_arguments_raise_like_io_open(mnt: Mounted, tmp_path: Path) -> None:
    local = tmp_path / "local.txt"
    local.write_text("x")
    mnt.real("m.txt").write_text("x")
    cases = [
        dict(mode="rw"),
        dict(mode="rbt"),
        dict(mode="z"),
        dict(mode="rb", encoding="utf-8"),
        dict(mode="rb", newline=""),
        dict(mode="r", buffering=0),
        dict(mode="r", closefd=False),
        dict(mode="a", newline="bad"),
    ]
    for kwargs in cases:
        with pytest.raises(Exception) as on_local:
            open(local, **kwargs)  # type: ignore[call-overload]
        with pytest.raises(Exception) as on_mount:
            open(mnt.path("m.txt"), **kwargs)  # type: ignore[call-overload]
        assert type(on_mount.value) is type(on_local.value), kwargs
        assert str(on_mount.value) == str(on_local.value), kwargs
    assert mnt.real("m.txt").read_text() == "x"
    assert len(mnt.ops.inner.sessions) == 0  # a file opened before a later argument failed is closed again


def test_closed_file_operations_raise_value_error(mnt: Mounted) -> None:
    f = open(mnt.path("cl.bin"), "wb")
    f.close()
    f.close()  # idempotent
    with pytest.raises(ValueError):
        f.write(b"x")
    r = open(mnt.path("cl.bin"), "rb", buffering=0)
    r.close()
    with pytest.raises(ValueError):
        r.read()


def test_a_session_the_agent_dropped_is_reopened_and_keeps_every_byte(mnt: Mounted) -> None:
    f = open(mnt.path("dropped.bin"), "wb")
    f.write(b"data")
    f.flush()
    for session_id in list(mnt.ops.inner.sessions._sessions):  # the agent drops the session (idle timeout)
        mnt.ops.inner.session_abort(session_id)
    f.write(b" and more")
    f.close()
    assert mnt.real("dropped.bin").read_bytes() == b"data and more"


def test_close_after_the_file_went_away_with_its_session_raises(mnt: Mounted) -> None:
    f = open(mnt.path("gone.bin"), "wb")
    f.write(b"data")
    for session_id in list(mnt.ops.inner.sessions._sessions):  # the agent drops the session (idle timeout)
        mnt.ops.inner.session_abort(session_id)
    mnt.real("gone.bin").unlink()
    with pytest.raises(OSError) as caught:
        f.close()
    assert caught.value.errno == errno.EBADF
    assert caught.value.filename == mnt.path("gone.bin")
    assert f.closed
    assert not mnt.real("gone.bin").exists(), "a lost session must never create the file again"


def test_concurrent_readers_in_threads(tmp_path: Path) -> None:
    import threading

    data = os.urandom(4 * MiB + 3)
    options = MountOptions(piece_bytes=256 * 1024, readahead_pieces=3)
    with mounted_export(tmp_path, options=options) as mnt:
        mnt.real("shared.bin").write_bytes(data)
        results: list[bytes] = []
        errors: list[BaseException] = []

        def reader(step: int) -> None:
            try:
                parts = []
                with open(mnt.path("shared.bin"), "rb") as f:
                    while chunk := f.read(step):
                        parts.append(chunk)
                results.append(b"".join(parts))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(step,)) for step in (4096, 100_000, 1 << 20, 333_333)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert results == [data] * 4
