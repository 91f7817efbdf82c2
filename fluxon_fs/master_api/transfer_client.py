"""Driving transfer jobs from Python (and the ``fluxon transfer`` CLI): a thin client of the fs master.

Each call carries the user's session token; the client logs in again before the token expires
(see :class:`~fluxon_fs.master_api.session.UserSession`), so waiting on a job longer than
``fluxon_fs.master_panel.session.token_ttl_s`` works.
"""

from __future__ import annotations

import time
from typing import Any

from fluxon_core.errors import ApiTimeoutError
from fluxon_core.kv import KvClient
from fluxon_fs.master_api.codec import to_wire
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import JobAction, JobCreation, JobListQuery, JobQuery, PrescanImport
from fluxon_fs.master_api.session import UserSession
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.states import JobState


class TransferClient:
    """Create, watch and control transfer jobs as one user; jobs come back as dicts, as on the wire."""

    def __init__(self, store: KvClient, master_instance_key: str, username: str, password: str) -> None:
        self._link = FsMasterLink(store, master_instance_key)
        self.session = UserSession(self._link, username, password)
        """The user's session (its token is renewed before it expires)."""

    def create_job(self, spec: JobSpec) -> str:
        """Start a job that scans ``spec.source_dir`` of the source export, then copies; returns its id."""
        return self.session.call(lambda token: self._link.create_job(JobCreation(token, spec))).job_id

    def import_prescan(self, prescan_job_id: str, spec: JobSpec) -> str:
        """Turn a finished pre-scan into a running job (``spec.source_dir`` is derived from the scan)."""
        return self.session.call(
            lambda token: self._link.import_prescan(PrescanImport(token, prescan_job_id, spec))
        ).job_id

    def jobs(self) -> list[dict[str, Any]]:
        """Every job this user may see, newest first."""
        return [to_wire(job) for job in self.session.call(lambda token: self._link.list_jobs(JobListQuery(token))).jobs]

    def job_list(self) -> dict[str, Any]:
        """:meth:`jobs` with what else the listing says: ``jobs``, ``state_store_error``,
        ``quarantined`` (job records that could not be read; listed for users who can manage users)
        and ``quarantined_count``."""
        return to_wire(self.session.call(lambda token: self._link.list_jobs(JobListQuery(token))))

    def show(self, job_id: str) -> dict[str, Any]:
        """A job with its batches."""
        return to_wire(self.session.call(lambda token: self._link.show_job(JobQuery(token, job_id))))

    def action(self, job_id: str, action: str) -> dict[str, Any]:
        """``pause``, ``resume``, ``cancel`` or ``retry_failed``."""
        return to_wire(self.session.call(lambda token: self._link.act_on_job(JobAction(token, job_id, action))).job)

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job reaches succeeded, failed or cancelled; returns the final job."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.session.call(lambda token: self._link.show_job(JobQuery(token, job_id))).job
            if JobState(view.job.state).is_final:
                return to_wire(view)
            if time.monotonic() >= deadline:
                raise ApiTimeoutError(f"transfer job {job_id} is still {view.job.state} after {timeout_s}s")
            time.sleep(poll_s)
