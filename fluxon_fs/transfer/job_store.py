"""Transfer jobs, their batches and the pre-scans they import, as records in the state store.

Key layout (relative to the store's ``key_prefix``):

* ``jobs/<job_id>``                      — :class:`~fluxon_fs.transfer.jobs.JobRecord`
* ``job_batches/<job_id>/<n:08d>``       — the entries of batch n (immutable once written)
* ``job_batch_state/<job_id>/<n:08d>``   — :class:`~fluxon_fs.transfer.jobs.BatchRecord` (small, updated often)
* ``quarantine/jobs/<job_id>``            — :class:`QuarantinedRecord`: a job record that could not be read
* the pre-scan keys of :mod:`fluxon_fs.transfer.records` (written by the pre-scan, read here)

Every update is a compare-and-set loop against the bytes it read, so concurrent writers never
lose each other's changes. The store remembers the last job records it read or wrote, so the fs
master can still show jobs (with the store's error) while the state store is unavailable.

A job record that cannot be decoded (corrupted, or written by a broken tool) is **quarantined**
the first time it is read: moved, with the decode error, under ``quarantine/`` and logged, so
listing jobs, claiming batches and the fs master's start go on for every other job. Its batches
stay where they are; an operator can repair the record and put it back under ``jobs/``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs

from fluxon_core.errors import InvalidArgumentError, KeyNotFoundError
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import StateStore
from fluxon_fs.transfer.batching import SealedBatch
from fluxon_fs.transfer.codec import decode, encode
from fluxon_fs.transfer.jobs import BatchRecord, JobRecord
from fluxon_fs.transfer.records import (
    ENTRY_FILE,
    PRESCANS_PREFIX,
    SCHEMA_VERSION,
    PrescanRecord,
    ScanEntry,
    decode_batch,
    decode_prescan,
    encode_batch,
    prescan_batch_prefix,
    prescan_key,
)

JOBS_PREFIX = "jobs/"
QUARANTINE_PREFIX = "quarantine/"
R = TypeVar("R")

log = get_logger("fluxon.fs.transfer")


@attrs.frozen
class QuarantinedRecord:
    """A record that could not be decoded, kept as it was stored with the reason."""

    key: str
    """Where it was stored (``jobs/<job_id>``)."""
    error: str
    quarantined_at: float
    raw: str
    """The stored bytes as text (bytes that are not UTF-8 replaced)."""
    schema_version: int = SCHEMA_VERSION


def job_key(job_id: str) -> str:
    """Key of a job record."""
    return f"{JOBS_PREFIX}{job_id}"


def batch_key(job_id: str, number: int) -> str:
    """Key of a batch's entries."""
    return f"job_batches/{job_id}/{number:08d}"


def batch_record_prefix(job_id: str) -> str:
    """Prefix of a job's batch records."""
    return f"job_batch_state/{job_id}/"


def batch_record_key(job_id: str, number: int) -> str:
    """Key of a batch's record."""
    return f"{batch_record_prefix(job_id)}{number:08d}"


DECODED_BATCHES_LIMIT = 8192
"""Batch records a :class:`JobStore` keeps decoded (a few hundred bytes each)."""


class JobStore:
    """Reads and writes job, batch and pre-scan records. Safe for concurrent callers."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        """Held by callers across a read and the writes that depend on it (a batch, then its job)."""
        self._known_jobs: dict[str, JobRecord] = {}
        self._decoded_batches: OrderedDict[str, tuple[bytes, BatchRecord]] = OrderedDict()
        self._decoded_lock = threading.Lock()

    # ----- jobs ---------------------------------------------------------------------------------

    def insert_job(self, record: JobRecord) -> None:
        """Store a new job; :class:`InvalidArgumentError` when its id is taken."""
        if not self.store.compare_and_set(job_key(record.job_id), None, encode(record)):
            raise InvalidArgumentError(f"job {record.job_id!r} already exists")
        self._known_jobs[record.job_id] = record

    def job(self, job_id: str) -> JobRecord:
        """A job record; unknown (or just quarantined) ids raise :class:`KeyNotFoundError`."""
        key = job_key(job_id)
        record = self._known_jobs[job_id] = self._read_job(key, self._get(key, _no_job(job_id)))
        return record

    def jobs(self) -> list[JobRecord]:
        """Every job that can be read, newest first; the others are quarantined on the way."""
        records = []
        for key, value in self.store.scan_prefix(JOBS_PREFIX):
            try:
                records.append(self._read_job(key, value))
            except KeyNotFoundError:
                continue
        self._known_jobs = {r.job_id: r for r in records}
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def quarantined(self) -> list[QuarantinedRecord]:
        """Records moved to quarantine, oldest first."""
        found = []
        for key, value in self.store.scan_prefix(QUARANTINE_PREFIX):
            try:
                found.append(decode(QuarantinedRecord, value, key))
            except InvalidArgumentError as exc:  # not even the quarantine entry reads: show that much
                found.append(QuarantinedRecord(key.removeprefix(QUARANTINE_PREFIX), str(exc), 0.0, ""))
        return sorted(found, key=lambda r: r.quarantined_at)

    def _read_job(self, key: str, data: bytes) -> JobRecord:
        """The job stored as ``data`` at ``key``; a malformed one is quarantined (KeyNotFoundError)."""
        try:
            return decode(JobRecord, data, key)
        except InvalidArgumentError as exc:
            error = str(exc)
        moved_to = QUARANTINE_PREFIX + key
        record = QuarantinedRecord(key, error, time.time(), data.decode("utf-8", "replace"))
        # Kept first, then removed only if unchanged: a crash in between loses nothing.
        self.store.put(moved_to, encode(record))
        self.store.compare_and_set(key, data, None)
        self._known_jobs.pop(key.removeprefix(JOBS_PREFIX), None)
        log.error("transfer state store: %s cannot be read (%s); moved to %s", key, error, moved_to)
        raise KeyNotFoundError(f"{key} could not be read and was moved to {moved_to}: {error}")

    def cached_jobs(self) -> list[JobRecord]:
        """The job records as last read or written, newest first."""
        return sorted(self._known_jobs.values(), key=lambda r: r.created_at, reverse=True)

    def cached_job(self, job_id: str) -> JobRecord | None:
        """One job as last read or written, or None."""
        return self._known_jobs.get(job_id)

    def update_job(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Apply ``change`` to the stored job until the write wins; written only when it changed something."""
        updated = self._update(job_key(job_id), self._read_job, change, _no_job(job_id))
        self._known_jobs[job_id] = updated
        return updated

    # ----- batches ------------------------------------------------------------------------------

    def add_batch(self, job_id: str, number: int, entries: list[ScanEntry], total_bytes: int) -> None:
        """Store batch ``number`` of a job, pending (idempotent for a rescan after a crash)."""
        files = sum(1 for e in entries if e.kind == ENTRY_FILE)
        record = BatchRecord(number=number, files=files, bytes=total_bytes)
        self.store.batch_write(
            [
                (batch_key(job_id, number), encode_batch(entries, total_bytes)),
                (batch_record_key(job_id, number), encode(record)),
            ]
        )

    def batch(self, job_id: str, number: int) -> BatchRecord:
        """One batch's record; :class:`KeyNotFoundError` when the job has no such batch."""
        key = batch_record_key(job_id, number)
        return decode(BatchRecord, self._get(key, _no_batch(job_id, number)), key)

    def batches(self, job_id: str) -> Iterator[BatchRecord]:
        """A job's batch records in order."""
        for key, value in self.store.scan_prefix(batch_record_prefix(job_id)):
            yield self._decode_batch_record(key, value)

    def _decode_batch_record(self, key: str, data: bytes) -> BatchRecord:
        """``decode`` of a batch record, remembered while its stored bytes stay the same.

        Every claim reads all batch records of a job; decoding them all each time (about 70 µs per
        record) made a claim cost 9 ms for 63 batches and grew with the square of the batch count.
        Records are immutable, so an unchanged value decodes to the same record; at most
        :data:`DECODED_BATCHES_LIMIT` are remembered (least recently used dropped first).
        """
        with self._decoded_lock:
            known = self._decoded_batches.get(key)
            if known is not None and known[0] == data:
                self._decoded_batches.move_to_end(key)
                return known[1]
        record = decode(BatchRecord, data, key)
        with self._decoded_lock:
            self._decoded_batches[key] = (bytes(data), record)
            self._decoded_batches.move_to_end(key)
            while len(self._decoded_batches) > DECODED_BATCHES_LIMIT:
                self._decoded_batches.popitem(last=False)
        return record

    def batch_entries(self, job_id: str, number: int) -> list[ScanEntry]:
        """Entries of one batch."""
        key = batch_key(job_id, number)
        return decode_batch(self._get(key, _no_batch(job_id, number)), key)[0]

    def update_batch(self, job_id: str, number: int, change: Callable[[BatchRecord], BatchRecord]) -> BatchRecord:
        """Apply ``change`` to the stored batch until the write wins; written only when it changed something."""
        key = batch_record_key(job_id, number)
        return self._update(key, lambda key, data: decode(BatchRecord, data, key), change, _no_batch(job_id, number))

    # ----- pre-scans ----------------------------------------------------------------------------

    def prescan(self, prescan_job_id: str) -> PrescanRecord:
        """A pre-scan's summary; :class:`KeyNotFoundError` when this store has no such pre-scan."""
        key = prescan_key(prescan_job_id)
        missing = f"pre-scan {prescan_job_id!r} does not exist in this state store"
        return decode_prescan(self._get(key, missing), key)

    def prescans(self) -> list[PrescanRecord]:
        """Every pre-scan's summary, newest first."""
        records = [decode_prescan(value, key) for key, value in self.store.scan_prefix(PRESCANS_PREFIX)]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def prescan_batches(self, prescan: PrescanRecord) -> Iterator[SealedBatch[ScanEntry]]:
        """The batches of the pre-scan's latest epoch, in order."""
        for key, value in self.store.scan_prefix(prescan_batch_prefix(prescan.job_id, prescan.scan_epoch)):
            yield decode_batch(value, key)

    # ----- internals ----------------------------------------------------------------------------

    def _get(self, key: str, missing: str) -> bytes:
        data = self.store.get(key)
        if data is None:
            raise KeyNotFoundError(missing)
        return data

    def _update(self, key: str, read: Callable[[str, bytes], R], change: Callable[[R], R], missing: str) -> R:
        while True:
            data = self._get(key, missing)
            updated = change(read(key, data))
            encoded = encode(updated)
            if encoded == data or self.store.compare_and_set(key, data, encoded):
                return updated


def _no_job(job_id: str) -> str:
    return f"transfer job {job_id!r} does not exist"


def _no_batch(job_id: str, number: int) -> str:
    return f"batch {number} of job {job_id!r} does not exist"
