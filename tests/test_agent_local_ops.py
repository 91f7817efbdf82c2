"""LocalExportOps against a real directory: every op, every errno a local user would see."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from fluxon_fs.export.ops import FileStat
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.export.serving.write_sessions import WriteSessionTable
from tests.support.poll import wait_until


@pytest.fixture
def root(tmp_path: Path) -> Path:
    export = tmp_path / "export"
    export.mkdir()
    (export / "dir").mkdir()
    (export / "dir" / "file.txt").write_bytes(b"hello world")
    (export / "empty").mkdir()
    return export


@pytest.fixture
def ops(root: Path) -> Iterator[LocalExportOps]:
    with LocalExportOps(str(root)) as export_ops:
        yield export_ops


def raises_errno(code: int, call: Callable[[], object], filename: str | None = None) -> OSError:
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno == code, f"expected {errno.errorcode[code]}, got {info.value!r}"
    if filename is not None:
        assert info.value.filename == filename
    return info.value


# -- stat / list_dir ----------------------------------------------------------------------------


def test_stat_matches_os_stat(ops: LocalExportOps, root: Path) -> None:
    got = ops.stat("dir/file.txt")
    assert got == FileStat.from_os(os.stat(root / "dir" / "file.txt"))
    assert got.is_file() and got.size == 11
    assert ops.stat("").is_dir() and ops.stat("").ino == root.stat().st_ino
    os.symlink("file.txt", root / "dir" / "link")
    assert ops.stat("dir/link").is_file()
    lst = ops.stat("dir/link", follow_symlinks=False)
    assert stat.S_ISLNK(lst.mode) and lst == FileStat.from_os(os.lstat(root / "dir" / "link"))


def test_stat_errors(ops: LocalExportOps, root: Path) -> None:
    exc = raises_errno(errno.ENOENT, lambda: ops.stat("dir/missing"), "dir/missing")
    assert isinstance(exc, FileNotFoundError)
    raises_errno(errno.ENOENT, lambda: ops.stat("nodir/x"), "nodir/x")
    exc = raises_errno(errno.ENOTDIR, lambda: ops.stat("dir/file.txt/x"), "dir/file.txt/x")
    assert isinstance(exc, NotADirectoryError)
    os.symlink("nowhere", root / "dangling")
    raises_errno(errno.ENOENT, lambda: ops.stat("dangling"), "dangling")
    assert stat.S_ISLNK(ops.stat("dangling", follow_symlinks=False).mode)


def test_list_dir_sorted_with_lstat(ops: LocalExportOps, root: Path) -> None:
    for name in ("b", "a", "C", "z.txt"):
        (root / "dir" / name).write_bytes(name.encode())
    os.symlink("a", root / "dir" / "l")
    entries = ops.list_dir("dir")
    assert [e.name for e in entries] == sorted(["b", "a", "C", "z.txt", "l", "file.txt"])
    by_name = {e.name: e.stat for e in entries}
    assert by_name["a"] == FileStat.from_os(os.lstat(root / "dir" / "a"))
    assert stat.S_ISLNK(by_name["l"].mode)
    assert ops.list_dir("empty") == []
    assert [e.name for e in ops.list_dir("")] == ["dir", "empty"]
    os.symlink("dir", root / "dirlink")
    assert [e.name for e in ops.list_dir("dirlink")] == [e.name for e in entries]


def test_list_dir_of_a_large_directory(ops: LocalExportOps, root: Path) -> None:
    big = root / "big"
    big.mkdir()
    names = [f"f{i:05d}" for i in range(3000)]
    for name in reversed(names):
        (big / name).touch()
    entries = ops.list_dir("big")
    assert [e.name for e in entries] == names
    assert all(e.stat.is_file() for e in entries)


def test_list_dir_errors(ops: LocalExportOps) -> None:
    raises_errno(errno.ENOENT, lambda: ops.list_dir("missing"), "missing")
    raises_errno(errno.ENOTDIR, lambda: ops.list_dir("dir/file.txt"), "dir/file.txt")


# -- read / write / truncate --------------------------------------------------------------------


def test_read_chunk_returns_data_and_stat(ops: LocalExportOps, root: Path) -> None:
    st, data = ops.read_chunk("dir/file.txt", 6, 100)
    assert data == b"world"
    local = FileStat.from_os(os.stat(root / "dir" / "file.txt"))
    assert st == attrs.evolve(local, atime_ns=st.atime_ns)  # the read itself may bump atime
    assert ops.read_chunk("dir/file.txt", 0, 5)[1] == b"hello"
    assert ops.read_chunk("dir/file.txt", 11, 5)[1] == b""
    assert ops.read_chunk("dir/file.txt", 1000, 5)[1] == b""
    assert ops.read_chunk("dir/file.txt", 0, 0)[1] == b""


def test_read_chunk_is_capped_at_max_chunk_bytes(root: Path) -> None:
    with LocalExportOps(str(root), max_chunk_bytes=4) as small:
        assert small.read_chunk("dir/file.txt", 0, 100)[1] == b"hell"
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        LocalExportOps(str(root), max_chunk_bytes=0)


def test_read_chunk_errors(ops: LocalExportOps, root: Path) -> None:
    raises_errno(errno.ENOENT, lambda: ops.read_chunk("dir/nope", 0, 1), "dir/nope")
    exc = raises_errno(errno.EISDIR, lambda: ops.read_chunk("dir", 0, 1), "dir")
    assert isinstance(exc, IsADirectoryError)
    raises_errno(errno.EISDIR, lambda: ops.read_chunk("", 0, 1), "")
    raises_errno(errno.EINVAL, lambda: ops.read_chunk("dir/file.txt", -1, 1), "dir/file.txt")
    raises_errno(errno.EINVAL, lambda: ops.read_chunk("dir/file.txt", 0, -1), "dir/file.txt")
    os.mkfifo(root / "fifo")
    # A FIFO without a writer would block an agent thread forever; it is refused instead.
    raises_errno(errno.EOPNOTSUPP, lambda: ops.read_chunk("fifo", 0, 1), "fifo")
    # Opening it for writing without a reader fails at once (O_NONBLOCK) instead of blocking.
    raises_errno(errno.ENXIO, lambda: ops.write_chunk("fifo", 0, b"x"), "fifo")


def test_write_chunk_writes_in_place(ops: LocalExportOps, root: Path) -> None:
    st = ops.write_chunk("dir/file.txt", 6, b"WORLD!!")
    path = root / "dir" / "file.txt"
    assert st == FileStat.from_os(os.stat(path))
    assert path.read_bytes() == b"hello WORLD!!"
    ops.write_chunk("dir/file.txt", 15, memoryview(b"xy"))
    assert path.read_bytes() == b"hello WORLD!!\0\0xy"


def test_write_chunk_errors(ops: LocalExportOps, root: Path) -> None:
    raises_errno(errno.ENOENT, lambda: ops.write_chunk("dir/new", 0, b"x"), "dir/new")
    assert not (root / "dir" / "new").exists()
    raises_errno(errno.EISDIR, lambda: ops.write_chunk("dir", 0, b"x"), "dir")
    raises_errno(errno.EINVAL, lambda: ops.write_chunk("dir/file.txt", -5, b"x"), "dir/file.txt")


def test_truncate(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "file.txt"
    assert ops.truncate("dir/file.txt", 5).size == 5
    assert path.read_bytes() == b"hello"
    assert ops.truncate("dir/file.txt", 8).size == 8
    assert path.read_bytes() == b"hello\0\0\0"
    raises_errno(errno.ENOENT, lambda: ops.truncate("dir/nope", 0), "dir/nope")
    raises_errno(errno.EISDIR, lambda: ops.truncate("dir", 0), "dir")
    raises_errno(errno.EINVAL, lambda: ops.truncate("dir/file.txt", -1), "dir/file.txt")


# -- namespace ----------------------------------------------------------------------------------


def test_mkdir(ops: LocalExportOps, root: Path) -> None:
    ops.mkdir("dir/sub", 0o750)
    st = (root / "dir" / "sub").stat()
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750 & ~_umask()
    exc = raises_errno(errno.EEXIST, lambda: ops.mkdir("dir/sub"), "dir/sub")
    assert isinstance(exc, FileExistsError)
    raises_errno(errno.EEXIST, lambda: ops.mkdir("dir/file.txt"), "dir/file.txt")
    os.symlink("nowhere", root / "dangling")
    raises_errno(errno.EEXIST, lambda: ops.mkdir("dangling"), "dangling")
    raises_errno(errno.ENOENT, lambda: ops.mkdir("no/parent"), "no/parent")
    raises_errno(errno.EEXIST, lambda: ops.mkdir(""), "")


def test_rmdir(ops: LocalExportOps, root: Path) -> None:
    ops.rmdir("empty")
    assert not (root / "empty").exists()
    raises_errno(errno.ENOTEMPTY, lambda: ops.rmdir("dir"), "dir")
    raises_errno(errno.ENOTDIR, lambda: ops.rmdir("dir/file.txt"), "dir/file.txt")
    raises_errno(errno.ENOENT, lambda: ops.rmdir("empty"), "empty")
    (root / "target").mkdir()
    os.symlink("target", root / "dirlink")
    raises_errno(errno.ENOTDIR, lambda: ops.rmdir("dirlink"), "dirlink")
    assert (root / "target").is_dir()
    raises_errno(errno.EBUSY, lambda: ops.rmdir(""), "")


def test_unlink(ops: LocalExportOps, root: Path) -> None:
    os.symlink("dir/file.txt", root / "link")
    ops.unlink("link")
    assert not os.path.lexists(root / "link")
    assert (root / "dir" / "file.txt").exists()
    ops.unlink("dir/file.txt")
    assert not (root / "dir" / "file.txt").exists()
    raises_errno(errno.ENOENT, lambda: ops.unlink("dir/file.txt"), "dir/file.txt")
    raises_errno(errno.EISDIR, lambda: ops.unlink("dir"), "dir")
    raises_errno(errno.EISDIR, lambda: ops.unlink(""), "")


def test_rename(ops: LocalExportOps, root: Path) -> None:
    ops.rename("dir/file.txt", "moved.txt")
    assert (root / "moved.txt").read_bytes() == b"hello world"
    (root / "other.txt").write_bytes(b"old")
    ops.rename("moved.txt", "other.txt")  # replaces a file, like os.replace
    assert (root / "other.txt").read_bytes() == b"hello world"
    ops.rename("dir", "empty")  # a directory may replace an empty directory
    assert (root / "empty").is_dir() and not (root / "dir").exists()
    os.symlink("other.txt", root / "link")
    ops.rename("link", "link2")  # moves the link, not its target
    assert os.readlink(root / "link2") == "other.txt"


def test_rename_errors_name_both_paths(ops: LocalExportOps, root: Path) -> None:
    exc = raises_errno(errno.ENOENT, lambda: ops.rename("nope", "dst"), "nope")
    assert exc.filename2 == "dst"
    (root / "empty" / "x").touch()
    exc = raises_errno(errno.ENOTEMPTY, lambda: ops.rename("dir", "empty"), "dir")
    assert exc.filename2 == "empty"
    raises_errno(errno.EISDIR, lambda: ops.rename("dir/file.txt", "empty"), "dir/file.txt")
    (root / "plain").touch()
    raises_errno(errno.ENOTDIR, lambda: ops.rename("dir", "plain"), "dir")
    raises_errno(errno.EINVAL, lambda: ops.rename("dir", "dir/inside"), "dir")
    raises_errno(errno.EBUSY, lambda: ops.rename("", "x"), "")
    raises_errno(errno.EBUSY, lambda: ops.rename("dir", ""), "dir")
    exc = raises_errno(errno.ENOENT, lambda: ops.rename("dir/file.txt", "no/such/dst"), "no/such/dst")


def test_chmod_follows_links_and_needs_no_data_access(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "file.txt"
    ops.chmod("dir/file.txt", 0o000)
    assert stat.S_IMODE(path.stat().st_mode) == 0
    ops.chmod("dir/file.txt", 0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.symlink("dir/file.txt", root / "link")
    ops.chmod("link", 0o604)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    ops.chmod("dir", 0o700)
    assert stat.S_IMODE((root / "dir").stat().st_mode) == 0o700
    raises_errno(errno.ENOENT, lambda: ops.chmod("nope", 0o600), "nope")


def test_utime(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "file.txt"
    ops.utime("dir/file.txt", (1_000_000_123, 2_000_000_456))
    st = path.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    os.symlink("dir/file.txt", root / "link")
    ops.utime("link", (5, 7))
    assert path.stat().st_mtime_ns == 7
    before = time.time_ns()
    ops.utime("dir/file.txt", None)
    assert path.stat().st_mtime_ns >= before - 50_000_000  # coarse fs clocks may lag a tick
    raises_errno(errno.ENOENT, lambda: ops.utime("nope", None), "nope")


# -- permissions (as an unprivileged user) ------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_unprivileged(root_dir: str, calls: list[tuple[str, Callable[[LocalExportOps], object]]]) -> dict:
    """Run ``calls`` on a LocalExportOps in a child running as nobody (or here when not root)."""

    def run_all() -> dict:
        results = {}
        with LocalExportOps(root_dir) as unprivileged:
            for name, call in calls:
                try:
                    call(unprivileged)
                    results[name] = "ok"
                except OSError as exc:
                    results[name] = [type(exc).__name__, exc.errno, exc.filename]
        return results

    if os.geteuid() != 0:
        return run_all()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, report as JSON, never return into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(run_all()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        payload = reader.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and payload, "unprivileged child failed"
    return json.loads(payload)


def test_permission_errors_are_eacces() -> None:
    base = tempfile.mkdtemp(prefix="fxperm", dir="/tmp")  # traversable by nobody (not under tmp_path)
    try:
        os.chmod(base, 0o755)
        Path(base, "ro_dir").mkdir(mode=0o755)
        Path(base, "private").write_bytes(b"secret")
        os.chmod(Path(base, "private"), 0o600)
        Path(base, "locked").mkdir()
        Path(base, "locked", "inner").write_bytes(b"x")
        os.chmod(Path(base, "locked"), 0o700)
        if os.geteuid() != 0:
            pytest.skip("needs root to create files the unprivileged child may not touch")
        results = _as_unprivileged(
            base,
            [
                ("read", lambda o: o.read_chunk("private", 0, 10)),
                ("write", lambda o: o.write_chunk("private", 0, b"x")),
                ("truncate", lambda o: o.truncate("private", 0)),
                ("chmod", lambda o: o.chmod("private", 0o777)),
                ("mkdir", lambda o: o.mkdir("ro_dir/sub")),
                ("unlink", lambda o: o.unlink("private")),
                ("traverse", lambda o: o.stat("locked/inner")),
                ("list", lambda o: o.list_dir("locked")),
                ("session", lambda o: o.session_open("ro_dir/f", create=True, exclusive=False, truncate=False)),
                ("stat_ok", lambda o: o.stat("private")),
            ],
        )
        expected_names = {
            "read": "private",
            "write": "private",
            "truncate": "private",
            "mkdir": "ro_dir/sub",
            "unlink": "private",
            "traverse": "locked/inner",
            "list": "locked",
            "session": "ro_dir/f",
        }
        for name, relpath in expected_names.items():
            assert results[name] == ["PermissionError", errno.EACCES, relpath], (name, results[name])
        assert results["chmod"] == ["PermissionError", errno.EPERM, "private"]
        assert results["stat_ok"] == "ok"
        assert Path(base, "private").read_bytes() == b"secret"
    finally:
        shutil.rmtree(base)


# -- write sessions -----------------------------------------------------------------------------


def test_session_create_write_flush_finalize(ops: LocalExportOps, root: Path) -> None:
    info = ops.session_open("dir/new.bin", create=True, exclusive=True, truncate=False, mode=0o600)
    assert info.stat.size == 0 and len(info.session_id) == 32
    path = root / "dir" / "new.bin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 & ~_umask()
    assert ops.session_relpath(info.session_id) == "dir/new.bin"
    ops.session_write(info.session_id, 0, b"abc")
    ops.session_write(info.session_id, 3, memoryview(b"def"))
    assert path.read_bytes() == b"abcdef"  # visible before flush, like a local write()
    assert ops.session_flush(info.session_id).size == 6
    final = ops.session_finalize(info.session_id)
    assert final == FileStat.from_os(os.stat(path))
    raises_errno(errno.EBADF, lambda: ops.session_write(info.session_id, 0, b"x"))
    raises_errno(errno.EBADF, lambda: ops.session_finalize(info.session_id))
    raises_errno(errno.EBADF, lambda: ops.session_abort(info.session_id))
    raises_errno(errno.EBADF, lambda: ops.session_relpath(info.session_id))


def test_finalize_after_writes_leaves_a_version_no_reader_saw_while_writing(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "same.bin"
    info = ops.session_open("dir/same.bin", create=True, exclusive=False, truncate=True)
    ops.session_write(info.session_id, 4, b"late")
    ops.session_write(info.session_id, 0, b"\0\0\0\0")
    # A reader stats (and may cache pieces of) the file here; the clock has not ticked since.
    tick = 5_000_000_000
    os.utime(path, ns=(tick, tick))
    seen = ops.stat("dir/same.bin")
    ops.session_write(info.session_id, 0, b"head")  # same size, same coarse tick: same version
    os.utime(path, ns=(tick, tick))
    final = ops.session_finalize(info.session_id)
    assert final == FileStat.from_os(os.stat(path))
    assert final.size == seen.size == 8 and final.mtime_ns > seen.mtime_ns and final.version != seen.version
    assert path.read_bytes() == b"headlate"


def test_abort_after_writes_also_leaves_a_fresh_version(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "aborted.bin"
    info = ops.session_open("dir/aborted.bin", create=True, exclusive=False, truncate=True)
    ops.session_write(info.session_id, 0, b"partial")
    os.utime(path, ns=(5_000_000_000, 5_000_000_000))  # what a reader saw mid-write
    ops.session_abort(info.session_id)
    assert path.stat().st_mtime_ns > 5_000_000_000 and path.read_bytes() == b"partial"


def test_finalize_without_writes_leaves_the_times_alone(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "file.txt"
    os.utime(path, ns=(3_000_000_000, 4_000_000_000))
    info = ops.session_open("dir/file.txt", create=False, exclusive=False, truncate=False)
    assert ops.session_finalize(info.session_id).mtime_ns == 4_000_000_000
    assert path.stat().st_mtime_ns == 4_000_000_000


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the stamp as another user")
def test_a_writer_that_does_not_own_the_file_still_gets_a_fresh_version(root: Path) -> None:
    """Setting an explicit mtime needs ownership; a writer without it touches the file until the clock moves."""
    path = root / "shared.bin"
    path.write_bytes(b"x" * 10)
    path.chmod(0o666)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"y", 0)
        before = os.fstat(fd).st_mtime_ns
        script = (
            "import os, sys\n"
            "from fluxon_fs.export.serving.write_sessions import stamp_fresh_version\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "fd = int(sys.argv[1])\n"
            "try:\n"
            "    os.utime(fd, ns=(1, 1))\n"
            "except PermissionError:\n"
            "    pass\n"
            "else:\n"
            "    sys.exit('an explicit mtime was allowed to a user who does not own the file')\n"
            "print(stamp_fresh_version(fd).st_mtime_ns)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(fd)], pass_fds=(fd,), capture_output=True, text=True, timeout=60
        )
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    stamped = int(done.stdout.strip())
    assert stamped > before and path.stat().st_mtime_ns == stamped


def test_session_open_flags(ops: LocalExportOps, root: Path) -> None:
    path = root / "dir" / "file.txt"
    raises_errno(
        errno.EEXIST,
        lambda: ops.session_open("dir/file.txt", create=True, exclusive=True, truncate=False),
        "dir/file.txt",
    )
    raises_errno(
        errno.ENOENT, lambda: ops.session_open("dir/nope", create=False, exclusive=False, truncate=False), "dir/nope"
    )
    raises_errno(errno.EISDIR, lambda: ops.session_open("dir", create=True, exclusive=False, truncate=False), "dir")
    keep = ops.session_open("dir/file.txt", create=False, exclusive=False, truncate=False)
    assert keep.stat.size == 11
    ops.session_write(keep.session_id, 0, b"J")
    ops.session_abort(keep.session_id)
    assert path.read_bytes() == b"Jello world"  # abort keeps what was written
    trunc = ops.session_open("dir/file.txt", create=True, exclusive=False, truncate=True)
    assert trunc.stat.size == 0 and path.read_bytes() == b""
    ops.session_finalize(trunc.session_id)
    assert len(ops.sessions) == 0


def test_session_concurrent_writes_land_at_their_offsets(ops: LocalExportOps, root: Path) -> None:
    info = ops.session_open("big.bin", create=True, exclusive=False, truncate=True)
    piece = 64 * 1024
    pieces = 64

    def writer(first: int) -> None:
        for index in range(first, pieces, 4):
            ops.session_write(info.session_id, index * piece, bytes([index]) * piece)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ops.session_finalize(info.session_id).size == piece * pieces
    data = (root / "big.bin").read_bytes()
    assert all(data[i * piece : (i + 1) * piece] == bytes([i]) * piece for i in range(pieces))


def test_abandoned_session_is_closed_by_the_reaper(root: Path) -> None:
    with LocalExportOps(str(root), session_idle_timeout_s=0.2) as ops:
        abandoned = ops.session_open("dir/a.bin", create=True, exclusive=False, truncate=True)
        ops.session_write(abandoned.session_id, 0, b"flushed")
        active = ops.session_open("dir/b.bin", create=True, exclusive=False, truncate=True)
        fd_path = f"/proc/self/fd/{ops.sessions._sessions[abandoned.session_id].fd}"
        target = os.readlink(fd_path)

        # Keep the active session busy with calls while the abandoned one idles out.
        def abandoned_gone() -> bool:
            ops.session_flush(active.session_id)
            return len(ops.sessions) == 1

        wait_until(abandoned_gone, timeout_s=10, message="abandoned session reaped")
        raises_errno(errno.EBADF, lambda: ops.session_write(abandoned.session_id, 0, b"late"))
        assert (root / "dir" / "a.bin").read_bytes() == b"flushed"
        assert not (os.path.exists(fd_path) and os.readlink(fd_path) == target)  # fd released
        ops.session_finalize(active.session_id)


def test_session_limit_is_enforced_before_opening(root: Path) -> None:
    with LocalExportOps(str(root), max_sessions=2) as ops:
        first = ops.session_open("one", create=True, exclusive=False, truncate=False)
        ops.session_open("two", create=True, exclusive=False, truncate=False)
        exc = raises_errno(
            errno.EMFILE, lambda: ops.session_open("three", create=True, exclusive=False, truncate=False), "three"
        )
        assert "limit 2" in str(exc)
        assert not (root / "three").exists()
        ops.session_abort(first.session_id)
        ops.session_open("three", create=True, exclusive=False, truncate=False)
    # close() released every session
    assert (root / "three").exists()


def test_finalize_waits_for_a_running_write() -> None:
    table = WriteSessionTable(idle_timeout_s=30)
    read_end, write_end = os.pipe()
    os.close(read_end)
    session_id = table.open("p", lambda: write_end)
    entered = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def slow_write() -> None:
        with table.use(session_id):
            entered.set()
            release.wait(10)
            order.append("write done")

    writer = threading.Thread(target=slow_write)
    writer.start()
    entered.wait(10)
    finisher = threading.Thread(target=lambda: order.append(table.finish(session_id, lambda fd: "finished")))
    finisher.start()
    wait_until(lambda: len(table) == 0, timeout_s=10, message="session retired by finish()")
    raises_errno(errno.EBADF, lambda: table.relpath(session_id))  # no new call can start
    assert order == []
    release.set()
    writer.join()
    finisher.join()
    assert order == ["write done", "finished"]
    table.close()


def test_session_table_rejects_bad_settings_and_closed_use() -> None:
    with pytest.raises(ValueError, match="idle_timeout_s"):
        WriteSessionTable(idle_timeout_s=0)
    with pytest.raises(ValueError, match="max_sessions"):
        WriteSessionTable(max_sessions=0)
    table = WriteSessionTable()
    table.close()
    raises_errno(errno.EBADF, lambda: table.open("p", lambda: os.open("/dev/null", os.O_RDONLY)))
