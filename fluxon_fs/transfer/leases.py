"""Batch claims: handing batches to workers under a lease, renewals, expiry, and the reports that end a claim.

A batch moves ``pending → claimed(worker, lease) → done | failed``. A worker claims with
compare-and-set and renews its lease while copying; an expired lease (or a holder known to be
gone) makes the batch claimable again and counts as a failed attempt, so a batch that kills every
worker copying it fails after the job's ``max_attempts``; a done batch is never handed out again. A report counts
only from the worker that holds the claim (its ``claim_token``); a repeated report of an outcome
already recorded is accepted again, so a worker may retry a report whose answer it did not get.

After a restart of the fs master, :meth:`BatchLeases.recover_after_restart` extends live leases
once by a full TTL, so workers that finished while it was down can still report instead of their
batch being copied twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.log_setup import get_logger
from fluxon_fs.transfer.job_store import JobStore
from fluxon_fs.transfer.jobs import BatchAssignment, BatchRecord, BatchResult, JobRecord
from fluxon_fs.transfer.lifecycle import JobLifecycle
from fluxon_fs.transfer.states import BatchState, JobState

log = get_logger("fluxon.fs.transfer")


def _holds(batch: BatchRecord, claim_token: str) -> bool:
    return batch.state is BatchState.CLAIMED and batch.claim_token == claim_token


class BatchLeases:
    """Claims, renewals and expiry of batch leases. Safe for concurrent callers."""

    def __init__(
        self,
        jobs: JobStore,
        lifecycle: JobLifecycle,
        *,
        lease_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jobs = jobs
        self._lifecycle = lifecycle
        self.lease_ttl_s = lease_ttl_s
        self._clock = clock

    def claim(
        self,
        worker: str,
        *,
        job_ids: Iterable[str] | None = None,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> BatchAssignment | None:
        """Hand the next claimable batch of a running job to ``worker``, or None.

        Jobs are served oldest first, each up to its ``desired_worker_count`` live claims.
        ``holder_gone(worker)`` may say that the worker holding a claim is known to be dead (its agent
        restarted or went offline): such a claim is taken over at once instead of after its lease.
        """
        now = self._clock()
        wanted = set(job_ids) if job_ids is not None else None

        def held(batch: BatchRecord) -> bool:
            if batch.state is not BatchState.CLAIMED or batch.lease_deadline <= now:
                return False
            return holder_gone is None or not holder_gone(batch.worker)

        for job in sorted(self._jobs.jobs(), key=lambda r: r.created_at):
            if job.state is not JobState.RUNNING or (wanted is not None and job.job_id not in wanted):
                continue
            try:
                assignment = self._claim_in(job, worker, now, held)
            except InvalidArgumentError as exc:  # a record of this job cannot be read: it alone stops
                log.error("job %s: %s", job.job_id, exc)
                self._lifecycle.fail_job(job.job_id, f"a record of this job cannot be read: {exc}")
                continue
            if assignment is not None:
                return assignment
        return None

    def _claim_in(
        self, job: JobRecord, worker: str, now: float, held: Callable[[BatchRecord], bool]
    ) -> BatchAssignment | None:
        """The next claimable batch of ``job`` claimed for ``worker``, or None."""
        batches = list(self._jobs.batches(job.job_id))
        if sum(1 for b in batches if held(b)) >= job.spec.desired_worker_count:
            return None
        for listed in batches:
            if not self._claimable(listed, now, held):
                continue
            lost_holder = listed.worker if listed.state is BatchState.CLAIMED else ""
            if lost_holder:
                listed = self._lifecycle.batch_lost(job.job_id, listed)
                if not self._claimable(listed, now, held) or listed.state is not BatchState.PENDING:
                    continue  # out of attempts, or another claimer was first
            token = secrets.token_hex(8)

            def take(batch: BatchRecord, token: str = token) -> BatchRecord:
                # Decided again on the stored record: another claimer may have taken it since the listing.
                if not self._claimable(batch, now, held):
                    return batch
                return attrs.evolve(
                    batch,
                    state=BatchState.CLAIMED,
                    worker=worker,
                    claim_token=token,
                    lease_deadline=now + self.lease_ttl_s,
                    claims=batch.claims + 1,
                )

            claimed = self._jobs.update_batch(job.job_id, listed.number, take)
            if claimed.claim_token != token:
                continue
            if lost_holder:
                log.warning(
                    "job %s batch %d: claim of %s expired or its holder is gone (attempt %d); re-dispatched to %s",
                    job.job_id,
                    listed.number,
                    lost_holder,
                    listed.attempts,
                    worker,
                )
            return BatchAssignment(
                job_id=job.job_id,
                spec=job.spec,
                number=listed.number,
                claim_token=token,
                lease_deadline=claimed.lease_deadline,
                lease_ttl_s=self.lease_ttl_s,
                entries=self._jobs.batch_entries(job.job_id, listed.number),
                claims=claimed.claims,
            )
        return None

    @staticmethod
    def _claimable(batch: BatchRecord, now: float, held: Callable[[BatchRecord], bool]) -> bool:
        if batch.state is BatchState.PENDING:
            return batch.not_before <= now
        return batch.state is BatchState.CLAIMED and not held(batch)

    def renew(self, job_id: str, number: int, claim_token: str) -> float | None:
        """Extend a lease; returns the new deadline, or None when the claim is no longer held
        (expired and re-claimed, or the job stopped running)."""
        if not self._jobs.job(job_id).state.holds_leases:
            return None
        deadline = self._clock() + self.lease_ttl_s
        updated = self._jobs.update_batch(
            job_id,
            number,
            lambda b: attrs.evolve(b, lease_deadline=deadline) if _holds(b, claim_token) else b,
        )
        return deadline if _holds(updated, claim_token) else None

    def complete(self, job_id: str, number: int, claim_token: str, result: BatchResult) -> bool:
        """Record a finished batch (a result with errors is a failed attempt); idempotent; False when
        the claim was lost (the result is ignored)."""
        with self._jobs.lock:
            before = self._jobs.batch(job_id, number)
            if before.state in (BatchState.DONE, BatchState.FAILED) and before.claim_token == claim_token:
                # A repeated report: the first may have stopped between the batch and the job write.
                self._lifecycle.recount(job_id)
                return True
            if not _holds(before, claim_token):
                return False
            if result.errors:
                self._lifecycle.batch_failed(job_id, before, "; ".join(result.errors[:3]))
            else:
                self._lifecycle.batch_done(job_id, before, result)
            return True

    def fail(self, job_id: str, number: int, claim_token: str, error: str) -> bool:
        """Record a failed attempt (retried with backoff until ``max_attempts``); False when the claim was lost."""
        with self._jobs.lock:
            before = self._jobs.batch(job_id, number)
            if before.state is BatchState.FAILED and before.claim_token == claim_token:
                self._lifecycle.recount(job_id)  # a repeated report, see complete()
                return True
            if not _holds(before, claim_token):
                return False
            self._lifecycle.batch_failed(job_id, before, error)
            return True

    def recover_after_restart(self) -> None:
        """Extend every live lease by one TTL so workers that finished meanwhile can still report,
        and recount running jobs (a crash between a batch's write and its job's may have left them short).

        A job record that cannot be read is quarantined (:class:`JobStore`); a job with a batch record
        that cannot be read fails with that error. Neither stops the others or the fs master's start.
        """
        now = self._clock()
        for job in self._jobs.jobs():
            if job.state.is_final:
                continue
            try:
                for batch in list(self._jobs.batches(job.job_id)):
                    if batch.state is BatchState.CLAIMED:
                        self._jobs.update_batch(
                            job.job_id,
                            batch.number,
                            lambda b: attrs.evolve(b, lease_deadline=max(b.lease_deadline, now + self.lease_ttl_s)),
                        )
                if job.state.holds_leases:
                    self._lifecycle.recount(job.job_id)
            except InvalidArgumentError as exc:
                log.error("job %s: %s", job.job_id, exc)
                self._lifecycle.fail_job(job.job_id, f"a record of this job cannot be read: {exc}")
