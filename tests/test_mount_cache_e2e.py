"""Content and metadata caching of a mount served by a real agent process (FS.md §5).

What reaches the agent is counted by the agent itself: ``fluxon_fs_ops_total{op=...}`` on its
Prometheus endpoint, so reads made by another process on the host are counted too. The mount is
configured with small windows (``stale_window_ms``, ``exports.demo.metadata_cache_ttl_ms``) so the
"changed file" tests finish quickly; they poll with a deadline and check that a stale answer only
ever came from a read that started within the window after the change.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from fluxon_fs.patcher import piece_key
from fluxon_fs.patcher.content_cache import read_version_hint, version_hint_key
from tests.support.mount_e2e import MountE2E, mount_e2e_fixture
from tests.support.poll import wait_until

STALE_WINDOW_MS = 250
METADATA_TTL_MS = 400
e2e = mount_e2e_fixture(stale_window_ms=STALE_WINDOW_MS, metadata_cache_ttl_ms=METADATA_TTL_MS)

MiB = 1024 * 1024
OPEN_WINDOW_S = min(STALE_WINDOW_MS, METADATA_TTL_MS) / 1000
"""How long ``open`` may use a known version without asking the agent."""


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def version_of(path: Path) -> str:
    """The cache version of an agent-side file (size and mtime in ns)."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def let_window_pass(since: float, window_s: float) -> None:
    """Wait until more than ``window_s`` passed since ``since`` (the property under test is time-bound)."""
    wait_until(lambda: time.monotonic() - since > window_s, window_s + 5, f"{window_s}s to pass")


def poll_until_new(
    read: Callable[[], object], new: object, changed_at: float, window_s: float, allowed_old: tuple[object, ...]
) -> list[tuple[float, object]]:
    """Read until ``new`` comes back; every other answer must be an allowed old one from a read that
    started at most ``window_s`` after the change. Returns the observations."""
    seen: list[tuple[float, object]] = []

    def fresh() -> bool:
        started = time.monotonic() - changed_at
        value = read()
        seen.append((started, value))
        return value == new

    wait_until(fresh, 10, "the change to become visible through the mount")
    for started, value in seen[:-1]:
        assert value in allowed_old, f"a read {started:.3f}s after the change returned neither old nor new content"
        assert started <= window_s, (
            f"stale answer from a read started {started:.3f}s after the change (window {window_s}s)"
        )
    return seen


@pytest.mark.parametrize("size", [100_000, 3 * MiB + 12_345], ids=["small", "four-pieces"])
def test_second_read_of_an_unchanged_file_makes_no_content_call(e2e: MountE2E, size: int) -> None:
    name = fresh_name("same")
    data = os.urandom(size)
    e2e.real(name).write_bytes(data)
    pieces = -(-size // MiB)

    first, calls = e2e.agent_ops_during(lambda: read_bytes(e2e.path(name)))
    assert first == data
    assert calls["read_chunk"] == pieces, calls  # a cold file: each piece once (the first one via the open probe)
    read_done = time.monotonic()

    second, calls = e2e.agent_ops_during(lambda: read_bytes(e2e.path(name)))
    assert second == data and calls["read_chunk"] == 0, calls

    let_window_pass(read_done, OPEN_WINDOW_S)
    third, calls = e2e.agent_ops_during(lambda: read_bytes(e2e.path(name)))
    assert third == data
    assert calls == {"stat": 1}, calls  # revalidated at open; the content came from the host pool

    version = version_of(e2e.real(name))
    e2e.settle_cache()
    if size < MiB:  # a one-piece file is cached inside its version hint: one value, not two
        hint = e2e.store.get_blocking(version_hint_key("demo", name)).unwrap().access()["data"]
        assert read_version_hint(hint) == (version, data)
        return
    for index in range(pieces):
        assert e2e.store.get_blocking(piece_key("demo", name, version, index)).is_ok(), index


def test_another_process_on_the_host_reads_pieces_from_the_pool(e2e: MountE2E) -> None:
    name = fresh_name("shared")
    data = os.urandom(4 * MiB + 1)
    e2e.real(name).write_bytes(data)
    assert read_bytes(e2e.path(name)) == data  # warms the host pool (in the background)
    e2e.settle_cache()

    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("reader-pieces", name))
    assert answer == {name: (len(data), hashlib.sha256(data).hexdigest())}
    # Five pieces; at most the open probe of the file (unknown to that process) reaches the agent.
    assert calls["read_chunk"] <= 1, calls


def test_another_process_on_the_host_makes_no_content_call(e2e: MountE2E) -> None:
    small, large = fresh_name("small"), fresh_name("large")
    files = {small: os.urandom(50_000), large: os.urandom(2 * MiB + 7)}
    for name, data in files.items():
        e2e.real(name).write_bytes(data)
        assert read_bytes(e2e.path(name)) == data  # warms the host pool (in the background)
    e2e.settle_cache()

    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("reader-none", small, large))
    assert answer == {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()}
    assert calls["read_chunk"] == 0, calls


@pytest.mark.parametrize("change", ["new-size", "same-size-new-mtime"])
def test_another_process_never_takes_a_small_files_content_from_a_hint_of_an_older_version(
    e2e: MountE2E, change: str
) -> None:
    name = fresh_name("hinted")
    real = e2e.real(name)
    old = os.urandom(4096)
    real.write_bytes(old)
    os.utime(real, ns=(1_000_000_000, 1_000_000_000))
    assert read_bytes(e2e.path(name)) == old
    e2e.settle_cache()  # the host pool's hint of the file now carries the old content

    new = os.urandom(5000) if change == "new-size" else os.urandom(4096)
    real.write_bytes(new)
    os.utime(real, ns=(2_000_000_000, 2_000_000_000))  # a distinct version even within one timestamp tick
    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("reader-hinted", name))
    assert answer == {name: (len(new), hashlib.sha256(new).hexdigest())}
    # The hint sends the reader to stat; its version differs, so the content comes from the agent.
    assert calls == {"stat": 1, "read_chunk": 1}, calls


@pytest.mark.parametrize("change", ["new-size", "same-size-new-mtime"])
def test_a_changed_small_file_is_not_served_stale_beyond_the_window(e2e: MountE2E, change: str) -> None:
    name = fresh_name("changed")
    real = e2e.real(name)
    real.write_bytes(b"version one")
    os.utime(real, ns=(1_000_000_000, 1_000_000_000))
    assert read_bytes(e2e.path(name)) == b"version one"
    assert read_bytes(e2e.path(name)) == b"version one"

    new = b"version two, longer" if change == "new-size" else b"version TWO"
    real.write_bytes(new)
    os.utime(real, ns=(2_000_000_000, 2_000_000_000))  # a distinct version even within one timestamp tick
    changed_at = time.monotonic()
    poll_until_new(lambda: read_bytes(e2e.path(name)), new, changed_at, OPEN_WINDOW_S, (b"version one",))
    assert read_bytes(e2e.path(name)) == new


def test_a_changed_piece_of_a_large_file_is_never_mixed_with_old_pieces(e2e: MountE2E) -> None:
    name = fresh_name("large-changed")
    real = e2e.real(name)
    old = os.urandom(3 * MiB + 100)
    real.write_bytes(old)
    assert read_bytes(e2e.path(name)) == old  # every piece now cached under the old version

    new = old[: MiB + 10] + os.urandom(1000) + old[MiB + 1010 :]  # same size, piece 1 differs
    real.write_bytes(new)
    os.utime(real, ns=(3_000_000_000, 3_000_000_000))
    changed_at = time.monotonic()
    poll_until_new(lambda: read_bytes(e2e.path(name)), new, changed_at, OPEN_WINDOW_S, (old,))
    with open(e2e.path(name), "rb") as f:
        f.seek(MiB)
        assert f.read(2000) == new[MiB : MiB + 2000]


def test_stat_and_listing_follow_agent_side_changes_within_the_ttl(e2e: MountE2E) -> None:
    directory = fresh_name("dir")
    e2e.real(directory).mkdir()
    (e2e.real(directory) / "old").write_bytes(b"12345")
    listing = e2e.path(directory)
    assert os.listdir(listing) == ["old"]
    assert os.path.getsize(f"{listing}/old") == 5
    assert not os.path.exists(f"{listing}/new")

    (e2e.real(directory) / "new").write_bytes(b"n")
    (e2e.real(directory) / "old").write_bytes(b"123")
    changed_at = time.monotonic()
    ttl_s = METADATA_TTL_MS / 1000
    poll_until_new(lambda: sorted(os.listdir(listing)), ["new", "old"], changed_at, ttl_s, (["old"],))
    poll_until_new(lambda: os.path.exists(f"{listing}/new"), True, changed_at, ttl_s, (False,))
    poll_until_new(lambda: os.path.getsize(f"{listing}/old"), 3, changed_at, ttl_s, (5,))
    assert sorted(p.name for p in pathlib.Path(listing).iterdir()) == ["new", "old"]


def test_own_writes_are_visible_at_once(e2e: MountE2E) -> None:
    name = fresh_name("own")
    path = e2e.path(name)
    with open(path, "wb") as f:
        f.write(b"first")
    assert read_bytes(path) == b"first" and os.path.getsize(path) == 5
    with open(path, "wb") as f:
        f.write(b"other")  # same size, likely the same mtime tick
    assert read_bytes(path) == b"other"
    with open(path, "ab") as f:
        f.write(b"!")
    assert read_bytes(path) == b"other!" and os.path.getsize(path) == 6
    assert name in os.listdir(e2e.mount)
    os.unlink(path)
    assert not os.path.exists(path) and name not in os.listdir(e2e.mount)
