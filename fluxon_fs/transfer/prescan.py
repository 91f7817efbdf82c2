"""Pre-scan: walk a source tree once, group files into batches, persist them in the state store.

The walk streams: directories are listed lazily (``os.scandir``) by ``checker_concurrency_limit``
threads taking directories from a LIFO stack (depth-first keeps the stack small), files flow into
the open batch, and a batch is written to the store as soon as it seals (``batch_ready_bytes``
reached, 4096 entries, or a single file at least that large). Memory is bounded by the open batch
plus the directory stack, never by the size of the tree. Only metadata is read.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import stat as stat_module
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import StateStore
from fluxon_core.relpath import normalise_relpath
from fluxon_fs.transfer.batching import BatchSealer, EntryRow, SealedBatch
from fluxon_fs.transfer.codec import encode
from fluxon_fs.transfer.progress import ScanProgress
from fluxon_fs.transfer.records import (
    ENTRY_DIR,
    ENTRY_FILE,
    PrescanRecord,
    decode_prescan,
    encode_batch,
    prescan_batch_key,
    prescan_batch_prefix,
    prescan_key,
)
from fluxon_fs.transfer.state_config import StateStoreSpec, open_state_store
from fluxon_fs.transfer.states import PrescanState

log = get_logger("fluxon.fs.prescan")

SCAN_SLICE = 1024
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SUBDIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
S_ISREG = stat_module.S_ISREG
S_ISDIR = stat_module.S_ISDIR
SKIPPED_SAMPLE_LIMIT = 100


class FluxonFsTransferSkipEntryKind(enum.Enum):
    """What a skip entry excludes."""

    DIR = "dir"
    FILE = "file"


@attrs.frozen
class FluxonFsTransferSkipEntry:
    """Exclude a directory subtree (``DIR``) or one file (``FILE``), by path relative to the source root."""

    kind: FluxonFsTransferSkipEntryKind
    relpath: str


@attrs.frozen
class TransferCheckSummary:
    """The result of a pre-scan."""

    job_id: str
    scan_epoch: int
    batch_count: int
    file_count: int
    dir_count: int
    total_bytes: int
    skipped_count: int
    skipped_samples: tuple[tuple[str, str], ...]
    duration_s: float
    src_root_dir: str


def default_prescan_job_id(src_root_dir: str) -> str:
    """Stable job id of a source root, so re-scanning it starts a new epoch of the same job."""
    digest = hashlib.sha256(os.path.realpath(src_root_dir).encode()).hexdigest()[:16]
    return f"prescan-{digest}"


class _BatchWriter:
    """The open batch; persists batches as they seal. Thread-safe."""

    def __init__(self, store: StateStore, job_id: str, epoch: int, batch_ready_bytes: int) -> None:
        self._store = store
        self._job_id = job_id
        self._epoch = epoch
        self._sealer: BatchSealer[EntryRow] = BatchSealer(batch_ready_bytes)
        self._lock = threading.Lock()
        self.batch_count = 0

    def add_slice(self, entries: list[EntryRow], slice_bytes: int, largest: int) -> None:
        """Add entries (one lock round per call); writes every batch they seal."""
        with self._lock:
            sealed = [self._number(batch) for batch in self._sealer.add_slice(entries, slice_bytes, largest)]
        self._write(sealed)

    def flush(self) -> None:
        """Persist the open batch."""
        with self._lock:
            batch = self._sealer.flush()
            sealed = [self._number(batch)] if batch is not None else []
        self._write(sealed)

    def _number(self, batch: SealedBatch[EntryRow]) -> tuple[int, SealedBatch[EntryRow]]:
        self.batch_count += 1
        return self.batch_count - 1, batch

    def _write(self, sealed: list[tuple[int, SealedBatch[EntryRow]]]) -> None:
        for number, (entries, total) in sealed:
            self._store.put(prescan_batch_key(self._job_id, self._epoch, number), encode_batch(entries, total))


class _Walker:
    """Parallel, streaming directory walk feeding a :class:`_BatchWriter`."""

    def __init__(
        self,
        root: str,
        writer: _BatchWriter,
        skip_dirs: set[str],
        skip_files: set[str],
        concurrency: int,
        progress: ScanProgress | None,
    ) -> None:
        self._root = root
        self._writer = writer
        self._skip_dirs = skip_dirs
        self._skip_files = skip_files
        self._concurrency = concurrency
        self._progress = progress
        self._stack: list[str] = [""]
        self._busy = 0
        self._cond = threading.Condition()
        self._failure: BaseException | None = None
        self._count_lock = threading.Lock()
        self.file_count = 0
        self.dir_count = 0
        self.total_bytes = 0
        self.skipped_count = 0
        self.skipped_samples: list[tuple[str, str]] = []

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._worker, name=f"fluxon-prescan-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._failure is not None:
            raise self._failure

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._stack and self._busy and self._failure is None:
                    self._cond.wait()
                if self._failure is not None or (not self._stack and not self._busy):
                    self._cond.notify_all()
                    return
                relpath = self._stack.pop()
                self._busy += 1
            try:
                self._scan_dir(relpath)
            except BaseException as exc:
                with self._cond:
                    self._failure = exc
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _skip(self, relpath: str, reason: str) -> None:
        with self._count_lock:
            self.skipped_count += 1
            if len(self.skipped_samples) < SKIPPED_SAMPLE_LIMIT:
                self.skipped_samples.append((relpath, reason))

    def _scan_dir(self, relpath: str) -> None:
        # The hot loop of the pre-scan: plain tuples, local names, batches handed over per slice.
        # Listing a directory fd makes each entry's lstat an fstatat on that fd: the kernel looks up
        # one name instead of walking the whole path again per entry.
        try:
            if relpath:
                dir_fd = os.open(os.path.join(self._root, relpath), _SUBDIR_FLAGS)
            else:
                dir_fd = os.open(self._root, _ROOT_FLAGS)  # the root may be a symlink: the caller named it
        except OSError as exc:
            self._skip(relpath or ".", f"cannot list directory: {exc.strerror}")
            return
        try:
            with os.scandir(dir_fd) as iterator:
                self._scan_listing(relpath, iterator)
        finally:
            os.close(dir_fd)

    def _scan_listing(self, relpath: str, iterator: Iterator[os.DirEntry[str]]) -> None:
        prefix = f"{relpath}/" if relpath else ""
        skip_files, skip_dirs = self._skip_files, self._skip_dirs
        found: list[EntryRow] = []
        append = found.append
        subdirs: list[str] = []
        files = size_sum = slice_bytes = largest = 0
        for entry in iterator:
            child = prefix + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._skip(child, f"cannot stat: {exc.strerror}")
                continue
            mode = st.st_mode
            if S_ISREG(mode):
                if skip_files and child in skip_files:
                    self._skip(child, "skip entry (file)")
                    continue
                size = st.st_size
                append((child, ENTRY_FILE, size, st.st_mtime_ns, mode & 0o7777))
                files += 1
                slice_bytes += size
                if size > largest:
                    largest = size
            elif S_ISDIR(mode):
                if skip_dirs and child in skip_dirs:
                    self._skip(child, "skip entry (dir)")
                    continue
                append((child, ENTRY_DIR, 0, st.st_mtime_ns, mode & 0o7777))
                subdirs.append(child)
            else:
                kind = "symlink" if stat_module.S_ISLNK(mode) else "special file"
                self._skip(child, f"{kind} not transferred")
                continue
            if len(found) >= SCAN_SLICE:
                # Huge directories are handed over in slices, never held whole.
                self._writer.add_slice(found, slice_bytes, largest)
                size_sum += slice_bytes
                found = []
                append = found.append
                slice_bytes = largest = 0
        if found:
            self._writer.add_slice(found, slice_bytes, largest)
        size_sum += slice_bytes
        if subdirs:
            with self._cond:
                self._stack.extend(subdirs)
                self._cond.notify_all()
        with self._count_lock:
            self.file_count += files
            self.dir_count += len(subdirs)
            self.total_bytes += size_sum
        if self._progress is not None:
            self._progress.advance(files=files, bytes_=size_sum, dirs=len(subdirs))


def _start_epoch(store: StateStore, job_id: str, src_root_dir: str, batch_ready_bytes: int) -> tuple[int, int]:
    """Claim the next scan epoch with compare-and-set; returns (epoch, previous file count)."""
    key = prescan_key(job_id)
    while True:
        current = store.get(key)
        previous = decode_prescan(current, key) if current is not None else None
        epoch = 1 if previous is None else previous.scan_epoch + 1
        record = PrescanRecord(
            job_id=job_id,
            src_root_dir=src_root_dir,
            scan_epoch=epoch,
            state=PrescanState.SCANNING,
            batch_ready_bytes=batch_ready_bytes,
            created_at=time.time(),
        )
        if store.compare_and_set(key, current, encode(record)):
            return epoch, previous.file_count if previous is not None else 0


def _delete_prefix(store: StateStore, prefix: str) -> None:
    while True:
        keys = [key for key, _ in store.scan_prefix(prefix, limit=500)]
        if not keys:
            return
        store.batch_write([], keys)


def _check_arguments(src_root_dir: str, batch_ready_bytes: int, checker_concurrency_limit: int) -> None:
    if not isinstance(src_root_dir, str) or not os.path.isabs(src_root_dir):
        raise InvalidArgumentError(f"src_root_dir must be an absolute path, got {src_root_dir!r}")
    if not os.path.isdir(src_root_dir):
        raise InvalidArgumentError(f"src_root_dir {src_root_dir!r} is not an existing directory")
    if isinstance(batch_ready_bytes, bool) or not isinstance(batch_ready_bytes, int) or batch_ready_bytes <= 0:
        raise InvalidArgumentError(f"batch_ready_bytes must be a positive integer, got {batch_ready_bytes!r}")
    if not isinstance(checker_concurrency_limit, int) or checker_concurrency_limit < 1:
        raise InvalidArgumentError(f"checker_concurrency_limit must be >= 1, got {checker_concurrency_limit!r}")


def _split_skips(skip_entries: Iterable[FluxonFsTransferSkipEntry]) -> tuple[set[str], set[str]]:
    skip_dirs: set[str] = set()
    skip_files: set[str] = set()
    for index, entry in enumerate(skip_entries):
        if not isinstance(entry, FluxonFsTransferSkipEntry):
            raise InvalidArgumentError(f"skip_entries[{index}] must be a FluxonFsTransferSkipEntry, got {entry!r}")
        field = f"skip_entries[{index}].relpath"
        relpath = normalise_relpath(entry.relpath, field)
        if not relpath:
            raise InvalidArgumentError(f"{field} must name an entry below the source root, got {entry.relpath!r}")
        kind = FluxonFsTransferSkipEntryKind(entry.kind)
        (skip_dirs if kind is FluxonFsTransferSkipEntryKind.DIR else skip_files).add(relpath)
    return skip_dirs, skip_files


def _finish(
    store: StateStore,
    job_id: str,
    epoch: int,
    *,
    state: PrescanState,
    walker: _Walker,
    writer: _BatchWriter,
    error: str,
) -> None:
    key = prescan_key(job_id)
    current = store.get(key)
    previous = decode_prescan(current, key) if current is not None else None
    if previous is None or previous.scan_epoch != epoch:
        raise InvalidArgumentError(f"pre-scan {job_id} epoch {epoch} was superseded by a concurrent scan")
    record = attrs.evolve(
        previous,
        state=state,
        file_count=walker.file_count,
        dir_count=walker.dir_count,
        total_bytes=walker.total_bytes,
        batch_count=writer.batch_count,
        skipped_count=walker.skipped_count,
        finished_at=time.time(),
        error=error,
    )
    if not store.compare_and_set(key, current, encode(record)):
        raise InvalidArgumentError(f"pre-scan {job_id} epoch {epoch} was superseded by a concurrent scan")


def transfer_check_local_blocking(
    src_root_dir: str,
    transfer_state_store: StateStoreSpec,
    batch_ready_bytes: int,
    skip_entries: Sequence[FluxonFsTransferSkipEntry] = (),
    checker_concurrency_limit: int = 4,
    enable_cli_progress: bool = False,
    job_id: str | None = None,
) -> TransferCheckSummary:
    """Pre-scan a local source tree into the transfer state store and return the summary.

    ``transfer_state_store`` is a :class:`FluxonFsTransferStateStoreConfig` (or a YAML-style mapping);
    the fs master panel must use the same backend and ``key_prefix`` to see the result in Pre-Scans.
    """
    _check_arguments(src_root_dir, batch_ready_bytes, checker_concurrency_limit)
    skip_dirs, skip_files = _split_skips(skip_entries)
    root = os.path.normpath(src_root_dir)
    job = job_id or default_prescan_job_id(root)
    with contextlib.closing(open_state_store(transfer_state_store)) as store:
        started = time.monotonic()
        epoch, expected_files = _start_epoch(store, job, root, batch_ready_bytes)
        writer = _BatchWriter(store, job, epoch, batch_ready_bytes)
        progress = ScanProgress(expected_files=expected_files) if enable_cli_progress else None
        walker = _Walker(root, writer, skip_dirs, skip_files, checker_concurrency_limit, progress)
        try:
            if progress is not None:
                progress.start()
            walker.run()
            writer.flush()
        except BaseException as exc:
            _finish(store, job, epoch, state=PrescanState.FAILED, walker=walker, writer=writer, error=repr(exc))
            raise
        finally:
            if progress is not None:
                progress.stop()
        _finish(store, job, epoch, state=PrescanState.DONE, walker=walker, writer=writer, error="")
        if epoch > 1:
            _delete_prefix(store, prescan_batch_prefix(job, epoch - 1))
        summary = TransferCheckSummary(
            job_id=job,
            scan_epoch=epoch,
            batch_count=writer.batch_count,
            file_count=walker.file_count,
            dir_count=walker.dir_count,
            total_bytes=walker.total_bytes,
            skipped_count=walker.skipped_count,
            skipped_samples=tuple(walker.skipped_samples),
            duration_s=time.monotonic() - started,
            src_root_dir=root,
        )
        log.info(
            "prescan %s epoch %d: %d files, %d bytes, %d batches, %d skipped in %.2fs",
            job,
            epoch,
            summary.file_count,
            summary.total_bytes,
            summary.batch_count,
            summary.skipped_count,
            summary.duration_s,
        )
        return summary
