"""The fs master's part of transfer jobs: scanning sources of new jobs and verifying finished ones.

Copying happens in the agents' workers; the master only walks metadata through the export
interface (one ``list_dir`` per directory) and compares sizes and mtimes at the end (from one listing per directory and side,
shared by all batches, or a ``stat`` per file for a batch's few files of a directory; and content
hashes when the job asks for them). Both run with the authority of the job's owner
(:mod:`fluxon_fs.fs_master.job_authority`): every call carries the owner's session token, so the
agent applies their scopes and re-authorises symlinks on their real path. A job whose owner can no
longer run it is paused with the reason instead. Both steps are restartable: a scan rewrites the
same batch numbers for an unchanged tree, and verification only reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fluxon_core.errors import ApiError
from fluxon_core.log_setup import get_logger
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.fs_master.job_authority import JobAuthority, JobOwnerError
from fluxon_fs.transfer.batching import JOB_SCAN_MAX_ENTRIES, group_batches
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import DirectoryListings, scan_export_dir, verify_batch
from fluxon_fs.transfer.jobs import JobOwner, JobRecord, JobSpec
from fluxon_fs.transfer.states import JobState

log = get_logger("fluxon.fs.transfer.runner")

POLL_INTERVAL_S = 0.3
# Batches are verified this many at a time (each is a few listing or stat round trips).
VERIFY_THREADS = 8

ExportOpsAs = Callable[[str, Callable[[str], str]], ExportOps]
"""``export_ops(export_name, auth)``: an export's operations through a live agent, every call
carrying ``auth(rpc_path)``; ``FileNotFoundError`` while no live agent serves it."""


class JobRunner:
    """Background thread driving jobs in the ``scanning`` and ``verifying`` states."""

    def __init__(self, coordinator: TransferCoordinator, export_ops: ExportOpsAs, authority: JobAuthority) -> None:
        self._coordinator = coordinator
        self._export_ops = export_ops
        self._authority = authority
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fs-transfer-runner", daemon=True)
        self._last_store_error = ""

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Look at jobs now (a job was just created)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def start_job(self, spec: JobSpec, owner: JobOwner) -> str:
        """Create a job for ``owner`` that scans its source, then runs; returns its id."""
        job = self._coordinator.create_job(spec, owner=owner)
        self.wake()
        return job.job_id

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_INTERVAL_S)
            self._wake.clear()
            try:
                for job in self._coordinator.jobs():
                    if self._stop.is_set():
                        return
                    if job.state is JobState.SCANNING:
                        self._as_owner(job, self._scan)
                    elif job.state is JobState.VERIFYING:
                        self._as_owner(job, self._verify)
                self._last_store_error = ""
            except ApiError as exc:
                # Typically the state store is unreachable: say so once per distinct error, not every pass.
                if str(exc) != self._last_store_error:
                    log.warning("transfer runner pass failed (%s); retrying until it succeeds", exc)
                    self._last_store_error = str(exc)
            except Exception:
                log.exception("transfer runner pass failed; retrying")

    def _as_owner(self, job: JobRecord, step: Callable[[JobRecord], None]) -> None:
        """Run ``step`` for ``job`` unless its owner cannot run it; then the job is paused with the reason."""
        try:
            self._authority.token(job)
            step(job)
        except JobOwnerError as exc:
            self._suspend(job, exc.message)

    def _suspend(self, job: JobRecord, reason: str) -> None:
        log.warning("job %s paused: %s", job.job_id, reason)
        self._coordinator.suspend(job.job_id, reason, owner=job.job_owner)

    def _ops_or_wait(self, job: JobRecord, export_name: str) -> ExportOps | None:
        """The export's operations as the job's owner, or None (reason recorded on the job) while no live
        agent serves it, e.g. just after a master restart, before the agents registered again."""
        try:
            ops = self._export_ops(export_name, self._authority.auth(job))
        except FileNotFoundError as exc:
            self._coordinator.set_reason(job.job_id, f"waiting: {exc.strerror or exc}")
            return None
        self._coordinator.set_reason(job.job_id, "")
        return ops

    def _refused(self, job: JobRecord, step: str, exc: OSError) -> None:
        """``step`` of ``job`` failed: pause the job when its owner can no longer run it (their token
        was refused), else fail it with the error (``retry`` runs the step again)."""
        problem = self._authority.problem(job)
        if problem:
            self._suspend(job, problem)
            return
        log.warning("%s of job %s failed: %s", step, job.job_id, exc)
        self._coordinator.fail_job(job.job_id, f"{step} failed: {exc}")

    def _scan(self, job: JobRecord) -> None:
        source = self._ops_or_wait(job, job.spec.source_export)
        if source is None:
            return
        try:
            entries = scan_export_dir(source, job.spec.source_dir)
            for number, (batch, size) in enumerate(
                group_batches(entries, job.spec.batch_ready_bytes, JOB_SCAN_MAX_ENTRIES)
            ):
                self._coordinator.add_batch(job.job_id, number, batch, size)
        except JobOwnerError:
            raise
        except OSError as exc:  # PermissionDeniedError included: the owner may not read what is there
            self._refused(job, "scan", exc)
            return
        scanned = self._coordinator.finish_scan(job.job_id)
        counters = scanned.counters
        log.info("job %s scanned: %d files in %d batches", job.job_id, counters.files_total, counters.batches_total)

    def _verify(self, job: JobRecord) -> None:
        spec = job.spec
        source = self._ops_or_wait(job, spec.source_export)
        target = self._ops_or_wait(job, spec.target_export)
        if source is None or target is None:
            return

        listings = (DirectoryListings(source), DirectoryListings(target))

        def verify_one(number: int) -> list[str]:
            entries = self._coordinator.batch_entries(job.job_id, number)
            return verify_batch(spec, entries, source, target, listings)

        numbers = [state.number for state in self._coordinator.batch_states(job.job_id)]
        try:
            with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="fs-transfer-verify") as pool:
                differences = [line for found in pool.map(verify_one, numbers) for line in found]
        except JobOwnerError:
            raise
        except OSError as exc:
            self._refused(job, "verification", exc)
            return
        verified = self._coordinator.finish_verification(job.job_id, differences)
        log.info("job %s verification: %s (%d differences)", job.job_id, verified.state, len(differences))
