"""The fs master's part of transfer jobs: scanning sources of new jobs and verifying finished ones.

Copying happens in the agents' workers; the master only walks metadata through the export
interface (one ``list_dir`` per directory) and compares sizes and mtimes at the end. Both steps
are restartable: a scan rewrites the same batch numbers for an unchanged tree, and verification
only reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fluxon_core.errors import ApiError
from fluxon_core.log_setup import get_logger
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.transfer.batching import group_batches
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import scan_export_dir, verify_batch
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.states import JobState

log = get_logger("fluxon.fs.transfer.runner")

POLL_INTERVAL_S = 0.3
# Verification is two stat round trips per file; batches are verified this many at a time.
VERIFY_THREADS = 8


class JobRunner:
    """Background thread driving jobs in the ``scanning`` and ``verifying`` states."""

    def __init__(self, coordinator: TransferCoordinator, export_ops: Callable[[str], ExportOps]) -> None:
        self._coordinator = coordinator
        self._export_ops = export_ops
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

    def start_job(self, spec: JobSpec) -> str:
        """Create a job that scans its source, then runs; returns its id."""
        job = self._coordinator.create_job(spec)
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
                        self._scan(job.job_id, job.spec)
                    elif job.state is JobState.VERIFYING:
                        self._verify(job.job_id, job.spec)
                self._last_store_error = ""
            except ApiError as exc:
                # Typically the state store is unreachable: say so once per distinct error, not every pass.
                if str(exc) != self._last_store_error:
                    log.warning("transfer runner pass failed (%s); retrying until it succeeds", exc)
                    self._last_store_error = str(exc)
            except Exception:
                log.exception("transfer runner pass failed; retrying")

    def _ops_or_wait(self, job_id: str, export_name: str) -> ExportOps | None:
        """The export's operations, or None (reason recorded on the job) while no live agent serves it,
        e.g. just after a master restart, before the agents registered again."""
        try:
            ops = self._export_ops(export_name)
        except FileNotFoundError as exc:
            self._coordinator.set_reason(job_id, f"waiting: {exc.strerror or exc}")
            return None
        self._coordinator.set_reason(job_id, "")
        return ops

    def _scan(self, job_id: str, spec: JobSpec) -> None:
        source = self._ops_or_wait(job_id, spec.source_export)
        if source is None:
            return
        try:
            entries = scan_export_dir(source, spec.source_dir)
            for number, (batch, size) in enumerate(group_batches(entries, spec.batch_ready_bytes)):
                self._coordinator.add_batch(job_id, number, batch, size)
        except OSError as exc:
            log.warning("scan of job %s failed: %s", job_id, exc)
            self._coordinator.fail_job(job_id, f"scan failed: {exc}")
            return
        job = self._coordinator.finish_scan(job_id)
        log.info("job %s scanned: %d files in %d batches", job_id, job.counters.files_total, job.counters.batches_total)

    def _verify(self, job_id: str, spec: JobSpec) -> None:
        source = self._ops_or_wait(job_id, spec.source_export)
        target = self._ops_or_wait(job_id, spec.target_export)
        if source is None or target is None:
            return

        def verify_one(number: int) -> list[str]:
            return verify_batch(spec, self._coordinator.batch_entries(job_id, number), source, target)

        numbers = [state.number for state in self._coordinator.batch_states(job_id)]
        with ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="fs-transfer-verify") as pool:
            differences = [line for found in pool.map(verify_one, numbers) for line in found]
        job = self._coordinator.finish_verification(job_id, differences)
        log.info("job %s verification: %s (%d differences)", job_id, job.state, len(differences))
