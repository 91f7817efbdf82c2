"""Transfer workers inside an fs agent: claim batches from the fs master, copy, report.

A worker claims only batches whose target export this agent serves (so writes are local and
fd-anchored); the source is read locally when this agent also serves it, otherwise from an agent
that does, over RPC. Every export call of a copy carries the session token of the job's owner that
came with the claim (fresh ones come with lease renewals), and a local export is reached through
:class:`~fluxon_fs.export.serving.authorized_ops.AuthorizedExportOps`, the agent's own access
check: the copy can read and write only what the owner may, and a symlink is re-authorised on its
real path, exactly as for the owner's requests. The lease is renewed while copying; when a renewal
says the claim was lost, the worker abandons the batch (the temp files it leaves are never
published, and the next copy of that batch removes them).

Workers claim as ``<agent>/<incarnation>/<index>``; the incarnation is fresh for every agent
process, so the master knows that the claims of a restarted agent's previous process are orphaned.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fluxon_core.errors import ApiError
from fluxon_core.log_setup import get_logger
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.export.serving.authorized_ops import AuthorizedExportOps
from fluxon_fs.export.serving.local_copy import LocalDirectoryCopier
from fluxon_fs.master_api.calls import COMPLETE_BATCH, FAIL_BATCH
from fluxon_fs.master_api.records import (
    BatchClaim,
    BatchCompletion,
    BatchFailure,
    ClaimedBatch,
    ExportSnapshotQuery,
    LeaseRenewal,
)
from fluxon_fs.transfer.copier import copy_batch
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.work_signal import WorkSignal

if TYPE_CHECKING:
    from fluxon_fs.fs_agent.agent import FsAgent

log = get_logger("fluxon.fs.transfer.worker")

IDLE_POLL_S = 0.5
"""How long an idle worker that does not hold a claim call open waits before it asks again."""
CLAIM_WAIT_S = 2.0
"""How long one idle worker of the pool lets the master hold its claim call (see
:meth:`TransferWorkerPool._run`)."""

# Test hook (tests/test_transfer_faults.py), inert unless both variables are set: the first batch of
# this process that reaches FLUXON_TEST_PAUSE_AFTER_BYTES written bytes creates the file
# FLUXON_TEST_PAUSE_MARKER and its worker stops there (lease still renewed) until the marker is
# deleted or the process is killed — a deterministic "mid-batch" for fault tests.
PAUSE_AFTER_BYTES_ENV = "FLUXON_TEST_PAUSE_AFTER_BYTES"
PAUSE_MARKER_ENV = "FLUXON_TEST_PAUSE_MARKER"
_pause_used = threading.Lock()


def _test_pause_hook(job_id: str, number: int) -> Callable[[int], None] | None:
    limit, marker = os.environ.get(PAUSE_AFTER_BYTES_ENV), os.environ.get(PAUSE_MARKER_ENV)
    if not limit or not marker:
        return None
    written = 0

    def on_progress(count: int) -> None:
        nonlocal written
        written += count
        if written >= int(limit) and _pause_used.acquire(blocking=False):
            Path(marker).write_text(f"{job_id} {number} {written}\n")
            log.warning(
                "test hook: batch %s/%d paused after %d bytes until %s is removed", job_id, number, written, marker
            )
            while os.path.exists(marker):
                time.sleep(0.05)

    return on_progress


class _LeaseKeeper:
    """Renews a claim in the background; ``lost`` is set when the master says it is gone.

    ``access_token`` is the job owner's session token for the copy, replaced by the fresh one each
    renewal brings.
    """

    def __init__(self, agent: FsAgent, assignment: ClaimedBatch) -> None:
        self._agent, self._job_id, self._number = agent, assignment.job_id, assignment.number
        self._token = assignment.claim_token
        self.access_token = assignment.access_token
        self._interval = max(assignment.lease_ttl_s / 3, 0.2)
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fs-transfer-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                reply = self._agent.master.renew_lease(LeaseRenewal(self._job_id, self._number, self._token))
                if reply.lease_deadline is None:
                    self.lost.set()
                    return
                if reply.access_token:
                    self.access_token = reply.access_token
            except ApiError as exc:
                log.warning("lease renewal for %s/%d failed: %s", self._job_id, self._number, exc)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class TransferWorkerPool:
    """``count`` worker threads of one agent.

    An idle pool does not poll with every worker: one of them (whichever holds ``_long_poll``) lets
    the master hold its claim call until a batch becomes claimable, and the others wait on
    ``_claimed``, which a worker notifies whenever it gets a batch, so they claim the rest of a new
    job at once; they still ask on their own every :data:`IDLE_POLL_S`.
    """

    def __init__(self, agent: FsAgent, count: int) -> None:
        self._agent = agent
        self._count = count
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client = agent.store.transport().new_client()
        self._incarnation = secrets.token_hex(4)
        self._long_poll = threading.Lock()
        self._claimed = WorkSignal()

    def start(self) -> None:
        """Start the worker threads."""
        for index in range(self._count):
            thread = threading.Thread(target=self._run, args=(index,), name=f"fs-transfer-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the workers (a batch being copied is abandoned; its claim expires) and wait for them."""
        self._stop.set()
        self._claimed.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._client.close()

    def _run(self, index: int) -> None:
        exports = tuple(sorted(self._agent.ops))
        while not self._stop.is_set():
            seen = self._claimed.generation
            long_poll = self._long_poll.acquire(blocking=False)
            asked = time.monotonic()
            try:
                claim = BatchClaim(str(index), self._incarnation, exports, wait_s=CLAIM_WAIT_S if long_poll else 0.0)
                reply = self._agent.master.claim_batch(claim)
            except ApiError as exc:
                log.debug("claim failed: %s", exc)
                self._stop.wait(IDLE_POLL_S * 4)
                continue
            finally:
                if long_poll:
                    self._long_poll.release()
            assignment = reply.assignment
            if assignment is None:
                held = long_poll and time.monotonic() - asked >= CLAIM_WAIT_S / 2
                if not (reply.claim_again or held):
                    # Not held (the master holds only a few claim calls at once): wait here instead.
                    self._claimed.wait(seen, IDLE_POLL_S)
                continue
            self._claimed.notify()  # a job has work: idle siblings claim too, now
            self._run_batch(assignment)

    def _local_ops(self, export_name: str, keeper: _LeaseKeeper) -> ExportOps:
        """A local export as the job's owner, through this agent's access check."""
        return AuthorizedExportOps(
            self._agent.ops[export_name],
            export_name,
            self._agent.authorize,
            lambda: keeper.access_token,
            caller=self._agent.instance_key,
        )

    def _direct_copier(self, spec: JobSpec, keeper: _LeaseKeeper) -> LocalDirectoryCopier | None:
        """The directory-fd copier when this agent serves both exports of the job, else None."""
        source, target = self._agent.ops.get(spec.source_export), self._agent.ops.get(spec.target_export)
        if source is None or target is None:
            return None
        return LocalDirectoryCopier(
            source,
            spec.source_export,
            target,
            spec.target_export,
            self._agent.authorize,
            lambda: keeper.access_token,
            caller=self._agent.instance_key,
        )

    def _source_ops(self, export_name: str, keeper: _LeaseKeeper) -> ExportOps:
        if export_name in self._agent.ops:
            return self._local_ops(export_name, keeper)
        exports = self._agent.master.export_snapshot(ExportSnapshotQuery()).exports or {}
        export = exports.get(export_name)
        if export is None or not export.agents:
            raise ApiError(f"no live agent serves source export {export_name!r}")
        return RemoteExportOps(
            self._client,
            export.agents[0].endpoint,
            export_name,
            auth=lambda _path: keeper.access_token,
            caller=self._agent.instance_key,
        )

    def _run_batch(self, assignment: ClaimedBatch) -> None:
        spec, job_id, number, token = assignment.spec, assignment.job_id, assignment.number, assignment.claim_token
        keeper = _LeaseKeeper(self._agent, assignment)
        started = time.monotonic()
        try:
            source = self._source_ops(spec.source_export, keeper)
            target = self._local_ops(spec.target_export, keeper)
            result = copy_batch(
                spec,
                assignment.scan_entries(),
                source,
                target,
                should_continue=lambda: not (keeper.lost.is_set() or self._stop.is_set()),
                on_progress=_test_pause_hook(job_id, number),
                clean_orphans=assignment.claims > 1,
                direct=self._direct_copier(spec, keeper),
            )
        except Exception as exc:
            keeper.stop()
            failure = BatchFailure(job_id, number, token, repr(exc))
            self._report(FAIL_BATCH.path, lambda: self._agent.master.fail_batch(failure))
            return
        keeper.stop()
        if keeper.lost.is_set() or self._stop.is_set():
            log.warning("batch %s/%d abandoned (claim lost or agent stopping)", job_id, number)
            return
        log.info(
            "batch %s/%d: %d files, %d bytes in %.2fs",
            job_id,
            number,
            result.files_copied,
            result.bytes_copied,
            time.monotonic() - started,
        )
        completion = BatchCompletion(job_id, number, token, result)
        self._report(COMPLETE_BATCH.path, lambda: self._agent.master.complete_batch(completion))

    def _report(self, path: str, send: Callable[[], object]) -> None:
        """Deliver a result to ``path`` with ``send``; keeps trying while the master is away (it extends
        leases on restart)."""
        while not self._stop.is_set():
            try:
                send()
                return
            except ApiError as exc:
                log.warning("reporting %s to the fs master failed (%s); retrying", path, exc)
                self._stop.wait(1.0)
