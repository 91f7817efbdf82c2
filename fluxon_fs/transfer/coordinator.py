"""The transfer coordinator the fs master runs: one object over the three parts of job handling.

* :class:`~fluxon_fs.transfer.job_store.JobStore` — the records in the state store;
* :class:`~fluxon_fs.transfer.lifecycle.JobLifecycle` — the state transitions of jobs;
* :class:`~fluxon_fs.transfer.leases.BatchLeases` — batch claims, renewals and expiry.

:class:`TransferCoordinator` builds them around one state store and forwards to them, so the fs
master, its panel and its job runner hold a single object; each method says which part does the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from fluxon_core.protocols import StateStore
from fluxon_fs.transfer.job_store import JobStore, QuarantinedRecord
from fluxon_fs.transfer.jobs import NO_OWNER, BatchAssignment, BatchRecord, BatchResult, JobOwner, JobRecord, JobSpec
from fluxon_fs.transfer.leases import BatchLeases
from fluxon_fs.transfer.lifecycle import JobLifecycle
from fluxon_fs.transfer.records import ScanEntry
from fluxon_fs.transfer.work_signal import WorkSignal


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
        self.job_store = JobStore(store)
        self.lifecycle = JobLifecycle(self.job_store, retry_backoff_s=retry_backoff_s, clock=clock)
        self.leases = BatchLeases(self.job_store, self.lifecycle, lease_ttl_s=lease_ttl_s, clock=clock)

    @property
    def work(self) -> WorkSignal:
        """Notified by every change that can make a batch claimable; claimers wait on it
        (:attr:`JobLifecycle.work`)."""
        return self.lifecycle.work

    # ----- records (JobStore) -------------------------------------------------------------------

    def job(self, job_id: str) -> JobRecord:
        """A job record; unknown ids raise KeyNotFoundError (:meth:`JobStore.job`)."""
        return self.job_store.job(job_id)

    def jobs(self) -> list[JobRecord]:
        """Every job, newest first (:meth:`JobStore.jobs`)."""
        return self.job_store.jobs()

    def cached_jobs(self) -> list[JobRecord]:
        """Jobs as last read or written, for when the store is down (:meth:`JobStore.cached_jobs`)."""
        return self.job_store.cached_jobs()

    def cached_job(self, job_id: str) -> JobRecord | None:
        """One job as last read or written, or None (:meth:`JobStore.cached_job`)."""
        return self.job_store.cached_job(job_id)

    def add_batch(self, job_id: str, number: int, entries: list[ScanEntry], total_bytes: int) -> None:
        """Store batch ``number`` of a scanning job (:meth:`JobStore.add_batch`)."""
        self.job_store.add_batch(job_id, number, entries, total_bytes)

    def batch_states(self, job_id: str) -> Iterator[BatchRecord]:
        """A job's batch records in order (:meth:`JobStore.batches`)."""
        return self.job_store.batches(job_id)

    def batch_entries(self, job_id: str, number: int) -> list[ScanEntry]:
        """Entries of one batch (:meth:`JobStore.batch_entries`)."""
        return self.job_store.batch_entries(job_id, number)

    # ----- transitions (JobLifecycle) -----------------------------------------------------------

    def create_job(self, spec: JobSpec, *, owner: JobOwner = NO_OWNER, job_id: str | None = None) -> JobRecord:
        """Store a new job run for ``owner``, ``scanning`` until its scan finishes (:meth:`JobLifecycle.create_job`)."""
        return self.lifecycle.create_job(spec, owner=owner, job_id=job_id)

    def create_job_from_prescan(
        self, prescan_job_id: str, spec: JobSpec, export_root_dir: str, *, owner: JobOwner = NO_OWNER
    ) -> JobRecord:
        """Import a finished pre-scan as a running job (:meth:`JobLifecycle.create_job_from_prescan`)."""
        return self.lifecycle.create_job_from_prescan(prescan_job_id, spec, export_root_dir, owner=owner)

    def finish_scan(self, job_id: str) -> JobRecord:
        """Scanning is complete: the job becomes ``running`` (:meth:`JobLifecycle.finish_scan`)."""
        return self.lifecycle.finish_scan(job_id)

    def fail_job(self, job_id: str, error: str) -> JobRecord:
        """The job cannot go on (e.g. its scan failed): it ends ``failed`` (:meth:`JobLifecycle.fail_job`)."""
        return self.lifecycle.fail_job(job_id, error)

    def quarantined_jobs(self) -> list[QuarantinedRecord]:
        """Job records that could not be read, moved aside (:meth:`JobStore.quarantined`)."""
        return self.job_store.quarantined()

    def pause(self, job_id: str) -> JobRecord:
        """Stop handing out batches (:meth:`JobLifecycle.pause`)."""
        return self.lifecycle.pause(job_id)

    def resume(self, job_id: str, *, owner: JobOwner | None = None) -> JobRecord:
        """Continue a paused job, run for ``owner`` from now on if given (:meth:`JobLifecycle.resume`)."""
        return self.lifecycle.resume(job_id, owner=owner)

    def suspend(self, job_id: str, reason: str, *, owner: JobOwner | None = None) -> JobRecord:
        """Pause a job the fs master cannot go on with, saying why (:meth:`JobLifecycle.suspend`)."""
        return self.lifecycle.suspend(job_id, reason, owner=owner)

    def cancel(self, job_id: str) -> JobRecord:
        """End the job (:meth:`JobLifecycle.cancel`)."""
        return self.lifecycle.cancel(job_id)

    def retry_failed(self, job_id: str) -> JobRecord:
        """Make failed batches pending again and run the job again (:meth:`JobLifecycle.retry_failed`)."""
        return self.lifecycle.retry_failed(job_id)

    def set_reason(self, job_id: str, reason: str) -> JobRecord:
        """Say why a job is not progressing (:meth:`JobLifecycle.set_reason`)."""
        return self.lifecycle.set_reason(job_id, reason)

    def finish_verification(self, job_id: str, differences: list[str]) -> JobRecord:
        """Record the verification pass (:meth:`JobLifecycle.finish_verification`)."""
        return self.lifecycle.finish_verification(job_id, differences)

    # ----- claims (BatchLeases) -----------------------------------------------------------------

    def claim(
        self,
        worker: str,
        *,
        job_ids: Iterable[str] | None = None,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> BatchAssignment | None:
        """Hand the next claimable batch of a running job to ``worker``, or None (:meth:`BatchLeases.claim`)."""
        return self.leases.claim(worker, job_ids=job_ids, holder_gone=holder_gone)

    def renew(self, job_id: str, number: int, claim_token: str) -> float | None:
        """Extend a lease; None when the claim is no longer held (:meth:`BatchLeases.renew`)."""
        return self.leases.renew(job_id, number, claim_token)

    def complete(self, job_id: str, number: int, claim_token: str, result: BatchResult) -> bool:
        """Record a finished batch; False when the claim was lost (:meth:`BatchLeases.complete`)."""
        return self.leases.complete(job_id, number, claim_token, result)

    def fail(self, job_id: str, number: int, claim_token: str, error: str) -> bool:
        """Record a failed attempt; False when the claim was lost (:meth:`BatchLeases.fail`)."""
        return self.leases.fail(job_id, number, claim_token, error)

    def recover_after_restart(self) -> None:
        """At fs master start: extend live leases, recount jobs (:meth:`BatchLeases.recover_after_restart`)."""
        self.leases.recover_after_restart()
