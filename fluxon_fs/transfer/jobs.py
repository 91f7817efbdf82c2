"""Transfer jobs and their batches, durable in a state store; the coordinator the fs master runs.

Key layout (relative to the store's ``key_prefix``):

* ``jobs/<job_id>``                      — :class:`JobRecord` (spec, state, counters, recent errors)
* ``job_batches/<job_id>/<n:08d>``       — the entries of batch n (immutable once written)
* ``job_batch_state/<job_id>/<n:08d>``   — :class:`BatchRecord` (small, updated with compare-and-set)

A batch moves ``pending → claimed(worker, lease) → done | failed``. Workers claim with
compare-and-set and renew their lease; an expired lease makes the batch claimable again; a done
batch is never handed out again. After a restart the coordinator extends live leases once by a
full TTL so workers that finished while it was down can still report, instead of the batch being
copied twice.

A batch's state keeps its own result, so the job's counters can always be recomputed from the
batch states: completing a batch writes the batch first and the job second, and when the store
fails (or the master dies) between the two, the worker's retry of the report — or the next start
of the coordinator — recounts the job instead of losing or double-counting that batch.

The coordinator also remembers the last job records it read or wrote, so the fs master can still
show jobs (with the store's error) while the state store is unavailable.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from fluxon_core.errors import InvalidArgumentError, KeyNotFoundError
from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import TRANSFER_BYTES_COPIED, TRANSFER_FILES_COPIED
from fluxon_core.protocols import StateStore
from fluxon_fs.export.serving.confinement import normalise_relpath, relative_to_root
from fluxon_fs.transfer.codec import decode, encode
from fluxon_fs.transfer.records import (
    SCHEMA_VERSION,
    ScanEntry,
    decode_batch,
    decode_prescan,
    encode_batch,
    prescan_batch_prefix,
    prescan_key,
)
from fluxon_fs.transfer.states import BatchState, JobState, PrescanState

log = get_logger("fluxon.fs.transfer")

RECENT_ERRORS = 20


@attrs.frozen
class JobSpec:
    """What to copy where."""

    source_export: str
    source_dir: str
    target_export: str
    target_prefix: str
    desired_worker_count: int = 2
    batch_ready_bytes: int = 256 * 1024 * 1024
    conflict_policy: str = "overwrite"  # overwrite | skip_existing
    max_attempts: int = 5
    verify_checksum: bool = False
    prescan_job_id: str = ""

    def validate(self) -> None:
        """Raise :class:`InvalidArgumentError` naming the bad field."""
        for name in ("source_export", "target_export"):
            if not getattr(self, name):
                raise InvalidArgumentError(f"{name} is required")
        normalise_relpath(self.source_dir, "source_dir")
        normalise_relpath(self.target_prefix, "target_prefix")
        if self.desired_worker_count < 1:
            raise InvalidArgumentError(f"desired_worker_count must be >= 1, got {self.desired_worker_count}")
        if self.batch_ready_bytes < 1:
            raise InvalidArgumentError(f"batch_ready_bytes must be > 0, got {self.batch_ready_bytes}")
        if self.conflict_policy not in ("overwrite", "skip_existing"):
            raise InvalidArgumentError(
                f"conflict_policy must be 'overwrite' or 'skip_existing', got {self.conflict_policy!r}"
            )
        if self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def target_relpath(self, entry_relpath: str) -> str:
        """Where a source entry lands: under the target prefix, below the source folder's own name."""
        base = self.source_dir.rstrip("/").rsplit("/", 1)[-1] if self.source_dir else ""
        parts = [p for p in (self.target_prefix.strip("/"), base, entry_relpath) if p]
        return "/".join(parts)

    def source_relpath(self, entry_relpath: str) -> str:
        """The entry's path in the source export."""
        return "/".join(p for p in (self.source_dir.strip("/"), entry_relpath) if p)


@attrs.frozen
class JobCounters:
    """Progress of a job."""

    files_total: int = 0
    bytes_total: int = 0
    batches_total: int = 0
    batches_done: int = 0
    batches_failed: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0
    files_failed: int = 0


@attrs.frozen
class JobRecord:
    """A transfer job as stored."""

    job_id: str
    spec: JobSpec
    state: JobState = attrs.field(converter=JobState)
    counters: JobCounters = JobCounters()
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    state_reason: str = ""
    recent_errors: tuple[str, ...] = ()
    verify_report: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def throughput_bytes_per_s(self, now: float | None = None) -> float:
        """Average copy rate since the job started."""
        if not self.started_at:
            return 0.0
        end = self.finished_at or (now if now is not None else time.time())
        return self.counters.bytes_copied / max(end - self.started_at, 1e-6)


@attrs.frozen
class BatchRecord:
    """The state of one batch: its claim, its attempts, and once done, its result."""

    number: int
    files: int
    bytes: int
    state: BatchState = attrs.field(default=BatchState.PENDING, converter=BatchState)
    worker: str = ""
    claim_token: str = ""
    lease_deadline: float = 0.0
    attempts: int = 0
    not_before: float = 0.0
    claims: int = 0
    last_error: str = ""
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0


@attrs.frozen
class BatchAssignment:
    """What a worker receives when it claims a batch (``claims`` counts this claim too)."""

    job_id: str
    spec: JobSpec
    number: int
    claim_token: str
    lease_deadline: float
    lease_ttl_s: float
    entries: list[ScanEntry]
    claims: int = 1


@attrs.frozen
class BatchResult:
    """What a worker reports for a finished batch."""

    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0
    errors: tuple[str, ...] = ()


def job_key(job_id: str) -> str:
    """Key of a job record."""
    return f"jobs/{job_id}"


def batch_key(job_id: str, number: int) -> str:
    """Key of a batch's entries."""
    return f"job_batches/{job_id}/{number:08d}"


def batch_state_prefix(job_id: str) -> str:
    """Prefix of a job's batch states."""
    return f"job_batch_state/{job_id}/"


def batch_state_key(job_id: str, number: int) -> str:
    """Key of a batch's state."""
    return f"{batch_state_prefix(job_id)}{number:08d}"


class TransferCoordinator:
    """Creates jobs, hands batches to workers, records results. Safe for concurrent callers."""

    def __init__(
        self,
        store: StateStore,
        *,
        lease_ttl_s: float = 30.0,
        retry_backoff_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lease_ttl_s = lease_ttl_s
        self.retry_backoff_s = retry_backoff_s
        self._clock = clock
        self._lock = threading.RLock()
        self._known_jobs: dict[str, JobRecord] = {}

    # ----- jobs ---------------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, *, job_id: str | None = None) -> JobRecord:
        """Store a new job (``scanning`` until :meth:`finish_scan`)."""
        spec.validate()
        record = JobRecord(
            job_id=job_id or f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}",
            spec=spec,
            state=JobState.SCANNING,
            created_at=self._clock(),
        )
        if not self.store.compare_and_set(job_key(record.job_id), None, encode(record)):
            raise InvalidArgumentError(f"job {record.job_id!r} already exists")
        self._known_jobs[record.job_id] = record
        return record

    def add_batch(self, job_id: str, number: int, entries: list[ScanEntry], total_bytes: int) -> None:
        """Store batch ``number`` of a scanning job (idempotent for a rescan after a crash)."""
        files = sum(1 for e in entries if e.kind == "f")
        state = BatchRecord(number=number, files=files, bytes=total_bytes)
        self.store.batch_write(
            [
                (batch_key(job_id, number), encode_batch(entries, total_bytes)),
                (batch_state_key(job_id, number), encode(state)),
            ]
        )

    def finish_scan(self, job_id: str) -> JobRecord:
        """Scanning is complete: totals are computed from the batches and the job becomes ``running``."""
        files = size = batches = 0
        for state in self.batch_states(job_id):
            files += state.files
            size += state.bytes
            batches += 1

        def change(job: JobRecord) -> JobRecord:
            if job.state is not JobState.SCANNING:
                return job
            counters = attrs.evolve(job.counters, files_total=files, bytes_total=size, batches_total=batches)
            return attrs.evolve(job, state=JobState.RUNNING, counters=counters, started_at=self._clock())

        job = self._update_job(job_id, change)
        return self._maybe_finish(job)

    def fail_scan(self, job_id: str, error: str) -> JobRecord:
        """Scanning failed: the job ends ``failed`` with the error."""
        return self._update_job(
            job_id,
            lambda job: attrs.evolve(
                job, state=JobState.FAILED, state_reason=error, finished_at=self._clock(), recent_errors=(error,)
            ),
        )

    def create_job_from_prescan(self, prescan_job_id: str, spec: JobSpec, export_root_dir: str) -> JobRecord:
        """Import a pre-scan as a ready-to-run job.

        The pre-scan's source root must lie inside the source export (``export_root_dir`` on its
        agent); its entries are rebased onto that folder so the target layout equals a direct copy.
        """
        data = self.store.get(prescan_key(prescan_job_id))
        if data is None:
            raise KeyNotFoundError(f"pre-scan {prescan_job_id!r} does not exist in this state store")
        prescan = decode_prescan(data, prescan_key(prescan_job_id))
        if prescan.state is not PrescanState.DONE:
            raise InvalidArgumentError(f"pre-scan {prescan_job_id!r} is {prescan.state}; only a finished scan imports")
        source_dir = relative_to_root(prescan.src_root_dir, export_root_dir)
        if source_dir is None:
            raise InvalidArgumentError(
                f"pre-scan source {prescan.src_root_dir!r} is not inside export {spec.source_export!r} "
                f"(root {export_root_dir!r})"
            )
        spec = attrs.evolve(spec, source_dir=source_dir, prescan_job_id=prescan_job_id)
        job = self.create_job(spec)
        prefix = prescan_batch_prefix(prescan_job_id, prescan.scan_epoch)
        for number, (key, value) in enumerate(self.store.scan_prefix(prefix)):
            entries, total = decode_batch(value, key)
            self.add_batch(job.job_id, number, entries, total)
        return self.finish_scan(job.job_id)

    def job(self, job_id: str) -> JobRecord:
        """A job record; unknown ids raise :class:`KeyNotFoundError`."""
        data = self.store.get(job_key(job_id))
        if data is None:
            raise KeyNotFoundError(f"transfer job {job_id!r} does not exist")
        record = self._known_jobs[job_id] = decode(JobRecord, data, job_key(job_id))
        return record

    def jobs(self) -> list[JobRecord]:
        """Every job, newest first."""
        records = [decode(JobRecord, v, k) for k, v in self.store.scan_prefix("jobs/")]
        self._known_jobs = {r.job_id: r for r in records}
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def cached_jobs(self) -> list[JobRecord]:
        """The job records as last read or written (for showing jobs while the store is unavailable)."""
        return sorted(self._known_jobs.values(), key=lambda r: r.created_at, reverse=True)

    def cached_job(self, job_id: str) -> JobRecord | None:
        """One job as last read or written, or None."""
        return self._known_jobs.get(job_id)

    def batch_states(self, job_id: str) -> Iterator[BatchRecord]:
        """States of a job's batches in order."""
        for key, value in self.store.scan_prefix(batch_state_prefix(job_id)):
            yield decode(BatchRecord, value, key)

    def batch_entries(self, job_id: str, number: int) -> list[ScanEntry]:
        """Entries of one batch."""
        data = self.store.get(batch_key(job_id, number))
        if data is None:
            raise KeyNotFoundError(f"batch {number} of job {job_id!r} does not exist")
        return decode_batch(data, batch_key(job_id, number))[0]

    def pause(self, job_id: str) -> JobRecord:
        """Stop handing out batches; claimed batches finish."""
        return self._set_state(job_id, JobState.PAUSED, allowed=lambda state: state.can_pause)

    def resume(self, job_id: str) -> JobRecord:
        """Continue a paused job (scanning again when it was paused before its scan finished)."""

        def change(job: JobRecord) -> JobRecord:
            if job.state is not JobState.PAUSED:
                raise InvalidArgumentError(f"job {job_id} is {job.state}; cannot change it to {JobState.RUNNING}")
            return attrs.evolve(job, state=JobState.RUNNING if job.started_at else JobState.SCANNING)

        job = self._update_job(job_id, change)
        return self._maybe_finish(job)

    def set_reason(self, job_id: str, reason: str) -> JobRecord:
        """Say why a job is not progressing (e.g. waiting for an agent); written only when it changes."""
        return self._update_job(job_id, lambda job: attrs.evolve(job, state_reason=reason))

    def cancel(self, job_id: str) -> JobRecord:
        """End the job; no more batches are handed out."""
        return self._set_state(
            job_id,
            JobState.CANCELLED,
            allowed=lambda state: state.can_cancel,
            finished_at=self._clock(),
        )

    def retry_failed(self, job_id: str) -> JobRecord:
        """Make failed batches pending again (attempts reset) and run the job again if it had failed.

        A job that failed its scan scans again; one that failed only its verification is verified
        again. Succeeded and cancelled jobs are final.
        """
        with self._lock:
            if self.job(job_id).state in (JobState.SUCCEEDED, JobState.CANCELLED):
                raise InvalidArgumentError(
                    f"job {job_id} is {self.job(job_id).state}; only a failed or unfinished job can be retried"
                )
            for state in list(self.batch_states(job_id)):
                if state.state is BatchState.FAILED:
                    self._update_batch(
                        job_id,
                        state.number,
                        lambda s: attrs.evolve(s, state=BatchState.PENDING, attempts=0, not_before=0.0, last_error=""),
                    )

            def change(job: JobRecord) -> JobRecord:
                counters = attrs.evolve(job.counters, batches_failed=0, files_failed=0)
                if job.state is not JobState.FAILED:
                    return attrs.evolve(job, counters=counters)
                state = JobState.RUNNING if job.started_at else JobState.SCANNING
                return attrs.evolve(job, state=state, counters=counters, finished_at=0.0, state_reason="")

            return self._maybe_finish(self._update_job(job_id, change))

    def recover_after_restart(self) -> None:
        """Extend every live lease by one TTL so workers that finished meanwhile can still report,
        and recount running jobs (a crash between a batch's write and its job's may have left them short)."""
        now = self._clock()
        for job in self.jobs():
            if job.state.is_final:
                continue
            for state in list(self.batch_states(job.job_id)):
                if state.state is BatchState.CLAIMED:
                    self._update_batch(
                        job.job_id,
                        state.number,
                        lambda s: attrs.evolve(s, lease_deadline=max(s.lease_deadline, now + self.lease_ttl_s)),
                    )
            if job.state.holds_leases:
                self.recount(job.job_id)

    def recount(self, job_id: str) -> JobRecord:
        """Recompute a job's done/failed counters from its batch states (they hold each batch's result)."""
        with self._lock:
            totals = dict.fromkeys(
                ("batches_done", "batches_failed", "files_copied", "bytes_copied", "files_skipped", "files_changed"), 0
            )
            files_failed = 0
            for state in self.batch_states(job_id):
                if state.state is BatchState.DONE:
                    totals["batches_done"] += 1
                    for name in ("files_copied", "bytes_copied", "files_skipped", "files_changed"):
                        totals[name] += getattr(state, name)
                elif state.state is BatchState.FAILED:
                    totals["batches_failed"] += 1
                    files_failed += state.files
            job = self._update_job(
                job_id,
                lambda j: attrs.evolve(j, counters=attrs.evolve(j.counters, files_failed=files_failed, **totals)),
            )
            return self._maybe_finish(job)

    # ----- workers ------------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        job_ids: Iterable[str] | None = None,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> BatchAssignment | None:
        """Hand the next claimable batch of a running job to ``worker``, or None.

        ``holder_gone(worker)`` may say that the worker holding a claim is known to be dead (its agent
        restarted or went offline): such a claim is taken over at once instead of after its lease.
        """
        now = self._clock()
        wanted = set(job_ids) if job_ids is not None else None

        def held(state: BatchRecord) -> bool:
            if state.state is not BatchState.CLAIMED or state.lease_deadline <= now:
                return False
            return holder_gone is None or not holder_gone(state.worker)

        for job in sorted(self.jobs(), key=lambda r: r.created_at):
            if job.state is not JobState.RUNNING or (wanted is not None and job.job_id not in wanted):
                continue
            states = list(self.batch_states(job.job_id))
            active = sum(1 for s in states if held(s))
            if active >= job.spec.desired_worker_count:
                continue
            for state in states:
                claimable = state.state is BatchState.PENDING and state.not_before <= now
                expired = state.state is BatchState.CLAIMED and not held(state)
                if not (claimable or expired):
                    continue
                token = secrets.token_hex(8)
                claimed = attrs.evolve(
                    state,
                    state=BatchState.CLAIMED,
                    worker=worker,
                    claim_token=token,
                    lease_deadline=now + self.lease_ttl_s,
                    claims=state.claims + 1,
                )
                if self.store.compare_and_set(
                    batch_state_key(job.job_id, state.number), encode(state), encode(claimed)
                ):
                    if expired:
                        log.warning(
                            "job %s batch %d: claim of %s expired or its holder is gone; re-dispatched to %s",
                            job.job_id,
                            state.number,
                            state.worker,
                            worker,
                        )
                    return BatchAssignment(
                        job_id=job.job_id,
                        spec=job.spec,
                        number=state.number,
                        claim_token=token,
                        lease_deadline=claimed.lease_deadline,
                        lease_ttl_s=self.lease_ttl_s,
                        entries=self.batch_entries(job.job_id, state.number),
                        claims=claimed.claims,
                    )
        return None

    def renew(self, job_id: str, number: int, claim_token: str) -> float | None:
        """Extend a lease; returns the new deadline, or None when the claim is no longer held
        (expired and re-claimed, or the job stopped running)."""
        job = self.job(job_id)
        if not job.state.holds_leases:
            return None
        deadline = self._clock() + self.lease_ttl_s
        updated = self._update_batch(
            job_id,
            number,
            lambda s: (
                attrs.evolve(s, lease_deadline=deadline)
                if s.claim_token == claim_token and s.state is BatchState.CLAIMED
                else s
            ),
        )
        return deadline if updated.claim_token == claim_token and updated.state is BatchState.CLAIMED else None

    def complete(self, job_id: str, number: int, claim_token: str, result: BatchResult) -> bool:
        """Record a finished batch; idempotent; False when the claim was lost (the result is ignored)."""
        with self._lock:
            before = self._batch_state(job_id, number)
            if before.state in (BatchState.DONE, BatchState.FAILED) and before.claim_token == claim_token:
                # A repeated report: the first may have stopped between the batch and the job write.
                self.recount(job_id)
                return True
            if before.claim_token != claim_token or before.state is not BatchState.CLAIMED:
                return False
            if result.errors:
                return self._record_failure(job_id, before, "; ".join(result.errors[:3]), result)
            self._update_batch(
                job_id,
                number,
                lambda s: attrs.evolve(
                    s,
                    state=BatchState.DONE,
                    last_error="",
                    files_copied=result.files_copied,
                    bytes_copied=result.bytes_copied,
                    files_skipped=result.files_skipped,
                    files_changed=result.files_changed,
                ),
            )

            def change(job: JobRecord) -> JobRecord:
                c = job.counters
                counters = attrs.evolve(
                    c,
                    batches_done=c.batches_done + 1,
                    files_copied=c.files_copied + result.files_copied,
                    bytes_copied=c.bytes_copied + result.bytes_copied,
                    files_skipped=c.files_skipped + result.files_skipped,
                    files_changed=c.files_changed + result.files_changed,
                )
                return attrs.evolve(job, counters=counters)

            job = self._update_job(job_id, change)
            TRANSFER_FILES_COPIED.get().inc(result.files_copied)
            TRANSFER_BYTES_COPIED.get().inc(result.bytes_copied)
            self._maybe_finish(job)
            return True

    def fail(self, job_id: str, number: int, claim_token: str, error: str) -> bool:
        """Record a failed attempt: retried with backoff until ``max_attempts``, then failed."""
        with self._lock:
            before = self._batch_state(job_id, number)
            if before.state is BatchState.FAILED and before.claim_token == claim_token:
                self.recount(job_id)  # a repeated report, see complete()
                return True
            if before.claim_token != claim_token or before.state is not BatchState.CLAIMED:
                return False
            return self._record_failure(job_id, before, error, None)

    def finish_verification(self, job_id: str, differences: list[str]) -> JobRecord:
        """Record the verification pass: ``succeeded`` when source and target agree, else ``failed``."""

        def change(job: JobRecord) -> JobRecord:
            if job.state is not JobState.VERIFYING:
                return job
            if differences:
                return attrs.evolve(
                    job,
                    state=JobState.FAILED,
                    finished_at=self._clock(),
                    state_reason=f"verification found {len(differences)} difference(s)",
                    verify_report=tuple(differences[:100]),
                )
            return attrs.evolve(job, state=JobState.SUCCEEDED, finished_at=self._clock(), verify_report=())

        return self._update_job(job_id, change)

    # ----- internals ----------------------------------------------------------------------------

    def _record_failure(self, job_id: str, before: BatchRecord, error: str, result: BatchResult | None) -> bool:
        job = self.job(job_id)
        attempts = before.attempts + 1
        final = attempts >= job.spec.max_attempts
        backoff = self.retry_backoff_s * (2 ** (attempts - 1))
        self._update_batch(
            job_id,
            before.number,
            lambda s: attrs.evolve(
                s,
                state=BatchState.FAILED if final else BatchState.PENDING,
                attempts=attempts,
                not_before=self._clock() + backoff,
                last_error=error,
                claim_token=s.claim_token if final else "",
            ),
        )
        message = f"batch {before.number} attempt {attempts}: {error}"

        def change(record: JobRecord) -> JobRecord:
            errors = (*record.recent_errors, message)[-RECENT_ERRORS:]
            counters = record.counters
            if final:
                counters = attrs.evolve(
                    counters,
                    batches_failed=counters.batches_failed + 1,
                    files_failed=counters.files_failed + before.files,
                )
            return attrs.evolve(record, recent_errors=errors, counters=counters)

        updated = self._update_job(job_id, change)
        if final:
            self._maybe_finish(updated)
        return True

    def _maybe_finish(self, job: JobRecord) -> JobRecord:
        if job.state is not JobState.RUNNING:
            return job
        c = job.counters
        if c.batches_done + c.batches_failed < c.batches_total:
            return job
        if c.batches_failed:
            failed = [s.number for s in self.batch_states(job.job_id) if s.state is BatchState.FAILED]
            return self._update_job(
                job.job_id,
                lambda j: attrs.evolve(
                    j,
                    state=JobState.FAILED,
                    finished_at=self._clock(),
                    state_reason=f"{len(failed)} batch(es) failed: {failed[:20]}",
                ),
            )
        return self._update_job(
            job.job_id,
            lambda j: attrs.evolve(j, state=JobState.VERIFYING) if j.state is JobState.RUNNING else j,
        )

    def _set_state(
        self, job_id: str, state: JobState, allowed: Callable[[JobState], bool], **changes: Any
    ) -> JobRecord:
        def change(job: JobRecord) -> JobRecord:
            if not allowed(job.state):
                raise InvalidArgumentError(f"job {job_id} is {job.state}; cannot change it to {state}")
            return attrs.evolve(job, state=state, **changes)

        return self._update_job(job_id, change)

    def _batch_state(self, job_id: str, number: int) -> BatchRecord:
        data = self.store.get(batch_state_key(job_id, number))
        if data is None:
            raise KeyNotFoundError(f"batch {number} of job {job_id!r} does not exist")
        return decode(BatchRecord, data, batch_state_key(job_id, number))

    def _update_job(self, job_id: str, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        key = job_key(job_id)
        while True:
            data = self.store.get(key)
            if data is None:
                raise KeyNotFoundError(f"transfer job {job_id!r} does not exist")
            updated = change(decode(JobRecord, data, key))
            encoded = encode(updated)
            if encoded == data or self.store.compare_and_set(key, data, encoded):
                self._known_jobs[job_id] = updated
                return updated

    def _update_batch(self, job_id: str, number: int, change: Callable[[BatchRecord], BatchRecord]) -> BatchRecord:
        key = batch_state_key(job_id, number)
        while True:
            data = self.store.get(key)
            if data is None:
                raise KeyNotFoundError(f"batch {number} of job {job_id!r} does not exist")
            updated = change(decode(BatchRecord, data, key))
            encoded = encode(updated)
            if encoded == data or self.store.compare_and_set(key, data, encoded):
                return updated
