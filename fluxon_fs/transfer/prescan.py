"""Pre-scan: walk a source tree once, group files into batches, persist them in the state store.

The walk (:mod:`~fluxon_fs.transfer.prescan_walk`) streams: each directory is listed through its
fd, opened relative to its parent's without following links, by up to ``checker_concurrency_limit``
processes (no more than the CPUs this process may use; a tree of a few directories is walked by
this process alone). Files flow into an open batch, and a batch is written to the store as soon as
it seals (``batch_ready_bytes`` reached, 4096 entries, or a single file at least that large); each
worker process seals its own and this process persists them. Memory is bounded by the open batches
plus one fd and one name list per directory level, never by the size of the tree. Only metadata is
read.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import time
from collections.abc import Iterable, Sequence

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import StateStore
from fluxon_core.relpath import normalise_relpath
from fluxon_fs.transfer.batching import BatchSealer, EntryRow
from fluxon_fs.transfer.codec import encode
from fluxon_fs.transfer.prescan_walk import WalkTotals, available_cpus, walk_tree
from fluxon_fs.transfer.progress import ScanProgress
from fluxon_fs.transfer.records import (
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
    worker_processes: int = 0
    """Processes forked to share the walk; 0 when this process walked the tree alone."""


def default_prescan_job_id(src_root_dir: str) -> str:
    """Stable job id of a source root, so re-scanning it starts a new epoch of the same job."""
    digest = hashlib.sha256(os.path.realpath(src_root_dir).encode()).hexdigest()[:16]
    return f"prescan-{digest}"


class _BatchWriter:
    """The scan's epoch in the store and this process's open batch; persists batches as they seal.

    The store is opened and the epoch claimed by :meth:`attach`, which the walk calls once its
    workers run (they need no key, so opening a store — fsyncs of a fresh sqlite file — overlaps
    their walking), or the first batch, or the end of the scan.
    """

    def __init__(self, spec: StateStoreSpec, job_id: str, src_root_dir: str, batch_ready_bytes: int) -> None:
        self._spec = spec
        self._job_id = job_id
        self._src_root_dir = src_root_dir
        self._batch_ready_bytes = batch_ready_bytes
        self._sealer: BatchSealer[EntryRow] = BatchSealer(batch_ready_bytes)
        self.store: StateStore | None = None
        self.epoch = 0
        self.expected_files = 0
        self.batch_count = 0

    def attach(self) -> StateStore:
        """Open the store and claim the next epoch, once."""
        if self.store is None:
            store = open_state_store(self._spec)
            try:
                self.epoch, self.expected_files = _start_epoch(
                    store, self._job_id, self._src_root_dir, self._batch_ready_bytes
                )
            except BaseException:
                store.close()
                raise
            self.store = store
        return self.store

    def add_slice(self, entries: list[EntryRow], slice_bytes: int, largest: int) -> None:
        """Add entries; writes every batch they seal."""
        for entries_of_batch, total in self._sealer.add_slice(entries, slice_bytes, largest):
            self.add_encoded(encode_batch(entries_of_batch, total))

    def add_encoded(self, data: bytes) -> None:
        """Persist a batch sealed and encoded elsewhere (a worker process)."""
        store = self.attach()
        store.put(prescan_batch_key(self._job_id, self.epoch, self.batch_count), data)
        self.batch_count += 1

    def flush(self) -> None:
        """Persist the open batch."""
        batch = self._sealer.flush()
        if batch is not None:
            self.add_encoded(encode_batch(*batch))

    def close(self) -> None:
        """Close the store if it was opened."""
        if self.store is not None:
            self.store.close()


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
    totals: WalkTotals,
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
        file_count=totals.file_count,
        dir_count=totals.dir_count,
        total_bytes=totals.total_bytes,
        batch_count=writer.batch_count,
        skipped_count=totals.skipped_count,
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
    writer = _BatchWriter(transfer_state_store, job, root, batch_ready_bytes)
    with contextlib.closing(writer):
        started = time.monotonic()
        progress = None
        if enable_cli_progress:
            writer.attach()  # the previous epoch's file count gives the progress bar its ETA
            progress = ScanProgress(expected_files=writer.expected_files)
        totals = WalkTotals()

        def advance(files: int, bytes_: int, dirs: int) -> None:
            if progress is not None:
                progress.advance(files=files, bytes_=bytes_, dirs=dirs)

        try:
            if progress is not None:
                progress.start()
            walk_tree(
                root,
                skip_dirs,
                skip_files,
                totals,
                processes=min(checker_concurrency_limit, available_cpus()),
                batch_ready_bytes=batch_ready_bytes,
                sink=writer,
                progress=advance if progress is not None else None,
                on_walking=writer.attach,
            )
            writer.flush()
            store = writer.attach()  # a tree without entries sealed no batch
        except BaseException as exc:
            if writer.store is not None:
                _finish(
                    writer.store,
                    job,
                    writer.epoch,
                    state=PrescanState.FAILED,
                    totals=totals,
                    writer=writer,
                    error=repr(exc),
                )
            raise
        finally:
            if progress is not None:
                progress.stop()
        epoch = writer.epoch
        _finish(store, job, epoch, state=PrescanState.DONE, totals=totals, writer=writer, error="")
        if epoch > 1:
            _delete_prefix(store, prescan_batch_prefix(job, epoch - 1))
        summary = TransferCheckSummary(
            job_id=job,
            scan_epoch=epoch,
            batch_count=writer.batch_count,
            file_count=totals.file_count,
            dir_count=totals.dir_count,
            total_bytes=totals.total_bytes,
            skipped_count=totals.skipped_count,
            skipped_samples=tuple(totals.skipped_samples),
            duration_s=time.monotonic() - started,
            src_root_dir=root,
            worker_processes=totals.worker_processes,
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
