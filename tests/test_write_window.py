"""Writes through a mount stream with a bounded window: calls counted at the client's RPC boundary.

The mount's export calls are watched by :class:`WindowWatch`, a proxy in front of the mount's real
``ExportOps`` (the RPC client to a real fs agent process, or the agent's ops in this process) that
forwards every call and records what crossed: calls per operation, which thread sent each
``session_write`` and how many bytes were in flight at once. It can also hold the first payload until
the second one was sent, which only a writer that does not wait for each reply gets through.
"""

from __future__ import annotations

import errno
import os
import resource
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_fs.patcher import MountedExport, MountOptions
from tests.support.mount_e2e import AGENT_KEY, MountE2E, mount_e2e_fixture
from tests.support.mount_harness import Mounted, mounted_export

e2e = mount_e2e_fixture()

MiB = 1024 * 1024
HOLD_TIMEOUT_S = 30.0


class WindowWatch:
    """Forwards every export call to ``inner``; records calls, senders and bytes in flight."""

    def __init__(self, inner: Any, *, hold_first_write: bool = False) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.writer_thread_writes = 0
        """``session_write`` calls sent by the thread that opened the file (it waited for their reply)."""
        self.max_inflight_bytes = 0
        self.max_inflight_calls = 0
        self.held_first_write_released_by_second = False
        self._writer = threading.get_ident()
        self._inflight_bytes = 0
        self._inflight_calls = 0
        self._hold = hold_first_write
        self._second_sent = threading.Event()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name.startswith("_") or name == "close":
            return attribute

        def watched(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            if name != "session_write":
                return attribute(*args, **kwargs)
            return self._write(attribute, *args, **kwargs)

        return watched

    def _write(self, forward: Any, session_id: str, offset: int, data: Any) -> Any:
        size = memoryview(data).nbytes
        with self._lock:
            number = self.calls["session_write"]
            self.writer_thread_writes += threading.get_ident() == self._writer
            self._inflight_calls += 1
            self._inflight_bytes += size
            self.max_inflight_calls = max(self.max_inflight_calls, self._inflight_calls)
            self.max_inflight_bytes = max(self.max_inflight_bytes, self._inflight_bytes)
        try:
            if self._hold and number == 1:
                # Forwarded only once the writer sent the next payload: a writer that waits for
                # each reply never gets past this.
                self.held_first_write_released_by_second = self._second_sent.wait(HOLD_TIMEOUT_S)
            elif number == 2:
                self._second_sent.set()
            return forward(session_id, offset, data)
        finally:
            with self._lock:
                self._inflight_calls -= 1
                self._inflight_bytes -= size


@contextmanager
def watched(export: MountedExport, options: MountOptions, **watch: Any) -> Iterator[WindowWatch]:
    """Files opened inside use ``options`` and send their calls through a :class:`WindowWatch`."""
    saved_ops, saved_options = export.ops, export.options
    watch_ops = WindowWatch(saved_ops, **watch)
    export.ops, export.options = watch_ops, options
    try:
        yield watch_ops
    finally:
        export.ops, export.options = saved_ops, saved_options


def write_in_calls(path: str, data: bytes, call_bytes: int = MiB) -> None:
    view = memoryview(data)
    with open(path, "wb") as f:
        for start in range(0, len(view), call_bytes):
            f.write(view[start : start + call_bytes])


# -- against a real agent process ------------------------------------------------------------------


def test_n_mib_in_1_mib_calls_make_one_call_per_chunk_and_stream(e2e: MountE2E) -> None:
    export = e2e.mounted()
    chunk, window, size = 2 * MiB, 4 * MiB, 7 * MiB
    options = attrs.evolve(export.options, write_chunk_bytes=chunk, write_inflight_bytes=window)
    data = os.urandom(size)
    with watched(export, options, hold_first_write=True) as watch:
        _, at_agent = e2e.agent_ops_during(lambda: write_in_calls(e2e.path("window/counted.bin"), data))
    chunks = -(-size // chunk)
    assert watch.calls == {"session_open": 1, "session_write": chunks, "session_finalize": 1}
    assert at_agent == {"session_open": 1, "session_write": chunks, "session_finalize": 1}
    assert watch.held_first_write_released_by_second, "the second chunk waited for the first one's reply"
    assert watch.max_inflight_bytes <= window and watch.max_inflight_calls == window // chunk
    assert watch.writer_thread_writes <= 1  # only the tail, sent by close()
    assert e2e.real("window/counted.bin").read_bytes() == data


@contextmanager
def agent_file_size_limit(e2e: MountE2E, limit: int) -> Iterator[None]:
    """The agent process's RLIMIT_FSIZE: its ``pwrite`` past ``limit`` fails with EFBIG (Python ignores SIGXFSZ)."""
    pid = e2e.fs.agents[AGENT_KEY].pid
    saved = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, saved[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, saved)


def test_a_chunk_the_agent_disk_refuses_fails_the_write_or_close_with_its_errno(e2e: MountE2E) -> None:
    export = e2e.mounted()
    options = attrs.evolve(export.options, write_chunk_bytes=MiB, write_inflight_bytes=4 * MiB)
    data = os.urandom(8 * MiB)
    path = e2e.path("window/refused.bin")
    with watched(export, options) as watch, agent_file_size_limit(e2e, 3 * MiB):
        f = open(path, "wb")  # noqa: SIM115 - closed below, where it may fail
        with pytest.raises(OSError) as caught:
            try:
                for start in range(0, len(data), MiB):
                    f.write(data[start : start + MiB])
            finally:
                f.close()
    assert (caught.value.errno, caught.value.filename) == (errno.EFBIG, path)
    assert f.closed
    assert watch.calls["session_abort"] == 1 and watch.calls["session_finalize"] == 0
    # The file holds what the agent's disk took; the mount reports that, never the size the writer meant.
    landed = e2e.real("window/refused.bin").read_bytes()
    assert landed == data[: 3 * MiB]
    assert os.path.getsize(path) == len(landed)
    with open(path, "rb") as reread:
        assert reread.read() == landed


@pytest.fixture(autouse=True)
def _window_dir(request: pytest.FixtureRequest) -> None:
    if "e2e" in request.fixturenames:
        env: MountE2E = request.getfixturevalue("e2e")
        env.real("window").mkdir(exist_ok=True)


# -- against the agent's ops in this process ------------------------------------------------------

SMALL = MountOptions(write_chunk_bytes=64 * 1024, write_inflight_bytes=256 * 1024)


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mounted]:
    with mounted_export(tmp_path, options=SMALL) as mounted:
        yield mounted


def drop_agent_sessions(mnt: Mounted) -> None:
    """What an agent does to a session idle past its timeout (or a restarted agent has lost)."""
    for session_id in list(mnt.ops.inner.sessions._sessions):
        mnt.ops.inner.session_abort(session_id)


def test_a_session_lost_mid_stream_is_reopened_under_the_window(mnt: Mounted) -> None:
    data = os.urandom(2 * MiB + 12345)
    with open(mnt.path("lost.bin"), "wb", buffering=0) as f:
        for start in range(0, len(data), 100_000):
            if start == 1_000_000:
                drop_agent_sessions(mnt)  # with payloads of the window possibly still in flight
            f.write(data[start : start + 100_000])
    assert mnt.real("lost.bin").read_bytes() == data
    assert mnt.ops.calls["session_open"] == 2  # the first one, and the transparent re-open
    assert len(mnt.ops.inner.sessions) == 0


def test_a_file_replaced_mid_stream_is_never_written_again(mnt: Mounted) -> None:
    f = open(mnt.path("replaced.bin"), "wb", buffering=0)  # noqa: SIM115 - closed below, where it fails
    f.write(os.urandom(MiB))
    f.flush()  # nothing in flight: the next payload is the first to find the session gone
    drop_agent_sessions(mnt)
    mnt.real("other.bin").write_bytes(b"someone else's file")  # a new inode, while the old one still lives
    os.replace(mnt.real("other.bin"), mnt.real("replaced.bin"))
    with pytest.raises(OSError) as caught:
        f.write(os.urandom(MiB))
        f.close()
    assert (caught.value.errno, caught.value.filename) == (errno.EBADF, mnt.path("replaced.bin"))
    f.close()
    assert mnt.real("replaced.bin").read_bytes() == b"someone else's file"
