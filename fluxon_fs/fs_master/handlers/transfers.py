"""``/fluxon_fs/transfer/*``: batches for the agents' transfer workers, jobs for users (CLI, Python API).

A claimed batch goes out with a session token of its job's owner, refreshed with each lease
renewal (:mod:`fluxon_fs.fs_master.job_authority`); who may create, see and steer jobs is
:mod:`fluxon_fs.fs_master.job_access`.
"""

from __future__ import annotations

import threading

from fluxon_core.errors import ApiTimeoutError, InvalidArgumentError, NetworkError
from fluxon_core.log_setup import get_logger
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.fs_master import job_access
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.handlers.table import HandlerTable
from fluxon_fs.fs_master.job_authority import JobAuthority, JobOwnerError
from fluxon_fs.fs_master.job_runner import JobRunner
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.records import (
    BatchClaim,
    BatchClaimReply,
    BatchCompletion,
    BatchFailure,
    BatchReportReply,
    ClaimedBatch,
    JobAction,
    JobActionReply,
    JobCreation,
    JobCreationReply,
    JobListQuery,
    JobListReply,
    JobQuery,
    JobReply,
    JobView,
    LeaseRenewal,
    LeaseRenewalReply,
    PrescanImport,
    QuarantinedJob,
)
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.holders import ClaimHolders
from fluxon_fs.transfer.job_store import QuarantinedRecord
from fluxon_fs.transfer.states import JobState

log = get_logger("fluxon.fs.transfer")

# What an unreachable state store raises (etcd, TiKV); list/show then answer from the last known jobs.
STATE_STORE_DOWN = (NetworkError, ApiTimeoutError)


MAX_CLAIM_WAIT_S = 5.0
"""The longest a claim call is held while nothing is claimable."""
CLAIM_WAITERS = 2
"""Claim calls held at once: each holds one of the master's few RPC threads, so beyond this a claim is
answered at once and its worker polls."""


def state_store_error(exc: Exception) -> str:
    """What users see while the transfer state store is unreachable."""
    return f"transfer state store unavailable, jobs are paused until it is back: {exc}"


class TransferHandlers:
    """Hands batches to workers and takes their reports; creates, lists, shows and steers jobs for users.

    A user may move data they may read to where they may write (users who can manage users: anywhere),
    and the copy runs with their authority.
    """

    def __init__(
        self,
        transfers: TransferCoordinator,
        jobs: JobRunner,
        claim_holders: ClaimHolders,
        exports: ExportRegistry,
        authorizer: Authorizer,
        authority: JobAuthority,
    ) -> None:
        self._transfers = transfers
        self._jobs = jobs
        self._claim_holders = claim_holders
        self._exports = exports
        self._authorizer = authorizer
        self._authority = authority
        self._claim_waiters = threading.BoundedSemaphore(CLAIM_WAITERS)

    def register_paths(self, table: HandlerTable) -> None:
        """Add this domain's handlers to ``table``."""
        table.add(calls.CLAIM_BATCH, self.claim_batch)
        table.add(calls.RENEW_LEASE, self.renew_lease)
        table.add(calls.COMPLETE_BATCH, self.complete_batch)
        table.add(calls.FAIL_BATCH, self.fail_batch)
        table.add(calls.CREATE_JOB, self.create_job)
        table.add(calls.IMPORT_PRESCAN, self.import_prescan)
        table.add(calls.LIST_JOBS, self.list_jobs)
        table.add(calls.SHOW_JOB, self.show_job)
        table.add(calls.ACT_ON_JOB, self.act_on_job)

    # ----- workers ------------------------------------------------------------------------------

    def claim_batch(self, caller: str, claim: BatchClaim) -> BatchClaimReply:
        """The next claimable batch whose target export the calling agent serves, with a token of its
        job's owner; running jobs whose owner can no longer run them are paused instead.

        With nothing claimable the call is held up to ``claim.wait_s`` (at most :data:`MAX_CLAIM_WAIT_S`,
        and only while fewer than :data:`CLAIM_WAITERS` calls are held) and answered, still without a
        batch, as soon as a change that can make a batch claimable is recorded (``claim_again``): the
        worker claims again at once. A held call never claims: its worker may have died while it was
        held, and a batch claimed for it would wait for its lease and count as a lost attempt.
        """
        generation = self._transfers.work.generation
        reply = self._claim_now(caller, claim)
        wait_s = min(max(claim.wait_s, 0.0), MAX_CLAIM_WAIT_S)
        if reply.assignment is not None or wait_s <= 0 or not self._claim_waiters.acquire(blocking=False):
            return reply
        try:
            return BatchClaimReply(None, claim_again=self._transfers.work.wait(generation, wait_s))
        finally:
            self._claim_waiters.release()

    def _claim_now(self, caller: str, claim: BatchClaim) -> BatchClaimReply:
        worker = self._claim_holders.worker_name(caller, claim.incarnation, claim.worker)
        registered = {record.agent_instance_key for record in self._exports.agents()}
        target_exports = set(claim.target_exports)
        tokens = {}
        for job in self._transfers.jobs():
            if job.state is not JobState.RUNNING or job.spec.target_export not in target_exports:
                continue
            try:
                tokens[job.job_id] = self._authority.token(job)
            except JobOwnerError as exc:
                log.warning("job %s paused: %s", job.job_id, exc.message)
                self._transfers.suspend(job.job_id, exc.message, owner=job.job_owner)
        assignment = self._transfers.claim(
            worker,
            job_ids=list(tokens),
            holder_gone=lambda holder: self._claim_holders.gone(holder, registered),
        )
        if assignment is None:
            return BatchClaimReply(None)
        return BatchClaimReply(ClaimedBatch.of(assignment, tokens[assignment.job_id]))

    def renew_lease(self, caller: str, renewal: LeaseRenewal) -> LeaseRenewalReply:
        """Extend a claim's lease (the caller is alive), with the owner's current token ("" when the
        owner can no longer run the job: the worker's calls then fail and the next claim pauses the job)."""
        self._claim_holders.seen(caller)
        deadline = self._transfers.renew(renewal.job_id, renewal.number, renewal.claim_token)
        if deadline is None:
            return LeaseRenewalReply(None)
        try:
            token = self._authority.token(self._transfers.job(renewal.job_id))
        except JobOwnerError:
            token = ""
        return LeaseRenewalReply(deadline, token)

    def complete_batch(self, _caller: str, completion: BatchCompletion) -> BatchReportReply:
        """Count a copied batch."""
        accepted = self._transfers.complete(
            completion.job_id, completion.number, completion.claim_token, completion.result
        )
        job = self._transfers.cached_job(completion.job_id)
        if job is not None and job.state is JobState.VERIFYING:
            self._jobs.wake()  # the last batch: verify now rather than at the runner's next poll
        return BatchReportReply(accepted)

    def fail_batch(self, _caller: str, failure: BatchFailure) -> BatchReportReply:
        """Record a batch that could not be copied (it is retried up to the job's ``max_attempts``)."""
        return BatchReportReply(
            self._transfers.fail(failure.job_id, failure.number, failure.claim_token, failure.error)
        )

    # ----- users --------------------------------------------------------------------------------

    def create_job(self, _caller: str, creation: JobCreation) -> JobCreationReply:
        """Start a job that scans its source, then copies, for the session's user."""
        owner = job_access.authorize_new_job(self._authorizer, creation.token, creation.spec)
        return JobCreationReply(self._jobs.start_job(creation.spec, owner))

    def import_prescan(self, _caller: str, prescan_import: PrescanImport) -> JobCreationReply:
        """Turn a finished pre-scan into a running job for the session's user; needs read access to the
        whole source export."""
        token, spec = prescan_import.token, prescan_import.spec
        identity = self._authorizer.authorize(token, spec.target_export, spec.target_prefix, is_write=True)
        if not identity.can_manage_users:
            self._authorizer.authorize(token, spec.source_export, "", is_write=False)
        job = self._transfers.create_job_from_prescan(
            prescan_import.prescan_job_id,
            spec,
            self._export_root(spec.source_export),
            owner=job_access.owner_of(identity),
        )
        return JobCreationReply(job.job_id)

    def list_jobs(self, _caller: str, query: JobListQuery) -> JobListReply:
        """The jobs the user may see; the last known ones (with the store's error) while the state store
        is unreachable.

        Job records that could not be read are counted, and listed for users who can manage users.
        """
        identity = self._authorizer.authenticate(query.token)
        quarantined: list[QuarantinedRecord] = []
        try:
            jobs, error = self._transfers.jobs(), ""
            quarantined = self._transfers.quarantined_jobs()
        except STATE_STORE_DOWN as exc:
            jobs, error = self._transfers.cached_jobs(), state_store_error(exc)
        shown = [QuarantinedJob(q.key, q.error, q.quarantined_at) for q in quarantined]
        visible = job_access.visible_jobs(self._authorizer, query.token, jobs)
        return JobListReply(
            tuple(JobView.of(job, error) for job in visible),
            error,
            quarantined=tuple(shown) if identity.can_manage_users else (),
            quarantined_count=len(shown),
        )

    def show_job(self, _caller: str, query: JobQuery) -> JobReply:
        """A job with its batches; the last known job without batches while the state store is unreachable."""
        self._authorizer.authenticate(query.token)
        try:
            job = self._transfers.job(query.job_id)
            job_access.authorize_view(self._authorizer, query.token, job)
            batches = tuple(self._transfers.batch_states(query.job_id))
        except STATE_STORE_DOWN as exc:
            cached = self._transfers.cached_job(query.job_id)
            if cached is None:
                raise NetworkError(state_store_error(exc)) from exc
            job_access.authorize_view(self._authorizer, query.token, cached)
            error = state_store_error(exc)
            return JobReply(JobView.of(cached, error), (), error)
        return JobReply(JobView.of(job), batches, "")

    def act_on_job(self, _caller: str, action: JobAction) -> JobActionReply:
        """Pause, resume, cancel or retry the failed batches of a job."""
        updated = job_access.act_on_job(
            self._transfers, self._authority, self._authorizer, action.token, action.job_id, action.action
        )
        self._jobs.wake()
        return JobActionReply(JobView.of(updated))

    def _export_root(self, export_name: str) -> str:
        """The root directory of an export on its agents, from the snapshot."""
        export = self._exports.snapshot().exports.get(export_name)
        if export is None:
            raise InvalidArgumentError(f"unknown export_name {export_name!r}")
        return export.remote_root_dir_abs
