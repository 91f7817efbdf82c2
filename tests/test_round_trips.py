"""Round trips per read and metadata operation on a mount, counted, not timed (issue 12).

A real stack (kv master, owner, fs master, agent: processes) and a mount in this process. Calls are
counted at two real boundaries:

* this process's RPC client: a counting wrapper around ``ZmqRpcClient.call`` (the transport every
  call of the mount and of the KV client goes through) records the path and the calling thread, so
  the calls made *on the reader's path* (its own thread) are told apart from background work;
* the agent's own ``fluxon_fs_ops_total`` counters, which also see other processes' calls.

A test fails when an operation needs more calls than it does today.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fluxon_fs.export.same_host.client import SameHostWriter
from fluxon_fs.patcher import piece_key
from fluxon_fs.patcher.content_cache import read_version_hint, version_hint_key
from fluxon_plugins.zmq_transport.client import ZmqRpcClient
from tests.support.mount_e2e import MountE2E, mount_e2e_fixture

MiB = 1024 * 1024
e2e = mount_e2e_fixture(stale_window_ms=5000, metadata_cache_ttl_ms=10_000)


class Calls:
    """RPC calls this process made, as (thread ident, kind) where kind is ``agent:<op>``,
    ``owner:<path>``, ``master:<path>`` or the raw path."""

    def __init__(self) -> None:
        self.made: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def record(self, path: str) -> None:
        with self._lock:
            self.made.append((threading.get_ident(), _kind(path)))

    def on(self, thread: int) -> Counter[str]:
        """Calls made by ``thread``."""
        with self._lock:
            return Counter(kind for ident, kind in self.made if ident == thread)

    def everywhere(self) -> Counter[str]:
        """Calls made by any thread of this process."""
        with self._lock:
            return Counter(kind for _, kind in self.made)


def _kind(path: str) -> str:
    for prefix, kind in (
        ("/fluxon_fs/demo/", "agent:"),
        ("/fluxon_kv/owner/", "owner:"),
        ("/fluxon_kv/master/", "master:"),
    ):
        if path.startswith(prefix):
            return kind + path[len(prefix) :]
    return path


@contextmanager
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    calls = Calls()
    real_call = ZmqRpcClient.call

    def counting_call(self: ZmqRpcClient, endpoint: str, path: str, *args: Any, **kwargs: Any) -> Any:
        calls.record(path)
        return real_call(self, endpoint, path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ZmqRpcClient, "call", counting_call)
        yield calls


def on_this_thread(monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]) -> tuple[Any, Counter[str], Calls]:
    """Run ``action``; its value, the calls this thread made meanwhile, and every call counted."""
    with counted(monkeypatch) as calls:
        value = action()
    return value, calls.on(threading.get_ident()), calls


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fresh(e2e: MountE2E, name: str, data: bytes) -> str:
    """A file written straight into the export (the mount has never seen it); its mount path."""
    e2e.real(name).write_bytes(data)
    return e2e.path(name)


def test_a_cold_small_read_is_one_agent_call_and_caching_waits_for_nothing(
    e2e: MountE2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(4096)
    path = fresh(e2e, "cold-small.bin", data)

    with counted(monkeypatch) as calls:
        got, agent = e2e.agent_ops_during(lambda: read(path))
        mine = calls.on(threading.get_ident())
        # The pool is filled in the background: one value, the version hint carrying the whole
        # file, in one batch (one call to the owner, which commits it at the kv master in one call).
        e2e.settle_cache()
    assert got == data
    assert mine == Counter({"agent:read_chunk": 1}), mine  # metadata and content in one answer
    assert agent == Counter({"read_chunk": 1}), agent
    background = calls.everywhere() - mine
    assert background["owner:put"] == 0, background
    assert background["owner:put_many"] == 1, background
    real = e2e.real("cold-small.bin").stat()
    version = f"{real.st_size}-{real.st_mtime_ns}"
    # One staged value per small file: the content rides in the hint, no separate piece.
    assert e2e.store.get_blocking(piece_key("demo", "cold-small.bin", version, 0)).is_err()
    hint = e2e.store.get_blocking(version_hint_key("demo", "cold-small.bin")).unwrap().access()["data"]
    assert read_version_hint(hint) == (version, data)


def test_a_warm_read_in_the_same_process_makes_no_call(e2e: MountE2E, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(4096)
    path = fresh(e2e, "warm-small.bin", data)
    assert read(path) == data

    (got, mine, calls), agent = e2e.agent_ops_during(lambda: on_this_thread(monkeypatch, lambda: read(path)))
    assert got == data
    assert mine == Counter(), mine
    assert calls.everywhere()["owner:put_many"] == 0  # nothing new to cache
    assert agent == Counter(), agent


def test_another_process_on_the_host_reads_the_content_from_the_pool_after_one_stat(e2e: MountE2E) -> None:
    files = {"shared-small.bin": os.urandom(4096), "shared-large.bin": os.urandom(3 * MiB + 5)}
    for name, data in files.items():
        assert read(fresh(e2e, name, data)) == data
    e2e.settle_cache()

    answer, agent = e2e.agent_ops_during(lambda: e2e.reader_process("round-trips-reader", *files))
    assert {name: size for name, (size, _) in answer.items()} == {name: len(data) for name, data in files.items()}
    # No content call; one stat per file: a process new to the file revalidates the version the
    # pool's hint names.
    assert agent == Counter({"stat": len(files)}), agent


def test_what_a_script_read_before_it_just_exited_is_in_the_pool_for_the_next_process(e2e: MountE2E) -> None:
    files = {"script-small.bin": os.urandom(4096), "script-large.bin": os.urandom(2 * MiB + 3)}
    for name, data in files.items():
        e2e.real(name).write_bytes(data)
    first, agent = e2e.agent_ops_during(lambda: e2e.reader_process("round-trips-script", *files, just_exit=True))
    assert {name: size for name, (size, _) in first.items()} == {name: len(data) for name, data in files.items()}
    assert agent["read_chunk"] == 4, agent  # cold: one call for the small file, three for the large one

    second, agent = e2e.agent_ops_during(lambda: e2e.reader_process("round-trips-next", *files))
    assert second == first
    assert agent == Counter({"stat": len(files)}), agent  # content from the pool the script's exit filled


def test_a_cold_large_read_asks_the_cluster_once_then_only_the_agent(
    e2e: MountE2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(6 * MiB + 3)
    path = fresh(e2e, "cold-large.bin", data)

    (got, _, calls), agent = e2e.agent_ops_during(lambda: on_this_thread(monkeypatch, lambda: read(path)))
    assert got == data
    assert agent == Counter({"read_chunk": 7}), agent  # each piece once
    # One lookup of a piece in the cluster (through the host's owner) decides that no peer holds
    # this version; the other pieces do not pay a cluster-wide miss each.
    assert calls.everywhere()["owner:get"] <= 1, calls.everywhere()


def test_a_cold_stat_is_one_call(e2e: MountE2E, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fresh(e2e, "cold-stat.bin", b"x" * 100)

    (st, mine, _), agent = e2e.agent_ops_during(lambda: on_this_thread(monkeypatch, lambda: os.stat(path)))
    assert st.st_size == 100
    assert mine == Counter({"agent:stat": 1}), mine
    assert agent == Counter({"stat": 1}), agent


@pytest.mark.parametrize("how", ["listdir-then-stat", "scandir-entry-stat"])
def test_listing_and_stat_of_1000_entries_is_one_call(e2e: MountE2E, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    directory = e2e.real(f"many-{how}")
    directory.mkdir()
    for index in range(1000):
        (directory / f"f{index:04d}").write_bytes(b"y" * index)
    mounted = e2e.path(f"many-{how}")

    def list_and_stat() -> dict[str, int]:
        if how == "listdir-then-stat":
            return {name: os.stat(os.path.join(mounted, name)).st_size for name in os.listdir(mounted)}
        with os.scandir(mounted) as entries:
            return {entry.name: entry.stat().st_size for entry in entries if entry.is_file()}

    (sizes, mine, _), agent = e2e.agent_ops_during(lambda: on_this_thread(monkeypatch, list_and_stat))
    assert sizes == {f"f{index:04d}": index for index in range(1000)}
    assert mine == Counter({"agent:list_dir": 1}), mine
    assert agent == Counter({"list_dir": 1}), agent


def test_a_write_on_the_agents_host_sends_its_chunks_over_the_same_host_channel(
    e2e: MountE2E, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk = e2e.mounted().options.write_chunk_bytes
    data = os.urandom(2 * chunk + MiB)  # three chunks, the last one short
    path = e2e.path("same-host-write.bin")
    channel_writes: list[int] = []
    real_write = SameHostWriter.write

    def counting_write(self: SameHostWriter, *args: Any, **kwargs: Any) -> bool:
        sent = real_write(self, *args, **kwargs)
        channel_writes.append(sent)
        return sent

    def write() -> None:
        view = memoryview(data)
        with open(path, "wb") as f:
            for start in range(0, len(view), MiB):
                f.write(view[start : start + MiB])

    monkeypatch.setattr(SameHostWriter, "write", counting_write)
    with counted(monkeypatch) as calls:
        _, agent = e2e.agent_ops_during(write)
    assert e2e.real("same-host-write.bin").read_bytes() == data
    rpc = Counter({kind: n for kind, n in calls.everywhere().items() if kind.startswith("agent:")})
    assert rpc == Counter({"agent:session_open": 1, "agent:session_finalize": 1}), rpc  # no payload over RPC
    assert channel_writes == [True, True, True]
    assert agent == Counter({"session_open": 1, "session_write": 3, "session_finalize": 1}), agent
