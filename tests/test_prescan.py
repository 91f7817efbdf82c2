"""Pre-scan: batches, skips, epochs, bounded memory, errors — through the public function."""

from __future__ import annotations

import os
import threading
import tracemalloc

import pytest

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.transfer.prescan import (
    FluxonFsTransferSkipEntry,
    FluxonFsTransferSkipEntryKind,
    transfer_check_local_blocking,
)
from fluxon_fs.transfer.records import (
    MAX_ENTRIES_PER_BATCH,
    decode_batch,
    decode_prescan,
    prescan_batch_prefix,
    prescan_key,
)
from fluxon_fs.transfer.state_config import (
    FluxonFsTransferStateStoreConfig,
    FluxonFsTransferStateStoreKind,
    FluxonFsTransferStateStoreSqliteConfig,
    open_state_store,
)


def sqlite_store(tmp_path) -> FluxonFsTransferStateStoreConfig:
    return FluxonFsTransferStateStoreConfig(
        kind=FluxonFsTransferStateStoreKind.SQLITE,
        sqlite=FluxonFsTransferStateStoreSqliteConfig(path=str(tmp_path / "state.db"), key_prefix="/t/prescan/"),
    )


def write(path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def all_batches(config, summary):
    store = open_state_store(config)
    try:
        return [decode_batch(v) for _, v in store.scan_prefix(prescan_batch_prefix(summary.job_id, summary.scan_epoch))]
    finally:
        store.close()


def test_batches_seal_by_bytes_and_large_files_stand_alone(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        write(src / "small" / f"f{i}", 300)
    write(src / "huge.bin", 5000)
    config = sqlite_store(tmp_path)
    summary = transfer_check_local_blocking(str(src), config, batch_ready_bytes=1000, checker_concurrency_limit=2)
    assert summary.file_count == 11 and summary.total_bytes == 8000 and summary.dir_count == 1
    batches = all_batches(config, summary)
    assert len(batches) == summary.batch_count
    files = sorted(e.relpath for entries, _ in batches for e in entries if e.kind == "f")
    assert files == sorted(["huge.bin"] + [f"small/f{i}" for i in range(10)])
    huge = [entries for entries, _ in batches if any(e.relpath == "huge.bin" for e in entries)]
    assert len(huge) == 1 and len(huge[0]) == 1
    for entries, total in batches:
        assert total == sum(e.size for e in entries)
        assert total < 1000 + 300 or len(entries) == 1


def test_batches_close_at_4096_entries(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(MAX_ENTRIES_PER_BATCH + 10):
        (src / f"e{i}").touch()
    config = sqlite_store(tmp_path)
    summary = transfer_check_local_blocking(str(src), config, batch_ready_bytes=1 << 30)
    assert summary.batch_count == 2
    assert sorted(len(entries) for entries, _ in all_batches(config, summary)) == [10, MAX_ENTRIES_PER_BATCH]


def test_skip_entries_and_symlinks_are_reported(tmp_path):
    src = tmp_path / "src"
    write(src / "tmp" / "scratch", 10)
    write(src / "logs" / "debug.txt", 10)
    write(src / "logs" / "keep.txt", 10)
    os.symlink("logs", src / "link")
    config = sqlite_store(tmp_path)
    summary = transfer_check_local_blocking(
        str(src),
        config,
        batch_ready_bytes=1 << 20,
        skip_entries=[
            FluxonFsTransferSkipEntry(kind=FluxonFsTransferSkipEntryKind.DIR, relpath="tmp"),
            FluxonFsTransferSkipEntry(kind=FluxonFsTransferSkipEntryKind.FILE, relpath="logs/debug.txt"),
        ],
    )
    paths = {e.relpath for entries, _ in all_batches(config, summary) for e in entries}
    assert paths == {"logs", "logs/keep.txt"}
    reasons = dict(summary.skipped_samples)
    assert set(reasons) == {"tmp", "logs/debug.txt", "link"}
    assert "symlink" in reasons["link"]


def test_rescan_increments_epoch_and_drops_previous_batches(tmp_path):
    src = tmp_path / "src"
    write(src / "a", 5)
    config = sqlite_store(tmp_path)
    first = transfer_check_local_blocking(str(src), config, batch_ready_bytes=100)
    write(src / "b", 5)
    second = transfer_check_local_blocking(str(src), config, batch_ready_bytes=100)
    assert (second.job_id, second.scan_epoch) == (first.job_id, first.scan_epoch + 1)
    assert second.file_count == 2
    store = open_state_store(config)
    try:
        assert list(store.scan_prefix(prescan_batch_prefix(first.job_id, first.scan_epoch))) == []
        record = decode_prescan(store.get(prescan_key(second.job_id)))
    finally:
        store.close()
    assert (record.state, record.scan_epoch, record.file_count, record.batch_count) == ("done", 2, 2, 1)


def test_memory_stays_bounded_by_batch_not_tree(tmp_path):
    src = tmp_path / "src"
    for d in range(20):
        sub = src / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(1000):
            (sub / f"file-with-a-longish-name-{i:05d}").touch()
    config = sqlite_store(tmp_path)
    tracemalloc.start()
    try:
        summary = transfer_check_local_blocking(
            str(src), config, batch_ready_bytes=1 << 30, checker_concurrency_limit=2
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.file_count == 20_000
    # Holding 20k entries would need well over 4 MB of Python objects; a few open batches stay far below.
    assert peak < 4 * 1024 * 1024, peak


def test_progress_bar_prints_counts(tmp_path, capfd):
    src = tmp_path / "src"
    write(src / "a", 5)
    transfer_check_local_blocking(str(src), sqlite_store(tmp_path), batch_ready_bytes=100, enable_cli_progress=True)
    err = capfd.readouterr().err
    assert "files 1" in err and "files/s" in err


def test_progress_counts_what_worker_processes_walked(tmp_path, capfd):
    src = tmp_path / "src"
    for d in range(100):  # wide enough that the caller forks after listing 1000 entries
        (src / f"d{d}").mkdir(parents=True)
        for i in range(12):
            (src / f"d{d}" / f"f{i}").touch()
    summary = transfer_check_local_blocking(
        str(src), sqlite_store(tmp_path), batch_ready_bytes=100, checker_concurrency_limit=2, enable_cli_progress=True
    )
    processes = min(2, len(os.sched_getaffinity(0)))
    assert summary.worker_processes == (processes if processes > 1 else 0)
    assert (summary.file_count, summary.dir_count) == (1200, 100)
    assert "files 1,200  dirs 100" in capfd.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"src_root_dir": "relative/dir"}, "src_root_dir must be an absolute path"),
        ({"src_root_dir": "/nonexistent/fluxon"}, "is not an existing directory"),
        ({"batch_ready_bytes": 0}, "batch_ready_bytes must be a positive integer"),
        ({"checker_concurrency_limit": 0}, "checker_concurrency_limit must be >= 1"),
        (
            {"skip_entries": [FluxonFsTransferSkipEntry(kind=FluxonFsTransferSkipEntryKind.DIR, relpath="../x")]},
            "skip_entries[0].relpath",
        ),
    ],
)
def test_bad_input_names_the_argument(tmp_path, kwargs, message):
    (tmp_path / "src").mkdir()
    args = {"src_root_dir": str(tmp_path / "src"), "batch_ready_bytes": 10, **kwargs}
    with pytest.raises(InvalidArgumentError) as info:
        transfer_check_local_blocking(transfer_state_store=sqlite_store(tmp_path), **args)
    assert message in str(info.value)


def test_state_store_config_requires_the_selected_block(tmp_path):
    config = FluxonFsTransferStateStoreConfig(kind=FluxonFsTransferStateStoreKind.SQLITE)
    with pytest.raises(ValueError, match=r"transfer_state_store\.sqlite is required"):
        transfer_check_local_blocking(str(tmp_path), config, batch_ready_bytes=10)


def _swap_until(stop, src, outside) -> None:
    """Swap ``src/a`` between its real directory and a symlink to ``outside`` until ``stop`` is set."""
    while not stop.is_set():
        os.rename(src / "a", src / "a-real")
        os.symlink(outside, src / "a")
        os.unlink(src / "a")
        os.rename(src / "a-real", src / "a")


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_directory_swapped_for_a_symlink_never_leads_outside_the_root(tmp_path, concurrency):
    # Attack: while the scan runs, a directory it has listed becomes a symlink to a tree outside the
    # root with the same shape. Opening a subdirectory by its path from the root would follow the link
    # (O_NOFOLLOW guards the last component only); the walk opens each directory relative to its
    # parent's fd, so it stays in the directory it listed.
    src, outside = tmp_path / "src", tmp_path / "outside"
    chain = "/".join(f"s{i}" for i in range(12))
    write(src / "a" / chain / "inside.txt", 1)
    write(outside / chain / "secret.txt", 1)
    for i in range(40):  # siblings: enough entries that the walk is shared by worker processes
        write(src / f"b{i}" / "c" / "f.txt", 1)
        for j in range(30):
            write(src / f"b{i}" / f"f{j}.txt", 1)
    config = sqlite_store(tmp_path)
    stop = threading.Event()
    swapper = threading.Thread(target=_swap_until, args=(stop, src, outside), daemon=True)
    swapper.start()
    seen: set[str] = set()
    workers: set[int] = set()
    try:
        for _ in range(30):
            summary = transfer_check_local_blocking(
                str(src), config, batch_ready_bytes=1 << 20, checker_concurrency_limit=concurrency
            )
            seen |= {e.relpath for entries, _ in all_batches(config, summary) for e in entries}
            workers.add(summary.worker_processes)
    finally:
        stop.set()
        swapper.join()
    assert not [path for path in seen if "secret" in path]
    processes = min(concurrency, len(os.sched_getaffinity(0)))
    assert workers == {processes if processes > 1 else 0}


def test_names_that_are_not_utf8_survive_the_batch(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    raw = os.fsencode(str(src)) + b"/caf\xe9-\xff.txt"
    with open(raw, "wb") as handle:
        handle.write(b"abc")
    write(src / "plain-é.txt", 2)
    config = sqlite_store(tmp_path)
    summary = transfer_check_local_blocking(str(src), config, batch_ready_bytes=1 << 20)
    names = {e.relpath: e.size for entries, _ in all_batches(config, summary) for e in entries}
    assert names == {os.fsdecode(b"caf\xe9-\xff.txt"): 3, "plain-é.txt": 2}
