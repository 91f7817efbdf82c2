"""Driving transfer jobs from Python (and the ``fluxon transfer`` CLI): a thin client of the fs master."""

from __future__ import annotations

import time
from typing import Any

from fluxon_core.errors import ApiTimeoutError
from fluxon_core.kv import KvClient
from fluxon_fs.master_api.link import (
    AUTH_LOGIN_PATH,
    TRANSFER_ACTION_PATH,
    TRANSFER_CREATE_PATH,
    TRANSFER_IMPORT_PATH,
    TRANSFER_LIST_PATH,
    TRANSFER_SHOW_PATH,
    FsMasterLink,
)
from fluxon_fs.transfer.codec import to_json
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.states import JobState


class TransferClient:
    """Create, watch and control transfer jobs as one user."""

    def __init__(self, store: KvClient, master_instance_key: str, username: str, password: str) -> None:
        self._link = FsMasterLink(store, master_instance_key)
        self._token = self._link.call(AUTH_LOGIN_PATH, {"username": username, "password": password})["token"]

    def _call(self, path: str, **payload: Any) -> dict[str, Any]:
        return self._link.call(path, {"token": self._token, **payload})

    def create_job(self, spec: JobSpec) -> str:
        """Start a job that scans ``spec.source_dir`` of the source export, then copies; returns its id."""
        return str(self._call(TRANSFER_CREATE_PATH, spec=to_json(spec))["job_id"])

    def import_prescan(self, prescan_job_id: str, spec: JobSpec) -> str:
        """Turn a finished pre-scan into a running job (``spec.source_dir`` is derived from the scan)."""
        return str(self._call(TRANSFER_IMPORT_PATH, prescan_job_id=prescan_job_id, spec=to_json(spec))["job_id"])

    def jobs(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        return list(self._call(TRANSFER_LIST_PATH)["jobs"])

    def show(self, job_id: str) -> dict[str, Any]:
        """A job with its batches."""
        return self._call(TRANSFER_SHOW_PATH, job_id=job_id)

    def action(self, job_id: str, action: str) -> dict[str, Any]:
        """``pause``, ``resume``, ``cancel`` or ``retry_failed``."""
        return dict(self._call(TRANSFER_ACTION_PATH, job_id=job_id, action=action)["job"])

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> dict[str, Any]:
        """Poll until the job reaches succeeded, failed or cancelled; returns the final job."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.show(job_id)["job"]
            if JobState(job["state"]).is_final:
                return dict(job)
            if time.monotonic() >= deadline:
                raise ApiTimeoutError(f"transfer job {job_id} is still {job['state']} after {timeout_s}s")
            time.sleep(poll_s)
