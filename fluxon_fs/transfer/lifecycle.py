"""The state transitions of transfer jobs: creation, scan, pause / resume / cancel / retry, batch
outcomes, completion and verification.

A job's counters can always be recomputed from its batch records, which keep each batch's result:
recording an outcome writes the batch first and the job second, and when the store fails (or the
master dies) between the two, :meth:`JobLifecycle.recount` — run on the worker's repeated report
or the coordinator's next start — repairs the job instead of losing or double-counting the batch.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.metrics import TRANSFER_BYTES_COPIED, TRANSFER_FILES_COPIED
from fluxon_core.relpath import relative_to_root
from fluxon_fs.transfer.job_store import JobStore
from fluxon_fs.transfer.jobs import NO_OWNER, BatchRecord, BatchResult, JobOwner, JobRecord, JobSpec
from fluxon_fs.transfer.states import BatchState, JobState, PrescanState
from fluxon_fs.transfer.work_signal import WorkSignal

RECENT_ERRORS = 20
# The per-batch results a job's counters sum up.
RESULT_COUNTERS = ("files_copied", "bytes_copied", "files_skipped", "files_changed")


class JobLifecycle:
    """Moves jobs between states in a :class:`JobStore`. Safe for concurrent callers."""

    def __init__(self, jobs: JobStore, *, retry_backoff_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self._jobs = jobs
        self._retry_backoff_s = retry_backoff_s
        self._clock = clock
        self.work = WorkSignal()
        """Notified by every transition that can make a batch claimable (claimers wait on it)."""

    # ----- creation and scan --------------------------------------------------------------------

    def create_job(self, spec: JobSpec, *, owner: JobOwner = NO_OWNER, job_id: str | None = None) -> JobRecord:
        """Store a new job run for ``owner``, ``scanning`` until :meth:`finish_scan`.

        The fs master does not run a job without an owner (see :mod:`fluxon_fs.fs_master.job_authority`).
        """
        spec.validate()
        record = JobRecord(
            job_id=job_id or f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}",
            spec=spec,
            state=JobState.SCANNING,
            created_at=self._clock(),
            owner=owner.username,
            owner_credential_version=owner.credential_version,
        )
        self._jobs.insert_job(record)
        return record

    def create_job_from_prescan(
        self, prescan_job_id: str, spec: JobSpec, export_root_dir: str, *, owner: JobOwner = NO_OWNER
    ) -> JobRecord:
        """Import a finished pre-scan as a running job run for ``owner``.

        The pre-scan's source root must lie inside the source export (``export_root_dir`` on its
        agent); its entries are rebased onto that folder so the target layout equals a direct copy.
        """
        prescan = self._jobs.prescan(prescan_job_id)
        if prescan.state is not PrescanState.DONE:
            raise InvalidArgumentError(f"pre-scan {prescan_job_id!r} is {prescan.state}; only a finished scan imports")
        source_dir = relative_to_root(prescan.src_root_dir, export_root_dir)
        if source_dir is None:
            raise InvalidArgumentError(
                f"pre-scan source {prescan.src_root_dir!r} is not inside export {spec.source_export!r} "
                f"(root {export_root_dir!r})"
            )
        job = self.create_job(attrs.evolve(spec, source_dir=source_dir, prescan_job_id=prescan_job_id), owner=owner)
        for number, (entries, total) in enumerate(self._jobs.prescan_batches(prescan)):
            self._jobs.add_batch(job.job_id, number, entries, total)
        return self.finish_scan(job.job_id)

    def finish_scan(self, job_id: str) -> JobRecord:
        """Scanning is complete: totals are computed from the batches and the job becomes ``running``."""
        files = size = batches = 0
        for batch in self._jobs.batches(job_id):
            files += batch.files
            size += batch.bytes
            batches += 1

        def change(job: JobRecord) -> JobRecord:
            if job.state is not JobState.SCANNING:
                return job
            counters = attrs.evolve(job.counters, files_total=files, bytes_total=size, batches_total=batches)
            return attrs.evolve(job, state=JobState.RUNNING, counters=counters, started_at=self._clock())

        finished = self._maybe_finish(self._jobs.update_job(job_id, change))
        self.work.notify()
        return finished

    def fail_job(self, job_id: str, error: str) -> JobRecord:
        """The job cannot go on (its scan failed, a record of it cannot be read): it ends ``failed``
        with the error; ``retry_failed`` runs it again."""
        return self._jobs.update_job(
            job_id,
            lambda job: attrs.evolve(
                job,
                state=JobState.FAILED,
                state_reason=error,
                finished_at=self._clock(),
                recent_errors=(*job.recent_errors, error)[-RECENT_ERRORS:],
            ),
        )

    # ----- what users do ------------------------------------------------------------------------

    def pause(self, job_id: str) -> JobRecord:
        """Stop handing out batches; claimed batches finish."""
        return self._set_state(job_id, JobState.PAUSED, allowed=lambda state: state.can_pause)

    def suspend(self, job_id: str, reason: str, *, owner: JobOwner | None = None) -> JobRecord:
        """Pause a job the fs master cannot go on with (e.g. its owner can no longer run it), saying why.

        Unlike :meth:`pause` this also stops a job that is verifying; a job that has ended stays as it
        is, and so does one no longer bound to ``owner`` (resumed for another owner meanwhile).
        """

        def change(job: JobRecord) -> JobRecord:
            if job.state.is_final or (owner is not None and job.job_owner != owner):
                return job
            return attrs.evolve(job, state=JobState.PAUSED, state_reason=reason)

        return self._jobs.update_job(job_id, change)

    def resume(self, job_id: str, *, owner: JobOwner | None = None) -> JobRecord:
        """Continue a paused job (scanning again when it was paused before its scan finished, verifying
        when every batch had ended); with ``owner``, it runs for that owner from now on."""

        def change(job: JobRecord) -> JobRecord:
            if job.state is not JobState.PAUSED:
                raise InvalidArgumentError(f"job {job_id} is {job.state}; cannot change it to {JobState.RUNNING}")
            bound = owner or job.job_owner
            return attrs.evolve(
                job,
                state=JobState.RUNNING if job.started_at else JobState.SCANNING,
                state_reason="",
                owner=bound.username,
                owner_credential_version=bound.credential_version,
            )

        resumed = self._maybe_finish(self._jobs.update_job(job_id, change))
        self.work.notify()
        return resumed

    def cancel(self, job_id: str) -> JobRecord:
        """End the job; no more batches are handed out."""
        return self._set_state(
            job_id, JobState.CANCELLED, allowed=lambda state: state.can_cancel, finished_at=self._clock()
        )

    def retry_failed(self, job_id: str) -> JobRecord:
        """Make failed batches pending again (attempts reset) and run the job again if it had failed.

        A job that failed its scan scans again; one that failed only its verification is verified
        again. Succeeded and cancelled jobs are final.
        """
        with self._jobs.lock:
            state = self._jobs.job(job_id).state
            if state in (JobState.SUCCEEDED, JobState.CANCELLED):
                raise InvalidArgumentError(f"job {job_id} is {state}; only a failed or unfinished job can be retried")
            for batch in list(self._jobs.batches(job_id)):
                if batch.state is BatchState.FAILED:
                    self._jobs.update_batch(
                        job_id,
                        batch.number,
                        lambda b: attrs.evolve(b, state=BatchState.PENDING, attempts=0, not_before=0.0, last_error=""),
                    )

            def change(job: JobRecord) -> JobRecord:
                counters = attrs.evolve(job.counters, batches_failed=0, files_failed=0)
                if job.state is not JobState.FAILED:
                    return attrs.evolve(job, counters=counters)
                state = JobState.RUNNING if job.started_at else JobState.SCANNING
                return attrs.evolve(job, state=state, counters=counters, finished_at=0.0, state_reason="")

            retried = self._maybe_finish(self._jobs.update_job(job_id, change))
        self.work.notify()
        return retried

    def set_reason(self, job_id: str, reason: str) -> JobRecord:
        """Say why a job is not progressing (e.g. waiting for an agent); written only when it changes."""
        return self._jobs.update_job(job_id, lambda job: attrs.evolve(job, state_reason=reason))

    # ----- batch outcomes -----------------------------------------------------------------------

    def batch_done(self, job_id: str, before: BatchRecord, result: BatchResult) -> None:
        """Record the result of the claimed batch ``before``: the batch is done, its results count."""
        with self._jobs.lock:
            self._jobs.update_batch(
                job_id,
                before.number,
                lambda b: attrs.evolve(
                    b, state=BatchState.DONE, last_error="", **{name: getattr(result, name) for name in RESULT_COUNTERS}
                ),
            )

            def change(job: JobRecord) -> JobRecord:
                c = job.counters
                added = {name: getattr(c, name) + getattr(result, name) for name in RESULT_COUNTERS}
                return attrs.evolve(job, counters=attrs.evolve(c, batches_done=c.batches_done + 1, **added))

            job = self._jobs.update_job(job_id, change)
            TRANSFER_FILES_COPIED.get().inc(result.files_copied)
            TRANSFER_BYTES_COPIED.get().inc(result.bytes_copied)
            self._maybe_finish(job)

    def batch_failed(self, job_id: str, before: BatchRecord, error: str) -> None:
        """Record a failed attempt of the claimed batch ``before``: retried with exponential backoff
        until the job's ``max_attempts``, then failed for good."""
        self._failed_attempt(job_id, before, error, holder_lost=False)

    def batch_lost(self, job_id: str, before: BatchRecord) -> BatchRecord:
        """The worker holding the claimed batch ``before`` is gone (its lease expired or its agent died).

        That was an attempt too — a batch that crashes every worker copying it must not be retried
        forever: the batch becomes pending at once (no backoff: a dead worker says little about the
        batch), or failed once the job's ``max_attempts`` are used. Returns the stored batch, unchanged
        when another caller already dealt with that claim.
        """
        max_attempts = self._jobs.job(job_id).spec.max_attempts
        error = f"worker {before.worker} was lost while copying (its lease expired or its agent died)"
        if before.attempts + 1 >= max_attempts:
            error += (
                f"; {max_attempts} of {max_attempts} attempts used, giving up: the batch may be crashing its workers"
            )
        return self._failed_attempt(job_id, before, error, holder_lost=True)

    def _failed_attempt(self, job_id: str, before: BatchRecord, error: str, *, holder_lost: bool) -> BatchRecord:
        with self._jobs.lock:
            job = self._jobs.job(job_id)
            attempts = before.attempts + 1
            final = attempts >= job.spec.max_attempts
            backoff = 0.0 if holder_lost else self._retry_backoff_s * (2 ** (attempts - 1))
            applied = False

            def count_attempt(batch: BatchRecord) -> BatchRecord:
                nonlocal applied
                applied = batch.state is BatchState.CLAIMED and batch.claim_token == before.claim_token
                if not applied:  # the claim ended meanwhile (reported, or taken over by another claimer)
                    return batch
                return attrs.evolve(
                    batch,
                    state=BatchState.FAILED if final else BatchState.PENDING,
                    attempts=attempts,
                    not_before=self._clock() + backoff if backoff else 0.0,
                    last_error=error,
                    # A reported final failure keeps its token so a repeated report is recognised; a lost
                    # holder's late report must not count.
                    claim_token=batch.claim_token if final and not holder_lost else "",
                )

            updated = self._jobs.update_batch(job_id, before.number, count_attempt)
            if not applied:
                return updated
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

            changed_job = self._jobs.update_job(job_id, change)
            if final:
                self._maybe_finish(changed_job)
            else:
                self.work.notify()  # pending again (claimable once its backoff has passed)
            return updated

    def recount(self, job_id: str) -> JobRecord:
        """Recompute a job's done/failed counters from its batch records (they hold each batch's result)."""
        with self._jobs.lock:
            totals = self._outcome_counters(job_id)
            job = self._jobs.update_job(job_id, lambda j: attrs.evolve(j, counters=attrs.evolve(j.counters, **totals)))
            return self._maybe_finish(job)

    def _outcome_counters(self, job_id: str) -> dict[str, int]:
        """The job counters that sum up its batches' outcomes, from the batch records."""
        totals = dict.fromkeys(("batches_done", "batches_failed", "files_failed", *RESULT_COUNTERS), 0)
        for batch in self._jobs.batches(job_id):
            if batch.state is BatchState.DONE:
                totals["batches_done"] += 1
                for name in RESULT_COUNTERS:
                    totals[name] += getattr(batch, name)
            elif batch.state is BatchState.FAILED:
                totals["batches_failed"] += 1
                totals["files_failed"] += batch.files
        return totals

    # ----- the end ------------------------------------------------------------------------------

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

        return self._jobs.update_job(job_id, change)

    def _maybe_finish(self, job: JobRecord) -> JobRecord:
        """A running job whose batches all ended goes on to ``verifying``, or ``failed`` if any failed."""
        if job.state is not JobState.RUNNING:
            return job
        c = job.counters
        if c.batches_done + c.batches_failed < c.batches_total:
            return job
        if c.batches_failed:
            failed = [b.number for b in self._jobs.batches(job.job_id) if b.state is BatchState.FAILED]
            return self._jobs.update_job(
                job.job_id,
                lambda j: attrs.evolve(
                    j,
                    state=JobState.FAILED,
                    finished_at=self._clock(),
                    state_reason=f"{len(failed)} batch(es) failed: {failed[:20]}",
                ),
            )
        return self._jobs.update_job(
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

        return self._jobs.update_job(job_id, change)
